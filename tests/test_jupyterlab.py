"""The lab's four notebooks in real JupyterLab, in Debian's headless Chromium, as a student runs them.

nbclient runs notebooks without a widget manager or a renderer, so only a
browser shows whether a student sees the form or "Error displaying widget",
a drawn chart or a broken image. Each notebook is opened, run with Run > Run
All Cells, and every chart and table it shows is saved as a screenshot in
artifacts/ (``NN-name-K.png``), with one view of the whole notebook
(``NN-name.png``) that the README shows. JupyterLab runs with its own config,
runtime and settings folders, and every process it started (server and
kernels) is stopped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_notebooks import CI_SETTINGS  # the short settings CI uses: same code paths, fewer seconds

from labkit.infra import procs

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
WAIT_MS = 120_000  # a cold kernel imports pandas and ipywidgets; the machine may be busy
RUN_MS = 600_000  # notebook 02 deploys twice more and sweeps; on a busy machine that takes minutes
NOTEBOOKS = ["00-setup.ipynb", "01-single-server.ipynb", "02-docker-scaling.ipynb", "03-ci-cd.ipynb"]
# What the last code cell of each notebook shows once every cell above it ran.
LAST_OUTPUT = {"00-setup.ipynb": "Saved to", "01-single-server.ipynb": "No deployment",
               "02-docker-scaling.ipynb": "No deployment", "03-ci-cd.ipynb": "No deployment"}
# The charts each notebook draws (tests/test_notebooks.py checks that each .plot() shows an image).
CHARTS = {"00-setup.ipynb": 0, "01-single-server.ipynb": 2, "02-docker-scaling.ipynb": 1, "03-ci-cd.ipynb": 0}
# What the README's view of each notebook centres on: the form, the first chart, the history after a rollback.
VIEW = {"00-setup.ipynb": (".widget-vbox", ""), "01-single-server.ipynb": ("img", ""),
        "02-docker-scaling.ipynb": ("img", ""), "03-ci-cd.ipynb": ("table", "rollback")}


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory, model_dir, data_dir):
    tmp_path = tmp_path_factory.mktemp("jupyterlab")
    root = tmp_path / "lab"
    root.mkdir()
    for name in NOTEBOOKS:
        shutil.copy(REPO / "notebooks" / name, root)
    port = procs.free_port()
    token = secrets.token_hex(16)
    private = {name: tmp_path / name for name in ("config", "runtime", "settings", "workspaces")}
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LABKIT_", "JUPYTER"))}
    # Every cell in the page, not only those scrolled into view: each output can then be found and shot.
    tracker = private["settings"] / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))
    # No "notified about official Jupyter news?" toast over the screenshots.
    notices = private["settings"] / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notices.parent.mkdir(parents=True)
    notices.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    env.update(
        CI_SETTINGS,
        LABKIT_HOME=str(tmp_path / "home"), LABKIT_MODEL_DIR=str(model_dir), LABKIT_DATA_DIR=str(data_dir),
        LABKIT_CONFIG=str(tmp_path / "settings.json"),
        JUPYTER_CONFIG_DIR=str(private["config"]), JUPYTER_RUNTIME_DIR=str(private["runtime"]),
        JUPYTERLAB_SETTINGS_DIR=str(private["settings"]), JUPYTERLAB_WORKSPACES_DIR=str(private["workspaces"]),
    )
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}", "--LabApp.news_url=", "--LabApp.check_for_updates_class="
         "jupyterlab.NeverCheckForUpdate", *(["--allow-root"] if os.geteuid() == 0 else [])],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def answering() -> bool:
            try:
                return httpx.get(f"{url}/api/status", params={"token": token}, timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        if not procs.wait_until(answering, timeout=90, interval=0.5):
            pytest.fail("JupyterLab did not start within 90 s:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
        yield {"url": url, "token": token, "settings": tmp_path / "settings.json", "home": tmp_path / "home"}
    finally:
        # The kernel is the server's child in the same session: one signal to the group stops both.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def open_and_run_all(page, jupyterlab, name: str) -> None:
    """Open a notebook, take the kernel JupyterLab proposes, Run All, and wait for the last cell's output."""
    from playwright.sync_api import expect

    # A workspace of its own: JupyterLab would otherwise reopen the notebooks of the previous test beside it.
    workspace = name.removesuffix(".ipynb")
    page.goto(f"{jupyterlab['url']}/lab/workspaces/{workspace}/tree/{name}?reset&token={jupyterlab['token']}")
    expect(page.locator(".jp-Notebook")).to_be_visible()
    dialog = page.locator(".jp-Dialog")
    try:
        expect(dialog).to_be_visible(timeout=5_000)
        dialog.locator("button", has_text="Select").click()
    except AssertionError:
        pass
    expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
    last = page.locator(".jp-CodeCell").last.locator(".jp-OutputArea-output")
    expect(last.filter(has_text=LAST_OUTPUT[name]).first).to_be_visible(timeout=RUN_MS)


def shoot_charts_and_tables(page, name: str) -> list[str]:
    """A screenshot of every output that holds a chart or a table; returns the files' names."""
    stem = name.removesuffix(".ipynb")
    outputs = page.locator(".jp-OutputArea-output").filter(has=page.locator("img, table"))
    shots = []
    for index in range(outputs.count()):
        output = outputs.nth(index)
        output.scroll_into_view_if_needed()
        path = ARTIFACTS / f"{stem}-{index + 1}.png"
        output.screenshot(path=path)
        shots.append(path.name)
    return shots


def drawn_images(page) -> list[dict]:
    return page.eval_on_selector_all(
        ".jp-OutputArea-output img",
        "imgs => imgs.map(i => ({complete: i.complete, width: i.naturalWidth, height: i.naturalHeight}))")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_a_notebook_runs_in_jupyterlab_and_shows_drawn_charts_and_tables(browser, jupyterlab, name, report):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        open_and_run_all(page, jupyterlab, name)
        assert page.get_by_text("Error displaying widget").count() == 0
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        assert errors.count() == 0, errors.first.inner_text()
        images = drawn_images(page)
        assert all(i["complete"] and i["width"] > 0 and i["height"] > 0 for i in images), images
        ARTIFACTS.mkdir(exist_ok=True)
        shots = shoot_charts_and_tables(page, name)
        report(f"JupyterLab {name}: {len(images)} chart(s) drawn, {len(shots)} chart/table screenshot(s)")
        assert len(images) == CHARTS[name], f"{name} drew {len(images)} chart(s), not {CHARTS[name]}"
        if name == "00-setup.ipynb":
            check_the_setup_form(page, jupyterlab)
        # The view the README shows, with what leads up to it.
        selector, text = VIEW[name]
        target = page.locator(".jp-OutputArea-output").filter(has=page.locator(selector), has_text=text).first
        target.evaluate("element => element.scrollIntoView({block: 'center'})")
        page.screenshot(path=ARTIFACTS / name.replace(".ipynb", ".png"), full_page=False)
    finally:
        context.close()


def check_the_setup_form(page, jupyterlab) -> None:
    from playwright.sync_api import expect

    form = page.locator(".jupyter-widgets.widget-vbox").first
    expect(form.locator("select").first).to_be_visible()
    expect(form.get_by_text("Backend")).to_be_visible()
    # The button saves too, and says so in the form, not in a print.
    form.locator("button", has_text="Save").click()
    expect(form.get_by_text("Saved to")).to_be_visible()
    assert '"LABKIT_BACKEND": "local"' in jupyterlab["settings"].read_text()
