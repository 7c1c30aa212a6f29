"""Parameter search under risk constraints finds what an exhaustive grid says is best."""

import pytest

import keel

MARKET = dict(paths=16, market="gbm:vol=80%", horizon="60d")
LEVELS = ["2.1", "2.2", "2.3", "2.4", "2.5", "2.6"]


def best_by_grid(constraint):
    """The ground truth: every level swept, the cheapest one whose ripcord share is allowed."""
    df = keel.sweep(grid={"methodology.max_leverage_ratio": LEVELS}, **MARKET)
    ok = df[df["p_ripcord"] <= constraint]
    row = ok.loc[ok["cost_total"].idxmin()]
    return f"{row['methodology.max_leverage_ratio']:g}", row["cost_total"], df


def test_the_cheapest_band_that_keeps_the_ripcord_away_is_found():
    want, cost, df = best_by_grid(0.0)
    # the constraint binds: the cheapest band of all needs a ripcord on some paths
    assert df.loc[df["cost_total"].idxmin(), "p_ripcord"] > 0
    r = keel.optimize(
        space={"methodology.max_leverage_ratio": (2.1, 2.6, 0.1)},
        objective="cost",
        constraints={"p_ripcord": 0.0},
        budget=14,
        **MARKET,
    )
    assert r.best == {"methodology.max_leverage_ratio": want}
    assert r.best_value == cost
    assert r.product.check().startswith("ok:")
    assert len(r.trials) == 14 and not r.trials["passed"].all()
    assert all(r.trials.loc[~r.trials["passed"], "why"].str.contains("p_ripcord"))


def test_settings_that_break_a_rule_fail_their_trial_with_the_rule():
    r = keel.optimize(
        space={"methodology.max_leverage_ratio": ["1.5", "2.3"]}, objective="tracking", budget=4, **MARKET
    )
    bad = r.trials[r.trials["methodology.max_leverage_ratio"] == "1.5"]
    assert len(bad) == 0 or bad["why"].str.contains("below target_leverage_ratio").all()
    assert r.best == {"methodology.max_leverage_ratio": "2.3"}


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(space={}), "space: give at least one setting"),
        (dict(space={"methodology.max_leverage": (2.2, 2.5)}), "did you mean methodology.max_leverage_ratio"),
        (dict(space={"methodology.max_leverage_ratio": (2.2, 2.5)}, objective="speed"), "objective 'speed'"),
        (dict(space={"methodology.max_leverage_ratio": (2.2, 2.5)}, constraints={"p_moon": 0.1}, budget=1),
         "p_moon not in the sweep's table"),
    ],
    ids=["empty-space", "misspelt-key", "unknown-objective", "unknown-constraint"],
)
def test_bad_searches_are_refused_with_the_rule(kwargs, message):
    with pytest.raises(keel.KeelError) as e:
        keel.optimize(**{**MARKET, **kwargs})
    assert message in str(e.value)
