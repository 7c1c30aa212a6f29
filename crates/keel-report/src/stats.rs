//! The statistics a quant reads first, from daily closes: CAGR, volatility, Sharpe, Sortino,
//! Calmar, drawdowns and their length, monthly returns, the distribution of daily returns,
//! rolling tracking error and volatility, and the costs as basis points a year of average TVL.
//! Analytics, so `f64`.

use keel_sim::SeriesRow;
use keel_sim::metrics::CostBreakdown;

/// One day's close (the last row of a UTC day; the first entry is the run's start).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DayClose {
    /// Unix seconds of the row.
    pub time: u64,
    /// NAV per token.
    pub nav: f64,
    /// The ideal token's NAV.
    pub ideal: f64,
    /// Holding the underlying, scaled to the starting NAV.
    pub hold: f64,
    /// NAV × supply, USD.
    pub tvl: f64,
}

/// Daily closes collected from every row of a run (not the report's thinned copy).
#[derive(Debug, Default, Clone)]
pub struct Dailies {
    /// The start, then each day's close.
    pub days: Vec<DayClose>,
}

impl Dailies {
    /// Offer a row.
    pub fn row(&mut self, r: &SeriesRow) {
        let c = DayClose { time: r.time, nav: r.nav, ideal: r.ideal_nav, hold: r.hold_nav, tvl: r.nav * r.supply };
        let n = self.days.len();
        match self.days.last_mut() {
            // the start stays; later rows of a day replace that day's close
            Some(last) if n > 1 && last.time / 86_400 == r.time / 86_400 => *last = c,
            _ => self.days.push(c),
        }
    }
}

/// Return statistics of one daily series (risk-free rate 0).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReturnStats {
    /// End / start − 1.
    pub total_return: f64,
    /// Compound annual growth rate.
    pub cagr: f64,
    /// Standard deviation of daily returns × √365.
    pub volatility: f64,
    /// Mean daily return × 365 / volatility.
    pub sharpe: f64,
    /// Mean daily return × 365 / (downside deviation × √365).
    pub sortino: f64,
    /// Worst fall from a previous peak (negative).
    pub max_drawdown: f64,
    /// Days from that peak until the series was back at it (or the end, `recovered` false).
    pub max_drawdown_days: f64,
    /// Whether the worst drawdown was recovered before the end.
    pub recovered: bool,
    /// CAGR / |max drawdown|.
    pub calmar: f64,
    /// Best and worst daily return.
    pub best_day: f64,
    /// Worst daily return.
    pub worst_day: f64,
}

/// Daily simple returns of `v`.
pub fn returns(v: &[f64]) -> Vec<f64> {
    v.windows(2).map(|w| if w[0] > 0.0 { w[1] / w[0] - 1.0 } else { 0.0 }).collect()
}

fn mean(x: &[f64]) -> f64 {
    if x.is_empty() { 0.0 } else { x.iter().sum::<f64>() / x.len() as f64 }
}

fn sd(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    (x.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
}

fn ratio(a: f64, b: f64) -> f64 {
    if b > 1e-12 && a.is_finite() { a / b } else { f64::NAN }
}

/// The statistics of `values` sampled at `times` (unix seconds).
pub fn return_stats(times: &[u64], values: &[f64]) -> ReturnStats {
    let n = values.len();
    if n < 2 || values[0] <= 0.0 {
        return ReturnStats::default();
    }
    let r = returns(values);
    let years = (times[n - 1].saturating_sub(times[0]) as f64 / (365.0 * 86_400.0)).max(1.0 / 365.0);
    let total = values[n - 1] / values[0] - 1.0;
    let cagr = if values[n - 1] > 0.0 { (values[n - 1] / values[0]).powf(1.0 / years) - 1.0 } else { -1.0 };
    let vol = sd(&r) * 365f64.sqrt();
    let downside = (r.iter().map(|v| v.min(0.0).powi(2)).sum::<f64>() / r.len() as f64).sqrt() * 365f64.sqrt();
    let (dd, dd_days, recovered) = max_drawdown(times, values);
    ReturnStats {
        total_return: total,
        cagr,
        volatility: vol,
        sharpe: ratio(mean(&r) * 365.0, vol),
        sortino: ratio(mean(&r) * 365.0, downside),
        max_drawdown: dd,
        max_drawdown_days: dd_days,
        recovered,
        calmar: ratio(cagr, -dd),
        best_day: r.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
        worst_day: r.iter().cloned().fold(f64::INFINITY, f64::min),
    }
}

/// The drawdown at each point: value / running peak − 1.
pub fn drawdowns(values: &[f64]) -> Vec<f64> {
    let mut peak = f64::NEG_INFINITY;
    values
        .iter()
        .map(|&v| {
            peak = peak.max(v);
            if peak > 0.0 { v / peak - 1.0 } else { 0.0 }
        })
        .collect()
}

/// The worst drawdown, its length in days (peak to recovery, or to the end), and whether it
/// recovered.
fn max_drawdown(times: &[u64], values: &[f64]) -> (f64, f64, bool) {
    let (mut peak, mut peak_i) = (values[0], 0);
    let (mut worst, mut worst_peak_i) = (0.0, 0);
    for (i, &v) in values.iter().enumerate() {
        if v > peak {
            (peak, peak_i) = (v, i);
        }
        let dd = if peak > 0.0 { v / peak - 1.0 } else { 0.0 };
        if dd < worst {
            (worst, worst_peak_i) = (dd, peak_i);
        }
    }
    if worst == 0.0 {
        return (0.0, 0.0, true);
    }
    let top = values[worst_peak_i];
    let back = values.iter().enumerate().skip(worst_peak_i + 1).find(|(_, v)| **v >= top).map(|(i, _)| i);
    let end = back.unwrap_or(values.len() - 1);
    (worst, times[end].saturating_sub(times[worst_peak_i]) as f64 / 86_400.0, back.is_some())
}

/// Rolling `window`-day figures at each day from the `window`-th on: the annualised standard
/// deviation of the token's daily returns and of their difference from the ideal's.
pub fn rolling(token: &[f64], ideal: &[f64], window: usize) -> (Vec<f64>, Vec<f64>) {
    let (rt, ri) = (returns(token), returns(ideal));
    let diff: Vec<f64> = rt.iter().zip(&ri).map(|(a, b)| a - b).collect();
    let k = 365f64.sqrt();
    let mut vol = vec![f64::NAN; token.len()];
    let mut te = vec![f64::NAN; token.len()];
    for end in window..=rt.len() {
        vol[end] = sd(&rt[end - window..end]) * k;
        te[end] = sd(&diff[end - window..end]) * k;
    }
    (vol, te)
}

/// Returns by calendar month: `(year, [Jan..Dec], year)`; `None` for months outside the run.
pub type MonthRow = (i64, [Option<f64>; 12], Option<f64>);

/// Monthly and yearly returns from daily closes (each month against the previous month's
/// last close, the first against the start).
pub fn monthly(times: &[u64], values: &[f64]) -> Vec<MonthRow> {
    let mut out: Vec<MonthRow> = Vec::new();
    if values.len() < 2 {
        return out;
    }
    let ym = |t: u64| {
        let (y, m, _) = crate::dates::civil((t / 86_400) as i64);
        (y, m as usize - 1)
    };
    let (mut base_month, mut base_year) = (values[0], values[0]);
    let mut cur = ym(times[0]);
    let mut last = values[0];
    let close_month = |out: &mut Vec<MonthRow>, (y, m): (i64, usize), base: f64, v: f64| {
        if out.last().map(|r| r.0) != Some(y) {
            out.push((y, [None; 12], None));
        }
        if let Some(r) = out.last_mut() {
            r.1[m] = Some(if base > 0.0 { v / base - 1.0 } else { f64::NAN });
        }
    };
    for (&t, &v) in times.iter().zip(values).skip(1) {
        let k = ym(t);
        if k != cur {
            close_month(&mut out, cur, base_month, last);
            base_month = last;
            if k.0 != cur.0 {
                if let Some(r) = out.last_mut() {
                    r.2 = Some(if base_year > 0.0 { last / base_year - 1.0 } else { f64::NAN });
                }
                base_year = last;
            }
            cur = k;
        }
        last = v;
    }
    close_month(&mut out, cur, base_month, last);
    if let Some(r) = out.last_mut() {
        r.2 = Some(if base_year > 0.0 { last / base_year - 1.0 } else { f64::NAN });
    }
    out
}

/// A histogram of `x`: bin centres, counts, bin width. Bins of a round width, about 40 of them,
/// over the values' whole range (no value left out).
pub fn histogram(x: &[f64]) -> (Vec<f64>, Vec<f64>, f64) {
    let finite: Vec<f64> = x.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.is_empty() {
        return (vec![], vec![], 0.0);
    }
    let lo = finite.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let raw = ((hi - lo) / 40.0).max(1e-6);
    let mag = 10f64.powf(raw.log10().floor());
    let width = [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * mag).find(|w| *w >= raw).unwrap_or(10.0 * mag);
    let first = (lo / width).floor() as i64;
    let last = (hi / width).floor() as i64;
    let mut counts = vec![0.0; (last - first + 1) as usize];
    for v in &finite {
        let i = ((v / width).floor() as i64 - first).clamp(0, counts.len() as i64 - 1) as usize;
        counts[i] += 1.0;
    }
    let centres = (first..=last).map(|k| (k as f64 + 0.5) * width).collect();
    (centres, counts, width)
}

/// Who bears each cost.
pub const PAYERS: [&str; CostBreakdown::KINDS] = [
    "holders, through NAV",
    "holders, through NAV",
    "the operator (keeper's gas)",
    "public bots (their gas)",
    "holders, through NAV",
    "the operator (the strategy's ether)",
    "holders, through NAV (to the fee recipient)",
    "the holders who mint or redeem",
    "holders, through NAV (the venue's keepers)",
    "holders, through NAV",
];

/// The cost kinds' names, in `CostBreakdown::values` order.
pub const COST_NAMES: [&str; CostBreakdown::KINDS] = [
    "pool fees",
    "price impact",
    "keeper gas",
    "ripcord bots' gas",
    "net interest",
    "ripcord rewards",
    "streaming fee",
    "mint/redeem fees",
    "venue keeper fees",
    "funding (net)",
];

/// Average TVL over the daily closes, USD.
pub fn average_tvl(days: &[DayClose]) -> f64 {
    mean(&days.iter().map(|d| d.tvl).filter(|v| v.is_finite()).collect::<Vec<_>>())
}

/// A cost in basis points a year of `avg_tvl` over `years`.
pub fn bps_a_year(usd: f64, avg_tvl: f64, years: f64) -> f64 {
    if avg_tvl > 0.0 && years > 0.0 { usd / avg_tvl / years * 1e4 } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    #[test]
    fn drawdown_and_its_length_table() {
        // (case, values, max drawdown, days, recovered)
        let cases: [(&str, &[f64], f64, f64, bool); 4] = [
            ("rising", &[1.0, 1.1, 1.2], 0.0, 0.0, true),
            ("fall and recover", &[1.0, 2.0, 1.0, 1.5, 2.0, 2.5], -0.5, 3.0, true),
            ("fall, no recovery", &[1.0, 2.0, 1.5, 0.5, 1.0], -0.75, 3.0, false),
            ("two falls, the second deeper", &[1.0, 0.9, 1.0, 2.0, 1.0, 3.0], -0.5, 2.0, true),
        ];
        for (case, v, dd, days, rec) in cases {
            let t: Vec<u64> = (0..v.len() as u64).map(|i| i * DAY).collect();
            let s = return_stats(&t, v);
            assert!((s.max_drawdown - dd).abs() < 1e-12, "case {case}: {}", s.max_drawdown);
            assert_eq!((s.max_drawdown_days, s.recovered), (days, rec), "case {case}");
        }
    }

    #[test]
    fn cagr_volatility_and_ratios() {
        // a year of days doubling the value: CAGR 100%; constant returns: no volatility
        let t: Vec<u64> = (0..=365).map(|i| i * DAY).collect();
        let g = 2f64.powf(1.0 / 365.0);
        let v: Vec<f64> = (0..=365).map(|i| g.powi(i)).collect();
        let s = return_stats(&t, &v);
        assert!((s.cagr - 1.0).abs() < 1e-9 && (s.total_return - 1.0).abs() < 1e-9);
        assert!(s.volatility < 1e-9 && s.sharpe.is_nan() && s.sortino.is_nan());
        // alternating +1% / −1%: volatility ≈ 1% × √365 (sample sd)
        let v: Vec<f64> = (0..=100)
            .scan(1.0, |x, i| {
                let out = *x;
                *x *= if i % 2 == 0 { 1.01 } else { 0.99 };
                Some(out)
            })
            .collect();
        let t: Vec<u64> = (0..=100).map(|i| i * DAY).collect();
        let s = return_stats(&t, &v);
        assert!((s.volatility / 365f64.sqrt() - 0.01).abs() < 1e-4, "{}", s.volatility);
        assert!(s.sortino.is_finite() && s.best_day > 0.0099 && s.worst_day < -0.0099);
    }

    #[test]
    fn months_and_years() {
        // 2024-01-01 .. 2024-03-01 daily, +1% on Feb 1 only
        let start = 1_704_067_200;
        let t: Vec<u64> = (0..=60).map(|i| start + i * DAY).collect();
        let v: Vec<f64> = (0..=60).map(|i| if i >= 31 { 1.01 } else { 1.0 }).collect();
        let m = monthly(&t, &v);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].0, 2024);
        assert_eq!(m[0].1[0], Some(0.0));
        assert!((m[0].1[1].unwrap() - 0.01).abs() < 1e-12);
        assert_eq!(m[0].1[2], Some(0.0));
        assert!((m[0].2.unwrap() - 0.01).abs() < 1e-12);
    }

    #[test]
    fn the_histogram_holds_every_value() {
        let x = [-0.031, -0.01, 0.0, 0.002, 0.05, f64::NAN];
        let (c, n, w) = histogram(&x);
        assert_eq!(n.iter().sum::<f64>(), 5.0);
        assert!(w > 0.0 && c.len() == n.len());
        assert!(c[0] - w / 2.0 <= -0.031 && c[c.len() - 1] + w / 2.0 >= 0.05);
    }

    #[test]
    fn dailies_keep_the_start_and_each_days_close() {
        let mut d = Dailies::default();
        let row = |time: u64, nav: f64| SeriesRow { time, nav, supply: 1.0, ..crate::tests::row() };
        for (t, v) in [(0, 1.0), (3_600, 1.1), (7_200, 1.2), (DAY, 1.3), (DAY + 3_600, 1.4)] {
            d.row(&row(t, v));
        }
        let navs: Vec<f64> = d.days.iter().map(|c| c.nav).collect();
        assert_eq!(navs, vec![1.0, 1.2, 1.4]);
    }
}
