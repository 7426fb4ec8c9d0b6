"""Unit tests for dxlmispservice.logsafe: the key is cut out of every log record, whatever carries it."""
from __future__ import annotations

import logging
import secrets

import pytest

from dxlmispservice import logsafe


@pytest.fixture
def key() -> str:
    """A fresh secret, hidden in this process's logs."""
    value = secrets.token_hex(20)
    logsafe.hide_in_logs(value)
    return value


def test_key_in_arguments_message_and_traceback_is_cut(key: str, caplog: pytest.LogCaptureFixture) -> None:
    """A DEBUG record holding the key in its arguments, its format string or its exception shows none of it."""
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.DEBUG):
        log.debug("headers: %s", {"Authorization": key})
        log.debug(f"raw {key} in the message")
        try:
            raise ValueError(f"bad key {key}")
        except ValueError:
            log.exception("failed")
        log.debug("stack", stack_info=True)
    text = caplog.text + "".join(logging.Formatter().format(record) for record in caplog.records)
    assert key not in text
    assert text.count("<redacted>") >= 3 and "headers:" in text and "ValueError: bad key <redacted>" in text


def test_records_without_the_key_are_left_as_they_are(key: str) -> None:
    """A record that holds no secret keeps its format string and arguments."""
    record = logsafe.scrub(logging.LogRecord("x", logging.INFO, __file__, 1, "n=%d", (5,), None))
    assert (record.msg, record.args, record.getMessage()) == ("n=%d", (5,), "n=5")


def test_every_secret_hidden_stays_hidden(key: str, caplog: pytest.LogCaptureFixture) -> None:
    """A second secret is hidden beside the first (a process that serves two keys)."""
    other = secrets.token_hex(20)
    logsafe.hide_in_logs(other)
    with caplog.at_level(logging.INFO):
        logging.getLogger("x").info("%s and %s", key, other)
    assert key not in caplog.text and other not in caplog.text


def test_a_record_whose_arguments_do_not_fit_its_format_shows_no_key(key: str) -> None:
    """A bad format string with the key among its arguments is made safe: logging would print them raw."""
    record = logsafe.scrub(logging.LogRecord("x", logging.INFO, __file__, 1, "%d %d", (key,), None))
    assert key not in record.getMessage() and "<redacted>" in record.getMessage()
