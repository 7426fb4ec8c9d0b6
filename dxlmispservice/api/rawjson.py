"""RawJson: an answer that is already JSON bytes, sent to the requester as it is (see :mod:`.rawpath`)."""
from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any


class RawJson(Mapping[str, Any]):
    """A JSON object as MISP sent it: :attr:`body` is forwarded to the requester as it is.

    Reading it as a mapping decodes the body once (for code that looks inside); ``to_dict()`` gives the
    decoded object, which is what ``json.dumps(..., default=...)`` falls back on when one is nested in
    another answer."""

    __slots__ = ("body", "_value")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self._value: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The decoded object."""
        if self._value is None:
            value = json.loads(self.body)
            if not isinstance(value, dict):
                raise ValueError("a RawJson body must be a JSON object")
            self._value = value
        return self._value

    def __getitem__(self, key: str) -> Any:
        return self.to_dict()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __repr__(self) -> str:
        return f"RawJson({len(self.body)} bytes)"
