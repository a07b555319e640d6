"""Running a catalogued bug next to the textbook and scoring the diagnosis it gets: per bug,
detected / phase / tensor / step / convention right, and the rates over the catalogue that
the tests hold to their thresholds (and conftest.py prints in the terminal summary)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import harness
from tests.bug_catalogue.bugs import Bug, Expected

REFERENCE = "numpy"
# The thresholds: every bug must be caught at all, and every convention swap named. Where a
# disagreement starts (phase, tensor, step) and the convention named for the rest may miss
# on a few bugs (an ambiguous first tensor is a diagnosis limit, not a failure to catch).
DETECTED_RATE = 1.0
LOCATED_RATE = 0.95
SWAP_CONVENTION_RATE = 1.0
CONVENTION_RATE = 0.95
FIELDS = ("phase", "tensor", "step", "convention")


@dataclass(frozen=True)
class Outcome:
    """What the harness said about one bug."""
    name: str
    expected: Expected
    verdict: str
    diagnosis: dict | None                # the summary's diagnosis of this backend
    seconds: float = 0.0

    def got(self, key: str) -> object:
        return (self.diagnosis or {}).get(key)

    @property
    def detected(self) -> bool:
        return self.verdict == "disagree" and self.got("phase") is not None

    def right(self, key: str) -> bool:
        return self.detected and self.got(key) == getattr(self.expected, key)

    @property
    def located(self) -> bool:
        return all(self.right(key) for key in ("phase", "tensor", "step"))

    @property
    def convention_right(self) -> bool:
        return self.detected and self.got("convention") == self.expected.convention

    @property
    def swap(self) -> bool:
        return self.expected.convention is not None

    @property
    def miss(self) -> bool:
        return not (self.located and self.convention_right)


@dataclass(frozen=True)
class Rates:
    detected: float
    located: float
    swap_conventions: float               # over the convention swaps only
    conventions: float                    # over every bug (None expected for the others)


def run_bug(bug: type[Bug]) -> Outcome:
    """The bug's spec trained by the textbook and the bug, side by side."""
    t0 = time.perf_counter()
    result = harness.run(bug.on, backends=[REFERENCE, bug], progress=False)
    variant = result.summary["variants"][0]
    return Outcome(bug.name, bug.expected, variant["verdict"],
                   (variant.get("diagnosis") or {}).get(bug.name),
                   time.perf_counter() - t0)


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else 1.0


def rates(outcomes: Sequence[Outcome]) -> Rates:
    return Rates(_share([o.detected for o in outcomes]),
                 _share([o.located for o in outcomes]),
                 _share([o.convention_right for o in outcomes if o.swap]),
                 _share([o.convention_right for o in outcomes]))


def _where(phase: object, tensor: object, step: object, convention: object) -> str:
    text = f"{phase} {tensor} @{step}"
    return f"{text} [{convention}]" if convention else text


def report(outcomes: Sequence[Outcome]) -> list[str]:
    """One line per bug (D P T S C: detected, phase, tensor, step, convention right), the
    rates against their thresholds, and every miss with the diagnosis's own words."""
    lines = []
    for o in outcomes:
        marks = "".join("+" if ok else "-" for ok in (
            o.detected, o.right("phase"), o.right("tensor"), o.right("step"),
            o.convention_right))
        want = _where(*(getattr(o.expected, k) for k in FIELDS))
        lines.append(f"{marks}  {o.name:48} want {want} | got {_where(*map(o.got, FIELDS))}")
    r = rates(outcomes)
    swaps = sum(o.swap for o in outcomes)
    lines += [
        f"{len(outcomes)} bugs ({swaps} convention swaps) in "
        f"{sum(o.seconds for o in outcomes):.1f} s",
        f"detected {r.detected:.1%} (need {DETECTED_RATE:.0%}); phase+tensor+step "
        f"{r.located:.1%} (need {LOCATED_RATE:.0%}); convention swaps named "
        f"{r.swap_conventions:.1%} (need {SWAP_CONVENTION_RATE:.0%}); convention right "
        f"overall {r.conventions:.1%} (need {CONVENTION_RATE:.0%})"]
    misses = [o for o in outcomes if o.miss]
    lines.append(f"misses: {len(misses)}")
    lines += [f"  {o.name} ({o.verdict}): {o.got('why')}" for o in misses]
    return lines
