#!/usr/bin/env bash
# Run the whole test suite: unit, integration (real RabbitMQ, Celery, model),
# browser (Debian's chromium) and notebooks. Extra arguments go to pytest,
# e.g. `bash scripts/test.sh -m "not slow"` for the quick part only.
# Two processes run it (pytest-xdist): the machine tests in one, the rest in the
# other, each in its usual order (tests/conftest.py); `-n 0` runs all in one.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh --no-lab

if ! command -v chromium >/dev/null; then
  echo "[test] installing Debian's chromium for the browser tests"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; fi
fi

if [ ! -x /usr/sbin/sshd ]; then
  echo "[test] installing Debian's openssh-server for the SSH tests"
  if [ "$(id -u)" -eq 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server
  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server; fi
fi

exec .venv/bin/python -m pytest -n 2 --dist loadgroup "$@"
