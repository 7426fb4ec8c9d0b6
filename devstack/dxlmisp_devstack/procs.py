"""Stop a child process by its PID: the one way every part of the dev stack and its helpers end a child."""
from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

STOP_TIMEOUT = 10.0


def stop_process(process: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT) -> None:
    """Stop a child by its PID: SIGTERM, wait ``timeout`` seconds, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.kill(process.pid, signal.SIGTERM)
        process.wait(timeout)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout)
