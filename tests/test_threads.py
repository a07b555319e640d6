"""The thread settings a bench passes to its worker processes reach their OpenBLAS, and a
backend's own pools through its `set_threads` hook."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import ClassVar

import pytest

from harness.backend import Backend, Operands, Products
from harness.bench import suite, threads
from harness.spec import Spec
from implementations.numpy_fast import NumpyFast

# A child process does a few two-thread products, then sleeps: the CPU time it burns while
# its main thread sleeps is what OpenBLAS's idle threads spin.
SPIN_PROBE = """
import time
import numpy as np
a = np.ones((400, 400))
for _ in range(5):
    a @ a
cpu = time.process_time()
time.sleep(0.08)
print(time.process_time() - cpu)
"""
SPINNING = 0.02    # seconds of CPU in the 0.08 s sleep: ~0.08 with OpenBLAS's default spin


def idle_cpu_after_products(env: dict[str, str]) -> float:
    """Seconds of CPU a fresh process with `env` burns while asleep after its products."""
    out = subprocess.run([sys.executable, "-c", SPIN_PROBE], env=env, capture_output=True,
                         text=True, check=True, timeout=120)
    return float(out.stdout)


def test_child_env_carries_thread_count_and_blas_spin():
    env = threads.child_env(3)
    assert env["OMP_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "3"
    assert env["OPENBLAS_THREAD_TIMEOUT"] == str(threads.BLAS_SPIN_EXPONENT)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: OpenBLAS has no pool")
def test_worker_blas_threads_sleep_soon_after_their_products():
    """With the harness's setting the child's pool is idle while it sleeps; with OpenBLAS's
    default (the control, which shows the probe can see spinning) it keeps a core busy."""
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
    assert idle_cpu_after_products({**base, **threads.child_env(2)}) < SPINNING
    default = {**base, **threads.child_env(2)}
    del default["OPENBLAS_THREAD_TIMEOUT"]
    assert idle_cpu_after_products(default) > SPINNING


class Recorder(NumpyFast):
    """Records its thread hook's calls and its constructions, in order."""
    name: ClassVar[str] = "recorder"
    calls: ClassVar[list[tuple]] = []

    @classmethod
    def set_threads(cls, n: int) -> None:
        cls.calls.append(("set_threads", n))

    @classmethod
    def gemm(cls, operands: list[Operands], device: str = "cpu") -> Products | None:
        cls.calls.append(("gemm",))
        return suite.numpy_products(operands)

    def __init__(self, spec: Spec, device: str = "cpu") -> None:
        type(self).calls.append(("built",))
        super().__init__(spec, device)


@pytest.fixture
def recorder(monkeypatch):
    monkeypatch.setattr(suite, "backend_class", {"recorder": Recorder}.__getitem__)
    monkeypatch.setattr(Recorder, "calls", [])
    return Recorder


@pytest.mark.parametrize(("contestant", "built"),
                         [("recorder", "built"), ("gemm:recorder", "gemm")])
def test_bench_hands_its_thread_count_to_the_backend_before_building_it(recorder, monkeypatch,
                                                                      contestant, built):
    monkeypatch.setitem(threads._state, "threads", 3)
    suite.contestant(contestant, suite.Shape.parse("4-3:2"), "float64")
    assert recorder.calls == [("set_threads", 3), (built,)]


def test_without_a_thread_count_the_hook_is_not_called(recorder, monkeypatch):
    monkeypatch.delitem(threads._state, "threads", raising=False)
    suite.contestant("recorder", suite.Shape.parse("4-3:2"), "float64")
    assert recorder.calls == [("built",)]


def test_the_default_hook_does_nothing():
    assert Backend.set_threads(2) is None


def test_torchs_pool_follows_its_backends_hook():
    """torch's intra-op pool is set by its backend's `set_threads`, like any framework's."""
    torch = pytest.importorskip("torch")
    from implementations.torch_autograd import TorchAutograd

    before = torch.get_num_threads()
    try:
        TorchAutograd.set_threads(1)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
