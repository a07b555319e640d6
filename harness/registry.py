"""The backend registry: built-in backends plus those other packages register under the
entry-point group `backprop_harness.backends` (name = "package.module:Class").

Importing this module imports no framework: classes are loaded on demand, and a backend's
framework is imported only when the backend is constructed.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import warnings

from harness.backend import Backend

ENTRY_POINT_GROUP = "backprop_harness.backends"

# One line per built-in backend. template_backend.py is deliberately not listed.
BUILTIN: dict[str, str] = {
    "numpy": "implementations.numpy_textbook:NumpyTextbook",
    "numpy_fast": "implementations.numpy_fast:NumpyFast",
    "torch": "implementations.torch_autograd:TorchAutograd",
    "jax": "implementations.jax_grad:JaxGrad",
}


def registry() -> dict[str, str]:
    """name -> "module:Class". Built-ins win a name clash; the plug-in is dropped with a warning."""
    names = dict(BUILTIN)
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in names:
            if names[ep.name] != ep.value:
                warnings.warn(f"backend {ep.name!r} from entry point {ep.value} ignored: the "
                              f"name is already taken by {names[ep.name]}", stacklevel=2)
            continue
        names[ep.name] = ep.value
    return names


def backend_class(name: str) -> type[Backend]:
    """The class registered under `name` (imports its module, not its framework)."""
    names = registry()
    if name not in names:
        raise KeyError(f"unknown backend {name!r} (allowed: {', '.join(names)})")
    module, _, cls = names[name].partition(":")
    return getattr(importlib.import_module(module), cls)


def missing_framework(backend: str | type[Backend]) -> str | None:
    """Why a backend (a registered name or a class) cannot be constructed here (its framework
    is not installed), or None."""
    cls = backend_class(backend) if isinstance(backend, str) else backend
    if not cls.framework:
        return None
    try:
        found = importlib.util.find_spec(cls.framework) is not None
    except (ImportError, ValueError):      # a module blocked in sys.modules, a broken install
        found = False
    return None if found else f"framework {cls.framework!r} is not installed"
