"""Turn a request body into rows of 8 finite numbers, or say exactly what is wrong."""

from __future__ import annotations

import json
import math
from typing import Any

from .data import FEATURES

N_FEATURES = len(FEATURES)


class InvalidInput(ValueError):
    """The client sent something we cannot predict on; the message says what."""


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a number this API accepts: send finite numbers only")


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidInput('the request body is empty: send {"instances": [[8 numbers], ...]}')
    try:
        # Python's json accepts NaN and Infinity; the JSON standard does not, and neither do we.
        return json.loads(body, parse_constant=_reject_constant)
    except InvalidInput:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON ({exc})") from None


def number(value: Any, where: str) -> float:
    # bool is an int in Python, but true/false are not measurements.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{where} is {json.dumps(value)}, not a number")
    value = float(value)
    if not math.isfinite(value):
        raise InvalidInput(f"{where} is not a finite number")
    return value


def row(values: Any, where: str) -> list[float]:
    if not isinstance(values, list):
        raise InvalidInput(f"{where} must be a list of {N_FEATURES} numbers")
    if len(values) != N_FEATURES:
        raise InvalidInput(
            f"{where} has {len(values)} values, expected {N_FEATURES} "
            f"({', '.join(FEATURES)})"
        )
    return [number(v, f"{where}[{i}]") for i, v in enumerate(values)]


def instances(payload: Any, max_rows: int) -> list[list[float]]:
    if not isinstance(payload, dict) or "instances" not in payload:
        raise InvalidInput('the JSON body must be an object with the key "instances"')
    rows = payload["instances"]
    if not isinstance(rows, list):
        raise InvalidInput('"instances" must be a list of rows')
    if not rows:
        raise InvalidInput('"instances" is empty: send at least one row')
    if len(rows) > max_rows:
        raise InvalidInput(f'"instances" has {len(rows)} rows; at most {max_rows} per request')
    return [row(values, f"instances[{i}]") for i, values in enumerate(rows)]
