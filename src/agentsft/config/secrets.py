"""The hub token: read from the environment (or a ``.env``), never written anywhere.

Everything a run writes or logs goes through :func:`redact`, which replaces the
environment's token and anything shaped like a hub token.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

TOKEN_VARS = ("HF_TOKEN", "HUGGINGFACE_TOKEN")
# Hub tokens are "hf_" and 34 letters or digits; shorter hf_ names (hf_datasets) are paths.
HF_TOKEN_PATTERN = re.compile(r"\bhf_[A-Za-z0-9]{30,}\b")


def hf_token() -> str | None:
    """The hub token, never logged: ``HF_TOKEN`` / ``HUGGINGFACE_TOKEN`` in the environment
    or a ``.env`` in the working folder, else what ``huggingface_hub.get_token()`` finds
    (the token ``hf auth login`` saved)."""
    return explicit_token() or hub_login_token()


def hub_login_token() -> str | None:
    from huggingface_hub import get_token
    return get_token()


def explicit_token() -> str | None:
    for var in TOKEN_VARS:
        if os.environ.get(var):
            return os.environ[var]
    env = Path(".env")
    if env.is_file():
        for line in env.read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition("=")
            value = value.strip()
            if value[:1] not in ("'", '"'):
                value = value.split(" #", 1)[0].strip()  # an inline comment
            if key.strip().removeprefix("export ").strip() in TOKEN_VARS and value.strip("'\""):
                return value.strip("'\"")
    return None


def redact(value: Any, secrets: tuple[str, ...] | None = None) -> Any:
    """``value`` with the environment's hub token, and anything shaped like one, replaced."""
    if secrets is None:
        secrets = tuple(t for t in [hf_token()] if t)
    if isinstance(value, dict):
        return {k: redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, secrets) for v in value]
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, "***")
        return HF_TOKEN_PATTERN.sub("hf_***", value)
    return value
