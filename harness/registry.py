"""The backend registry: built-in backends plus those other packages register under the
entry-point group `backprop_harness.backends` (name = "package.module:Class").

Importing this module imports no framework: classes are loaded on demand, and a backend's
framework is imported only when the backend is constructed.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import importlib.util
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

from harness.backend import Backend

ENTRY_POINT_GROUP = "backprop_harness.backends"

# One line per built-in backend. template_backend.py is deliberately not listed.
BUILTIN: dict[str, str] = {
    "numpy": "implementations.numpy_textbook:NumpyTextbook",
    "numpy_fast": "implementations.numpy_fast:NumpyFast",
    "torch": "implementations.torch_autograd:TorchAutograd",
    "jax": "implementations.jax_grad:JaxGrad",
}


@dataclass(frozen=True)
class Versions:
    """Where a backend comes from, for `harness backends`, meta.json and the report. A version
    is None where its distribution is not installed (or `framework` names no module)."""
    framework: str | None                 # the module the backend imports, e.g. "sklearn"
    framework_distribution: str | None    # the distribution that installs it: "scikit-learn"
    framework_version: str | None
    plugin_distribution: str | None       # plug-ins only: the distribution of the entry point
    plugin_version: str | None


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


def plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """name -> entry point, for every backend registered by another distribution (the first
    one of a name, as `registry` keeps it)."""
    found: dict[str, importlib.metadata.EntryPoint] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep)
    return found


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


def versions(name: str) -> Versions:
    """The framework and, for a plug-in, the distribution that registers backend `name`, with
    their installed versions, all read from the installed packages' metadata."""
    cls = backend_class(name)
    ep = None if name in BUILTIN else plugins().get(name)
    dist = ep.dist if ep is not None else None
    framework_dist = distribution_of(cls.framework) if cls.framework else None
    return Versions(cls.framework, framework_dist, _version(framework_dist),
                    dist.name if dist else None, dist.version if dist else None)


def distribution_of(module: str) -> str | None:
    """The installed distribution that provides importable `module` (sklearn -> scikit-learn),
    or None. Where several do, the one named like the module wins."""
    top = module.partition(".")[0]
    found = _module_distributions(tuple(sys.path)).get(top, [])
    return top if top in found else next(iter(found), None)


@functools.cache
def _module_distributions(path: tuple[str, ...]) -> Mapping[str, list[str]]:
    """importlib.metadata's module -> distributions map (a scan of every installed package,
    so kept), for one `sys.path`."""
    return importlib.metadata.packages_distributions()


def _version(dist: str | None) -> str | None:
    try:
        return importlib.metadata.version(dist) if dist else None
    except importlib.metadata.PackageNotFoundError:
        return None
