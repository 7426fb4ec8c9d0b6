"""The API key out of every log line, whichever logger writes it.

PyMISP logs its request headers (the ``Authorization`` key among them) at DEBUG; other libraries may quote a
request or an exception that holds the key. :func:`hide_in_logs` installs a log record factory that cuts
each hidden secret out of a record's message and traceback text as the record is made, so that no handler,
formatter or logger level can let it through. Only records that a logger lets through are made, so a quiet
logger costs nothing.
"""
from __future__ import annotations

import logging
import threading
import traceback
from typing import Any

from dxlmispservice.errors import redact

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()
_installed = False


def hide_in_logs(secret: str) -> None:
    """Cut ``secret`` out of every log record made from now on, in this process (installed once)."""
    global _secrets, _installed
    if not secret:
        return
    with _lock:
        if secret not in _secrets:
            _secrets = (*_secrets, secret)
        if not _installed:
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                return scrub(previous(*args, **kwargs))

            logging.setLogRecordFactory(factory)
            _installed = True


def scrub(record: logging.LogRecord) -> logging.LogRecord:
    """``record`` with every hidden secret cut out of its message, traceback and stack text."""
    secrets = _secrets
    if not secrets:
        return record
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging would print the arguments as they are; cut them too
        message = f"{record.msg} (arguments that do not fit the format: {record.args!r})"
        record.msg, record.args = _cut(message, secrets), None
        return record
    if any(secret in message for secret in secrets):
        record.msg, record.args = _cut(message, secrets), None
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if any(secret in text for secret in secrets):
            record.exc_text = _cut(text, secrets)
    if record.stack_info and any(secret in record.stack_info for secret in secrets):
        record.stack_info = _cut(record.stack_info, secrets)
    return record


def _cut(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        text = redact(text, secret)
    return text
