"""Shared set-up for the samples: logging, and the path of the DXL client configuration.

A sample reads its ``dxlclient.config`` from the file named by the environment variable
``DXLCLIENT_CONFIG`` when it is set, and otherwise from ``sample/dxlclient.config`` next to this file.
On the dev stack, point ``DXLCLIENT_CONFIG`` at the ``dxlclient_config`` named in ``devstack.json``.
"""
from __future__ import annotations

import logging
import os

from dxlclient.client_config import DxlClientConfig

#: The environment variable that names a dxlclient.config file to use instead of the default one.
CONFIG_ENV_VAR = "DXLCLIENT_CONFIG"

#: The default DXL client configuration: ``dxlclient.config`` in the samples directory.
DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dxlclient.config")

#: The file the samples load their DXL client configuration from.
CONFIG_FILE = os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE

# Log warnings and errors from dxlclient, and the samples' own messages, to the console.
logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s - %(levelname)s - %(message)s")
logger = logging.getLogger("sample")
logger.setLevel(logging.INFO)


def load_client_config() -> DxlClientConfig:
    """Return the DXL client configuration read from :data:`CONFIG_FILE`."""
    if not os.path.isfile(CONFIG_FILE):
        raise SystemExit(
            "DXL client configuration not found: {} (set {} or fill in {})".format(
                CONFIG_FILE, CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE))
    logger.info("Loading DXL client configuration from %s", CONFIG_FILE)
    return DxlClientConfig.create_dxl_config_from_file(CONFIG_FILE)
