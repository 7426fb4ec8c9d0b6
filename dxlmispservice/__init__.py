"""MISP DXL Python service: MISP's REST API and change notifications on an OpenDXL fabric."""
from __future__ import annotations

__version__ = "0.2.0"
SERVICE_TYPE = "/opendxl-misp/service/misp-api"
