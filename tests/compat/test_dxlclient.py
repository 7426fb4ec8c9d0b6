"""compat.dxlclient: the private parts of dxlclient and its paho that the service uses are all there."""
from __future__ import annotations

import inspect

import pytest

from dxlmispservice.compat import dxlclient


def test_every_private_part_used_is_there() -> None:
    """The installed dxlclient still has each private part the service reaches into."""
    missing = dxlclient.missing()
    assert missing == [], (f"dxlclient {dxlclient.TESTED} parts gone after an upgrade: {', '.join(missing)}; "
                           "adapt dxlmispservice/compat/dxlclient.py")


def test_a_removed_part_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """When DxlClient no longer sets _client, missing() names it."""
    original = inspect.getsource
    monkeypatch.setattr(inspect, "getsource",
                        lambda obj: original(obj).replace("self._client =", "self._paho =")
                        if getattr(obj, "__qualname__", "") == "DxlClient.__init__" else original(obj))
    assert "DxlClient._client (the paho client)" in dxlclient.missing()


def test_paho_is_none_for_a_client_without_one() -> None:
    """A test double without a paho client has no paho and no network thread."""
    assert dxlclient.paho(object()) is None and dxlclient.network_thread(object()) is None


def test_a_full_incoming_queue_hands_the_message_over_instead_of_blocking() -> None:
    """With the queue full, paho's put does not block: the message goes to the handler, which answers it;
    when the handler declines, the put waits for room as dxlclient's does."""
    import queue as queuelib
    import threading

    from dxlclient._thread_pool import ThreadPool

    from dxlmispservice.compat.dxlclient import on_full_incoming_queue

    class Client:
        _thread_pool = ThreadPool(queue_size=1, num_threads=1, thread_prefix="test")

    release, started = threading.Event(), threading.Event()
    handed: list[tuple[str, bytes]] = []
    assert on_full_incoming_queue(Client, lambda topic, payload: handed.append((topic, payload)) or topic == "/a")
    pool = Client._thread_pool
    pool.add_task(lambda channel, payload: (started.set(), release.wait(10)), channel="/busy", payload=b"")
    assert started.wait(5)
    pool.add_task(lambda channel, payload: None, channel="/queued", payload=b"1")  # fills the one slot
    pool.add_task(lambda channel, payload: None, channel="/a", payload=b"2")       # handed over at once
    assert handed == [("/a", b"2")]
    waiting = threading.Thread(target=pool.add_task, args=(lambda channel, payload: None,),
                               kwargs={"channel": "/b", "payload": b"3"})
    waiting.start()
    waiting.join(0.3)
    assert waiting.is_alive() and handed[-1] == ("/b", b"3")  # declined: it waits for room
    release.set()
    waiting.join(5)
    assert not waiting.is_alive()
    pool.shutdown(True)
    assert isinstance(pool._tasks, queuelib.Queue)


def test_the_quick_bound_never_passes_a_message_that_does_not_fit() -> None:
    """surely_fits says yes only for messages whose real packet is within the limit."""
    from dxlclient.message import ErrorResponse, Event, Request

    from dxlmispservice.compat.dxlclient import packet_size, surely_fits

    request = Request("/opendxl-misp/service/misp-api/search")
    for size in (0, 1000, 60_000, 63_000, 64_000, 65_000):
        for message in (Event("/opendxl-misp/event/feed/event"), ErrorResponse(request, error_code=5, error_message="é" * 300)):
            message.payload = b"x" * size
            if surely_fits(message, 65_536):
                assert packet_size(message) <= 65_536 and len(message._to_bytes()) <= 65_536
