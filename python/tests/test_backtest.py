"""Backtests from Python: the same figures, rows, events and report as `keel backtest`."""

import json
import os
import signal
import threading

import pandas as pd
import pytest

import keel
from conftest import FIXTURES, PRODUCTS


def read_cli_csv(path):
    # every float as written; empty strings stay strings (events' `error`)
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(path, keep_default_na=False, na_values=["NaN", "nan"], **exact)


CASES = [
    ("lending-fli-calm", PRODUCTS / "eth2x-fli.toml", ["--scenario", "calm", "--seed", "3"], dict(scenario="calm", seed=3)),
    (
        "perp-fli-zigzag-1m-blocks",
        PRODUCTS / "eth2x-perp.toml",
        ["--scenario", "zigzag", "--block-time", "60s", "--tvl", "250000"],
        dict(scenario="zigzag", block_time="60s", tvl=250000),
    ),
    (
        "threshold-from-a-csv",
        PRODUCTS / "eth-3x-threshold.toml",
        ["--prices", str(FIXTURES / "eth-10d-1h.csv"), "--block-time", "30s", "--sample", "10m"],
        dict(prices=FIXTURES / "eth-10d-1h.csv", block_time="30s", sample="10m"),
    ),
]


@pytest.mark.parametrize("name,product,args,kwargs", CASES, ids=[c[0] for c in CASES])
def test_a_backtest_is_the_commands_to_the_last_digit(cli, tmp_path, name, product, args, kwargs):
    out = tmp_path / "cli"
    cli("backtest", "--product", str(product), *args, "--out", str(out), "--quiet")
    r = keel.backtest(keel.Product.from_file(product), **kwargs)
    assert r.summary == json.loads((out / "summary.json").read_text())
    for frame, file in [(r.timeseries, "timeseries.csv"), (r.events, "events.csv")]:
        want = read_cli_csv(out / file)
        assert list(frame.columns) == list(want.columns)
        assert len(frame) == len(want) > 0
        pd.testing.assert_frame_equal(frame, want, check_dtype=False, check_exact=True)
    assert r.report_html() == (out / "report.html").read_text()


def test_a_dataframe_indexed_by_dates_is_the_same_market_as_its_file():
    bars = pd.read_csv(FIXTURES / "eth-10d-1h.csv")
    by_date = bars.set_index(pd.to_datetime(bars.pop("timestamp"), unit="s"))
    product = keel.Product.from_file(PRODUCTS / "eth-3x-threshold.toml")
    a = keel.backtest(product, prices=by_date, block_time="60s")
    b = keel.backtest(product, prices=FIXTURES / "eth-10d-1h.csv", block_time="60s")
    assert a.summary["token_return"] == b.summary["token_return"]
    with pytest.raises(keel.KeelError, match="needs a timestamp column"):
        keel.backtest(prices=by_date.reset_index(drop=True))


def test_prices_from_a_dataframe_are_checked_like_a_file():
    bars = pd.read_csv(FIXTURES / "eth-10d-1h.csv")
    r = keel.backtest(keel.Product.from_file(PRODUCTS / "eth-3x-threshold.toml"), prices=bars, block_time="60s")
    assert r.summary["days"] > 9
    with pytest.raises(keel.KeelError, match="gap"):
        keel.backtest(prices=bars.drop(index=[100, 101]), block_time="60s")
    # the flag's name is the keyword's
    with pytest.raises(keel.KeelError, match="allow_gaps"):
        keel.backtest(prices=bars.drop(index=[100, 101]), block_time="60s")
    r = keel.backtest(prices=bars.drop(index=[100, 101]), block_time="60s", allow_gaps=True)
    assert any("gap" in w for w in r.warnings)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(block_time="0s"), "block_time must be positive"),
        (dict(tvl=-5), "tvl -5: give a positive USD amount"),
        (dict(scenario="moon"), "scenario moon: unknown"),
        (dict(costs="some"), "costs some: use 'all' or 'none'"),
        (dict(funding="process"), "funding and the premium flags apply to perp products"),
    ],
    ids=["zero-block-time", "negative-tvl", "unknown-scenario", "unknown-costs", "funding-on-lending"],
)
def test_bad_arguments_raise_keels_message_naming_the_keyword(kwargs, message):
    with pytest.raises(keel.KeelError) as e:
        keel.backtest(**kwargs)
    assert message in str(e.value)


def test_a_long_backtest_releases_the_gil_and_stops_on_ctrl_c(ctrl_c):
    started, finished = threading.Event(), threading.Event()
    seen_running = []

    def watch():
        started.wait()
        # this thread runs Python while the main thread is inside keel
        for _ in range(20):
            seen_running.append(not finished.is_set())
            threading.Event().wait(0.05)
        os.kill(os.getpid(), signal.SIGINT)

    t = threading.Thread(target=watch)
    t.start()
    started.set()
    with pytest.raises(KeyboardInterrupt):
        # 2-second blocks for a year: far longer than the watcher's second
        keel.backtest(block_time="2s")
    finished.set()
    t.join()
    assert seen_running and all(seen_running)
    # nothing is left broken
    assert keel.backtest(scenario="calm", block_time="1h").summary["blocks"] > 0
