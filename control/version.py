"""Flotilla's version, as ``flotilla version`` reports it and pyproject.toml declares it.

A constant rather than a lookup in the installed package's metadata: importing
``importlib.metadata`` costs more than the rest of ``flotilla version --client``. A test
keeps it equal to pyproject.toml's.
"""

VERSION = "0.1.0"
