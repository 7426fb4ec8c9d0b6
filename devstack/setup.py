"""dxlmisp-devstack: a throwaway DXL fabric and a MISP-compatible server on one machine, for dxlmispservice."""
from __future__ import annotations

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent

setup(
    name="dxlmisp-devstack",
    version="0.2.0",
    description="The dxlmispservice dev stack: mosquitto over TLS, a DXL registry stand-in, a dev MISP server, "
                "and a pytest plugin with fixtures that start them",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["dxlmisp_devstack", "dxlmisp_devstack.*"]),
    install_requires=[
        "dxlmispservice>=0.2.0",  # 0.1.5 on PyPI is the 2019 service, dead since PyMISP 2.4.120
        "cryptography>=42",
        "Werkzeug>=3",
        "pyzmq>=25",
        "requests>=2.31",
    ],
    entry_points={"pytest11": ["dxlmisp_devstack = dxlmisp_devstack.pytest_plugin"]},
    classifiers=[
        "Framework :: Pytest",
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
    ],
)
