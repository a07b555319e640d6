"""The harness's version, recorded in every results folder's meta.json. A module of its own
so that provenance can read it without importing the package's `__init__` (which imports the
Python API, and with it provenance)."""

__version__ = "0.1.0"
