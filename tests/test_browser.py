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
    # Celery's node names (worker-1.shared@host) read as what they mean.
    expect(page.locator("#worker-list li").first).to_have_text(
        re.compile(r"^worker-\d+ \(deployment shared\) on this machine \(.+\)$")
    )
    assert "@" not in workers.inner_text()


def test_predictions_page_shows_the_comparison_on_first_open(page, shared_lab):
    from playwright.sync_api import expect

    response = page.goto(shared_lab.url + "/predictions")  # a plain GET: nothing filled in, nothing pressed
    assert response.status == 200

    rows = page.locator("#results tbody tr")
    expect(rows).to_have_count(10)
    expect(rows.first.locator("td").first).to_have_text("0")
    expect(page.locator("#accuracy")).to_have_text(re.compile(r"Accuracy on these 10 rows: \d{1,3}\.\d %"))
    canvas = page.locator("canvas#chart")
    expect(canvas).to_have_attribute("data-rendered", "true")
    drawn = canvas.evaluate(
        """canvas => {
            const chart = Chart.getChart(canvas);
            const box = canvas.getBoundingClientRect();
            return {width: canvas.width, height: canvas.height, shownWidth: box.width, shownHeight: box.height,
                    labels: chart ? chart.data.labels.length : 0};
        }"""
    )
    assert drawn["labels"] == 10, "no Chart.js instance on the canvas, or not one bar per row"
    assert min(drawn["width"], drawn["height"], drawn["shownWidth"], drawn["shownHeight"]) > 0, drawn
    assert any(url.endswith("/static/vendor/chart.umd.min.js") for url in page.requested)
    expect(page.locator(".error")).to_have_count(0)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=ARTIFACTS / "predictions.png", full_page=True)


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


def test_implausible_value_is_refused_by_the_browser_and_by_the_server(page, shared_lab):
    from playwright.sync_api import expect

    page.goto(shared_lab.url + "/predictions")
    form = page.locator("#patient-form")
    form.locator("input[name=age]").fill("47")
    glucose = form.locator("input[name=glucose]")
    glucose.fill("-500")
    # The browser knows the range and does not send the form ...
    assert glucose.evaluate("input => input.validity.rangeUnderflow")
    # ... a client that skips the check gets the server's answer.
    form.evaluate("form => { form.noValidate = true; }")
    form.get_by_role("button", name="Probability of diabetes").click()

    expect(page.locator(".error[role=alert]")).to_have_text(
        "glucose is -500, outside its plausible range 0 to 1000 mg/dL"
    )
    expect(page.locator("#patient-result")).to_have_count(0)
    form = page.locator("#patient-form")
    expect(form.locator("input[name=glucose]")).to_have_value("-500")
    expect(form.locator("input[name=age]")).to_have_value("47")


def test_unknown_page_is_a_page_of_the_site_with_a_way_back(page, shared_lab):
    from playwright.sync_api import expect

    response = page.goto(shared_lab.url + "/no-such-page")
    assert response.status == 404
    expect(page.locator("h1")).to_have_text("404 Not Found")
    expect(page.locator("#error-message")).to_have_text("There is no page at /no-such-page.")
    page.locator("main").get_by_role("link", name="predictions").click()
    expect(page.locator("#results tbody tr")).to_have_count(10)
