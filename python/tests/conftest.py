"""Fixtures for the keel package's tests: the `keel` command line the package is held to, the
repository's product files, and a two-node Ray cluster on this machine."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PRODUCTS = REPO / "products"
FIXTURES = REPO / "crates" / "keel-cli" / "tests" / "fixtures"


@pytest.fixture(scope="session")
def keel_bin() -> Path:
    """The `keel` binary: $KEEL_BIN, or target/debug/keel (built if missing)."""
    if os.environ.get("KEEL_BIN"):
        return Path(os.environ["KEEL_BIN"])
    path = REPO / "target" / "debug" / "keel"
    if not path.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "keel-cli"], cwd=REPO, check=True)
    return path


@pytest.fixture(scope="session")
def cli(keel_bin):
    """Run `keel ARGS...`; returns the CompletedProcess (text)."""

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run([str(keel_bin), *args], capture_output=True, text=True)
        if check and p.returncode != 0:
            raise AssertionError(f"keel {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")
        return p

    return run


@pytest.fixture
def ctrl_c():
    """Ctrl-C raises KeyboardInterrupt in this test, whatever the process inherited (a shell
    without job control starts background jobs with SIGINT ignored, and Python keeps that)."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray cluster of a head node and a second node (one CPU each) on this machine, with this
    process connected as the driver."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    try:
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
