"""Progress bars during training: one tqdm bar per backend, silent when not on a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator


class Bars:
    """Advance one bar per backend; each shows that backend's latest loss."""

    def __init__(self, names: list[str], total: int, enabled: bool, label: str) -> None:
        self._bars = {}
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            prefix = f"{label}: " if label else ""
            self._bars = {name: tqdm(total=total, desc=f"{prefix}{name}", position=i,
                                     leave=False, unit="step", file=sys.stderr)
                          for i, name in enumerate(names)}

    def update(self, name: str, loss: float) -> None:
        bar = self._bars.get(name)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss:.4g}", refresh=False)

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()


@contextlib.contextmanager
def bars(names: list[str], total: int, enabled: bool, label: str = "") -> Iterator[Bars]:
    b = Bars(names, total, enabled, label)
    try:
        yield b
    finally:
        b.close()
