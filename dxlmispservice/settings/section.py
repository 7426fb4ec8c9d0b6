"""Typed, checked access to one INI section, and secrets given literally or as ``env:NAME``.

Every error a :class:`Section` raises is a ConfigError that names the section and the key and says what is
accepted; a secret's value never appears in one.
"""
from __future__ import annotations

import configparser
import os
from collections.abc import Mapping

from dxlmispservice.errors import ConfigError

ENV_PREFIX = "env:"


class Section:
    """Typed, checked access to one section; every error names the section, the key and what is accepted."""

    def __init__(self, parser: configparser.RawConfigParser, name: str, keys: tuple[str, ...],
                 base_dir: str | None) -> None:
        self.name = name
        self.base_dir = base_dir
        self._values: dict[str, str] = {}
        if parser.has_section(name):
            defaults = set(parser.defaults())
            accepted = {k.lower(): k for k in keys}
            for option in parser.options(name):
                if option in defaults:
                    continue
                if option not in accepted:
                    raise ConfigError(f"[{name}] {option}: unknown key; accepted keys: {', '.join(keys)}")
                self._values[accepted[option]] = parser.get(name, option, raw=True).strip()

    def error(self, key: str, problem: str, accepted: str) -> ConfigError:
        """A ConfigError naming this section and ``key``."""
        return ConfigError(f"[{self.name}] {key}: {problem}; accepted: {accepted}")

    def text(self, key: str, default: str | None = None) -> str | None:
        """The value, or ``default`` when the key is absent or empty."""
        value = self._values.get(key, "")
        return value if value else default

    def integer(self, key: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        """An integer within ``[minimum, maximum]``."""
        accepted = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
        value = self.text(key)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not an integer", accepted) from None
        if number < minimum or (maximum is not None and number > maximum):
            raise self.error(key, f"{number} is out of range", accepted)
        return number

    def number(self, key: str, default: float, *, minimum: float) -> float:
        """A number of seconds (or other unit), at least ``minimum``."""
        value = self.text(key)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            raise self.error(key, f"{value!r} is not a number", f"a number >= {minimum:g}") from None
        if not number >= minimum or number == float("inf"):
            raise self.error(key, f"{value} is out of range", f"a number >= {minimum:g}")
        return number

    def boolean(self, key: str, default: bool) -> bool:
        """``true``/``false`` and the other spellings ConfigParser knows."""
        value = self.text(key)
        if value is None:
            return default
        states = configparser.RawConfigParser.BOOLEAN_STATES
        if value.lower() not in states:
            raise self.error(key, f"{value!r} is not a boolean", "true, false, yes, no, on, off, 1, 0")
        return states[value.lower()]

    def listing(self, key: str) -> tuple[str, ...]:
        """A comma-separated list: blanks dropped, duplicates dropped, order kept."""
        value = self.text(key) or ""
        items = (item.strip() for item in value.split(","))
        return tuple(dict.fromkeys(item for item in items if item))

    def path(self, key: str, *, must_exist: bool = True) -> str | None:
        """A file path; a relative one is taken from the config directory when it is found there."""
        value = self.text(key)
        if value is None:
            return None
        path = os.path.expanduser(value)
        if not os.path.isabs(path) and self.base_dir is not None:
            candidate = os.path.join(self.base_dir, path)
            if must_exist is False or os.path.exists(candidate) or not os.path.exists(path):
                path = candidate
        if must_exist and not os.path.isfile(path):
            raise self.error(key, f"no readable file at {path!r}",
                             "the path of an existing file (absolute, or relative to the config directory)")
        return os.path.abspath(path)


def secret(section: Section, key: str, environ: Mapping[str, str], *, required: bool) -> str | None:
    """A secret given literally or as ``env:NAME``; error messages never show the value."""
    value = section.text(key)
    if value is None:
        if required:
            raise section.error(key, "missing", f"the MISP API key, or {ENV_PREFIX}NAME to read it from the "
                                "environment variable NAME")
        return None
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX):].strip()
        if not name:
            raise section.error(key, f"{ENV_PREFIX} names no variable", f"{ENV_PREFIX}NAME")
        secret = environ.get(name, "").strip()
        if not secret:
            raise section.error(key, f"the environment variable {name} is not set or empty",
                                f"{ENV_PREFIX}NAME naming a set variable, or the value itself")
        return secret
    return value
