"""Parameter search under risk constraints: Optuna's TPE sampler proposes settings, keel's
sweep engine scores each on the same Monte Carlo paths (seeds from (seed, path), so every trial
sees the same market), here or as Ray tasks.

A trial's settings must pass ``keel product check`` (rules and a start on the venue) and then
the constraints (``{"p_liquidation": 0.001}``: that column of the sweep's table at most 0.001);
the best trial is the best objective among those that pass.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

from . import _SWEEP_NAMES, KeelError, Product, _keel, _product, _read_csv, _reraise, _sweep_argv, _value

# objective → (results column, direction)
OBJECTIVES = {
    "tracking": ("tracking_error", "minimize"),
    "return": ("nav_vs_ideal_mean", "maximize"),
    "cost": ("cost_total", "minimize"),
}


@dataclass
class OptimizeResult:
    """The search's outcome: the best passing settings (None if no trial passed), its
    objective value, its row of the sweep table, the product with those settings, and every
    trial (settings, objective, constraint columns, ``passed``, ``why`` it did not)."""

    best: Optional[dict]
    best_value: Optional[float]
    best_row: Optional[dict]
    product: Optional[Product]
    trials: "pandas.DataFrame"  # noqa: F821


def _decimal(x: float, digits: int = 10) -> str:
    """A float as a plain decimal (product files take no exponents)."""
    s = format(x, f".{digits}f").rstrip("0").rstrip(".")
    return s if s not in ("", "-0") else "0"


def _suggest(trial: Any, key: str, spec: Any) -> str:
    if isinstance(spec, (list,)) or (isinstance(spec, tuple) and len(spec) not in (2, 3)):
        choices = [_value(v) for v in spec]
        return trial.suggest_categorical(key, choices)
    if isinstance(spec, tuple):
        lo, hi = spec[0], spec[1]
        step = spec[2] if len(spec) == 3 else None
        if all(isinstance(v, int) and not isinstance(v, bool) for v in spec):
            return str(trial.suggest_int(key, lo, hi, step=step or 1))
        x = trial.suggest_float(key, float(lo), float(hi), step=step)
        if step:
            digits = max(0, -math.floor(math.log10(abs(step)))) + 2
            return _decimal(round(x, digits), digits)
        return _decimal(x, 6)
    raise KeelError(
        f"space[{key!r}] = {spec!r}: give (low, high), (low, high, step) or a list of values"
    )


def _evaluate(argv: list, text: str, name: str, threads: Optional[int]) -> tuple:
    """Check a trial's product, then sweep it: (None, row) or (why, None)."""
    try:
        _keel.product_check(text, name)
    except KeelError as e:
        return (str(e).split("\n", 1)[-1].strip(), None)
    plan = _keel.SweepPlan(argv, text, name)
    df = _read_csv(plan.run_local(threads).results_csv())
    row = df.iloc[0].to_dict()
    if isinstance(row.get("invalid"), str) and row["invalid"]:
        return (row["invalid"], None)
    return (None, row)


def optimize(
    product: Union[Product, str, os.PathLike, None] = None,
    *,
    space: Mapping[str, Any],
    objective: str = "tracking",
    constraints: Optional[Mapping[str, float]] = None,
    paths: int = 100,
    market: Optional[str] = None,
    prices: Optional[Union[str, os.PathLike]] = None,
    bootstrap: bool = False,
    window: Optional[str] = None,
    shock: Optional[str] = None,
    horizon: str = "1y",
    block_time: str = "1h",
    seed: int = 1,
    costs: str = "all",
    budget: int = 30,
    sampler_seed: int = 0,
    backend: str = "local",
    address: Optional[str] = None,
    parallel: Optional[int] = None,
    threads: Optional[int] = None,
    progress: Optional[bool] = None,
) -> OptimizeResult:
    """Search ``space`` (dotted setting → ``(low, high)``, ``(low, high, step)`` or a list)
    for the settings with the best ``objective`` (``"tracking"``: lowest tracking error,
    ``"return"``: highest mean return against the ideal token, ``"cost"``: lowest mean cost)
    among those that pass ``check`` and every constraint, in ``budget`` trials of ``paths``
    paths each. ``backend="ray"`` runs ``parallel`` trials at a time (default: the cluster's
    CPUs) as Ray tasks."""
    try:
        import optuna
    except ImportError:
        raise KeelError("optimize needs Optuna: pip install optuna (or keel[ray])") from None
    if objective not in OBJECTIVES:
        raise KeelError(f"objective {objective!r}: use {', '.join(OBJECTIVES)}")
    if not space:
        raise KeelError("space: give at least one setting to search, e.g. {'methodology.max_leverage_ratio': (2.2, 2.6)}")
    if budget < 1:
        raise KeelError(f"budget {budget}: give at least 1 trial")
    if backend not in ("local", "ray"):
        raise KeelError(f"backend {backend!r}: use 'local' or 'ray'")
    base = _product(product)
    constraints = dict(constraints or {})
    column, direction = OBJECTIVES[objective]
    first_key = next(iter(space))

    # one grid point: the trial's settings are already in its product
    sweep_kw = {**locals(), "objective": "return"}

    def argv_for(settings: Mapping[str, str]) -> list:
        return _sweep_argv({first_key: [settings[first_key]]}, sweep_kw)

    # the sweep's own checks (market, horizon, keys) before any trial
    try:
        _keel.SweepPlan(argv_for({first_key: _value(_first_value(space[first_key]))}), base.toml, base.name)
        for key in space:
            base.with_settings({key: _first_value(space[key])})
    except KeelError as e:
        raise _reraise(e, _SWEEP_NAMES) from None

    run_many = None
    if backend == "ray":
        import ray

        if not ray.is_initialized():
            ray.init(address=address, log_to_driver=False)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        parallel = parallel or cpus
        remote = ray.remote(num_cpus=1, max_retries=3)(_evaluate)

        def run_many(jobs: Sequence[tuple]) -> list:
            return ray.get([remote.remote(a, t, n, 1) for a, t, n in jobs])
    else:
        parallel = 1

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # constraint values (> 0: violated) reach the sampler through Trial.set_constraint on
    # Optuna 5+, through constraints_func before
    modern = hasattr(optuna.trial.Trial, "set_constraint")
    extra = {} if modern else {"constraints_func": lambda t: t.user_attrs.get("violations", [1.0])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=sampler_seed, n_startup_trials=min(10, max(2, budget // 3)), **extra)

    def constrain(trial: Any, violations: list) -> None:
        if modern:
            for k, v in enumerate(violations):
                trial.set_constraint(f"c{k}", v)
        trial.set_user_attr("violations", violations)
    study = optuna.create_study(direction=direction, sampler=sampler)
    records = []
    show = sys.stderr.isatty() if progress is None else progress
    done = 0
    while done < budget:
        batch = [study.ask() for _ in range(min(parallel, budget - done))]
        jobs, settings_of = [], []
        for trial in batch:
            settings = {key: _suggest(trial, key, spec) for key, spec in space.items()}
            p = base.with_settings(settings)
            jobs.append((argv_for(settings), p.toml, p.name))
            settings_of.append(settings)
        try:
            outs = run_many(jobs) if run_many else [_evaluate(a, t, n, threads) for a, t, n in jobs]
        except KeelError as e:
            raise _reraise(e, _SWEEP_NAMES) from None
        for trial, settings, (why, row) in zip(batch, settings_of, outs):
            rec = {"trial": trial.number, **settings}
            if row is None:
                constrain(trial, [1.0])
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                rec.update({column: float("nan"), "passed": False, "why": why})
            else:
                missing = [c for c in constraints if c not in row]
                if missing:
                    cols = [c for c in row if c.startswith("p_") or c in ("worst_drawdown", "var_1d_99", "es_1d_99")]
                    raise KeelError(
                        f"constraints: {', '.join(missing)} not in the sweep's table; use one of {', '.join(cols)}"
                    )
                violations = [float(row[c]) - float(b) for c, b in constraints.items()]
                constrain(trial, violations or [0.0])
                value = float(row[column])
                study.tell(trial, value)
                broken = [f"{c} {row[c]:g} > {b:g}" for c, b in constraints.items() if float(row[c]) > float(b)]
                rec.update({column: value, **{c: row[c] for c in constraints}})
                rec.update({"passed": not broken, "why": "; ".join(broken)})
                rec["_row"] = row
            records.append(rec)
        done += len(batch)
        if show:
            n_ok = sum(r["passed"] for r in records)
            print(f"\r{done}/{budget} trials, {n_ok} passed", end="", file=sys.stderr)
    if show:
        print(file=sys.stderr)

    import pandas as pd

    passed = [r for r in records if r["passed"]]
    best = None
    if passed:
        key = (lambda r: (r[column], r["trial"])) if direction == "minimize" else (lambda r: (-r[column], r["trial"]))
        best = min(passed, key=key)
    trials = pd.DataFrame([{k: v for k, v in r.items() if k != "_row"} for r in records])
    if best is None:
        return OptimizeResult(best=None, best_value=None, best_row=None, product=None, trials=trials)
    settings = {k: best[k] for k in space}
    product_best = base.with_settings(settings)
    product_best.check()
    return OptimizeResult(
        best=settings, best_value=best[column], best_row=best["_row"], product=product_best, trials=trials
    )


def _first_value(spec: Any) -> Any:
    if isinstance(spec, tuple) and len(spec) in (2, 3):
        return spec[0]
    if isinstance(spec, (list, tuple)) and spec:
        return spec[0]
    raise KeelError(f"space value {spec!r}: give (low, high), (low, high, step) or a non-empty list")
