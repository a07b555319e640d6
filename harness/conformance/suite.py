"""The backend conformance suite, as data: named cases, each a function of a backend name.

The cases themselves are in harness/conformance/cases.py. A case returns a one-line detail
when the backend keeps the contract of harness/backend.py, raises AssertionError (with the
numbers) when it does not, and raises Skip when it cannot run here: framework missing, no
spec within the backend's declared capabilities, or a comparison of the reference with
itself. A skip is reported with its reason and never counts as a pass.
`harness conformance NAME` runs them all; tests/test_conformance.py runs the
same functions for every registered backend.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from harness.conformance import candidates, image_cases
from harness.conformance.cases import (
    REFERENCE,
    Skip,
    deterministic,
    evaluate_consistency,
    evaluate_vs_reference,
    frozen_bias,
    grad_shapes,
    grads_vs_finite_differences,
    grads_vs_reference,
    loss_and_grads_pure,
    optimizer_case,
    params_roundtrip,
    state_roundtrip,
    step_vs_reference,
    timing_smoke,
    trace_consistency,
    trace_vs_reference,
    trajectory_vs_reference,
)
from harness.registry import missing_framework
from harness.spec import DTYPES


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    detail: str
    skipped: bool = False

    @property
    def status(self) -> str:
        return "skip" if self.skipped else "ok" if self.passed else "FAIL"


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[str], str]     # backend name -> detail; raises AssertionError or Skip


CASES: tuple[Case, ...] = (
    *(Case(f"params_roundtrip_{d}", partial(params_roundtrip, dtype=d)) for d in DTYPES),
    Case("loss_and_grads_pure", loss_and_grads_pure),
    *(Case(f"grad_shapes_{d}", partial(grad_shapes, dtype=d)) for d in DTYPES),
    Case("grads_vs_finite_differences", grads_vs_finite_differences),
    Case(f"grads_vs_{REFERENCE}", grads_vs_reference),
    Case(f"grads_vs_{REFERENCE}_float32", partial(grads_vs_reference, dtype="float32")),
    Case(f"step_vs_{REFERENCE}_float32", partial(step_vs_reference, dtype="float32")),
    Case("trace_consistency", trace_consistency),
    Case(f"trace_vs_{REFERENCE}", trace_vs_reference),
    Case(f"trace_vs_{REFERENCE}_float32", partial(trace_vs_reference, dtype="float32")),
    *(Case(f"optimizer_{c}", partial(optimizer_case, case=c)) for c in candidates.CONVENTIONS),
    *(Case(f"state_roundtrip_{c}", partial(state_roundtrip, case=c))
      for c in candidates.STATE_CASES),
    Case(f"trajectory_vs_{REFERENCE}", trajectory_vs_reference),
    Case(f"trajectory_vs_{REFERENCE}_float32", partial(trajectory_vs_reference,
                                                       dtype="float32")),
    Case("evaluate_consistency", evaluate_consistency),
    Case(f"evaluate_vs_{REFERENCE}", evaluate_vs_reference),
    Case("deterministic", deterministic),
    Case("frozen_bias", frozen_bias),
    Case("timing_smoke", timing_smoke),
    Case("conv_layout_roundtrip", image_cases.conv_layout_roundtrip),
    *(Case(f"conv_padding_{d}", partial(image_cases.conv_padding, dtype=d)) for d in DTYPES),
    *(Case(f"pooling_{d}", partial(image_cases.pooling, dtype=d)) for d in DTYPES),
    *(Case(f"image_trace_{d}", partial(image_cases.image_trace, dtype=d)) for d in DTYPES),
)


def run_case(case: Case, name: str) -> CaseResult:
    """One case as a result: a failure or an unexpected error is a FAIL, never a crash."""
    try:
        return CaseResult(case.name, True, case.run(name))
    except Skip as why:
        return CaseResult(case.name, False, str(why), skipped=True)
    except AssertionError as err:
        return CaseResult(case.name, False, str(err) or "assertion failed")
    except Exception as err:  # a broken backend fails this case; the others still run
        return CaseResult(case.name, False, f"{type(err).__name__}: {err}")


def _cannot_run(name: str) -> str | None:
    """Why backend `name` cannot be run here at all (unknown, unloadable, no framework)."""
    try:
        return missing_framework(name)
    except KeyError as err:
        return str(err.args[0])
    except (ImportError, AttributeError) as err:
        return f"backend {name!r} cannot be loaded: {type(err).__name__}: {err}"


def run_conformance(name: str) -> int:
    """Every case on backend `name`, one line each as it finishes, then a summary line.
    Returns the exit code: 0 nothing failed, 1 a case failed, 2 the backend cannot run."""
    why = _cannot_run(name)
    if why:
        print(f"harness: error: {why}", file=sys.stderr)
        return 2
    width = max(len(case.name) for case in CASES)
    counts: Counter[str] = Counter()
    for case in CASES:
        result = run_case(case, name)
        counts[result.status] += 1
        print(f"{result.status:<4}  {result.name:<{width}}  {result.detail}", flush=True)
    verdict = "does NOT conform" if counts["FAIL"] else "conforms"
    print(f"{name} {verdict}: {counts['ok']} ok, {counts['FAIL']} failed, "
          f"{counts['skip']} skipped")
    return 1 if counts["FAIL"] else 0
