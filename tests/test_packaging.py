"""The two distributions as built wheels: the product without dev-stack or testing code, the dev stack with
its plugin entry point; every subpackage of each imports from its wheel, outside the checkout."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[1]

IMPORT_ALL = """
import importlib, json, pkgutil, sys
top = importlib.import_module(sys.argv[1])
names = [top.__name__] + [m.name for m in pkgutil.walk_packages(top.__path__, top.__name__ + ".")]
print(json.dumps({name: importlib.import_module(name).__file__ for name in names}))
"""


def _build(source: Path, parts: tuple[str, ...], out: Path, name: str) -> Path:
    """Copy ``parts`` of ``source`` to the fresh directory ``out/name`` and build its wheel into ``out``."""
    tree = out / name
    tree.mkdir()
    for part in parts:
        copy = shutil.copytree if (source / part).is_dir() else shutil.copy2
        copy(source / part, tree / part, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (source / part).is_dir() else {}))  # type: ignore[operator]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(out), str(tree)], check=True, capture_output=True, timeout=300)
    return tree


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The built wheels of dxlmispservice and dxlmisp-devstack."""
    out = tmp_path_factory.mktemp("wheels")
    _build(CHECKOUT, ("setup.py", "README.rst", "dxlmispservice"), out, "product-source")
    _build(CHECKOUT / "devstack", ("setup.py", "README.rst", "dxlmisp_devstack"), out, "devstack-source")
    found = {path.name.split("-")[0]: path for path in out.glob("*.whl")}
    yield {"product": found["dxlmispservice"], "devstack": found["dxlmisp_devstack"]}


def _import_all(wheel: Path, top: str, tmp_path: Path) -> dict[str, str]:
    target = tmp_path / wheel.stem
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    result = subprocess.run([sys.executable, "-c", IMPORT_ALL, top], cwd=tmp_path, capture_output=True, text=True,
                            env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert result.returncode == 0, result.stderr
    files: dict[str, str] = json.loads(result.stdout.strip().splitlines()[-1])
    assert all(Path(f).is_relative_to(target) for f in files.values()), files
    return files


def test_product_wheel_has_no_dev_stack_or_testing_code(wheels: dict[str, Path]) -> None:
    """dxlmispservice's wheel holds the product package and its config templates, and nothing else."""
    names = zipfile.ZipFile(wheels["product"]).namelist()
    assert all(n.startswith(("dxlmispservice/", "dxlmispservice-")) for n in names), names
    assert not [n for n in names if "testing" in n or "devstack" in n or "pytest" in n]
    assert "dxlmispservice/_config/app/dxlmispservice.config" in names


def test_every_product_subpackage_imports_from_the_wheel(wheels: dict[str, Path], tmp_path: Path) -> None:
    """Outside the checkout, every module of the product imports from the unpacked wheel."""
    files = _import_all(wheels["product"], "dxlmispservice", tmp_path)
    for package in ("api", "events", "settings", "formats", "inbound", "client", "compat"):
        assert f"dxlmispservice.{package}" in files


def test_devstack_wheel_ships_the_plugin_and_needs_the_new_service(wheels: dict[str, Path], tmp_path: Path) -> None:
    """dxlmisp-devstack's wheel holds only its package, registers the pytest11 plugin, needs dxlmispservice>=0.2.0."""
    archive = zipfile.ZipFile(wheels["devstack"])
    names = archive.namelist()
    assert all(n.startswith(("dxlmisp_devstack/", "dxlmisp_devstack-")) for n in names), names
    info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "[pytest11]\ndxlmisp_devstack = dxlmisp_devstack.pytest_plugin" in archive.read(info).decode()
    metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "Requires-Dist: dxlmispservice>=0.2.0" in metadata
    files = _import_all(wheels["devstack"], "dxlmisp_devstack", tmp_path)
    assert {"dxlmisp_devstack.testing", "dxlmisp_devstack.pytest_plugin", "dxlmisp_devstack.misp.server"} <= set(files)


def test_the_makefile_waits_for_the_dpkg_lock() -> None:
    """Every apt-get call in the Makefile waits for the dpkg lock instead of failing at once."""
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    calls = [line for line in makefile.splitlines() if "apt-get" in line and not line.lstrip().startswith("#")]
    assert calls and all(line.count("apt-get") == line.count("apt-get -o DPkg::Lock::Timeout=300") for line in calls)
