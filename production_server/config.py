"""The server's settings and their defaults, read from ``SERVER_*`` (see the package's docstring).

Nothing here imports Flask: labkit and the CI/CD gate read these without
the web framework (the web server and the workers run the Flask app).
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULTS = {
    "BROKER_URL": None,
    "RESULT_BACKEND": "rpc://",
    "MODEL_DIR": str(Path.home() / ".local" / "share" / "labkit" / "model"),
    "MODEL_ENGINE": "keras",
    "PREDICT_TIMEOUT": 5.0,
    "HEALTH_TIMEOUT": 0.5,
    "HEALTH_INTERVAL": 1.0,
    "MAX_ROWS": 1000,
    # Enough for MAX_ROWS rows of 8 long floats; werkzeug answers 413 past it.
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "SAMPLE_ROWS": 10,
}


class ConfigurationError(RuntimeError):
    pass


def default_model_dir() -> Path:
    return Path(os.environ.get("SERVER_MODEL_DIR") or str(DEFAULTS["MODEL_DIR"]))
