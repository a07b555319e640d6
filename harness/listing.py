"""`harness backends`: every registered backend, whether it can run here, and what it supports."""

from __future__ import annotations

from harness.registry import BUILTIN, Versions, backend_class, missing_framework, registry, versions
from harness.spec import ACTIVATIONS, DTYPES, LOSSES, OPTIMIZERS

# What a newcomer should take a built-in for: the one to read, and the one to time.
ROLES = {"numpy": "textbook: read it to learn the maths; the reference of every comparison",
         "numpy_fast": "tuned: the same maths rewritten for speed, proven equal to numpy"}


def origin(found: Versions, missing: str | None) -> str:
    """The framework with its installed version (or why it cannot run), then, for a plug-in,
    the distribution that registers it: "scikit-learn 1.9.1; plug-in backprop-harness-sklearn
    0.1.0"."""
    if missing:
        text = f"not installed ({found.framework})"
    elif found.framework is None:
        text = "-"
    else:
        text = (f"{found.framework_distribution or found.framework} "
                f"{found.framework_version or 'version unknown'}")
    if found.plugin_distribution:
        text += f"; plug-in {found.plugin_distribution} {found.plugin_version}"
    return text


def _subset(have: frozenset[str], every: tuple[str, ...]) -> str:
    if set(every) <= have:
        return "all"
    return ",".join(x for x in every if x in have) or "none"


def describe(name: str, target: str) -> list[str]:
    source = "built-in" if BUILTIN.get(name) == target else "plug-in"
    try:
        cls = backend_class(name)
    except Exception as err:  # a broken plug-in must not hide the others
        return [f"{name} ({source}, {target}): cannot be loaded: {type(err).__name__}: {err}"]
    caps = cls.capabilities
    status = origin(versions(name), missing_framework(name))
    role = f" - {ROLES[name]}" if source == "built-in" and name in ROLES else ""
    lines = [f"{name} ({source}, {target}): {status}{role}",
             f"    dtypes {_subset(caps.dtypes, DTYPES)}; devices {','.join(sorted(caps.devices))};"
             f" dropout {'yes' if caps.dropout else 'no'}",
             f"    activations {_subset(caps.activations, ACTIVATIONS)}; losses "
             f"{_subset(caps.losses, LOSSES)}; optimizers {_subset(caps.optimizers, OPTIMIZERS)}"]
    lines += [f"    cannot express {path} = {value!r}: {why}"
              for (path, value), why in caps.conventions.items()]
    lines += [f"    limit: {limit}" for limit in caps.limits]
    return lines


def list_backends() -> str:
    return "\n".join(line for name, target in registry().items()
                     for line in describe(name, target))
