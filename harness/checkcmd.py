"""`harness check`: one backend's gradients vs central finite differences, in float64."""

from __future__ import annotations

from harness import gradcheck
from harness import tolerances as tol
from harness.schema import SpecError
from harness.spec import Spec
from implementations import backend_class, missing_framework


def check_variant(spec: Spec, name: str) -> list[gradcheck.TensorCheck]:
    """Gradient check at the initial parameters on the first training batch (its dropout
    masks included, so both sides of every difference see the same network)."""
    cls = backend_class(name)
    reason = missing_framework(name) or cls.unsupported(spec)
    if reason:
        raise SpecError("--backend", reason)
    return gradcheck.check_at_start(cls, spec)


def check_spec(specs: list[Spec], name: str) -> int:
    """Print one line per tensor; exit status 0 when all are within FD_RTOL."""
    ok = True
    for spec in specs:
        label = f" [{spec.variant}]" if spec.variant else ""
        print(f"{spec.name}{label}: {name} gradients vs finite differences (float64, "
              f"step {tol.FD_STEP:g}, tolerance {tol.FD_RTOL:g} relative)")
        print(f"  {'tensor':<8}{'method':<13}{'max abs err':>13}{'max rel err':>13}")
        for c in check_variant(spec, name):
            passed = c.max_rel_err <= tol.FD_RTOL
            ok &= passed
            print(f"  {c.parameter:<8}{c.method:<13}{c.max_abs_err:>13.2e}{c.max_rel_err:>13.2e}"
                  f"  {'ok' if passed else 'FAIL'}")
    print("gradients agree with finite differences" if ok else "gradient check FAILED")
    return 0 if ok else 1
