#!/usr/bin/env bash
# Set the lab up on a Debian/Ubuntu machine, then open JupyterLab on notebooks/.
#
#   bash scripts/setup.sh           set up (idempotent) and start JupyterLab
#   bash scripts/setup.sh --no-lab  set up only (the test command and CI use this)
#
# What it does: installs python3-venv, rabbitmq-server, nginx and the machine
# backend's tools (systemd-container, debootstrap, nftables) with apt when they
# are missing, creates .venv in the repository with the project and its test
# tools, and trains the model once (LABKIT_MODEL_DIR, default
# ~/.local/share/labkit/model). Run it again at any time: done steps are skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

start_lab=1
[ "${1:-}" = "--no-lab" ] && start_lab=0

say() { printf '[setup] %s\n' "$*"; }
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# 1. System packages.
missing=()
python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && ! command -v rabbitmq-server >/dev/null; then
  missing+=(rabbitmq-server)
fi
# nginx: the buffering proxy labkit runs in front of gunicorn, one private nginx per deployment.
nginx_new=0
if [ ! -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null; then
  missing+=(nginx)
  nginx_new=1
fi
# The machine backend (local systemd machines, contextualized by real cloud-init): nspawn, debootstrap, nftables.
command -v systemd-nspawn >/dev/null || missing+=(systemd-container)
[ -x /usr/sbin/debootstrap ] || command -v debootstrap >/dev/null || missing+=(debootstrap)
[ -x /usr/sbin/nft ] || command -v nft >/dev/null || missing+=(nftables)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt-get"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian starts its own nginx service on port 80 when it installs the package; labkit needs none of it.
if [ "$nginx_new" = 1 ] && command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then
  say "stopping and disabling the distribution's nginx service: labkit runs one nginx per deployment"
  as_root systemctl disable --now nginx
fi

# 2. The virtual environment, reinstalled only when pyproject.toml or the server's pins changed.
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
fi
stamp=".venv/.installed-$(cat pyproject.toml production_server/requirements.txt | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  say "installing the project and its dependencies into .venv (TensorFlow is large: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip "setuptools>=77"  # the wheel test builds without isolation
  # The server's pins as constraints: labkit's local backend runs exactly what a VM or container installs.
  .venv/bin/python -m pip install -q -e ".[test]" -c production_server/requirements.txt
  rm -f .venv/.installed-*
  touch "$stamp"
fi

# 3. cloud-init's JSON schema, for the user-data checks in notebook 01 and `labkit cloud-init render --schema`:
# taken from Debian's cloud-init package (downloaded, never installed: cloud-init does not belong on a
# laptop), with the package's copyright file (GPL-3 or Apache-2.0) beside it.
schema_dir=.venv/share/cloud-init
if [ ! -f "$schema_dir/schema-cloud-config-v1.json" ] && command -v apt-get >/dev/null; then
  say "fetching cloud-init's schema from Debian's cloud-init package"
  tmp="$(mktemp -d)"
  if ! (cd "$tmp" && apt-get download -qq cloud-init 2>/dev/null); then
    as_root apt-get update -qq
    (cd "$tmp" && apt-get download -qq cloud-init) || true
  fi
  deb="$(ls "$tmp"/cloud-init_*.deb 2>/dev/null | head -n1)"
  if [ -n "$deb" ]; then
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" \
      ./usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json \
      ./usr/share/doc/cloud-init/copyright
    mkdir -p "$schema_dir"
    cp "$tmp/usr/lib/python3/dist-packages/cloudinit/config/schemas/schema-cloud-config-v1.json" \
       "$tmp/usr/share/doc/cloud-init/copyright" "$schema_dir/"
    echo "${deb##*/}" > "$schema_dir/SOURCE"
  else
    say "could not download Debian's cloud-init package: the user-data checks will skip cloud-init's schema"
  fi
  rm -rf "$tmp"
fi

# 4. The trained model.
model_dir="${LABKIT_MODEL_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/labkit/model}"
if [ ! -f "$model_dir/metadata.json" ]; then
  say "training the model into $model_dir (about a minute)"
  .venv/bin/labkit train
fi

if [ "$start_lab" -eq 1 ]; then
  say "starting JupyterLab on notebooks/ (open 00-setup.ipynb; stop it with Ctrl-C)"
  # The backend is the one 00-setup saves (local until you choose another); no variable here would override it.
  root_flag=()
  [ "$(id -u)" -eq 0 ] && root_flag=(--allow-root)  # a container or a CI machine; never needed as a user
  exec .venv/bin/jupyter lab "${root_flag[@]}" notebooks/
fi
say "ready"
