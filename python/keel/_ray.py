"""Sweeps on a Ray cluster: tasks of (grid point, block of paths), merged exactly.

Each task plans the sweep again from the same arguments (a ``--prices`` file travels as bytes in
Ray's object store), runs its paths on one core and returns them as bytes. The driver keeps a
bounded window of tasks in flight, submitted point by point, and merges a point as soon as all
its blocks are in: outcomes are put back in path order and the daily-return histograms are
integer counts, so the table is the local run's to the last digit whatever the cluster's size or
the order tasks finish in. Ray retries a task whose worker died; each block's result is taken
once, and the merge refuses a path missing or counted twice.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
import tempfile
import time
from typing import Any, Optional

from . import _keel
from ._keel import KeelError

# Fault injection for the tests: with KEEL_RAY_FAULT=kill-once:PATH in a worker's environment,
# the first task to claim PATH (an exclusive create) kills its own worker process with SIGKILL
# after running its paths and before returning them, so the result is lost and Ray must retry.
_FAULT_ENV = "KEEL_RAY_FAULT"

_plans: dict = {}


def _worker_plan(argv: list, text: str, name: str, prices: Optional[bytes]) -> Any:
    if prices is not None:
        digest = hashlib.sha256(prices).hexdigest()[:16]
        path = os.path.join(tempfile.gettempdir(), f"keel-ray-prices-{digest}.csv")
        if not os.path.exists(path):
            tmp = f"{path}.{os.getpid()}"
            with open(tmp, "wb") as f:
                f.write(prices)
            os.replace(tmp, path)
        i = argv.index("--prices")
        argv = argv[: i + 1] + [path] + argv[i + 2 :]
    key = (tuple(argv), text, name)
    plan = _plans.get(key)
    if plan is None:
        _plans.clear()
        plan = _plans[key] = _keel.SweepPlan(argv, text, name)
    return plan


def _maybe_fault() -> None:
    spec = os.environ.get(_FAULT_ENV, "")
    if not spec.startswith("kill-once:"):
        return
    marker = spec.split(":", 1)[1]
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)


def _run_block(argv: list, text: str, name: str, prices: Optional[bytes], point: int, start: int, end: int) -> bytes:
    plan = _worker_plan(argv, text, name, prices)
    data = plan.run_block(point, start, end, threads=1)
    _maybe_fault()
    return data


def _prices_bytes(argv: list) -> Optional[bytes]:
    if "--prices" not in argv:
        return None
    path = argv[argv.index("--prices") + 1]
    with open(path, "rb") as f:
        return f.read()


def sweep(
    argv: list,
    text: str,
    name: str,
    *,
    address: Optional[str] = None,
    block_paths: Optional[int] = None,
    progress: Optional[bool] = None,
    max_in_flight: Optional[int] = None,
) -> Any:
    """Run a sweep on Ray; returns the same ``SweepResults`` a local run does."""
    try:
        import ray
    except ImportError:
        raise KeelError("backend='ray' needs Ray: pip install 'ray[default]' (or keel[ray])") from None
    from . import _SWEEP_NAMES, _reraise

    try:
        plan = _keel.SweepPlan(argv, text, name)
    except KeelError as e:
        raise _reraise(e, _SWEEP_NAMES) from None
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    paths = plan.paths
    if block_paths is None:
        # about four blocks per core over the whole grid, at most 256 paths a block
        n_points = len(plan.points())
        block_paths = max(1, min(256, -(-paths * n_points // (4 * cpus))))
    if block_paths < 1:
        raise KeelError(f"block_paths {block_paths}: give at least 1")
    window = max_in_flight or 2 * cpus
    prices = _prices_bytes(argv)
    prices_ref = ray.put(prices) if prices is not None else None
    task = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False)(_run_block)

    points = plan.points()
    outcomes: list = [None] * len(points)
    jobs = []  # (point, start, end), point by point
    for i in range(len(points)):
        if plan.invalid(i) is not None:
            outcomes[i] = plan.point_result(i, [])
            continue
        for start in range(0, paths, block_paths):
            jobs.append((i, start, min(paths, start + block_paths)))
    expected = {}
    for i, _, _ in jobs:
        expected[i] = expected.get(i, 0) + 1
    blocks: dict = {}
    in_flight: dict = {}
    total = sum(e - s for _, s, e in jobs)
    done = 0
    show = sys.stderr.isatty() if progress is None else progress
    t0 = time.monotonic()
    next_job = 0
    try:
        while next_job < len(jobs) or in_flight:
            while next_job < len(jobs) and len(in_flight) < window:
                i, s, e = jobs[next_job]
                ref = task.remote(argv, text, name, prices_ref, i, s, e)
                in_flight[ref] = (i, s, e)
                next_job += 1
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                i, s, e = in_flight.pop(ref)
                try:
                    data = ray.get(ref)
                except Exception as err:  # a task that failed after its retries
                    raise KeelError(f"grid point {i}, paths {s}..{e}: {err}") from None
                blocks.setdefault(i, []).append(data)
                done += e - s
                if len(blocks[i]) == expected[i]:
                    outcomes[i] = plan.point_result(i, blocks.pop(i))
                if show:
                    rate = done / max(time.monotonic() - t0, 1e-9)
                    print(f"\r{done}/{total} paths on {cpus} CPUs, {rate:.0f} paths/s", end="", file=sys.stderr)
    except KeyboardInterrupt:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        raise
    finally:
        if show:
            print(file=sys.stderr)
    return plan.results(outcomes)
