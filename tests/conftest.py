"""Shared pytest fixtures; the stack fixtures live in tests/e2e/conftest.py."""
from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mispstub import MispStub


@pytest.fixture()
def stub() -> Iterator[MispStub]:
    """A running MispStub (a tiny MISP over real HTTP), closed after the test."""
    server = MispStub()
    try:
        yield server
    finally:
        server.close()
