"""Sweeps and searches on a Ray cluster of two nodes started on this machine: the local run's
table to the last digit, whatever the blocks, and after a worker is killed mid-task."""

import os

import pytest

import keel

ray = pytest.importorskip("ray")

SWEEP = dict(
    grid={"methodology.max_leverage_ratio": ["1.5", "2.3", "2.5"], "methodology.recentering_speed": ["5%", "20%"]},
    market="jump:vol=70%,lambda=12",
    horizon="90d",
    paths=20,
    seed=11,
)


@pytest.fixture(scope="module")
def local():
    return keel.sweep(**SWEEP).attrs["results_csv"]


@pytest.mark.parametrize("block_paths", [None, 3, 20], ids=["default-blocks", "blocks-of-3", "a-block-per-point"])
def test_a_sweep_on_ray_is_the_local_sweep(ray_cluster, local, block_paths):
    df = keel.sweep(**SWEEP, backend="ray", block_paths=block_paths)
    assert df.attrs["results_csv"] == local
    nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"]}
    assert len(nodes) == 2


def test_a_replayed_window_travels_to_the_workers(ray_cluster, tmp_path):
    from conftest import FIXTURES

    kw = dict(
        grid={"methodology.max_leverage_ratio": [2.3, 2.5]},
        prices=FIXTURES / "eth-10d-1h.csv",
        window="2024-01-02..2024-01-05",
        block_time="5m",
        paths=6,
    )
    assert keel.sweep(**kw, backend="ray", block_paths=2).attrs["results_csv"] == keel.sweep(**kw).attrs["results_csv"]


def test_a_worker_killed_mid_task_is_retried_and_counted_once(ray_cluster, local, tmp_path):
    marker = tmp_path / "killed"
    # a new job whose workers carry the fault: the first task to claim the marker kills its own
    # worker process after running its paths and before returning them
    ray.shutdown()
    ray.init(
        address=ray_cluster.address,
        log_to_driver=False,
        runtime_env={"env_vars": {"KEEL_RAY_FAULT": f"kill-once:{marker}"}},
    )
    try:
        df = keel.sweep(**SWEEP, backend="ray", block_paths=10)
    finally:
        ray.shutdown()
        ray.init(address=ray_cluster.address, log_to_driver=False)
    assert marker.exists(), "no worker was killed"
    killed = int(marker.read_text())
    assert killed != os.getpid()
    assert df.attrs["results_csv"] == local


def test_a_search_on_ray_finds_what_the_local_search_finds(ray_cluster):
    kw = dict(
        space={"methodology.max_leverage_ratio": (2.1, 2.6, 0.1)},
        objective="cost",
        constraints={"p_ripcord": 0.0},
        budget=8,
        paths=16,
        market="gbm:vol=80%",
        horizon="60d",
    )
    a = keel.optimize(**kw, backend="ray", parallel=1)
    b = keel.optimize(**kw)
    assert a.best == b.best and a.best_value == b.best_value
    assert list(a.trials["methodology.max_leverage_ratio"]) == list(b.trials["methodology.max_leverage_ratio"])
