"""keel from Python, end to end (CI runs this file; `python examples/python_quickstart.py OUT`).

1. a backtest of ETH2x-FLI on the built-in default year, charted with matplotlib;
2. two products compared on one market;
3. a sweep of the leverage band over Monte Carlo paths, here and on a local Ray cluster
   (the same table to the last digit);
4. a search for the cheapest band that keeps the ripcord away.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display needed
import matplotlib.pyplot as plt
import pandas as pd
import ray

import keel

pd.set_option("display.width", 160)
pd.set_option("display.max_columns", 12)
out = Path(sys.argv[1] if len(sys.argv) > 1 else "keel-python-example")
out.mkdir(parents=True, exist_ok=True)
products = Path(__file__).resolve().parents[1] / "products"

# 1. A backtest: summary as a dict, time series and events as DataFrames
r = keel.backtest(scenario="default", seed=1, block_time="1m")
print(r.table)
ts = r.timeseries.assign(date=pd.to_datetime(r.timeseries["time"], unit="s"))
fig, (a, b) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
a.plot(ts["date"], ts["nav"], label="ETH2x-FLI")
a.plot(ts["date"], ts["ideal_nav"], label="ideal 2x", alpha=0.7)
a.set_yscale("log")
a.set_ylabel("NAV per token, USD")
a.legend()
b.plot(ts["date"], ts["leverage"], color="C2")
b.axhline(r.summary["max_leverage_ratio"], ls="--", color="grey")
b.axhline(r.summary["incentivized_leverage_ratio"], ls=":", color="red")
b.set_ylabel("leverage")
ripcords = r.events[r.events["kind"] == "ripcord"]
b.scatter(pd.to_datetime(ripcords["time"], unit="s"), ripcords["leverage_before"], color="red", s=12)
fig.tight_layout()
fig.savefig(out / "backtest.png", dpi=90)
(out / "report.html").write_text(r.report_html())
print(f"{len(ripcords)} ripcords; chart in {out / 'backtest.png'}")

# 2. Two methodologies on the same path
c = keel.compare([products / "eth2x-fli.toml", products / "eth2x-perp.toml"], scenario="calm", block_time="1m")
print(c.table[["token", "return", "ideal_return", "tracking_error", "cost_total"]])

# 3. A sweep here, then on a Ray cluster (local here: ray.init() starts one on this machine;
#    ray.init(address="ray://head:10001") or address="auto" joins an existing one)
sweep = dict(
    grid={"methodology.max_leverage_ratio": [2.2, 2.3, 2.4, 2.5]},
    market="jump:vol=70%,lambda=12",
    horizon="90d",
    paths=40,
)
here = keel.sweep(**sweep)
ray.init(num_cpus=2, log_to_driver=False)
try:
    on_ray = keel.sweep(**sweep, backend="ray")
finally:
    ray.shutdown()
assert on_ray.attrs["results_csv"] == here.attrs["results_csv"], "Ray and local sweeps differ"
print(here[["methodology.max_leverage_ratio", "nav_vs_ideal_mean", "tracking_error", "p_ripcord", "cost_total"]])

# 4. The cheapest band with no ripcord on any path
best = keel.optimize(
    space={"methodology.max_leverage_ratio": (2.1, 2.6, 0.1)},
    objective="cost",
    constraints={"p_ripcord": 0.0},
    market="gbm:vol=80%",
    horizon="60d",
    paths=16,
    budget=12,
)
print("best:", best.best, f"cost ${best.best_value:,.0f}")
