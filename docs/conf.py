"""Sphinx configuration for the dxlmispservice documentation (built by ``make docs`` with -W)."""
from __future__ import annotations

import re
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
_VERSION = re.search(r'^VERSION = "([^"]+)"', (_ROOT / "setup.py").read_text(encoding="utf-8"), re.M)

project = "MISP DXL Python Service"
author = "dxlmispservice contributors"
copyright = "dxlmispservice contributors"  # noqa: A001 (Sphinx's name)
release = _VERSION.group(1) if _VERSION else "0.0.0"
version = release

extensions: list[str] = []
templates_path: list[str] = []
exclude_patterns = ["_build"]
root_doc = "index"

html_theme = "alabaster"
html_theme_options = {
    "description": "MISP's REST API and change notifications on an OpenDXL fabric",
    "fixed_sidebar": True,
}
html_static_path: list[str] = []
highlight_language = "none"
