"""Write the format examples of docs/formats.rst: each format's document of ``event.json``, as the code
makes it today. Run ``.venv/bin/python docs/examples/regenerate.py`` after a change to a format;
tests/test_docs.py checks that the files are what the code produces."""
from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from dxlmispservice.formats import FORMAT_NAMES, export  # noqa: E402
from dxlmispservice.settings.formats import FormatSettings  # noqa: E402

#: The settings the examples are made with: the defaults, on a MISP at https://misp.example.
SETTINGS = FormatSettings(event_url="https://misp.example/events/view/{uuid}")
SUFFIX = {"stix1": "xml"}


def render(name: str) -> str:
    """The example file's text for format ``name``."""
    event = json.loads((HERE / "event.json").read_text())
    result = export(name, event, SETTINGS)
    if isinstance(result.document, str):
        return result.document if result.document.endswith("\n") else result.document + "\n"
    return json.dumps(result.document, indent=2, sort_keys=False) + "\n"


def path(name: str) -> Path:
    return HERE / f"format-{name}.{SUFFIX.get(name, 'json')}"


if __name__ == "__main__":
    for name in FORMAT_NAMES:
        path(name).write_text(render(name))
        print("wrote", path(name))
