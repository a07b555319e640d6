"""`harness check`: one backend's gradients vs central finite differences, in float64."""

from __future__ import annotations

from harness.registry import backend_class, missing_framework
from harness.spec import Spec
from harness.spec.schema import SpecError
from harness.verify import oracle
from harness.verify import tolerances as tol


def check_variant(spec: Spec, name: str) -> list[oracle.TensorCheck]:
    """Gradient check at the initial parameters on the first training batch (its dropout
    masks included, so both sides of every difference see the same network)."""
    cls = backend_class(name)
    reason = missing_framework(name) or cls.unsupported(spec)
    if reason:
        raise SpecError("--backend", reason)
    return oracle.check_at_start(cls, spec)


STATUS_TEXT = {"ok": "ok", "fail": "FAIL", "unresolved": "UNRESOLVED"}


def check_spec(specs: list[Spec], name: str) -> int:
    """Print one line per tensor with its error, resolution and tolerance. Exit status 0 when
    every tensor is ok, 1 when one fails, 3 when none fails but one could not be resolved."""
    statuses = []
    for spec in specs:
        label = f" [{spec.variant}]" if spec.variant else ""
        print(f"{spec.name}{label}: {name} gradients vs finite differences (float64, "
              f"Richardson-extrapolated, tolerance {tol.FD_RTOL:g} relative or the check's "
              f"resolution, unresolved beyond {tol.FD_RTOL_MAX:g})")
        print(f"  {'tensor':<8}{'method':<13}{'step':>9}{'max rel err':>13}{'resolution':>12}"
              f"{'tolerance':>11}")
        for c in check_variant(spec, name):
            statuses.append(c.status)
            print(f"  {c.parameter:<8}{c.method:<13}{c.step:>9.1e}{c.max_rel_err:>13.2e}"
                  f"{c.resolution:>12.1e}{c.tolerance:>11.1e}  {STATUS_TEXT[c.status]}")
    if "fail" in statuses:
        print("gradient check FAILED")
        return 1
    if "unresolved" in statuses:
        print("gradient check UNRESOLVED: finite differences cannot resolve a tensor here")
        return 3
    print("gradients agree with finite differences")
    return 0
