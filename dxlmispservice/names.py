"""The service's DXL names: the service type, the request and event topics, and the rule that builds them.

Every request topic is ``/opendxl-misp/service/misp-api[/<serviceUniqueId>]/<api name>``; the events the
service publishes are ``/opendxl-misp/event/zeromq-notifications[/<serviceUniqueId>]/<zmq topic>`` and
``/opendxl-misp/event/feed[/<serviceUniqueId>]/event``. ``api/``, ``events/`` and ``inbound/`` take their
topics from here, and nowhere else spells them.
"""
from __future__ import annotations

from dxlmispservice.errors import ConfigError

#: The DXL service type, and the prefix of every request topic.
SERVICE_TYPE = "/opendxl-misp/service/misp-api"
#: The prefix of the DXL events that forward MISP's ZeroMQ notifications.
NOTIFICATION_TOPIC_PREFIX = "/opendxl-misp/event/zeromq-notifications"
#: The prefix of the feed's DXL event topic.
FEED_TOPIC_PREFIX = "/opendxl-misp/event/feed"

_FORBIDDEN_IN_LEVEL = ("/", "#", "+")


def _level(service_unique_id: str) -> str:
    """``/<service_unique_id>``, or "" when none is set; ConfigError when it cannot be one topic level."""
    if not service_unique_id:
        return ""
    if any(c in service_unique_id for c in _FORBIDDEN_IN_LEVEL) or service_unique_id != service_unique_id.strip():
        raise ConfigError(f"serviceUniqueId: {service_unique_id!r} cannot be a topic level "
                          "(no '/', '#', '+' or surrounding blanks)")
    return f"/{service_unique_id}"


def service_type(service_unique_id: str = "") -> str:
    """``SERVICE_TYPE``, with ``/<service_unique_id>`` appended when one is set."""
    return SERVICE_TYPE + _level(service_unique_id)


def request_topic(api_name: str, service_unique_id: str = "") -> str:
    """The request topic of ``api_name``: ``/opendxl-misp/service/misp-api[/<id>]/<api_name>``."""
    return f"{service_type(service_unique_id)}/{api_name}"


def notification_topic(zmq_topic: str, service_unique_id: str = "") -> str:
    """The DXL event topic for one ZeroMQ topic: ``NOTIFICATION_TOPIC_PREFIX[/<id>]/<zmq topic>``."""
    return f"{NOTIFICATION_TOPIC_PREFIX}{_level(service_unique_id)}/{zmq_topic}"


def feed_topic(service_unique_id: str = "", format_name: str = "misp") -> str:
    """The feed's DXL event topic of a format: ``/opendxl-misp/event/feed[/<id>]/event`` for MISP's own,
    ``/opendxl-misp/event/feed[/<id>]/<format>`` for the others."""
    return f"{FEED_TOPIC_PREFIX}{_level(service_unique_id)}/{'event' if format_name == 'misp' else format_name}"
