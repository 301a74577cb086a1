"""Packaging for the Owlmetry push service: `pip install .`, console script `owlmetry`."""

import os
import re

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py


def package_version() -> str:
    """`__version__` of owlmetry/__init__.py, the one place the version is written; read as text
    so that building never imports the package (or its dependencies)."""
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "owlmetry", "__init__.py")) as f:
        return re.search(r'^__version__ = "([^"]+)"$', f.read(), re.MULTILINE)[1]


class BuildWithSchema(build_py):
    """schema.sql lives at the top of the repository; installed, it travels inside the package."""

    def run(self):
        super().run()
        target = os.path.join(self.build_lib, "owlmetry")
        self.mkpath(target)
        self.copy_file("schema.sql", os.path.join(target, "schema.sql"))


setup(
    name="owlmetry",
    version=package_version(),
    description="Self-hosted push service: a device-token registry with an APNs HTTP/2 fan-out",
    python_requires=">=3.11",
    packages=find_packages(include=["owlmetry", "owlmetry.*"]),
    package_data={
        "owlmetry.http": ["openapi.json"],  # the API reference GET /openapi.json serves
        "owlmetry.store": ["migrations/*.sql"],  # the schema's versions, for older databases
    },
    install_requires=[
        "aiohttp>=3.14",  # web.RequestKey
        "aiosmtplib>=5.0",  # login-code mail
        "aiosqlite>=0.20",
        "asyncpg>=0.30",  # create_pool(reset=...)
        "pyjwt>=2.8",
        "cryptography>=42",
        # owlmetry/h2client/h2_seam.py drives a few h2 internals for speed and checks each at
        # import; the upper bound keeps an untested h2 from being installed under it.
        "h2>=4.4,<4.5",
        "hpack>=4.2,<5",  # h2 4.4 requires hpack>=4.2 and hyperframe>=6.1
        "hyperframe>=6.1,<7",
        "orjson>=3.9",
        "prometheus-client>=0.20",  # GET /metrics
        "uvloop>=0.19; sys_platform != 'win32'",
    ],
    extras_require={
        # scripts/build-pyz (the single-file owlmetry.pyz); 1.0.8 is the version it is tested with.
        "build": ["shiv>=1.0.8"],
        # tests/test_pyz.py builds the pyz, so the test extras carry the build's too.
        # pytest.ini sets asyncio_default_fixture_loop_scope (pytest-asyncio 0.24, which needs
        # pytest 8.2); aiosmtpd before 1.4.3 fails STARTTLS on Python 3.11. .ci/run lints with
        # ruff, whose rules change between minor releases.
        "test": ["pytest>=8.2", "pytest-aiohttp>=1.0", "pytest-asyncio>=0.24", "shiv>=1.0.8",
                 "aiosmtpd>=1.4.3", "jsonschema>=4.18", "ruff>=0.17,<0.18"],
    },
    entry_points={"console_scripts": ["owlmetry = owlmetry.cli:main"]},
    cmdclass={"build_py": BuildWithSchema},
)
