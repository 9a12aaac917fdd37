"""The Flask JSON API through its test client, with no message broker reachable.

Bad input must be refused with a 400 that says what is wrong, before any
broker is contacted; good input with no broker must get a quick 503. Every
answer is JSON that a strict parser (RFC 8259: no NaN) takes. The same hostile
input against a real gunicorn is in test_hostile_input.py.
"""

from __future__ import annotations

import io
import json
import math
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


def row_text(*values: str) -> dict:
    """A row written as JSON text, for numbers json.dumps cannot write (huge integers)."""
    return raw('{"instances": [[%s]]}' % ", ".join(values))


def strict_json(text: str | bytes):
    """JSON as RFC 8259 has it: NaN, Infinity and -Infinity are not JSON."""
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def nested(depth: int, opening: str = "[", closing: str = "]") -> dict:
    return raw(opening * depth + closing * depth)


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
    "string-value": (with_value("72"), ['instances[0][2] (blood pressure) is "72", not a number']),
    "bool-value": (with_value(True), ["instances[0][2] (blood pressure) is true, not a number"]),
    "null-value": (with_value(None), ["instances[0][2] (blood pressure) is null, not a number"]),
    "list-value": (with_value([72]), ["instances[0][2] (blood pressure) is [72], not a number"]),
    "long-string-quoted-short": (with_value("x" * 100_000), ['instances[0][2] (blood pressure) is "xxxx', '..., not a number']),
    "nan": (raw('{"instances": [[6, 148, NaN, 35, 0, 33.6, 0.627, 50]]}'), ["NaN", "finite numbers only"]),
    "infinity": (raw('{"instances": [[6, 148, Infinity, 35, 0, 33.6, 0.627, 50]]}'), ["Infinity", "finite"]),
    "minus-infinity": (raw('{"instances": [[6, 148, -Infinity, 35, 0, 33.6, 0.627, 50]]}'), ["-Infinity", "finite"]),
    "1e999": (raw('{"instances": [[6, 148, 1e999, 35, 0, 33.6, 0.627, 50]]}'), ["instances[0][2] (blood pressure) is not a finite number"]),
    "-1e999": (raw('{"instances": [[6, 148, 72, 35, 0, 33.6, 0.627, -1e999]]}'), ["instances[0][7] (age) is not a finite number"]),
    # Beyond float32, where both engines answered NaN with a 200: refused by name, whatever the ranges.
    "issue-row-beyond-float32": (
        body({"instances": [ROW, [0, 0, 0, 0, -1e39, 1e300, 0, 0]]}),
        ["instances[1][4] (insulin) is -1e+39, beyond ±3.4e+38", "32-bit floats"],
    ),
    "1e39-alone": (with_value(1e39), ["instances[0][2] (blood pressure) is 1e+39, beyond ±3.4e+38"]),
    "just-beyond-float32": (with_value(3.41e38), ["instances[0][2] (blood pressure) is 3.41e+38, beyond ±3.4e+38"]),
    # Integers: Python's json makes an int of any length; float() overflowed at 309 digits (a 500).
    "integer-of-309-digits": (row_text("9" * 309, *["0"] * 7), ["instances[0][0] (pregnancies) is an integer of 309 digits", "32-bit floats"]),
    "integer-of-40-digits": (row_text("0", "-" + "1" * 40, *["0"] * 6), ["instances[0][1] (glucose) is an integer of 40 digits"]),
    "integer-of-5000-digits": (row_text("0", "0", "1" * 5000, *["0"] * 5), ["instances[0][2] (blood pressure) is an integer of 5000 digits"]),
    "huge-integer-in-a-list": (row_text("0", "0", "[%s]" % ("7" * 400), *["0"] * 5), ['instances[0][2] (blood pressure) is ["an integer of 400 digits"], not a number']),
    "huge-integer-as-instances": (raw('{"instances": %s}' % ("1" * 400)), ['"instances" must be a list']),
    # Nesting: json's recursion gave up at about 985 levels (a RecursionError, a 500).
    "nested-985-lists": (nested(985), ["nested too deeply"]),
    "nested-100000-lists": (nested(100_000), ["nested too deeply"]),
    "nested-20000-objects": (raw('{"a": ' * 20_000 + "1" + "}" * 20_000), ["nested too deeply"]),
    "nested-500-in-a-row": (with_value(json.loads("[" * 500 + "]" * 500)), ["instances[0][2] (blood pressure) is [[[[", "..., not a number"]),
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
    payload = strict_json(response.data)
    assert list(payload) == ["error"]
    for words in expected:
        assert words in payload["error"]
    assert len(payload["error"]) < 500, "a message quotes the client's value, never all of it"
    assert elapsed < 0.5, "bad input must be refused before the broker is contacted"


def test_float32_is_checked_whatever_the_ranges_say(client, monkeypatch):
    from production_server import validation

    unbounded = validation.Range(-math.inf, math.inf)
    monkeypatch.setattr(validation, "RANGES", dict.fromkeys(validation.RANGES, unbounded))
    response = client.post("/api/predict", **with_value(-3.5e38))
    assert response.status_code == 400
    assert "instances[0][2] (blood pressure) is -3.5e+38, beyond ±3.4e+38" in response.get_json()["error"]
    assert validation.FLOAT32_MAX == float(__import__("numpy").finfo("float32").max)


def test_the_largest_float32_is_a_number_the_validation_takes():
    from production_server import validation

    assert validation.number(validation.FLOAT32_MAX, "x") == validation.FLOAT32_MAX
    assert validation.number(-(10**38), "x") == -1e38  # 39 digits: still an int, still a float32


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


def chunked(data: bytes) -> dict:
    """A body with no Content-Length, as a chunked request reaches the app from gunicorn."""
    return {"input_stream": io.BytesIO(data), "content_type": "application/json",
            "headers": {"Transfer-Encoding": "chunked"}, "environ_overrides": {"wsgi.input_terminated": True}}


def padded(size: int) -> bytes:
    """Valid JSON of exactly ``size`` bytes: only its size can be the reason for a refusal."""
    data = json.dumps({"instances": [ROW]}).encode()
    return data + b" " * (size - len(data))


def test_a_chunked_body_past_the_limit_is_a_413_not_cut_short(app, client):
    # werkzeug stopped reading at the limit without a word: 1 MB of valid JSON and spaces got
    # predictions, 1.1 MB a 400 "not valid JSON ... column 262145".
    limit = app.config["MAX_CONTENT_LENGTH"]
    for size in (limit + 1, 1_000_000, 1_100_000):
        response = client.post("/api/predict", **chunked(padded(size)))
        assert response.status_code == 413, (size, response.data)
        assert str(limit) in strict_json(response.data)["error"]


def test_a_chunked_body_of_exactly_the_limit_is_taken(app, client):
    started = time.monotonic()
    response = client.post("/api/predict", **chunked(padded(app.config["MAX_CONTENT_LENGTH"])))
    assert_quick_503(response, time.monotonic() - started)


def test_the_json_encoder_never_writes_nan(app):
    for value in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError):
            app.json.dumps({"probabilities": [value]})


def test_a_nan_from_the_workers_is_a_json_500_never_a_200(client, monkeypatch):
    from production_server import api

    def answer_nan(task, *args, **kwargs):
        return {"predictions": [0, 0], "probabilities": [0.25, math.nan], "model_version": "v"}

    monkeypatch.setattr(api, "call", answer_nan)
    response = client.post("/api/predict", **body({"instances": [ROW, ROW]}))
    assert response.status_code == 500
    error = strict_json(response.data)["error"]
    assert "instances[1]" in error and "not a probability" in error


def test_anything_else_that_is_not_json_is_a_json_500(app, client, monkeypatch):
    # The encoder's refusal reaches the client as the JSON 500 every other fault gets.
    from production_server import api

    monkeypatch.setattr(api, "call", lambda task, *args, **kwargs: {"version": math.inf})
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)  # as in production, not TESTING
    response = client.get("/api/model")
    assert response.status_code == 500
    assert response.is_json and strict_json(response.data)["error"]


@pytest.mark.parametrize("path, allow", [
    ("/api/predict", {"POST", "OPTIONS"}),
    ("/api/model", {"GET", "HEAD", "OPTIONS"}),
    ("/healthz", {"GET", "HEAD", "OPTIONS"}),
    ("/predictions", {"GET", "HEAD", "POST", "OPTIONS"}),
])
def test_options_is_a_204_with_allow_and_no_html(client, path, allow):
    # It was an empty 200 text/html.
    response = client.options(path)
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == allow
    assert "Content-Type" not in response.headers
    assert response.data == b""


def test_options_on_an_unknown_api_path_is_a_json_404(client):
    response = client.options("/api/nothing-here")
    assert response.status_code == 404
    assert response.is_json


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
