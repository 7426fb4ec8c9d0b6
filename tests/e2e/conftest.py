"""End-to-end tests run over the dev stack's pytest plugin (``dxlmisp_devstack.pytest_plugin``).

The plugin's fixtures are opt-in; here every end-to-end test takes an empty dev MISP (``misp_clean``) and
the session's stack (``devstack``), its requester (``dxl_requester``) and ``misp``, PyMISP straight on the
dev MISP server (admin key), the judge of what MISP holds. The feed's state file is left to the feed tests.
"""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _empty_misp(misp_clean: None) -> None:
    """Every end-to-end test starts with an empty dev MISP server."""
