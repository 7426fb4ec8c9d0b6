"""Shared set-up for the samples: logging, the path of the DXL client configuration, and plain failures.

A sample reads its ``dxlclient.config`` from the file named by the environment variable
``DXLCLIENT_CONFIG`` when it is set, and otherwise from ``sample/dxlclient.config`` next to this file.
On the dev stack, point ``DXLCLIENT_CONFIG`` at the ``dxlclient_config`` named in ``devstack.json``.

A sample that fails (no configuration, a broker it cannot reach, no answer in time) prints one line that
says what went wrong and exits with status 1, never a traceback: importing this module installs
:func:`one_line_failure` as ``sys.excepthook``.
"""
from __future__ import annotations

import logging
import os
import sys
from types import TracebackType
from typing import Optional, Type

from dxlclient.client_config import DxlClientConfig
from dxlclient.exceptions import DxlException, WaitTimeoutException

#: The environment variable that names a dxlclient.config file to use instead of the default one.
CONFIG_ENV_VAR = "DXLCLIENT_CONFIG"

#: The default DXL client configuration: ``dxlclient.config`` in the samples directory.
DEFAULT_CONFIG_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dxlclient.config")

#: The file the samples load their DXL client configuration from.
CONFIG_FILE = os.environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE

# Log the samples' own messages to the console.
logging.basicConfig(level=logging.ERROR, format="%(asctime)s %(name)s - %(levelname)s - %(message)s")
logger = logging.getLogger("sample")
logger.setLevel(logging.INFO)
# dxlclient logs every failed try to reach a broker; a sample that gives up says why in one line instead.
logging.getLogger("dxlclient").setLevel(logging.CRITICAL)

#: How many times a sample tries to reach a broker before it gives up (dxlclient's default: for ever).
CONNECT_RETRIES = 3


def describe_failure(error: BaseException) -> str:
    """One line saying what went wrong, for a person running a sample."""
    if isinstance(error, WaitTimeoutException):
        return ("no answer from the MISP DXL service in time: is it running, connected to this fabric, "
                "and is the API name in its apiNames? ({})".format(error))
    if isinstance(error, DxlException):
        return "DXL fabric: {} (check the brokers and certificates in {})".format(error, CONFIG_FILE)
    if isinstance(error, OSError) and error.filename:
        return "cannot read {}: {} (check {})".format(error.filename, error.strerror, CONFIG_FILE)
    text = " ".join(str(error).split()) or "no details"
    return "{}: {}".format(type(error).__name__, text)


def one_line_failure(kind: Type[BaseException], error: BaseException,
                     trace: Optional[TracebackType]) -> None:
    """``sys.excepthook``: one line on stderr (Python then exits with status 1); Ctrl-C stays quiet."""
    if issubclass(kind, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return
    print("{}: error: {}".format(os.path.basename(sys.argv[0]) or "sample", describe_failure(error)),
          file=sys.stderr)


sys.excepthook = one_line_failure


def load_client_config() -> DxlClientConfig:
    """Return the DXL client configuration read from :data:`CONFIG_FILE`."""
    if not os.path.isfile(CONFIG_FILE):
        raise SystemExit(
            "DXL client configuration not found: {} (set {} or fill in {})".format(
                CONFIG_FILE, CONFIG_ENV_VAR, DEFAULT_CONFIG_FILE))
    logger.info("Loading DXL client configuration from %s", CONFIG_FILE)
    config = DxlClientConfig.create_dxl_config_from_file(CONFIG_FILE)
    config.connect_retries = CONNECT_RETRIES
    return config
