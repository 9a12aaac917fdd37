"""The HTML pages through Flask's test client, with a stand-in for the workers.

``pages.call`` and ``pages.workers_online`` are replaced by functions that
answer as the workers would (the real round trip is tested in a browser,
test_browser.py); no message broker is reachable, so anything that still
tried to reach one would be a 503.
"""

from __future__ import annotations

import html
import re
import socket

import numpy as np
import pytest

from production_server import create_app, data, pages, tasks

from test_api import closed_port

MODEL_VERSION = "test-model-1"
PATIENT = {"pregnancies": "2", "glucose": "150", "blood_pressure": "70", "skin_thickness": "30",
           "insulin": "0", "bmi": "31.5", "diabetes_pedigree": "0.5", "age": "47"}


def fake_call(task, *args, timeout=None):
    """What the workers answer, with a 'model' that says diabetic when glucose is 140 or more."""
    if task is tasks.model_info:
        return {"version": MODEL_VERSION, "accuracy": 0.75, "trained_at": "2024-01-01T00:00:00Z",
                "params": {"epochs": 30, "hidden": [12, 8]}}
    rows = np.asarray(args[0])
    probabilities = np.where(rows[:, 1] >= 140, 0.9, 0.1)
    answer = {"predictions": (probabilities >= 0.5).astype(int).tolist(),
              "probabilities": probabilities.tolist(), "model_version": MODEL_VERSION}
    if task is tasks.evaluate:
        answer["accuracy"] = float(np.mean(np.asarray(answer["predictions"]) == np.asarray(args[1])))
    return answer


@pytest.fixture(scope="module")
def app():
    return create_app(test_config={
        "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed_port()}//",
        "PREDICT_TIMEOUT": 1.0,
        "HEALTH_TIMEOUT": 0.5,
        "TESTING": True,
    })


@pytest.fixture
def workers(monkeypatch, data_dir):
    """Two workers on this machine and one on a worker VM answer; returns their Celery names."""
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    names = [f"worker-1.lab@{socket.gethostname()}", f"worker-2.lab@{socket.gethostname()}", "worker-1@lab-worker-1"]
    monkeypatch.setattr(pages, "call", fake_call)
    monkeypatch.setattr(pages, "workers_online", lambda: names)
    return names


@pytest.fixture
def client(app):
    return app.test_client()


def results_rows(page: str) -> list[list[str]]:
    body = page.split('<table id="results">', 1)[1].split("</tbody>", 1)[0].split("<tbody>", 1)[1]
    return [re.findall(r"<td>(.*?)</td>", row) for row in body.split("</tr>")[:-1]]


def input_value(page: str, name: str) -> str:
    return html.unescape(re.search(rf'name="{name}"[^>]*value="([^"]*)"', page, re.S).group(1))


# 1. /predictions shows the comparison on a plain GET.

def test_first_visit_shows_the_comparison_of_the_default_rows(app, client, workers):
    response = client.get("/predictions")
    assert response.status_code == 200
    page = response.get_data(as_text=True)

    rows = results_rows(page)
    count = app.config["SAMPLE_ROWS"]
    assert [int(r[0]) for r in rows] == list(range(count))
    truth = data.load().labels[:count]
    assert [int(r[-3]) for r in rows] == truth.tolist()
    assert re.search(rf"Accuracy on these {count} rows: <strong>\d{{1,3}}\.\d %</strong>", page)
    assert '<canvas id="chart"' in page and 'id="chart-data"' in page
    assert "vendor/chart.umd.min.js" in page and "predictions.js" in page
    assert 'class="error"' not in page


def test_first_visit_is_the_sample_form_with_its_default_inputs(app, client, workers):
    first = client.get("/predictions").get_data(as_text=True)
    posted = client.post("/predictions", data={"form": "sample", "start": input_value(first, "start"),
                                               "rows": input_value(first, "rows")})
    assert posted.status_code == 200
    assert results_rows(first) == results_rows(posted.get_data(as_text=True))
    assert input_value(first, "rows") == str(app.config["SAMPLE_ROWS"])


def test_first_visit_without_workers_says_so_and_keeps_the_forms(client, monkeypatch, data_dir):
    monkeypatch.setenv("LABKIT_DATA_DIR", str(data_dir))
    response = client.get("/predictions")  # the broker's port is closed
    assert response.status_code == 503
    page = response.get_data(as_text=True)
    assert "Try again in a moment" in page and "broker is unreachable" in page
    assert 'id="sample-form"' in page and 'id="patient-form"' in page
    assert 'id="results"' not in page


# 2. Plausible ranges on the patient form.

@pytest.mark.parametrize("name, value, expected", [
    ("glucose", "-500", "glucose is -500, outside its plausible range 0 to 1000 mg/dL"),
    ("age", "1000", "age is 1000, outside its plausible range 0 to 130 years"),
    ("bmi", "150.5", "bmi is 150.5, outside its plausible range 0 to 150 kg/m²"),
    ("diabetes_pedigree", "-0.001", "diabetes pedigree is -0.001, outside its plausible range 0 to 10"),
])
def test_patient_form_refuses_implausible_values_and_keeps_the_entries(client, workers, name, value, expected):
    response = client.post("/predictions", data={"form": "patient", **PATIENT, name: value})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert re.search(r'class="error" role="alert">(.*?)</p>', page).group(1) == html.escape(expected)
    assert 'id="patient-result"' not in page
    for field, entered in {**PATIENT, name: value}.items():
        assert input_value(page, field) == entered


def test_patient_form_accepts_zero_for_missing_measurements(client, workers):
    response = client.post("/predictions", data={"form": "patient", **{name: "0" for name in PATIENT}})
    assert response.status_code == 200, response.data
    assert 'id="patient-result"' in response.get_data(as_text=True)


def test_patient_form_inputs_carry_the_ranges(client, workers):
    page = client.get("/predictions").get_data(as_text=True)
    glucose = re.search(r'<input[^>]*name="glucose"[^>]*>', page, re.S).group(0)
    assert 'min="0"' in glucose and 'max="1000"' in glucose


# 3. Errors outside the API are pages of the site.

def assert_site_page(response, status: int, words: str):
    assert response.status_code == status
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert f"<h1>{status} " in page
    assert words in page
    assert 'href="/"' in page and 'href="/predictions"' in page
    assert "style.css" in page
    return page


def test_unknown_page_is_a_404_page_of_the_site(client):
    assert_site_page(client.get("/no-such-page"), 404, "There is no page at /no-such-page.")


def test_unknown_page_escapes_the_path(client):
    page = assert_site_page(client.get("/<script>alert(1)</script>"), 404, "There is no page at")
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_wrong_method_on_a_page_is_a_405_page_with_allow(client):
    response = client.delete("/predictions")
    assert_site_page(response, 405, "/predictions does not answer DELETE requests, only GET or POST.")
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "POST"}
    assert_site_page(client.post("/"), 405, "/ does not answer POST requests, only GET.")


def test_a_crash_is_a_500_page_on_the_site_and_json_on_the_api():
    app = create_app(test_config={"BROKER_URL": f"amqp://127.0.0.1:{closed_port()}//"})  # not TESTING: handled

    @app.get("/crash")
    @app.get("/api/crash")
    def crash():
        raise RuntimeError("a bug")

    client = app.test_client()
    page = assert_site_page(client.get("/crash"), 500, "Internal Server Error")
    assert "a bug" not in page and "Traceback" not in page
    response = client.get("/api/crash")
    assert response.status_code == 500 and response.is_json
    assert "a bug" not in response.get_json()["error"]


# 4. The welcome page names the workers readably.

@pytest.mark.parametrize("name, expected", [
    ("worker-1.lab@vm", "worker-1 (deployment lab) on this machine (vm)"),
    ("worker-3.shared@laptop", "worker-3 (deployment shared) on laptop"),
    ("worker-2@lab-worker-2", "worker-2 on lab-worker-2"),  # a worker VM (labkit scale-out)
    ("worker@vm", "worker on this machine (vm)"),
    ("worker@3f2a9c1b7e0d", "worker on 3f2a9c1b7e0d"),  # Compose: the worker container's host name
    ("celery@vm.example.org", "celery on vm.example.org"),
    ("worker-1", "worker-1"),
])
def test_worker_names_read_as_worker_deployment_and_host(name, expected):
    assert pages.describe_worker(name, "vm") == expected


def test_welcome_page_lists_the_workers_readably(client, workers):
    page = client.get("/").get_data(as_text=True)
    here = socket.gethostname()
    items = re.findall(r"<li>(.*?)</li>", page.split('id="worker-list"', 1)[1].split("</ul>", 1)[0])
    assert items == [
        f"worker-1 (deployment lab) on this machine ({here})",
        f"worker-2 (deployment lab) on this machine ({here})",
        "worker-1 on lab-worker-1",
    ]
    assert re.search(r'id="workers">3<ul', page)
    assert "@" not in page.split('id="workers"', 1)[1].split("</td>", 1)[0]
    assert MODEL_VERSION in page
