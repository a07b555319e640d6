"""backprop-harness: one network spec, several implementations, proven to agree.

Importing this package needs NumPy alone; frameworks are imported by the backends that use them.
"""

__version__ = "0.1.0"
