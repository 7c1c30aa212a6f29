"""keel for Python: leveraged-token backtests, comparisons, Monte Carlo sweeps and parameter
search on keel's Rust engine.

Every call is checked and run by the same Rust functions as the ``keel`` command line, from the
same arguments (keyword ``block_time="12s"`` is ``--block-time 12s``), so it accepts, refuses
and computes exactly what ``keel`` does: a sweep's table equals ``keel sweep``'s
``results.csv`` to the last digit. Long calls release the GIL and stop on Ctrl-C; errors are
:class:`KeelError` (or :class:`ProductError`) with keel's messages.

>>> import keel
>>> r = keel.backtest(scenario="calm", seed=1)
>>> r.summary["token_return"], r.timeseries[["time", "nav", "leverage"]].tail()
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from . import _keel
from ._keel import KeelError, ProductError, __version__

__all__ = [
    "KeelError",
    "ProductError",
    "Product",
    "BacktestResult",
    "CompareResult",
    "backtest",
    "compare",
    "sweep",
    "optimize",
    "scenarios",
    "__version__",
]

PricesLike = Union[str, os.PathLike, "pandas.DataFrame"]  # noqa: F821


def _python_names(message: str, renamed: Optional[Mapping[str, str]] = None) -> str:
    """keel's messages name command-line flags; here they name keyword arguments."""
    renamed = renamed or {}

    def keyword(m: "re.Match[str]") -> str:
        return renamed.get(m.group(1), m.group(1).replace("-", "_"))

    return re.sub(r"--([a-z][a-z0-9-]*)", keyword, message)


def _reraise(e: KeelError, renamed: Optional[Mapping[str, str]] = None) -> KeelError:
    e.args = (_python_names(str(e), renamed),) + tuple(e.args[1:])
    return e


# keywords named otherwise than their flags
_SWEEP_NAMES = {"scenario": "market"}
_RANGE_NAMES = {"from": "start", "to": "end"}


def _value(v: Any) -> str:
    if isinstance(v, bool):
        raise TypeError("a flag's value cannot be a bool")
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _argv(**flags: Any) -> list[str]:
    """Keyword arguments as keel's command-line arguments: None is left out, True is a bare
    flag, False nothing, a list repeats the flag."""
    out: list[str] = []
    for name, v in flags.items():
        if v is None or v is False:
            continue
        flag = "--" + name.replace("_", "-")
        if v is True:
            out.append(flag)
        elif isinstance(v, (list, tuple)):
            for x in v:
                out += [flag, _value(x)]
        else:
            out += [flag, _value(v)]
    return out


# keel's flags by command, as keyword names (a sweep's `market` is --scenario)
_FUNDING_FLAGS = ("funding", "funding_mean", "premium_sd", "premium_half_life", "arb_capacity", "oi_per_bp")
_MARKET_FLAGS = ("prices", "scenario", "seed", "allow_gaps")
_BACKTEST_FLAGS = _MARKET_FLAGS + (
    "block_time", "chain", "costs", "sample", "tvl", "mints_per_day", "redeems_per_day", "flow_size",
    "keeper_poll", "keeper_latency", "ripcord_bots",
) + _FUNDING_FLAGS
_COMPARE_FLAGS = _MARKET_FLAGS + ("block_time", "tvl") + _FUNDING_FLAGS
_SWEEP_FLAGS = (
    "paths", "scenario", "prices", "bootstrap", "window", "shock", "horizon", "block_time", "seed", "objective",
    "costs",
) + _FUNDING_FLAGS


def _flags(values: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """The flags `names` from a call's keyword arguments (`start`/`end` become --from/--to)."""
    out = _argv(**{n: values[n] for n in names})
    return out + _argv(**{"from": values.get("start"), "to": values.get("end")})


class _Progress:
    """A one-line progress report on stderr (on by default when stderr is a terminal)."""

    def __init__(self, enabled: Optional[bool], unit: str) -> None:
        self.on = sys.stderr.isatty() if enabled is None else enabled
        self.unit = unit
        self.t0 = time.monotonic()
        self.shown = False

    def __call__(self, done: int, total: int) -> None:
        if not self.on or total <= 0 or done <= 0:
            return
        elapsed = time.monotonic() - self.t0
        eta = elapsed * (total - done) / done
        print(f"\r{done:,}/{total:,} {self.unit} ({done / total:.0%}), ETA {eta:.0f} s   ", end="", file=sys.stderr)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            print(file=sys.stderr)


class Product:
    """A product file's text (any kind: lending FLI, PerpV2 FLI, threshold, daily, continuous).

    Parsing and checking happen when asked (:meth:`check`) or when the product is run, so an
    invalid file can be loaded and told what is wrong with it.
    """

    def __init__(self, text: str, name: str = "<product>") -> None:
        self.toml = text
        self.name = name

    @classmethod
    def from_file(cls, path: Union[str, os.PathLike]) -> "Product":
        """Read a product TOML file (at most 1 MiB)."""
        p = Path(path)
        size = p.stat().st_size
        if size > 1 << 20:
            raise KeelError(f"product file {p} is {size} bytes; keel reads at most 1048576 bytes (1 MiB) of it")
        return cls(p.read_text(), str(p))

    @classmethod
    def from_toml(cls, text: str, name: str = "<toml>") -> "Product":
        """A product from TOML text."""
        return cls(text, name)

    @classmethod
    def default(cls) -> "Product":
        """ETH2x-FLI, the product ``keel backtest`` runs without ``--product``."""
        text, name = _keel.default_product()
        return cls(text, name)

    def check(self) -> str:
        """Check every rule, then start the product as a backtest would. Returns the one-line
        summary ``keel product check`` prints; raises :class:`ProductError` whose message is the
        command's and whose ``rules`` lists every violated rule."""
        return _keel.product_check(self.toml, self.name)

    def _info(self) -> tuple[str, str, str]:
        return _keel.product_info(self.toml, self.name)

    @property
    def symbol(self) -> str:
        """The token's symbol (raises ProductError if the file is invalid)."""
        return self._info()[0]

    @property
    def kind(self) -> str:
        """``lending-fli``, ``perp-fli``, ``threshold``, ``daily`` or ``continuous``."""
        return self._info()[1]

    def with_settings(self, settings: Mapping[str, Any]) -> "Product":
        """A copy with settings written at their dotted TOML keys
        (``{"methodology.max_leverage_ratio": "2.4"}``); a key the product does not have is
        refused with the closest one it does."""
        text = self.toml
        for key, value in settings.items():
            try:
                text = _keel.product_with_setting(text, key, _value(value))
            except KeelError as e:
                raise _reraise(e) from None
        label = ", ".join(f"{k}={_value(v)}" for k, v in settings.items())
        return Product(text, f"{self.name} with {label}" if label else self.name)

    def calldata(self) -> dict[str, list[str]]:
        """The setter calls (function → arguments, struct field order) ``keel product
        calldata`` prints; a threshold product has none (refused)."""
        return dict(_keel.product_calldata(self.toml, self.name))

    def __repr__(self) -> str:
        return f"Product({self.name!r})"


def _product(p: Union[Product, str, os.PathLike, None]) -> Product:
    if p is None:
        return Product.default()
    if isinstance(p, Product):
        return p
    return Product.from_file(p)


class _Prices:
    """``prices=``: a CSV path, or a DataFrame written to a temporary CSV for the call (keel
    checks it as it checks any file: header, ascending times, gaps, absurd prices)."""

    def __init__(self, prices: Optional[PricesLike]) -> None:
        self._tmp: Optional[str] = None
        if prices is None:
            self.path = None
        elif isinstance(prices, (str, os.PathLike)):
            self.path = os.fspath(prices)
        elif hasattr(prices, "to_csv"):
            df = _bars_frame(prices)
            fd, self._tmp = tempfile.mkstemp(prefix="keel-prices-", suffix=".csv")
            with os.fdopen(fd, "w") as f:
                df.to_csv(f, index=False)
            self.path = self._tmp
        else:
            raise TypeError("prices= takes a CSV path or a pandas DataFrame (timestamp, open, high, low, close)")

    def __enter__(self) -> "_Prices":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._tmp:
            os.unlink(self._tmp)


_TIME_NAMES = ("timestamp", "time", "date", "datetime")


def _bars_frame(df: Any) -> Any:
    """A DataFrame of bars as keel's CSV takes it: a time column first (a DatetimeIndex becomes
    one), times as unix seconds (naive datetimes are UTC)."""
    import pandas as pd

    if not any(str(c).lower() in _TIME_NAMES for c in df.columns):
        if not isinstance(df.index, pd.DatetimeIndex):
            raise KeelError(
                "prices: the DataFrame needs a timestamp column (unix seconds or dates) or a "
                "DatetimeIndex, and open, high, low, close columns"
            )
        df = df.rename_axis("timestamp").reset_index()
    df = df.copy()
    for c in df.columns:
        if str(c).lower() in _TIME_NAMES and pd.api.types.is_datetime64_any_dtype(df[c]):
            t = df[c]
            t = t.dt.tz_convert("UTC").dt.tz_localize(None) if t.dt.tz is not None else t
            df[c] = (t - pd.Timestamp("1970-01-01")) // pd.Timedelta(seconds=1)
    return df


def _frame(table: Any) -> "pandas.DataFrame":  # noqa: F821
    import pyarrow as pa

    return pa.table(table).to_pandas()


@dataclass
class BacktestResult:
    """A backtest: ``summary`` (summary.json as a dict), ``timeseries`` and ``events`` (the CSV
    files' columns, as DataFrames), the terminal ``table`` and the report."""

    summary: dict
    timeseries: "pandas.DataFrame"  # noqa: F821
    events: "pandas.DataFrame"  # noqa: F821
    table: str
    warnings: list[str]
    _report_html: str = field(repr=False)
    _arrow: tuple = field(repr=False, default=())

    def report_html(self) -> str:
        """report.html, as ``keel backtest`` writes it."""
        return self._report_html

    def arrow(self, which: str = "timeseries") -> "pyarrow.Table":  # noqa: F821
        """``timeseries`` or ``events`` as an Arrow table (zero-copy; for polars:
        ``polars.from_arrow(r.arrow())``)."""
        import pyarrow as pa

        return pa.table(self._arrow[0 if which == "timeseries" else 1])

    def save(self, out: Union[str, os.PathLike]) -> Path:
        """Write summary.json, timeseries.csv, events.csv and report.html into ``out``."""
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text(json.dumps(self.summary, indent=2) + "\n")
        self.timeseries.to_csv(d / "timeseries.csv", index=False)
        self.events.to_csv(d / "events.csv", index=False)
        (d / "report.html").write_text(self._report_html)
        return d


def backtest(
    product: Union[Product, str, os.PathLike, None] = None,
    *,
    scenario: Optional[str] = None,
    prices: Optional[PricesLike] = None,
    seed: int = 1,
    block_time: Optional[str] = None,
    chain: Optional[str] = None,
    costs: str = "all",
    start: Optional[str] = None,
    end: Optional[str] = None,
    allow_gaps: bool = False,
    sample: str = "1h",
    tvl: Optional[float] = None,
    mints_per_day: float = 2.0,
    redeems_per_day: float = 2.0,
    flow_size: float = 20_000.0,
    keeper_poll: int = 1,
    keeper_latency: str = "12s",
    ripcord_bots: int = 2,
    funding: Optional[str] = None,
    funding_mean: Optional[str] = None,
    premium_sd: Optional[float] = None,
    premium_half_life: Optional[str] = None,
    arb_capacity: Optional[float] = None,
    oi_per_bp: Optional[float] = None,
    progress: Optional[bool] = None,
) -> BacktestResult:
    """Run a product through a market block by block: ``keel backtest`` with the same
    arguments (``start``/``end`` are ``--from``/``--to``). The default is ETH2x-FLI on the
    default scenario; ``prices`` is a CSV path or a DataFrame of OHLC bars. ``progress``
    (default: when stderr is a terminal) reports blocks done on stderr."""
    kwargs = dict(locals())
    p = _product(product)
    with _Prices(prices) as px:
        argv = _flags({**kwargs, "prices": px.path}, _BACKTEST_FLAGS)
        bar = _Progress(progress, "blocks")
        try:
            out = _keel.backtest(argv, p.toml, p.name, bar)
        except KeelError as e:
            raise _reraise(e, _RANGE_NAMES) from None
        finally:
            bar.close()
    return BacktestResult(
        summary=json.loads(out.summary_json),
        timeseries=_frame(out.timeseries),
        events=_frame(out.events),
        table=out.table,
        warnings=list(out.warnings),
        _report_html=out.report_html,
        _arrow=(out.timeseries, out.events),
    )


@dataclass
class CompareResult:
    """``keel compare``: the table as a DataFrame (compare.csv's columns), the terminal text
    and the report with the NAV curves overlaid."""

    table: "pandas.DataFrame"  # noqa: F821
    text: str
    warnings: list[str]
    _report_html: str = field(repr=False)

    def report_html(self) -> str:
        """report.html, as ``keel compare`` writes it."""
        return self._report_html


def _read_csv(text: str) -> "pandas.DataFrame":  # noqa: F821
    import pandas as pd

    # every float as written, to the last digit: pandas 3 parses exactly by default, pandas 2
    # only with float_precision="round_trip"
    exact = {} if int(pd.__version__.split(".")[0]) >= 3 else {"float_precision": "round_trip"}
    return pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=["", "NaN", "nan"], **exact)


def compare(
    products: Sequence[Union[Product, str, os.PathLike]],
    *,
    scenario: Optional[str] = None,
    prices: Optional[PricesLike] = None,
    seed: int = 1,
    block_time: str = "12s",
    tvl: float = 1_000_000.0,
    start: Optional[str] = None,
    end: Optional[str] = None,
    allow_gaps: bool = False,
    funding: Optional[str] = None,
    funding_mean: Optional[str] = None,
    premium_sd: Optional[float] = None,
    premium_half_life: Optional[str] = None,
    arb_capacity: Optional[float] = None,
    oi_per_bp: Optional[float] = None,
) -> CompareResult:
    """Several products on one market (the same path, starting TVL, no holder flows):
    ``keel compare``."""
    kwargs = dict(locals())
    ps = [_product(p) for p in products]
    with _Prices(prices) as px:
        argv = _flags({**kwargs, "prices": px.path}, _COMPARE_FLAGS)
        try:
            text, csv, html, warnings = _keel.compare(argv, [(p.toml, p.name) for p in ps])
        except KeelError as e:
            raise _reraise(e, _RANGE_NAMES) from None
    return CompareResult(table=_read_csv(csv), text=text, warnings=list(warnings), _report_html=html)


def _grid_argv(grid: Mapping[str, Any]) -> list[str]:
    if not grid:
        raise KeelError("grid: give at least one setting to vary, e.g. {'methodology.max_leverage_ratio': [2.3, 2.4]}")
    out = []
    for key, values in grid.items():
        if isinstance(values, str):
            spec = values
        elif isinstance(values, Iterable):
            spec = ",".join(_value(v) for v in values)
        else:
            spec = _value(values)
        out += ["--grid", f"{key}={spec}"]
    return out


def _sweep_argv(grid: Mapping[str, Any], values: Mapping[str, Any]) -> list[str]:
    """`keel sweep`'s arguments from a call's keywords (`market` is --scenario)."""
    values = {n: None for n in _SWEEP_FLAGS} | dict(values)
    values["scenario"] = values.pop("market", None)
    if values.get("prices") is not None:
        values["prices"] = os.fspath(values["prices"])
    return _grid_argv(grid) + _argv(**{n: values[n] for n in _SWEEP_FLAGS})


def sweep(
    product: Union[Product, str, os.PathLike, None] = None,
    *,
    grid: Mapping[str, Any],
    paths: int = 200,
    market: Optional[str] = None,
    prices: Optional[Union[str, os.PathLike]] = None,
    bootstrap: bool = False,
    window: Optional[str] = None,
    shock: Optional[str] = None,
    horizon: str = "1y",
    block_time: str = "1h",
    seed: int = 1,
    objective: str = "return",
    costs: str = "all",
    funding: Optional[str] = None,
    funding_mean: Optional[str] = None,
    premium_sd: Optional[float] = None,
    premium_half_life: Optional[str] = None,
    arb_capacity: Optional[float] = None,
    oi_per_bp: Optional[float] = None,
    backend: str = "local",
    threads: Optional[int] = None,
    address: Optional[str] = None,
    block_paths: Optional[int] = None,
    progress: Optional[bool] = None,
) -> "pandas.DataFrame":  # noqa: F821
    """A grid of product settings × ``paths`` Monte Carlo paths: ``keel sweep``.

    ``grid`` maps a dotted setting to its values (a list, or ``"2.2..2.5 step 0.05"``);
    ``market`` is ``--scenario`` (``"gbm:vol=80%"``, ``"jump:vol=60%,lambda=12"``, a scenario
    name). Returns ``results.csv`` as a DataFrame (the same figures, to the last digit), one row
    per grid point in grid order; ``df.attrs["results_csv"]`` and ``df.attrs["report_html"]``
    hold the files ``keel sweep`` writes.

    ``backend="ray"`` splits the work into tasks of (grid point, block of ``block_paths``
    paths) on a Ray cluster (``address``: an existing cluster, ``"auto"``, or None to connect to
    the one ``ray.init`` already made or start a local one) and merges them exactly: the same
    table whatever the cluster's size or the order tasks finish in; a failed task is retried and
    never counted twice.
    """
    if backend not in ("local", "ray"):
        raise KeelError(f"backend {backend!r}: use 'local' or 'ray'")
    p = _product(product)
    argv = _sweep_argv(grid, locals())
    if backend == "ray":
        from . import _ray

        results = _ray.sweep(argv, p.toml, p.name, address=address, block_paths=block_paths, progress=progress)
    else:
        bar = _Progress(progress, "paths")
        try:
            plan = _keel.SweepPlan(argv, p.toml, p.name)
            results = plan.run_local(threads, bar)
        except KeelError as e:
            raise _reraise(e, _SWEEP_NAMES) from None
        finally:
            bar.close()
    csv = results.results_csv()
    df = _read_csv(csv)
    df.attrs["results_csv"] = csv
    df.attrs["report_html"] = results.report_html()
    return df


def scenarios() -> dict[str, str]:
    """The built-in markets: name → what it is."""
    return dict(_keel.scenarios())


def optimize(*args: Any, **kwargs: Any) -> "OptimizeResult":  # noqa: F821
    """Parameter search under risk constraints; see :func:`keel.search.optimize`."""
    from .search import optimize as _optimize

    return _optimize(*args, **kwargs)
