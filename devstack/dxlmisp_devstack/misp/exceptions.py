"""MISP's error bodies and statuses, as the real server (CakePHP) sends them.

Every error the dev MISP server answers is JSON. The shapes, with the facts they follow:

* A CakePHP exception (``NotFoundException``, ``ForbiddenException``, ``MethodNotAllowedException``,
  ``BadRequestException``) is rendered as ``{"name": msg, "message": msg, "url": <request path>}`` with
  the exception's status: 404, 403, 405, 400.
* A missing or wrong API key is a ``ForbiddenException``: 403 with :data:`AUTH_FAILED`.
* A role without the needed permission (the read-only user writing) fails MISP's ACL check, which throws
  ``MethodNotAllowedException``: **405** with :data:`PERMISSION_DENIED` (that is what PyMISP sees from a
  real MISP, e.g. a user without publish rights: ``errors == (405, {... 'You do not have permission to use
  this functionality.' ...})``).
* A failed validation is ``RestResponseComponent::saveFailResponse``: 403 with
  ``{"saved": false, "name": "Could not <action> <Model>", "message": <same>, "url": "/<controller>/<action>[/<id>]",
  "errors": ..., ["id": <id>]}``. A duplicate attribute is one of these, with
  ``errors == {"value": ["A similar attribute already exists for this event."]}``.
* A duplicate event uuid on ``events/add`` is a ``NotFoundException`` (404) whose message is
  :data:`EVENT_EXISTS`, with a ``Location`` header that points at the existing event.

The ``url`` of a CakePHP exception is the request path; the HTTP layer fills it in (:meth:`MispHttpError.body`).
"""
from __future__ import annotations

from typing import Any

AUTH_FAILED = ("Authentication failed. Please make sure you pass the API key of an API enabled user along in "
               "the Authorization header.")
PERMISSION_DENIED = "You do not have permission to use this functionality."
EVENT_EXISTS = "Event already exists, if you would like to edit it, use the url in the location header."
INVALID_JSON = ("Invalid JSON input. Make sure that the JSON input is a correctly formatted JSON string. This "
                "request has been blocked to avoid an unfiltered request.")
DUPLICATE_ATTRIBUTE = "A similar attribute already exists for this event."


class MispHttpError(Exception):
    """An error with MISP's status and JSON body. ``url`` defaults to the request path."""

    status: int = 500

    def __init__(self, message: str, *, url: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.headers: dict[str, str] = dict(headers or {})

    def body(self, request_path: str) -> dict[str, Any]:
        """The JSON body MISP sends for this error on ``request_path``."""
        return {"name": self.message, "message": self.message, "url": self.url or request_path}


class BadRequest(MispHttpError):
    """400: a body that is not JSON, or a parameter this server cannot honour."""

    status = 400


class Forbidden(MispHttpError):
    """403: a missing or wrong API key (``ForbiddenException``)."""

    status = 403


class NotFound(MispHttpError):
    """404: an unknown event, attribute or object (``NotFoundException``)."""

    status = 404


class MethodNotAllowed(MispHttpError):
    """405: MISP's ``MethodNotAllowedException``: a wrong HTTP method, or a permission the role lacks."""

    status = 405


class ServerError(MispHttpError):
    """500: what CakePHP answers for an unexpected exception (``InternalErrorException``)."""

    status = 500


class UnknownRoute(NotFound):
    """404 for a path no route serves: it names the route, so that a missing endpoint fails loudly."""

    def __init__(self, method: str, path: str) -> None:
        super().__init__(f"Unknown route: {method} {path} (the dev MISP server has no such endpoint)", url=path)


class SaveFailed(MispHttpError):
    """403 in ``saveFailResponse``'s shape: ``Could not <action> <Model>`` with the validation errors."""

    status = 403

    def __init__(self, controller: str, action: str, errors: Any, *, record_id: str | None = None) -> None:
        model = controller[:-1] if controller.endswith("s") else controller
        super().__init__(f"Could not {action} {model}")
        self.controller = controller
        self.action = action
        self.errors = errors
        self.record_id = record_id

    def body(self, request_path: str) -> dict[str, Any]:
        """``{"saved": false, "name", "message", "url", "errors"[, "id"]}``, url ``/<controller>/<action>[/<id>]``."""
        url = f"/{self.controller.lower()}/{self.action}" + (f"/{self.record_id}" if self.record_id else "")
        body: dict[str, Any] = {"saved": False, "name": self.message, "message": self.message, "url": url,
                                "errors": self.errors}
        if self.record_id:
            body["id"] = self.record_id
        return body
