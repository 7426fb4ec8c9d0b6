"""A daemon thread with a stop flag, stopped within a time limit and started again after that (a role that
moves between instances): the feed's poll loop and the ZeroMQ forwarder's receive loop each run in one."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable


class Worker:
    """Runs ``target`` on a daemon thread named ``name``; ``target`` returns once :attr:`stopping` is set.
    Warnings go to ``log``, the owner's logger."""

    def __init__(self, name: str, target: Callable[[], None], *, stop_timeout: float, description: str,
                 log: logging.Logger) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self._target = target
        self._stop_timeout = stop_timeout
        self._description = description
        self._log = log
        self._left: threading.Thread | None = None  # a thread that outlived its stop

    def start(self) -> None:
        """Start the thread (again, after :meth:`stop`); RuntimeError when it is running."""
        if self.thread is not None:
            raise RuntimeError(f"{self._description} was started twice")
        if self._left is not None and self._left.is_alive():
            raise RuntimeError(f"{self._description} has not stopped yet from the last stop")
        self._left = None
        self.stopping.clear()
        self.thread = threading.Thread(target=self._target, name=self.name, daemon=True)
        self.thread.start()

    @property
    def running(self) -> bool:
        """Whether the thread is alive."""
        thread = self.thread
        return thread is not None and thread.is_alive()

    def stop(self) -> bool:
        """Set :attr:`stopping` and wait for the thread at most ``stop_timeout`` seconds; False (with a
        warning) when it is still running then, True otherwise."""
        self.stopping.set()
        thread, self.thread = self.thread, None
        if thread is None:
            return True
        thread.join(timeout=self._stop_timeout)
        if thread.is_alive():
            self._log.warning("%s did not stop within %.1f s; leaving it", self._description, self._stop_timeout)
            self._left = thread
            return False
        return True
