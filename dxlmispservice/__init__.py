"""MISP DXL Python service: MISP's REST API and change notifications on an OpenDXL fabric."""
from __future__ import annotations

from dxlmispservice.names import SERVICE_TYPE

__version__ = "0.2.0"
__all__ = ["SERVICE_TYPE", "__version__"]
