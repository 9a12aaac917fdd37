"""The web pages in a real browser: Debian's headless Chromium, driven by Playwright.

One local deployment (``shared_lab``) serves every test here. The browser is
the system's /usr/bin/chromium; Playwright never downloads one. Every page
request is recorded, and a test fails if any of them left the deployment
(Chart.js is vendored under static/vendor/, not taken from a CDN).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
# A prediction is a Celery round trip; the first one may wait for the worker to warm up.
WAIT_MS = 30_000


@pytest.fixture
def page(browser, shared_lab):
    """A fresh page whose requests are recorded in ``page.requested``; checks none left the deployment."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    requested: list[str] = []
    # On the context, not the page: that also catches what the browser fetches on its own (favicon).
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    page.requested = requested
    try:
        yield page
    finally:
        context.close()
    outside = [url for url in requested if not url.startswith(shared_lab.url + "/")]
    assert not outside, f"The pages fetched something from outside {shared_lab.url}: {outside}"


def test_welcome_page_shows_workers_and_model(page, shared_lab):
    from playwright.sync_api import expect

    page.goto(shared_lab.url + "/")

    workers = page.locator("#workers")
    expect(workers).to_have_text(re.compile(r"^\d+"))
    assert int(re.match(r"\d+", workers.inner_text()).group()) >= 1
    expect(page.locator("#model-version")).to_have_text(shared_lab.model_info()["version"])
    expect(page.locator("#model-accuracy")).to_have_text(re.compile(r"^\d{1,3}\.\d %$"))
    expect(page.locator(".error")).to_have_count(0)


def test_sample_predictions_table_and_chart(page, shared_lab):
    from playwright.sync_api import expect

    page.goto(shared_lab.url + "/predictions")
    form = page.locator("#sample-form")
    form.locator("input[name=start]").fill("0")
    form.locator("input[name=rows]").fill("15")
    form.get_by_role("button", name="Predict").click()

    expect(page.locator("#results tbody tr")).to_have_count(15)
    expect(page.locator("#accuracy")).to_have_text(re.compile(r"Accuracy on these 15 rows: \d{1,3}\.\d %"))
    expect(page.locator("canvas#chart")).to_have_attribute("data-rendered", "true")
    assert page.evaluate("typeof window.Chart") == "function", "Chart.js (static/vendor/chart.umd.min.js) did not load"
    assert any(url.endswith("/static/vendor/chart.umd.min.js") for url in page.requested)
    expect(page.locator(".error")).to_have_count(0)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "predictions.png", full_page=True)


def test_one_patient_probability_and_bad_value(page, shared_lab):
    from playwright.sync_api import expect

    page.goto(shared_lab.url + "/predictions")
    form = page.locator("#patient-form")
    entered = {"pregnancies": "2", "glucose": "150", "bmi": "31.5", "age": "47"}
    for name, value in entered.items():
        form.locator(f"input[name={name}]").fill(value)
    form.get_by_role("button", name="Probability of diabetes").click()

    result = page.locator("#patient-result")
    expect(result).to_have_text(re.compile(r"Probability of diabetes: \d{1,3}\.\d %"))
    probability = float(re.search(r"(\d{1,3}\.\d) %", result.inner_text()).group(1))
    assert 0 <= probability <= 100
    for name, value in entered.items():
        expect(form.locator(f"input[name={name}]")).to_have_value(value)

    # A value the browser would never send: make the field a text field and type letters into it.
    form = page.locator("#patient-form")
    form.locator("input[name=age]").fill("52")
    glucose = form.locator("input[name=glucose]")
    glucose.evaluate("input => { input.type = 'text'; input.value = 'lots'; }")
    form.get_by_role("button", name="Probability of diabetes").click()

    expect(page.locator(".error[role=alert]")).to_contain_text('glucose is "lots", not a number')
    expect(page.locator("#patient-result")).to_have_count(0)
    form = page.locator("#patient-form")
    for name, value in {**entered, "age": "52"}.items():
        if name != "glucose":
            expect(form.locator(f"input[name={name}]")).to_have_value(value)
    # The page sends back what was typed; a number field cannot show letters, but nothing was dropped.
    assert form.locator("input[name=glucose]").get_attribute("value") == "lots"
