"""00-setup in real JupyterLab, in Debian's headless Chromium: the widgets render.

nbval runs notebooks without a widget manager, so only a browser shows
whether a student sees the form or "Error displaying widget". JupyterLab runs
with its own config, runtime and settings folders, and every process it
started (server and kernel) is stopped at the end.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from labkit import _procs

pytestmark = [pytest.mark.browser, pytest.mark.notebook, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"
WAIT_MS = 120_000  # a cold kernel imports pandas and ipywidgets; the machine may be busy


@pytest.fixture
def jupyterlab(tmp_path, model_dir, data_dir):
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "00-setup.ipynb", root)
    port = _procs.free_port()
    token = secrets.token_hex(16)
    private = {name: tmp_path / name for name in ("config", "runtime", "settings", "workspaces")}
    env = {key: value for key, value in os.environ.items() if not key.startswith(("LABKIT_", "JUPYTER"))}
    env.update(
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

        if not _procs.wait_until(answering, timeout=90, interval=0.5):
            pytest.fail("JupyterLab did not start within 90 s:\n" + (tmp_path / "jupyter.log").read_text()[-3000:])
        yield {"url": url, "token": token, "settings": tmp_path / "settings.json"}
    finally:
        # The kernel is the server's child in the same session: one signal to the group stops both.
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_setup_notebook_runs_in_jupyterlab_and_its_widgets_render(browser, jupyterlab):
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        page.goto(f"{jupyterlab['url']}/lab/tree/00-setup.ipynb?token={jupyterlab['token']}")
        expect(page.locator(".jp-Notebook")).to_be_visible()
        # JupyterLab may ask which kernel to start, even for the notebook's own: take the one it proposes.
        dialog = page.locator(".jp-Dialog")
        try:
            expect(dialog).to_be_visible(timeout=5_000)
            dialog.locator("button", has_text="Select").click()
        except AssertionError:
            pass
        expect(page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']")).to_have_count(1)
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
        # The last code cell saves the choices: its output is the file's path.
        expect(page.locator(".jp-OutputArea-output", has_text="settings.json").first).to_be_visible()
        form = page.locator(".jupyter-widgets.widget-vbox").first
        expect(form.locator("select").first).to_be_visible()
        expect(form.get_by_text("Backend")).to_be_visible()
        expect(form.locator("button", has_text="Save")).to_be_visible()
        assert page.get_by_text("Error displaying widget").count() == 0
        # The button saves too, and says so in the form, not in a print.
        form.locator("button", has_text="Save").click()
        expect(form.get_by_text("Saved to")).to_be_visible()
        form.locator(".jupyter-widgets").first.scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=ARTIFACTS / "00-setup.png", full_page=False)
        assert '"LABKIT_BACKEND": "local"' in jupyterlab["settings"].read_text()
    finally:
        context.close()
