"""The confirmed publisher: JSON DXL events that are known to have reached the broker socket.

The private parts of dxlclient and its paho used here are reached through
:mod:`dxlmispservice.compat.dxlclient`.

**Publishing, and knowing it went out.** ``DxlClient.send_event`` returns once its paho client has *queued*
the MQTT PUBLISH in process (``_packet_queue``); paho's network thread writes it to the socket a little
later, and a QoS 0 message that is still queued when the connection drops, or when the process dies, is
gone. dxlclient 5.7.0.1 drops the ``MQTTMessageInfo`` that paho's ``publish`` returns, and the vendored paho's
``MQTTMessageInfo.wait_for_publish`` has no timeout. So :func:`dxl_publisher` installs a small wrapper on its
client's paho ``publish`` (once, like the TCP_NODELAY hook) that hands the calling thread the
``MQTTMessageInfo`` of the message it just queued. For QoS 0 (dxlclient's default) paho marks that info
published in ``_packet_write`` once the last byte of the packet has gone into the socket, that is, into the
kernel's send buffer, from where the kernel delivers it even if this process is killed (unless the
connection is reset first). The publisher waits for that, at most ``write_timeout`` seconds, and raises
:class:`PublishError` when the message was refused (not connected) or did not reach the socket in time (it
was dropped with a broken connection, or the broker stopped reading).

**Acting the moment it is written.** An :class:`EventPayload` may carry ``on_written``: a short callable
that the publisher runs *in paho's network thread*, from paho's ``on_publish`` callback, right after the
last byte of that message went into the socket, before the waiting caller is even woken (the feed renames
its state file there: nothing but that rename lies between the socket write and the state moving on). The
hook is registered under the message's paho id from a wrapper of paho's (private) ``_packet_queue``, in the
publishing thread, just before the packet is put on paho's out-queue, so it is in place whenever the
network thread writes it. It runs at most once, and never for a message that was not written: a publish
that fails or times out cancels it first. An error it raises is raised by the publish.

**Message ids.** An :class:`EventPayload` also carries the DXL ``message_id`` to send it under (dxlclient
has no setter: the publisher sets the message's ``_message_id`` before sending); a plain dict gets
dxlclient's random one.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from dxlclient.message import Event
from pahoproxy.client import error_string

from dxlmispservice.compat import dxlclient as compat
from dxlmispservice.errors import InternalError

logger = logging.getLogger(__name__)

#: Publishing a DXL event: topic and JSON-able payload.
Publisher = Callable[[str, dict], None]

_PUBLISH_MARK = "_dxlmispservice_publish_info"

#: How long a publish waits for its message to reach the broker socket, by default.
WRITE_TIMEOUT = 5.0

#: paho's ``MQTTMessageInfo.rc`` for a message that was queued (``MQTT_ERR_SUCCESS``).
_QUEUED = 0
#: The MQTT PUBLISH packet type (the high nibble of its first byte).
_MQTT_PUBLISH = 0x30


class PublishError(InternalError):
    """A DXL event that was refused, or that did not reach the broker socket in time: treat it as not sent."""


class TooLarge(PublishError):
    """A DXL event whose packet would be over the fabric's message limit: not sent (the broker would have
    disconnected the service). ``size`` and ``limit`` in bytes."""

    def __init__(self, topic: str, size: int, limit: int) -> None:
        super().__init__(f"The DXL event on {topic} would be {size} bytes on the fabric, over "
                         f"fabricMessageLimit {limit}: not sent")
        self.size = size
        self.limit = limit


class EventPayload(dict):  # type: ignore[type-arg]
    """A JSON payload (a dict) that names the DXL ``message_id`` to send it under, and optionally a hook to
    run the moment it is written into the socket (module docstring)."""

    def __init__(self, payload: dict, message_id: str, on_written: Callable[[], None] | None = None) -> None:
        super().__init__(payload)
        self.message_id = message_id
        self.on_written = on_written


class _Hook:
    """One message's on_written: pending, then run (with its error, if any) or cancelled."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action
        self.ran = False
        self.error: BaseException | None = None

    def run(self) -> None:
        self.ran = True
        try:
            self.action()
        except BaseException as exc:  # handed to the publishing thread; paho's thread must go on
            self.error = exc


class _WrittenHooks:
    """The on_written hooks by paho message id, run from paho's ``on_publish`` (its network thread).

    Without the ``_packet_queue`` seam paho may write a message before its hook is registered; the ids
    written without a hook are kept (the last ``_RECENT``; paho's ids wrap at 65535) so that a late
    registration finds it already written and runs the hook at once."""

    _RECENT = 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: dict[int, _Hook] = {}
        self._written: OrderedDict[int, None] = OrderedDict()

    def on_publish(self, mid: int) -> None:
        with self._lock:
            hook = self._pending.pop(mid, None)
            if hook is not None:
                hook.run()
                return
            self._written[mid] = None
            self._written.move_to_end(mid)
            while len(self._written) > self._RECENT:
                self._written.popitem(last=False)

    def register(self, mid: int, hook: _Hook) -> None:
        """Run ``hook`` when ``mid`` is written, or now when it already was."""
        with self._lock:
            if mid in self._written:  # paho wrote it before we got here: run it now, in this thread
                del self._written[mid]
                hook.run()
            else:
                self._pending[mid] = hook

    def cancel(self, mid: int, hook: _Hook) -> bool:
        """Whether the hook was still pending (now it never runs); False when it has run."""
        with self._lock:
            if self._pending.get(mid) is hook:
                del self._pending[mid]
                return True
            return not hook.ran


def dxl_publisher(dxl_client: Any, *, limit: int | None = None, secret: str | None = None,
                  write_timeout: float = WRITE_TIMEOUT) -> Publisher:
    """A :data:`Publisher` sending compact JSON DXL events through ``dxl_client``; each call returns once
    the message is in the broker socket, or raises :class:`PublishError`.

    An event whose MQTT packet would be over ``limit`` bytes (the fabric's ``messageSizeLimit``, which
    the real broker enforces by disconnecting the sender) is not sent: :class:`TooLarge`, and the caller
    sends a notice that fits instead. A client whose ``send_event`` does not go through a paho ``publish``
    (a test double) is not waited for. ``secret`` (the API key) is cut out of any event that holds it."""
    captured, hooks = _instrument(dxl_client)
    secret_bytes = secret.encode("utf-8") if secret else None

    def publish(topic: str, payload: dict) -> None:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if secret_bytes is not None and secret_bytes in body:
            body = body.replace(secret_bytes, b"<redacted>")
        event = Event(topic)
        event.payload = body
        if limit is not None and not compat.surely_fits(event, limit):
            size = compat.packet_size(event)
            if size > limit:
                raise TooLarge(topic, size, limit)
        message_id = getattr(payload, "message_id", None)
        if message_id:
            compat.set_message_id(event, message_id)
        on_written = getattr(payload, "on_written", None)
        hook = _Hook(on_written) if on_written is not None else None
        captured.info, captured.hook = None, hook
        try:
            dxl_client.send_event(event)
        finally:
            info, unregistered = captured.info, captured.hook
            captured.info = captured.hook = None
        if info is None:  # no paho underneath: nothing to wait for, the caller decides when it counts as sent
            return
        _check_queued(info, topic)
        if unregistered is not None:  # a paho without the _packet_queue seam: register it now, late
            hooks.register(info.mid, unregistered)
        try:
            _wait_written(dxl_client, info, topic, write_timeout)
        except PublishError:
            if hook is None or hooks.cancel(info.mid, hook):
                raise
            # written (and its hook run) just as the wait gave up: it was sent
        if hook is not None and hook.error is not None:
            raise hook.error

    return publish


def _instrument(dxl_client: Any) -> tuple[threading.local, _WrittenHooks]:
    """Wrap the paho client's ``publish`` and set its ``on_publish`` (once per paho client): each thread finds
    the ``MQTTMessageInfo`` of its last publish in the thread-local's ``info``, and written messages run
    their on_written hooks."""
    mqtt = compat.paho(dxl_client)
    marks = getattr(mqtt, _PUBLISH_MARK, None)
    if marks is not None:
        return marks
    captured, hooks = threading.local(), _WrittenHooks()
    if mqtt is None or not callable(getattr(mqtt, "publish", None)):
        logger.warning("This dxlclient has no paho client: DXL events are sent without waiting for the socket")
        return captured, hooks
    original = mqtt.publish
    previous = mqtt.on_publish

    def publish(*args: Any, **kwargs: Any) -> Any:
        info = original(*args, **kwargs)
        captured.info = info
        return info

    def wrap_queue(queue: Callable[..., Any]) -> Callable[..., Any]:
        def packet_queue(command: int, packet: Any, mid: int, qos: int, info: Any = None) -> Any:
            hook = getattr(captured, "hook", None)
            if hook is not None and command & 0xF0 == _MQTT_PUBLISH:
                captured.hook = None
                hooks.register(mid, hook)  # before the packet is on the out-queue: the network thread finds it
            return queue(command, packet, mid, qos, info)

        return packet_queue

    def on_publish(client: Any, userdata: Any, mid: int) -> None:  # paho's network thread
        hooks.on_publish(mid)
        if previous is not None:
            previous(client, userdata, mid)

    mqtt.publish = publish
    compat.wrap_packet_queue(mqtt, wrap_queue)
    mqtt.on_publish = on_publish
    setattr(mqtt, _PUBLISH_MARK, (captured, hooks))
    return captured, hooks


def _check_queued(info: Any, topic: str) -> None:
    rc = getattr(info, "rc", _QUEUED)
    if rc != _QUEUED:  # MQTT_ERR_NO_CONN when there is no broker socket: dxlclient would drop it silently
        raise PublishError(f"The DXL event on {topic} was not sent: {error_string(rc)} (paho rc {rc})")


def _wait_written(dxl_client: Any, info: Any, topic: str, timeout: float) -> None:
    """Wait until paho has written the message of ``info`` into the socket; PublishError otherwise."""
    loop_thread = compat.network_thread(dxl_client)
    if loop_thread is not None and threading.current_thread() is loop_thread:
        return  # paho's own thread writes after this call returns: waiting here would wait for itself
    condition = compat.published_condition(info)
    if condition is not None:
        with condition:  # paho notifies it in _set_as_published; is_published takes the same (re-entrant) lock
            written = condition.wait_for(info.is_published, timeout)
    else:
        written = _poll(info.is_published, timeout)
    if not written:
        raise PublishError(f"The DXL event on {topic} did not reach the broker socket within {timeout:g} s")


def _poll(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    pause = 0.0001
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(pause)
        pause = min(pause * 2, 0.01)
    return True
