"""``[IncomingMessagePool]`` and ``[MessageCallbackPool]``: dxlbootstrap's two thread pools."""
from __future__ import annotations

import configparser
from dataclasses import dataclass

from dxlmispservice.settings.section import Section

INCOMING_POOL = "IncomingMessagePool"
CALLBACK_POOL = "MessageCallbackPool"
POOL_KEYS = ("threadCount", "queueSize")


@dataclass(frozen=True)
class PoolSettings:
    """A dxlbootstrap thread pool: ``threadCount`` and ``queueSize``."""

    thread_count: int = 10
    queue_size: int = 1000


def parse(parser: configparser.RawConfigParser, name: str, base_dir: str | None) -> PoolSettings:
    section = Section(parser, name, POOL_KEYS, base_dir)
    return PoolSettings(thread_count=section.integer("threadCount", 10, minimum=1, maximum=1000),
                        queue_size=section.integer("queueSize", 1000, minimum=1))
