"""backprop-harness: one network spec, several implementations, proven to agree.

The Python API (docs/python-api.md): `harness.run(spec, backends, dtype, out)` trains and
compares, `harness.load(folder)` reads a results folder back; both return a `Result`. Importing
the package needs NumPy and pandas, never a framework: a backend imports its framework when it
is constructed.
"""

from harness.api import Result, ResultsError, SpecError, load, run
from harness.version import __version__

__all__ = ["Result", "ResultsError", "SpecError", "__version__", "load", "run"]
