"""Fabric fixtures for the dev stack's own tests: one PKI and one mosquitto per test module."""
from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from dxlclient.client import DxlClient
from dxlclient.client_config import DxlClientConfig

from dxlmisp_devstack.fabric import registry
from dxlmisp_devstack.fabric.broker import Broker, stop_process
from dxlmisp_devstack.fabric.config import write_dxlclient_config
from dxlmisp_devstack.fabric.pki import Pki, make_pki

FABRIC_ROLES = ("service", "requester", "registry", "listener")


@pytest.fixture(scope="module")
def fabric_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway PKI with a client certificate for each of FABRIC_ROLES."""
    return make_pki(tmp_path_factory.mktemp("pki"), FABRIC_ROLES)


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, fabric_pki: Pki) -> Iterator[Broker]:
    """A running mosquitto with the TLS listener, stopped by PID after the module."""
    running = Broker(tmp_path_factory.mktemp("broker"), fabric_pki)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def dxl_config(tmp_path_factory: pytest.TempPathFactory, fabric_pki: Pki, broker: Broker) -> Callable[[str], Path]:
    """role -> the path of a dxlclient.config for that role's certificate and the module's broker."""
    directory = tmp_path_factory.mktemp("dxlconfig")
    written: dict[str, Path] = {}

    def config_for(role: str) -> Path:
        if role not in written:
            written[role] = write_dxlclient_config(directory / f"{role}.config", fabric_pki, role, broker.port)
        return written[role]

    return config_for


@pytest.fixture(scope="module")
def connect_client(dxl_config: Callable[[str], Path]) -> Iterator[Callable[[str], DxlClient]]:
    """role -> a connected DxlClient; every client made is destroyed after the module."""
    clients: list[DxlClient] = []

    def connect(role: str) -> DxlClient:
        config = DxlClientConfig.create_dxl_config_from_file(str(dxl_config(role)))
        config.connect_retries = 3
        client = DxlClient(config)
        clients.append(client)
        client.connect()
        return client

    try:
        yield connect
    finally:
        # dxlclient's destroy waits out its network loop's 1 s select: destroy them side by side.
        threads = [threading.Thread(target=client.destroy) for client in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)


@pytest.fixture(scope="module")
def registry_process(dxl_config: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    subprocess.Popen[bytes]
]:
    """The registry stand-in as a child process, ready, and stopped by PID after the module."""
    log = tmp_path_factory.mktemp("registry") / "registry.stderr"
    process = registry.spawn(dxl_config("registry"), stderr_path=log)
    try:
        yield process
    finally:
        stop_process(process)
        if process.stdout is not None:
            process.stdout.close()
