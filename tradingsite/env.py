"""Typed readers for environment variables that refuse bad values loudly.

A bad value stops start-up with the variable's name in the message, instead of
silently falling back to a default the operator did not ask for. The message is
one line on stderr, not a traceback (``install_one_line_errors``), whichever
process loads the settings: ``manage.py``, daphne, celery.
"""

from __future__ import annotations

import os
import re
import sys
from types import TracebackType
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured


class SettingsError(ImproperlyConfigured):
    """A setting from the environment is wrong; the message starts with the variable's name."""


def _one_line_hook(previous):  # type: ignore[no-untyped-def]
    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, SettingsError):
            sys.stderr.write(f"configuration error: {exc}\n")
            return
        previous(kind, exc, tb)

    hook.one_line_settings_errors = True  # type: ignore[attr-defined]
    return hook


def install_one_line_errors() -> None:
    """An uncaught ``SettingsError`` ends the process with one line (exit code 1)."""
    if not getattr(sys.excepthook, "one_line_settings_errors", False):
        sys.excepthook = _one_line_hook(sys.excepthook)


_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*):[^@/\s]*@", re.I)


def mask_url(text: str) -> str:
    """``scheme://user:secret@host`` → ``scheme://user:********@host`` (anywhere in ``text``)."""
    return _URL_PASSWORD.sub(r"\g<head>:********@", text)

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str = "") -> str:
    """A string from the environment, or from the file named by ``NAME_FILE``."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            with open(file_path, encoding="utf-8") as fh:
                return fh.read().strip()
        except OSError as exc:
            raise SettingsError(f"{name}_FILE: cannot read {file_path!r}: {exc}") from exc
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise SettingsError(f"{name}: expected a boolean (1/0, true/false, yes/no), got {raw!r}")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}: expected an integer, got {raw!r}") from exc


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    value = env_str(name, default)
    if value not in choices:
        raise SettingsError(f"{name}: expected {', '.join(choices[:-1])} or {choices[-1]}, "
                            f"got {value!r}")
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_url(name: str, default: str = "", *, schemes: tuple[str, ...] = ("http", "https")) -> str:
    """An absolute URL (e.g. the address traders open), without a trailing slash; "" if unset.

    Credentials, a query or a fragment are refused: the value is pasted into messages
    that leave the platform, and a link must not carry a password.
    """
    raw = env_str(name, default).strip()
    if not raw:
        return ""
    example = "e.g. https://trading.example.com"
    try:
        parts = urlsplit(raw)
        port = parts.port  # a port that is not a number raises here
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme.lower() not in schemes or not parts.hostname:
        raise SettingsError(f"{name}: expected an absolute {'/'.join(schemes)} URL ({example}), "
                            f"got {mask_url(raw)!r}")
    if parts.username is not None or parts.password is not None:
        raise SettingsError(f"{name}: must not contain credentials ({example})")
    if parts.query or parts.fragment or "?" in raw or "#" in raw:
        raise SettingsError(f"{name}: must not contain a query or a fragment, got {raw!r}")
    if port == 0:
        raise SettingsError(f"{name}: port 0 is not a port, got {raw!r}")
    return raw.rstrip("/")
