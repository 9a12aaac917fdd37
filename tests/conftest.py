"""Shared fixtures.

Real parts only: a model trained here on the real data, private RabbitMQ
nodes, real Celery workers and gunicorn. Every deployment a test starts is
destroyed again, also when the test fails.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
# Read before clean_environ takes every LABKIT_* variable away from the tests.
KEPT_IMAGES = os.environ.get("LABKIT_TEST_MACHINE_IMAGES")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch, tmp_path_factory):
    """Tests never depend on the developer's own LABKIT_*, SERVER_* or OS_* settings,
    nor on the choices saved in their labkit settings file."""
    for key in list(os.environ):
        if key.startswith(("LABKIT_", "SERVER_", "OS_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LABKIT_CONFIG", str(tmp_path_factory.getbasetemp() / "no-saved-settings.json"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = Path(os.environ.get("LABKIT_TEST_DATA_DIR", SHARED_DATA))
    if not (path / "pima-indians-diabetes.csv").is_file():
        pytest.fail(f"The Pima data set is not in {path}: set LABKIT_TEST_DATA_DIR to the folder that holds it.")
    return path


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, data_dir) -> Path:
    """A model trained once per test session (few epochs: the tests need a real model, not a good one)."""
    import labkit

    out = tmp_path_factory.mktemp("model")
    settings = labkit.Settings(data_dir=data_dir, model_dir=out)
    labkit.train(epochs=30, settings=settings)
    return out


@pytest.fixture
def settings(tmp_path, data_dir, model_dir):
    """Settings for a deployment of its own: private home, the session's model, lines not bars."""
    import labkit

    return labkit.Settings(
        home=tmp_path / "home", model_dir=model_dir, data_dir=data_dir, progress="lines", predict_timeout=3.0
    )


@pytest.fixture
def deployment_factory(settings):
    """Start deployments; every one of them is destroyed at the end of the test."""
    import labkit

    started = []

    def start(workers: int = 1, name: str = "test", **kwargs):
        lab = labkit.deploy("local", name=name, workers=workers, settings=settings, **kwargs)
        started.append(lab)
        return lab

    yield start
    for lab in started:
        lab.destroy()


@pytest.fixture(scope="module")
def shared_lab(tmp_path_factory, data_dir, model_dir):
    """One deployment shared by the tests of a module that only read from it."""
    import labkit

    settings = labkit.Settings(
        home=tmp_path_factory.mktemp("home"), model_dir=model_dir, data_dir=data_dir, progress="lines"
    )
    lab = labkit.deploy("local", name="shared", workers=1, settings=settings)
    try:
        yield lab
    finally:
        lab.destroy()


class ImagePrebuild:
    """The machine images, built in the background from the moment the tests are collected.

    Building them (Debian 12, Debian 13 and the Docker stand-ins) takes about
    four minutes, mostly downloading and unpacking. The first machine test
    waits on the cache's lock for Debian 12; the others are built while it
    runs. A build that failed here is simply tried again by the test that
    needs it, which then reports the error.
    """

    def __init__(self) -> None:
        self.folder: Path | None = None
        self.thread: threading.Thread | None = None

    def start(self, folder: Path) -> None:
        self.folder = folder
        self.thread = threading.Thread(target=self._build, name="machine-image-prebuild", daemon=True)
        self.thread.start()

    def _build(self) -> None:
        from labkit.backends.machine import image, standins

        try:
            image.ensure(self.folder, suite="bookworm")
            image.ensure(self.folder, suite="trixie")
            if not standins.registry_reachable():
                standins.ensure(self.folder)
        except Exception:  # noqa: BLE001  (the machine test that needs it builds it again and says why)
            pass


PREBUILD = ImagePrebuild()


def machines_unusable() -> str | None:
    from labkit.backends import machine as machines

    if os.geteuid() != 0:
        return "the machine backend needs root (systemd-nspawn): run the tests as root to include it"
    if problems := machines.missing():
        return ("The machine backend's tools are missing: " + "; ".join(problems)
                + " (scripts/setup.sh installs them).")
    return None


# The test files whose tests boot machines (those asking for the machine_images fixture; checked below).
MACHINE_FILES = {"test_machine_backend.py", "test_machine_docker.py", "test_machine_notebooks.py",
                 "test_openstack_machines.py"}


def _uses_machines(item) -> bool:
    return "machine_images" in getattr(item, "fixturenames", ())


def _stream(nodeid: str) -> str:
    return "machines" if nodeid.split("::", 1)[0].rsplit("/", 1)[-1] in MACHINE_FILES else "host"


def pytest_xdist_make_scheduler(config, log):
    """Two streams for `pytest -n 2 --dist loadgroup` (scripts/test.sh): the machine tests, which mostly
    wait on a machine's apt and pip, in one; the rest, in the order they always ran, in the other.
    Within a stream nothing runs beside anything else, as in a plain `pytest`.

    A scheduler of our own, not xdist_group marks: with pytest 9.2 loadgroup ignores the marks
    (pytest-dev/pytest-xdist#1386: it renames node ids through a field pytest no longer reads)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class TwoStreams(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _stream(nodeid)

    return TwoStreams(config, log)


def _images_folder(config) -> Path:
    """One folder for the whole run: with xdist each worker's basetemp lies in the run's own."""
    if KEPT_IMAGES:
        return Path(KEPT_IMAGES)
    base = config._tmp_path_factory.getbasetemp()
    return (base.parent if hasattr(config, "workerinput") else base) / "machine-images"


def pytest_collection_finish(session):
    if strays := [item.nodeid for item in session.items if _uses_machines(item) and _stream(item.nodeid) == "host"]:
        raise pytest.UsageError(f"{strays[0]} boots machines: put it in one of MACHINE_FILES (tests/conftest.py), "
                                "so that it never runs beside the host's tests.")
    if session.config.option.collectonly:
        return
    if any(_uses_machines(item) for item in session.items) and machines_unusable() is None:
        # Every worker starts it; the image cache's lock lets one build while the other waits.
        PREBUILD.start(_images_folder(session.config))


def pytest_sessionfinish(session):
    if PREBUILD.thread is not None:
        PREBUILD.thread.join()  # never remove a folder that debootstrap still writes to
    # The images go with the run: removed by the process that outlives every worker.
    if not KEPT_IMAGES and not hasattr(session.config, "workerinput"):
        shutil.rmtree(_images_folder(session.config), ignore_errors=True)


@pytest.fixture(scope="session")
def machine_images(request) -> Path:
    """Where the machine backend's images are built: once per test run (in the background, see
    ImagePrebuild), fresh in CI. LABKIT_TEST_MACHINE_IMAGES names a folder to keep them in between
    runs (a developer's loop)."""
    if (problem := machines_unusable()) is not None:
        if os.geteuid() != 0:
            pytest.skip(problem)
        pytest.fail(problem, pytrace=False)
    return PREBUILD.folder or _images_folder(request.config)


# Debian's Chromium, for the browser tests; Playwright never downloads one.
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless; missing pieces fail the test with the command that installs them."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is not installed: run `pip install -e '.[test]'` (never `playwright install`).", pytrace=False)
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"No Chromium at {CHROMIUM}: install Debian's with `apt-get install chromium`.", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


_MEASURED: list[str] = []
MEASURED_KEY = "measured"


@pytest.fixture
def report(request):
    """Record a line for CI's log (request counts, times); shown at the end of the run,
    also when pytest captures the tests' output. The line travels with the test's report,
    so that under xdist it reaches the process that prints the summary."""
    return lambda line: request.node.user_properties.append((MEASURED_KEY, line))


def pytest_runtest_logreport(report):
    if report.when == "teardown":  # each phase's report carries all of the test's lines: take them once
        _MEASURED.extend(value for key, value in report.user_properties if key == MEASURED_KEY)


def pytest_terminal_summary(terminalreporter):
    if _MEASURED:
        terminalreporter.section("measured by the tests")
        for line in _MEASURED:
            terminalreporter.write_line(line)
