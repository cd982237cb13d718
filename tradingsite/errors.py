"""Domain errors shared by every app; the API maps ``http_status`` onto responses."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class DomainError(Exception):
    """A request that the platform's rules refuse."""

    http_status = 400
    code = "domain_error"

    def details(self) -> dict[str, Any]:
        """Fields the API adds to ``{"detail", "code"}`` (the numbers behind a refusal…)."""
        return {}


class InvalidStateTransition(DomainError):
    """A position or order cannot move from its current state to the one asked for."""

    http_status = 409
    code = "invalid_state_transition"


class ConflictError(DomainError):
    http_status = 409
    code = "conflict"


class RequestMismatch(ConflictError):
    """A repeated idempotency key or reference names a different request than the first.

    ``fields`` lists the fields that differ; the message shows both values of each.
    """

    code = "request_mismatch"

    def __init__(self, what: str, differences: Mapping[str, tuple[Any, Any]]):
        self.fields = sorted(differences)
        changes = "; ".join(f"{name}: first {differences[name][0]!r}, now {differences[name][1]!r}"
                            for name in self.fields)
        super().__init__(f"{what} was first used for a different request ({changes})")


class TradingHalted(DomainError):
    """New entries are refused while trading is halted."""

    http_status = 409
    code = "trading_halted"
