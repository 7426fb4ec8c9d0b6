"""Request parsing and MISP's envelopes and quirks, one handler per route of :mod:`dxlmisp_devstack.misp.urls`.

Parsing follows MISP (CakePHP): a body may be wrapped (``{"Event": {...}}``, ``{"Attribute": ...}``,
``{"Object": ...}``, ``{"Sighting": ...}``, and ``{"request": {...}}`` for searches and sightings) or bare;
``attributes/add`` also takes a list, or one attribute whose ``value`` is a list; CakePHP named parameters
(``/metadata:1``) and restSearch's trailing return format (``/events/restSearch/json``) count as filters.

Envelopes follow MISP: restSearch answers ``{"response": ...}`` (events: a list of ``{"Event": ...}``;
attributes: ``{"Attribute": [...]}``); actions answer ``saveSuccessResponse``'s
``{"saved": true, "success": true, "name", "message", "url"[, "id"]}``; ``events/publish`` answers
``{"name": "Publish", "message", "url", "id"}``; a failed ``sightings/add`` answers 200 with
``{"message": "Could not add the Sighting. Reason: ..."}``, as MISP does.

restSearch serves ``returnFormat`` json only (``download``, the old alias, too); any other format is a 400
that says so.

Not supported (a route the table lacks is a loud 404; a parameter listed here is ignored): proposals
(``shadow_attributes/*``), galaxies, event reports, object references, sharing groups, correlations
(``RelatedEvent`` stays empty), e-mail (``events/alert`` only publishes), ``events/view``'s ``extended``,
``breakOnDuplicate``, tag and user administration. The restSearch filters are listed in
:mod:`dxlmisp_devstack.misp.search`.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Mapping

from dxlmisp_devstack.misp import identity
from dxlmisp_devstack.misp.exceptions import INVALID_JSON, BadRequest, MethodNotAllowed, SaveFailed
from dxlmisp_devstack.misp.faults import Faults
from dxlmisp_devstack.misp.identity import User
from dxlmisp_devstack.misp.models import MispModels
from dxlmisp_devstack.misp.validation import as_bool, as_int, describe_types

JSON_FORMATS = ("json", "download")


@dataclass
class Call:
    """One parsed request: method, path, captured path segments, named parameters, JSON body, user."""

    method: str
    path: str
    args: list[str]
    named: dict[str, str]
    body: Any
    user: User


@dataclass
class Reply:
    """A handler's answer: a JSON-able body (None: no body), a status and extra headers."""

    body: Any
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def parse_body(raw: bytes) -> Any:
    """The JSON body, or None when empty; a non-JSON body is MISP's 400."""
    if not raw or not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise BadRequest(INVALID_JSON) from exc


def save_success(controller: str, action: str, record_id: str | None, message: str) -> dict[str, Any]:
    """``RestResponseComponent::saveSuccessResponse``."""
    body: dict[str, Any] = {"saved": True, "success": True, "name": message, "message": message,
                            "url": f"/{controller.lower()}/{action}" + (f"/{record_id}" if record_id else "")}
    if record_id:
        body["id"] = record_id
    return body


def _mapping(body: Any, *keys: str) -> dict[str, Any]:
    data = body if isinstance(body, Mapping) else {}
    for key in keys:
        if isinstance(data.get(key), Mapping):
            data = data[key]
    return dict(data)


def attribute_items(body: Any) -> list[dict[str, Any]]:
    """The attributes of an ``attributes/add`` body, one per value when ``value`` is a list."""
    if isinstance(body, Mapping) and "Attribute" in body:
        body = body["Attribute"]
    items = body if isinstance(body, list) else [body] if isinstance(body, Mapping) else []
    found = []
    for item in items:
        item = _mapping(item, "Attribute")
        if isinstance(item.get("value"), list):
            found.extend(dict(item, value=value) for value in item["value"])
        else:
            found.append(item)
    return found


class MispResponses:
    """The handlers; each takes a :class:`Call` and returns a :class:`Reply`."""

    def __init__(self, models: MispModels, faults: Faults | None = None) -> None:
        self.models = models
        self.faults = faults if faults is not None else Faults()

    def dispatch(self, handler: str, call: Call) -> Reply:
        """Run the named handler."""
        return getattr(self, handler)(call)

    # -- what PyMISP needs to connect ----------------------------------------------------------------
    def server_version(self, call: Call) -> Reply:
        return Reply(identity.server_version(call.user))

    def pymisp_version(self, call: Call) -> Reply:
        return Reply({"version": identity.PYMISP_VERSION})

    def user_me(self, call: Call) -> Reply:
        return Reply(call.user.view())

    def describe_types(self, call: Call) -> Reply:
        return Reply({"result": describe_types()})

    # -- events --------------------------------------------------------------------------------------
    def event_add(self, call: Call) -> Reply:
        return Reply(self.models.add_event(call.body, metadata=as_bool(call.named.get("metadata"))))

    def event_view(self, call: Call) -> Reply:
        ref = call.args[0]
        if call.method == "HEAD":
            return Reply(None, 200 if self.models.event_exists(ref) else 404)
        options = dict(_mapping(call.body), **call.named)
        return Reply(self.models.get_event(ref, deleted=as_bool(options.get("deleted")),
                                           sightings=not as_bool(options.get("noSightings"))))

    def event_edit(self, call: Call) -> Reply:
        return Reply(self.models.edit_event(call.args[0], call.body, metadata=as_bool(call.named.get("metadata"))))

    def event_delete(self, call: Call) -> Reply:
        self.models.delete_event(call.args[0])
        return Reply(save_success("Events", "delete", call.args[0], "Event deleted."))

    def event_publish(self, call: Call) -> Reply:
        event_id = self.models.publish_event(call.args[0])
        return Reply({"name": "Publish", "message": "Event published without alerts",
                      "url": f"/events/alert/{event_id}", "id": event_id})

    def event_alert(self, call: Call) -> Reply:
        """``events/alert``: publish, answered as MISP does once its alert e-mails went out (none do here)."""
        event_id = self.models.publish_event(call.args[0])
        return Reply({"name": "Alert", "message": "Email sent to all participants.",
                      "url": f"/events/alert/{event_id}", "id": event_id})

    def event_unpublish(self, call: Call) -> Reply:
        self.models.unpublish_event(call.args[0])
        return Reply(save_success("Events", "unpublish", call.args[0], "Event unpublished."))

    def event_index(self, call: Call) -> Reply:
        return Reply(self.models.index_events(dict(_mapping(call.body), **call.named)))

    def event_search(self, call: Call) -> Reply:
        return Reply({"response": self.models.search_events(self._search_filters(call))})

    def _search_filters(self, call: Call) -> dict[str, Any]:
        filters = dict(_mapping(call.body, "request"), **call.named)
        fmt = str(call.args[0] if call.args else filters.get("returnFormat") or "json").lower()
        if fmt not in JSON_FORMATS:
            raise BadRequest(f"returnFormat {fmt!r} is not supported by the dev MISP server: it answers json only.")
        return filters

    # -- attributes ----------------------------------------------------------------------------------
    def attribute_add(self, call: Call) -> Reply:
        items = attribute_items(call.body)
        event_ref = call.args[0] if call.args else str(items[0].get("event_id", "")) if items else ""
        if not event_ref:
            raise MethodNotAllowed("No event ID set.")
        created, fails = self.models.add_attributes(event_ref, items)
        if not created:
            raise SaveFailed("Attributes", "add", fails.get("attribute_0", {}) if len(items) == 1 else fails)
        body: dict[str, Any] = created[0] if len(created) == 1 else {"Attribute": [c["Attribute"] for c in created]}
        if fails:
            body["errors"] = fails
        return Reply(body)

    def attribute_view(self, call: Call) -> Reply:
        if call.method == "HEAD":
            return Reply(None, 200 if self.models.attribute_exists(call.args[0]) else 404)
        return Reply(self.models.get_attribute(call.args[0]))

    def attribute_edit(self, call: Call) -> Reply:
        return Reply(self.models.edit_attribute(call.args[0], call.body))

    def attribute_delete(self, call: Call) -> Reply:
        hard = (len(call.args) > 1 and call.args[1] == "1") or as_bool(_mapping(call.body).get("hard"))
        self.models.delete_attribute(call.args[0], hard=hard)
        return Reply({"message": "Attribute deleted."})

    def attribute_search(self, call: Call) -> Reply:
        return Reply({"response": self.models.search_attributes(self._search_filters(call))})

    # -- tags ----------------------------------------------------------------------------------------
    def _tag_request(self, call: Call) -> tuple[str, list[str], bool]:
        data = _mapping(call.body, "request")
        uuid = call.args[0] if call.args else data.get("uuid")
        tags = call.args[1] if call.args else data.get("tag")
        if not uuid:
            raise MethodNotAllowed("Invalid object uuid")
        if not tags:
            raise MethodNotAllowed("Invalid tag")
        names = [str(t) for t in tags] if isinstance(tags, list) else [str(tags)]
        return str(uuid), names, as_bool(data.get("local"))

    def tag_attach(self, call: Call) -> Reply:
        uuid, names, local = self._tag_request(call)
        message = ""
        for name in names:
            message = self.models.attach_tag(uuid, name.strip(), local=local)
        if len(names) > 1:
            message = message.replace("attached 1 tags", f"attached {len(names)} tags")
        return Reply(save_success("Tags", "attachTagToObject", None, message))

    def tag_remove(self, call: Call) -> Reply:
        uuid, names, _ = self._tag_request(call)
        message = self.models.remove_tag(uuid, names[0].strip())
        return Reply(save_success("Tags", "removeTagFromObject", None, message))

    # -- sightings -----------------------------------------------------------------------------------
    def sighting_add(self, call: Call) -> Reply:
        data = _mapping(call.body, "request", "Sighting")
        values = [data["value"]] if "value" in data else data.get("values")
        if isinstance(values, str):
            values = [values]
        ref = call.args[0] if call.args else data.get("uuid") or data.get("id")
        try:
            result = self.models.add_sightings(attribute_ref=str(ref) if ref else None,
                                               values=[str(v) for v in values or []],
                                               sighting_type=as_int(data.get("type"), 0),
                                               source=str(data.get("source") or "").strip(),
                                               timestamp=as_int(data.get("timestamp"), 0) or None)
        except ValueError as reason:
            return Reply({"message": f"Could not add the Sighting. Reason: {reason}"})
        return Reply(result)

    def sighting_search(self, call: Call) -> Reply:
        filters = dict(_mapping(call.body, "request"), **call.named)
        fmt = str(filters.get("returnFormat") or "json").lower()
        if fmt not in JSON_FORMATS:
            raise BadRequest(f"returnFormat {fmt!r} is not supported by the dev MISP server: it answers json only.")
        context = call.args[0] if call.args else None
        return Reply({"response": self.models.search_sightings(filters, context)})

    # -- proposals -----------------------------------------------------------------------------------
    def proposal_add(self, call: Call) -> Reply:
        return Reply(self.models.add_proposal(call.args[0], call.body))

    def proposal_index(self, call: Call) -> Reply:
        return Reply(self.models.proposals())

    # -- objects -------------------------------------------------------------------------------------
    def object_add(self, call: Call) -> Reply:
        return Reply(self.models.add_object(call.args[0], call.body))

    def object_search(self, call: Call) -> Reply:
        return Reply({"response": self.models.search_objects(self._search_filters(call))})

    def object_view(self, call: Call) -> Reply:
        if call.method == "HEAD":
            return Reply(None, 200 if self.models.object_exists(call.args[0]) else 404)
        return Reply(self.models.get_object(call.args[0]))

    # -- dev only ------------------------------------------------------------------------------------
    def devstack_reset(self, call: Call) -> Reply:
        """Dev-only: empty events, attributes, objects, sightings and tags (admin key)."""
        self.models.reset()
        self.faults.reset()
        return Reply(save_success("devstack", "reset", None, "Dev MISP state emptied."))

    def devstack_requests(self, call: Call) -> Reply:
        """Dev-only: the requests answered since the last reset, ``[{"method", "path", "status"}]``."""
        return Reply({"requests": self.faults.requests()})

    def devstack_delay(self, call: Call) -> Reply:
        """Dev-only: ``{"path": "/events/restSearch", "seconds": 2}`` delays that route (0 removes it)."""
        body = _mapping(call.body)
        path, seconds = body.get("path"), body.get("seconds")
        if not isinstance(path, str) or isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise BadRequest("devstack/delay takes {\"path\": \"/route/prefix\", \"seconds\": N}")
        try:
            self.faults.set_delay(path, float(seconds))
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return Reply(save_success("devstack", "delay", None, f"{path} delayed by {float(seconds):g} s."))

    def devstack_answer(self, call: Call) -> Reply:
        """Dev-only: ``{"path": "/tags/index", "status": 200, "body": {...}}`` makes that route answer this
        (status 0 removes it): a MISP that answers what PyMISP does not expect."""
        body = _mapping(call.body)
        path, status = body.get("path"), body.get("status")
        if not isinstance(path, str) or isinstance(status, bool) or not isinstance(status, int) or "body" not in body:
            raise BadRequest("devstack/answer takes {\"path\": \"/route\", \"status\": 200, \"body\": ...}")
        try:
            self.faults.set_answer(path, status, body["body"])
        except ValueError as exc:
            raise BadRequest(str(exc)) from None
        return Reply(save_success("devstack", "answer", None, f"{path} answers {status}."))
