"""`keel.compare` against `keel compare`, and the README's example script run end to end."""

import subprocess
import sys

import pandas as pd

import keel
from conftest import PRODUCTS, REPO


def test_a_comparison_is_the_commands(cli, tmp_path):
    files = [PRODUCTS / "eth2x-fli.toml", PRODUCTS / "eth-3x-threshold.toml", PRODUCTS / "eth-minus2x-bear.toml"]
    cli("compare", "--products", *map(str, files), "--scenario", "zigzag", "--block-time", "60s",
        "--out", str(tmp_path))
    c = keel.compare(files, scenario="zigzag", block_time="60s")
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    want = pd.read_csv(tmp_path / "compare.csv", keep_default_na=False, na_values=["", "NaN", "nan"], **exact)
    pd.testing.assert_frame_equal(c.table, want, check_exact=True)
    assert c.report_html() == (tmp_path / "report.html").read_text()
    assert list(c.table["token"]) == ["ETH2x-FLI", "ETH3x", "ETH-2x-BEAR"] or len(c.table) == 3


def test_products_on_different_underlyings_are_refused():
    btc = PRODUCTS / "btc2x-fli.toml"
    try:
        keel.compare([PRODUCTS / "eth2x-fli.toml", btc], scenario="calm")
    except keel.KeelError as e:
        assert "compare products on the same underlying" in str(e)
    else:
        raise AssertionError("a BTC and an ETH product were compared")


def test_the_example_script_runs(tmp_path):
    p = subprocess.run(
        [sys.executable, str(REPO / "examples" / "python_quickstart.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "backtest.png").stat().st_size > 10_000
    assert "best: {'methodology.max_leverage_ratio'" in p.stdout
