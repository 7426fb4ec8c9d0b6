"""``python -m dxlmispservice CONFIGDIR``: logging, signals, and the service until SIGTERM or SIGINT.

Logging is configured from ``CONFIGDIR/logging.config`` when it exists (INFO to stdout otherwise). Missing
config files are copied from the package's defaults when the service starts. Exit status: 0 after a clean
stop, 2 for a configuration error (the message names the section and key), 1 for any other failure to
start.
"""
from __future__ import annotations

import argparse
import configparser
import logging
import logging.config
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

from dxlmispservice.app import MispService
from dxlmispservice.compat import dxlbootstrap
from dxlmispservice.errors import ConfigError

logger = logging.getLogger("dxlmispservice")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_CONFIG = 2


def configure_logging(config_dir: str) -> None:
    """``logging.config`` from the config directory, or INFO on stdout."""
    path = os.path.join(config_dir, MispService.LOGGING_CONFIG_FILE)
    if os.access(path, os.R_OK):
        logging.config.fileConfig(path, disable_existing_loggers=False)
    else:  # the package's logging.config, in short
        logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                            format="%(asctime)s %(name)-12s %(levelname)-8s %(message)s")
        logging.getLogger("dxlclient").setLevel(logging.ERROR)
        logging.getLogger("pymisp").setLevel(logging.CRITICAL)  # the service logs MISP's errors itself


class StopRequested(Exception):
    """SIGTERM or SIGINT arrived while the service was still starting (connecting, registering)."""


class Stopper:
    """The signal handler: sets :attr:`event`; while :attr:`starting`, also aborts the start."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.starting = True

    def __call__(self, signum: int, frame: Any) -> None:
        self.event.set()
        if self.starting:
            self.starting = False
            raise StopRequested(signal.Signals(signum).name)

    def install(self) -> Callable[[], None]:
        """Handle SIGTERM and SIGINT; returns a function that puts the old handlers back."""
        previous = {sig: signal.signal(sig, self) for sig in (signal.SIGTERM, signal.SIGINT)}

        def restore() -> None:
            for sig, old in previous.items():
                signal.signal(sig, old)

        return restore


def config_error_text(exc: configparser.Error) -> str:
    """What is wrong in a config file, by file, line, section and key, never quoting a line or a value
    (configparser quotes them, and one may hold the API key)."""
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"{exc.source} line {exc.lineno} comes before any [section] header"
    if isinstance(exc, configparser.ParsingError):
        lines = ", ".join(str(lineno) for lineno, _ in exc.errors)
        return (f"{exc.source}: line(s) {lines} are neither 'key = value' nor a [section] header "
                "(their text is not shown: it may hold a secret)")
    if isinstance(exc, configparser.InterpolationError):
        return (f"the value of '{exc.option}' in [{exc.section}] has a '%' that configparser cannot read; "
                "write '%%' for a '%' (the value is not shown: it may hold a secret)")
    return " ".join(str(exc).split())  # duplicate sections and keys: names and line numbers only


def serve(app: MispService, stopper: Stopper) -> int:
    """Run ``app`` until ``stopper`` is triggered; always destroy it; return the exit status."""
    try:
        app.run()
        stopper.starting = False
        logger.info("The MISP DXL service is running; stop it with SIGTERM or SIGINT")
        stopper.event.wait()
        logger.info("Stopping")
        return EXIT_OK
    except StopRequested as exc:
        logger.info("%s while starting: stopping", exc)
        return EXIT_OK
    except ConfigError as exc:
        logger.error("Configuration error in %s: %s", dxlbootstrap.app_config_path(app), exc.message)
        return EXIT_CONFIG
    except configparser.Error as exc:
        logger.error("Configuration file error: %s", config_error_text(exc))
        return EXIT_CONFIG
    except Exception:
        logger.exception("The MISP DXL service failed")
        return EXIT_FAILED
    finally:
        stopper.starting = False
        app.destroy()
        logger.info("Stopped")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dxlmispservice",
                                     description="The MISP DXL service: MISP's REST API on a DXL fabric.")
    parser.add_argument("config_dir", help="the directory holding dxlclient.config, dxlmispservice.config "
                                           "and logging.config (missing ones are created from the defaults)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.config_dir):
        print(f"python -m dxlmispservice: the configuration directory {args.config_dir!r} does not exist; "
              "create it (with at least dxlclient.config) or name an existing one", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(args.config_dir)
    stopper = Stopper()
    restore = stopper.install()
    try:
        return serve(MispService(args.config_dir), stopper)
    finally:
        restore()


if __name__ == "__main__":
    sys.exit(main())
