"""Domain errors shared by every app; the API maps ``http_status`` onto responses."""

from __future__ import annotations


class DomainError(Exception):
    """A request that the platform's rules refuse."""

    http_status = 400
    code = "domain_error"


class InvalidStateTransition(DomainError):
    """A position or order cannot move from its current state to the one asked for."""

    http_status = 409
    code = "invalid_state_transition"


class ConflictError(DomainError):
    http_status = 409
    code = "conflict"


class TradingHalted(DomainError):
    """New entries are refused while trading is halted."""

    http_status = 409
    code = "trading_halted"
