"""The Flask JSON API through its test client, with no message broker reachable.

Bad input must be refused with a 400 that says what is wrong, before any
broker is contacted; good input with no broker must get a quick 503.
"""

from __future__ import annotations

import json
import socket
import time

import pytest

from production_server import ConfigurationError, create_app

PREDICT_TIMEOUT = 1.0
MAX_ROWS = 1000  # the default; the tests check it against MAX_CONTENT_LENGTH too
ROW = [6, 148, 72, 35, 0, 33.6, 0.627, 50]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def app():
    app = create_app(
        test_config={
            "BROKER_URL": f"amqp://guest:guest@127.0.0.1:{closed_port()}//",
            "PREDICT_TIMEOUT": PREDICT_TIMEOUT,
            "HEALTH_TIMEOUT": 0.5,
            "TESTING": True,
        }
    )
    assert app.config["MAX_ROWS"] == MAX_ROWS
    return app


@pytest.fixture
def client(app):
    return app.test_client()


def body(payload) -> dict:
    return {"data": json.dumps(payload), "content_type": "application/json"}


def raw(text: str | bytes) -> dict:
    return {"data": text, "content_type": "application/json"}


def with_value(value) -> dict:
    return body({"instances": [ROW[:2] + [value] + ROW[3:]]})


BAD_REQUESTS = {
    "invalid-json": (raw('{"instances": [[1, 2'), ["not valid JSON"]),
    "invalid-json-trailing-comma": (raw('{"instances": [[1,2,3,4,5,6,7,8],]}'), ["not valid JSON"]),
    "not-utf8": (raw(b'{"instances": "\xff\xfe"}'), ["not valid JSON"]),
    "text-plain": (
        {"data": json.dumps({"instances": [ROW]}), "content_type": "text/plain"},
        ["Content-Type must be application/json", "text/plain"],
    ),
    "form": ({"data": {"instances": "1,2,3,4,5,6,7,8"}}, ["Content-Type", "application/x-www-form-urlencoded"]),
    "no-content-type": ({"data": json.dumps({"instances": [ROW]})}, ["Content-Type", "missing"]),
    "empty-body": (raw(b""), ["body is empty"]),
    "missing-instances": (body({"rows": [ROW]}), ['"instances"']),
    "top-level-list": (body([ROW]), ['"instances"', "object"]),
    "instances-string": (body({"instances": "6,148,72"}), ['"instances" must be a list']),
    "instances-object": (body({"instances": {"0": ROW}}), ['"instances" must be a list']),
    "instances-null": (body({"instances": None}), ['"instances" must be a list']),
    "empty-list": (body({"instances": []}), ['"instances" is empty']),
    "too-many-rows": (body({"instances": [ROW] * (MAX_ROWS + 1)}), [f"{MAX_ROWS + 1} rows", f"at most {MAX_ROWS}"]),
    "row-not-a-list": (body({"instances": ROW}), ["instances[0] must be a list of 8 numbers"]),
    "row-of-7": (body({"instances": [ROW, ROW[:7]]}), ["instances[1] has 7 values, expected 8", "glucose"]),
    "row-of-9": (body({"instances": [ROW + [1]]}), ["instances[0] has 9 values, expected 8"]),
    "string-value": (with_value("72"), ['instances[0][2] is "72", not a number']),
    "bool-value": (with_value(True), ["instances[0][2] is true, not a number"]),
    "null-value": (with_value(None), ["instances[0][2] is null, not a number"]),
    "list-value": (with_value([72]), ["instances[0][2] is [72], not a number"]),
    "nan": (raw('{"instances": [[6, 148, NaN, 35, 0, 33.6, 0.627, 50]]}'), ["NaN", "finite numbers only"]),
    "infinity": (raw('{"instances": [[6, 148, Infinity, 35, 0, 33.6, 0.627, 50]]}'), ["Infinity", "finite"]),
    "minus-infinity": (raw('{"instances": [[6, 148, -Infinity, 35, 0, 33.6, 0.627, 50]]}'), ["-Infinity", "finite"]),
    "1e999": (raw('{"instances": [[6, 148, 1e999, 35, 0, 33.6, 0.627, 50]]}'), ["instances[0][2] is not a finite number"]),
    "-1e999": (raw('{"instances": [[6, 148, 72, 35, 0, 33.6, 0.627, -1e999]]}'), ["instances[0][7] is not a finite number"]),
    "glucose-negative": (
        body({"instances": [ROW, ROW[:1] + [-500] + ROW[2:]]}),
        ["instances[1]: glucose is -500, outside its plausible range 0 to 1000 mg/dL"],
    ),
    "age-too-high": (body({"instances": [ROW[:7] + [1000]]}), ["instances[0]: age is 1000, outside its plausible range 0 to 130 years"]),
    "pregnancies-fraction-below-0": (body({"instances": [[-0.5] + ROW[1:]]}), ["instances[0]: pregnancies is -0.5", "0 to 30"]),
    "pedigree-just-above": (body({"instances": [ROW[:6] + [10.000001] + ROW[7:]]}), ["diabetes pedigree is 10.000001", "0 to 10"]),
    "bmi-shown-exactly": (body({"instances": [ROW[:5] + [150.00000000000003] + ROW[6:]]}), ["bmi is 150.00000000000003"]),
}


@pytest.mark.parametrize("request_kwargs, expected", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_input_is_a_400_that_names_the_problem(client, request_kwargs, expected):
    started = time.monotonic()
    response = client.post("/api/predict", **request_kwargs)
    elapsed = time.monotonic() - started

    assert response.status_code == 400, response.data
    assert response.is_json
    payload = response.get_json()
    assert list(payload) == ["error"]
    for words in expected:
        assert words in payload["error"]
    assert elapsed < 0.5, "bad input must be refused before the broker is contacted"


def test_oversized_body_is_a_413_json_error(app, client):
    limit = app.config["MAX_CONTENT_LENGTH"]
    # Valid JSON, so only its size can be the reason for the refusal.
    rows = [[1.2345678901234567e300] * 8] * 2000
    data = json.dumps({"instances": rows})
    assert len(data) > limit
    response = client.post("/api/predict", data=data, content_type="application/json")
    assert response.status_code == 413
    assert response.is_json
    assert str(limit) in response.get_json()["error"]


def assert_quick_503(response, elapsed: float):
    assert response.status_code == 503, response.data
    assert response.is_json
    assert "broker is unreachable" in response.get_json()["error"]
    assert int(response.headers["Retry-After"]) >= 1
    # A behaviour check (it gives up instead of hanging), not a benchmark.
    assert elapsed < PREDICT_TIMEOUT + 5


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8"])
def test_valid_request_without_a_broker_is_a_quick_503(client, content_type):
    started = time.monotonic()
    response = client.post("/api/predict", data=json.dumps({"instances": [ROW, ROW]}), content_type=content_type)
    assert_quick_503(response, time.monotonic() - started)


def test_max_rows_of_long_numbers_fit_in_max_content_length(app, client):
    # The documented promise: MAX_CONTENT_LENGTH leaves room for MAX_ROWS rows of 8 long floats,
    # so the largest allowed request passes validation (and then finds no broker).
    data = json.dumps({"instances": [[1.2345678901234567e-300] * 8] * MAX_ROWS})
    assert len(data) < app.config["MAX_CONTENT_LENGTH"]
    started = time.monotonic()
    response = client.post("/api/predict", data=data, content_type="application/json")
    assert_quick_503(response, time.monotonic() - started)


def test_every_row_of_the_data_set_is_plausible(client, data_dir):
    from production_server import data, validation

    rows = data.load(data_dir / data.FILENAME).features.tolist()
    assert len(rows) == 768
    assert validation.instances({"instances": rows}, MAX_ROWS) == rows
    # So the API takes them all and only then finds no broker.
    started = time.monotonic()
    response = client.post("/api/predict", **body({"instances": rows}))
    assert_quick_503(response, time.monotonic() - started)


def test_zero_stays_valid_for_every_measurement(client):
    # The data set writes a missing measurement as 0.
    started = time.monotonic()
    response = client.post("/api/predict", **body({"instances": [[0] * 8, [0.0] * 8]}))
    assert_quick_503(response, time.monotonic() - started)


def test_ranges_cover_the_eight_features_in_order():
    from production_server import data, validation

    assert tuple(validation.RANGES) == data.FEATURES
    assert all(r.low == 0 < r.high for r in validation.RANGES.values())


def test_model_metadata_without_a_broker_is_a_503(client):
    started = time.monotonic()
    response = client.get("/api/model")
    assert_quick_503(response, time.monotonic() - started)


def test_healthz_without_a_broker_is_unavailable(client):
    started = time.monotonic()
    response = client.get("/healthz")
    elapsed = time.monotonic() - started
    assert response.status_code == 503, response.data
    assert response.is_json
    payload = response.get_json()
    assert payload["status"] == "unavailable"
    assert payload["workers"] == 0
    assert "broker is unreachable" in payload["error"]
    assert elapsed < PREDICT_TIMEOUT + 5


def test_create_app_without_broker_url_is_a_configuration_error():
    with pytest.raises(ConfigurationError, match="SERVER_BROKER_URL"):
        create_app(test_config={"PREDICT_TIMEOUT": 1.0})


def test_create_app_from_an_environment_without_broker_url(monkeypatch):
    # The autouse clean_environ fixture has removed every SERVER_* variable.
    monkeypatch.setenv("SERVER_PREDICT_TIMEOUT", "1.0")
    with pytest.raises(ConfigurationError, match="SERVER_BROKER_URL"):
        create_app()


def test_create_app_reads_the_environment(monkeypatch):
    url = f"amqp://guest:guest@127.0.0.1:{closed_port()}//"
    monkeypatch.setenv("SERVER_BROKER_URL", url)
    monkeypatch.setenv("SERVER_MAX_ROWS", "3")
    monkeypatch.setenv("SERVER_DEBUG", "true")
    app = create_app()
    assert app.config["BROKER_URL"] == url
    assert app.extensions["celery"].conf.broker_url == url
    assert app.debug is False
    response = app.test_client().post("/api/predict", **body({"instances": [ROW] * 4}))
    assert response.status_code == 400
    assert "at most 3" in response.get_json()["error"]


def test_debug_is_off_even_if_asked_for():
    app = create_app(test_config={"BROKER_URL": f"amqp://127.0.0.1:{closed_port()}//", "DEBUG": True})
    assert app.debug is False
    assert app.config["DEBUG"] is False


def test_every_app_gets_its_own_secret_key():
    config = {"BROKER_URL": f"amqp://127.0.0.1:{closed_port()}//"}
    first, second = create_app(test_config=config), create_app(test_config=config)
    assert first.secret_key and second.secret_key
    assert first.secret_key != second.secret_key


@pytest.mark.parametrize(
    "method, path, status, allow",
    [
        ("GET", "/api/predict", 405, "POST"),
        ("GET", "/api/nothing-here", 404, None),
        ("POST", "/api", 404, None),
        ("POST", "/healthz", 405, "GET"),
        ("PUT", "/api/model", 405, "GET"),
    ],
)
def test_routing_errors_on_the_api_are_json(client, method, path, status, allow):
    response = client.open(path, method=method)
    assert response.status_code == status
    assert response.is_json
    assert list(response.get_json()) == ["error"]
    assert response.get_json()["error"]
    if allow:
        assert allow in response.headers["Allow"].split(", ")
    else:
        assert response.get_json()["error"].startswith(f"there is no API endpoint at {path}: ")
        assert "POST /api/predict" in response.get_json()["error"]


def test_routing_errors_on_pages_are_html(client):
    # Their content is the site's own error page (test_pages.py).
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "<title>404 Not Found</title>" in response.get_data(as_text=True)
