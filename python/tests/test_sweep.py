"""Sweeps from Python: `keel sweep`'s results.csv to the last digit, and the exact merge of
blocks of paths that distributed sweeps rely on."""

import os
import signal
import threading

import pandas as pd
import pytest

import keel
from keel import _keel
from conftest import FIXTURES, PRODUCTS


def read_cli_csv(path):
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, keep_default_na=False, na_values=["", "NaN", "nan"], **exact)


CASES = [
    (
        "lending-gbm-with-an-invalid-point",
        PRODUCTS / "eth2x-fli.toml",
        ["--grid", "methodology.max_leverage_ratio=1.5,2.3,2.5", "--scenario", "gbm:vol=90%", "--horizon", "60d",
         "--paths", "12", "--seed", "7"],
        dict(grid={"methodology.max_leverage_ratio": ["1.5", 2.3, 2.5]}, market="gbm:vol=90%", horizon="60d",
             paths=12, seed=7),
    ),
    (
        "two-axes-range-and-list",
        PRODUCTS / "eth2x-fli.toml",
        ["--grid", "methodology.recentering_speed=5%,20%", "--grid", "methodology.max_leverage_ratio=2.2..2.4 step 0.1",
         "--scenario", "jump:vol=60%,lambda=12", "--horizon", "30d", "--paths", "6"],
        dict(grid={"methodology.recentering_speed": ["5%", "20%"], "methodology.max_leverage_ratio": "2.2..2.4 step 0.1"},
             market="jump:vol=60%,lambda=12", horizon="30d", paths=6),
    ),
    (
        "perp-with-funding",
        PRODUCTS / "eth2x-perp.toml",
        ["--grid", "methodology.max_leverage_ratio=2.2,2.4", "--scenario", "gbm:vol=70%", "--horizon", "20d",
         "--block-time", "10m", "--paths", "4", "--funding-mean", "20%/yr"],
        dict(grid={"methodology.max_leverage_ratio": [2.2, 2.4]}, market="gbm:vol=70%", horizon="20d",
             block_time="10m", paths=4, funding_mean="20%/yr"),
    ),
    (
        "threshold-bootstrap-from-a-csv",
        PRODUCTS / "eth-3x-threshold.toml",
        ["--grid", "methodology.rebalance_threshold=0.2,0.4", "--prices", str(FIXTURES / "eth-10d-1h.csv"),
         "--bootstrap", "--horizon", "15d", "--paths", "5"],
        dict(grid={"methodology.rebalance_threshold": [0.2, 0.4]}, prices=FIXTURES / "eth-10d-1h.csv",
             bootstrap=True, horizon="15d", paths=5),
    ),
]


@pytest.mark.parametrize("name,product,args,kwargs", CASES, ids=[c[0] for c in CASES])
def test_a_sweep_is_the_commands_results_csv_to_the_last_digit(cli, tmp_path, name, product, args, kwargs):
    cli("sweep", "--product", str(product), *args, "--out", str(tmp_path), "--quiet")
    df = keel.sweep(keel.Product.from_file(product), **kwargs)
    assert df.attrs["results_csv"] == (tmp_path / "results.csv").read_text()
    pd.testing.assert_frame_equal(df, read_cli_csv(tmp_path / "results.csv"), check_exact=True)
    assert df.attrs["report_html"] == (tmp_path / "report.html").read_text()


def test_threads_do_not_change_a_figure():
    kw = dict(grid={"methodology.max_leverage_ratio": [2.3, 2.5]}, market="gbm:vol=80%", horizon="30d", paths=9)
    assert keel.sweep(**kw, threads=1).attrs["results_csv"] == keel.sweep(**kw, threads=2).attrs["results_csv"]


def test_a_misspelt_grid_key_is_refused_with_the_closest():
    with pytest.raises(keel.KeelError, match="did you mean methodology.max_leverage_ratio"):
        keel.sweep(grid={"methodology.max_leverage": [2.3]}, market="calm", paths=2)


def test_a_sweep_without_a_market_names_the_keyword():
    with pytest.raises(keel.KeelError, match="give market MODEL"):
        keel.sweep(grid={"methodology.max_leverage_ratio": [2.3]}, paths=2)


def plan(paths=10):
    argv = ["--grid", "methodology.max_leverage_ratio=2.3,2.5", "--scenario", "gbm:vol=80%", "--horizon", "30d",
            "--paths", str(paths)]
    text, name = _keel.default_product()
    return _keel.SweepPlan(argv, text, name)


@pytest.mark.parametrize(
    "splits",
    [[(0, 10)], [(0, 3), (3, 7), (7, 10)], [(7, 10), (0, 1), (1, 7)], [(i, i + 1) for i in reversed(range(10))]],
    ids=["one-block", "three-blocks", "out-of-order", "a-block-per-path-reversed"],
)
def test_blocks_of_paths_merge_exactly_however_they_are_split(splits):
    p = plan()
    local = p.run_local().results_csv()
    outcomes = [p.point_result(i, [p.run_block(i, s, e) for s, e in splits]) for i in range(len(p.points()))]
    assert p.results(outcomes).results_csv() == local


def test_a_path_missing_or_counted_twice_or_from_another_sweep_is_refused():
    p = plan()
    a, b, c = p.run_block(0, 0, 5), p.run_block(0, 5, 10), p.run_block(0, 3, 6)
    with pytest.raises(keel.KeelError, match="path 5 missing"):
        p.point_result(0, [a])
    with pytest.raises(keel.KeelError, match="path 3 twice"):
        p.point_result(0, [a, b, c])
    with pytest.raises(keel.KeelError, match="another sweep"):
        p.point_result(1, [a, b])
    with pytest.raises(keel.KeelError, match="another sweep"):
        plan(paths=11).point_result(0, [a, b])
    with pytest.raises(keel.KeelError, match="not a keel path block"):
        p.point_result(0, [a[:-3], b])
    with pytest.raises(keel.KeelError, match="non-empty range"):
        p.run_block(0, 5, 12)


def test_a_sweep_stops_on_ctrl_c(ctrl_c):
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        # a thousand 12-second-block paths: far longer than half a second
        keel.sweep(grid={"methodology.max_leverage_ratio": [2.3]}, market="gbm:vol=80%", paths=1000, block_time="12s")
    timer.join()
