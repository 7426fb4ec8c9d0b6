"""dxlmispservice: MISP on the OpenDXL fabric, on current PyMISP."""
from __future__ import annotations

from setuptools import find_packages, setup

VERSION = "0.2.0"

setup(
    name="dxlmispservice",
    version=VERSION,
    description="MISP DXL Python service: MISP's REST API and change notifications on an OpenDXL fabric",
    long_description=open("README.rst", encoding="utf-8").read(),
    long_description_content_type="text/x-rst",
    license="Apache-2.0",
    python_requires=">=3.10",
    # The dev stack (devstack/, distribution dxlmisp-devstack) is its own distribution: not in this wheel.
    packages=find_packages(include=["dxlmispservice", "dxlmispservice.*"]),
    package_data={"dxlmispservice": ["_config/app/*", "_config/sample/*"]},
    install_requires=[
        # compat/ reaches into private parts of these three: bounded by the next minor version (PyMISP: 2.6).
        "dxlclient>=5.7.0.1,<5.8",
        "dxlbootstrap>=0.2.2,<0.3",
        "pymisp>=2.5.34,<2.6",
        "pyzmq>=25",
        "requests>=2.31",
        "setuptools<81",  # dxlbootstrap imports pkg_resources
        # the stix2 and stix1 formats; 2026.7.8 is the newest that installs beside setuptools<81
        "misp-stix==2026.7.8",
    ],
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
    ],
)
