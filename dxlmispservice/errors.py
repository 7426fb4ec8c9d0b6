"""The service's one small exception hierarchy and its table of DXL error codes.

Every failure a requester can see is one of these classes. Each carries a ``code`` from
:data:`ERROR_CODES`, the number the DXL ``ErrorResponse`` carries, and a message that says what was
wrong. :class:`MispRefused` also carries MISP's own error JSON, which becomes the ErrorResponse payload.
"""
from __future__ import annotations

from typing import Any


class MispServiceError(Exception):
    """Base of every error the service raises on purpose."""

    code: int = 6
    name: str = "internal_error"

    def __init__(self, message: str, *, payload: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.payload = payload

    def to_payload(self) -> Any:
        """The JSON-able body sent as the ErrorResponse payload."""
        if self.payload is not None:
            return self.payload
        return {"code": self.code, "error": self.name, "message": self.message}


class ConfigError(MispServiceError):
    """The configuration is invalid: raised at start, names the key and what is accepted."""

    code = 0
    name = "config_error"


class InvalidPayload(MispServiceError):
    """The request payload is not a JSON object."""

    code = 1
    name = "invalid_payload"


class InvalidArguments(MispServiceError):
    """The payload's keys do not fit the called method; the message lists the accepted ones."""

    code = 2
    name = "invalid_arguments"


class MispRefused(MispServiceError):
    """MISP answered 4xx: the payload is MISP's own error JSON."""

    code = 3
    name = "misp_refused"

    def __init__(self, message: str, *, status: int, payload: Any = None) -> None:
        super().__init__(message, payload=payload)
        self.status = status


class MispUnavailable(MispServiceError):
    """MISP could not be reached, timed out, or answered 5xx."""

    code = 4
    name = "misp_unavailable"


class ResponseTooLarge(MispServiceError):
    """The answer is larger than ``maxResponseSize``; the message says how to page."""

    code = 5
    name = "response_too_large"


class InternalError(MispServiceError):
    """Anything unexpected; details go to the log, not to the requester."""

    code = 6
    name = "internal_error"


class ServiceBusy(MispServiceError):
    """The service's incoming queue is full; retry later."""

    code = 7
    name = "service_busy"


class ExportFailed(MispServiceError):
    """The event could not be converted to the format asked for; the message names the reason."""

    code = 8
    name = "export_failed"


#: code -> (name, meaning): the documented table (docs/errors.rst mirrors it; a test checks that).
ERROR_CODES: dict[int, tuple[str, str]] = {
    cls.code: (cls.name, (cls.__doc__ or "").strip().splitlines()[0])
    for cls in (InvalidPayload, InvalidArguments, MispRefused, MispUnavailable, ResponseTooLarge, InternalError,
                ServiceBusy, ExportFailed)
}


def redact(text: str, secret: str | None) -> str:
    """Return ``text`` with every occurrence of ``secret`` (the API key) replaced."""
    if secret and secret in text:
        return text.replace(secret, "<redacted>")
    return text
