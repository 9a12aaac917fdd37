"""Turn a request body into rows of 8 plausible measurements, or say exactly what is wrong.

Each measurement must be a finite number within its plausible range
(``RANGES``). The data set records a missing measurement as 0, so every range
starts at 0; the upper bounds are generous, well above the largest value in
the data set, and only keep out values no patient can have (a glucose of
-500, an age of 1000).

Whatever the ranges say, a number must also fit the 32-bit floats the model
computes with (``FLOAT32_MAX``): beyond them both engines answer NaN. Hostile
bodies get a message, never an exception: integers of any length (Python's
json makes an int of each, and ``float()`` of a 309-digit one overflows),
nesting deep enough to exhaust the parser's recursion, values too big or too
deep to quote in a message.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from .data import FEATURES

N_FEATURES = len(FEATURES)

#: The largest float32, numpy.finfo(numpy.float32).max: the model's inputs are 32-bit floats.
FLOAT32_MAX = 3.4028234663852886e38
#: Any integer with more digits than FLOAT32_MAX (39) is larger than it.
_MAX_INT_DIGITS = len(str(int(FLOAT32_MAX)))
_TOO_LARGE = f"beyond ±{FLOAT32_MAX:.2g}, the largest number the model's 32-bit floats hold"
#: Longest quotation of a client's value in a message.
_QUOTE_LIMIT = 60


class InvalidInput(ValueError):
    """The client sent something we cannot predict on; the message says what."""


@dataclass(frozen=True)
class Range:
    """The plausible values of one measurement, both ends included."""

    low: float
    high: float
    unit: str = ""

    def __contains__(self, value: float) -> bool:
        return self.low <= value <= self.high

    def __str__(self) -> str:
        return f"{self.low:g} to {self.high:g}" + (f" {self.unit}" if self.unit else "")


# In the data set's column order; its own extremes are in the comments.
RANGES: dict[str, Range] = {
    "pregnancies": Range(0, 30),  # 0 to 17
    "glucose": Range(0, 1000, "mg/dL"),  # 0 to 199, plasma glucose 2 h into a tolerance test
    "blood_pressure": Range(0, 250, "mm Hg"),  # 0 to 122, diastolic
    "skin_thickness": Range(0, 150, "mm"),  # 0 to 99, triceps skin fold
    "insulin": Range(0, 3000, "µU/mL"),  # 0 to 846, 2-hour serum insulin
    "bmi": Range(0, 150, "kg/m²"),  # 0 to 67.1
    "diabetes_pedigree": Range(0, 10),  # 0.078 to 2.42
    "age": Range(0, 130, "years"),  # 21 to 81
}


def label(feature: str) -> str:
    return feature.replace("_", " ")


@dataclass(frozen=True)
class LongInteger:
    """A JSON integer too long to be a measurement, kept as its length only (see ``parse_json``)."""

    digits: int

    def __str__(self) -> str:
        return f"an integer of {self.digits} digits"


def _reject_constant(name: str) -> Any:
    raise InvalidInput(f"{name} is not a number this API accepts: send finite numbers only")


def _parse_int(text: str) -> int | LongInteger:
    # Python's json turns every integer into an int, however long: a 309-digit one
    # overflows float(), and past 4300 digits int() itself refuses (sys.int_info).
    digits = len(text.lstrip("-"))
    return int(text) if digits <= _MAX_INT_DIGITS else LongInteger(digits)


def parse_json(body: bytes) -> Any:
    if not body:
        raise InvalidInput('the request body is empty: send {"instances": [[8 numbers], ...]}')
    try:
        # Python's json accepts NaN and Infinity; the JSON standard does not, and neither do we.
        return json.loads(body, parse_constant=_reject_constant, parse_int=_parse_int)
    except InvalidInput:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise InvalidInput(
            "the request body is JSON nested too deeply to parse: "
            'send {"instances": [[8 numbers], ...]}, three levels deep'
        ) from None


def quoted(value: Any) -> str:
    """``value`` as JSON for a message: at most a line, whatever the client sent."""
    try:
        text = json.dumps(value, default=str)
    except RecursionError:  # nested almost as deep as the parser allows
        text = "a deeply nested list" if isinstance(value, list) else "a deeply nested object"
    return text if len(text) <= _QUOTE_LIMIT else text[: _QUOTE_LIMIT - 3] + "..."


def _digits(integer: int) -> int:
    # str() refuses ints past 4300 digits; the bit length gives the count, or one more.
    integer = abs(integer)
    digits = int(integer.bit_length() * 0.3010299956639812) + 1  # log10(2)
    return digits - (digits > 1 and 10 ** (digits - 1) > integer)


def number(value: Any, where: str) -> float:
    if isinstance(value, LongInteger):
        raise InvalidInput(f"{where} is {value}, {_TOO_LARGE}")
    # bool is an int in Python, but true/false are not measurements.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"{where} is {quoted(value)}, not a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"{where} is not a finite number")
    # Exact for ints of any length, where float() would overflow.
    if abs(value) > FLOAT32_MAX:
        shown = _shown(value) if isinstance(value, float) else LongInteger(_digits(value))
        raise InvalidInput(f"{where} is {shown}, {_TOO_LARGE}")
    return float(value)


def _shown(value: float) -> str:
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def measurement(value: Any, index: int, row_name: str | None = None) -> float:
    """The ``index``-th measurement of a row, as a float within its plausible range.

    ``row_name`` (``instances[3]``) prefixes the messages, with the value's
    index and name (``instances[3][4] (insulin)``); without it (a form) they
    name the measurement only.
    """
    feature = FEATURES[index]
    value = number(value, f"{row_name}[{index}] ({label(feature)})" if row_name else label(feature))
    plausible = RANGES[feature]
    if value not in plausible:
        prefix = f"{row_name}: " if row_name else ""
        raise InvalidInput(f"{prefix}{label(feature)} is {_shown(value)}, outside its plausible range {plausible}")
    return value


def row(values: Any, where: str) -> list[float]:
    if not isinstance(values, list):
        raise InvalidInput(f"{where} must be a list of {N_FEATURES} numbers")
    if len(values) != N_FEATURES:
        raise InvalidInput(
            f"{where} has {len(values)} values, expected {N_FEATURES} "
            f"({', '.join(FEATURES)})"
        )
    return [measurement(v, i, where) for i, v in enumerate(values)]


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
