//! Funding-rate history (CSV) with the price files' strict checks: a header naming a time
//! column and one rate column; unix seconds, milliseconds or ISO-8601 times; ascending, no
//! duplicates and no gaps; every rate a finite number within ±100% a day. The rate column's
//! name gives its unit: `funding_rate` (or `rate`, `funding_rate_1d`) is a fraction per day,
//! `funding_rate_8h` per 8 hours and `funding_rate_1h` per hour; rates are kept per day, the
//! unit of Perp v2's and Synthetix's funding. A rate holds from its row's time until the next
//! row. Every problem names its line.

use crate::csv::{CsvError, err, excerpt, next_line, parse_time};

/// The largest |rate| accepted, per day: past it a row is a unit mistake, not a market.
pub const MAX_DAILY_RATE: f64 = 1.0;

/// Funding rates in ascending time.
#[derive(Debug, Clone, PartialEq)]
pub struct FundingSeries {
    /// `(time, rate per day)`, ascending; each rate holds until the next row's time.
    pub rows: Vec<(u64, f64)>,
    /// Spacing of the rows, seconds.
    pub interval: u64,
}

impl FundingSeries {
    /// The rate per day in force at `t` (the last row at or before it; the first row's before
    /// the file starts). `hint` is the index found last time (reads move forward).
    pub fn rate_at(&self, t: u64, hint: &mut usize) -> f64 {
        let rows = &self.rows;
        if *hint >= rows.len() || rows[*hint].0 > t {
            *hint = 0;
        }
        while *hint + 1 < rows.len() && rows[*hint + 1].0 <= t {
            *hint += 1;
        }
        rows.get(*hint).map_or(0.0, |r| r.1)
    }

    /// Refuse a series that does not cover `start..end` (the prices' first and last time):
    /// a rate must be in force from the first price to the last.
    pub fn check_covers(&self, start: u64, end: u64) -> Result<(), CsvError> {
        let (first, last) = match (self.rows.first(), self.rows.last()) {
            (Some(f), Some(l)) => (f.0, l.0 + self.interval),
            _ => return Err(err(0, "the funding file has no rows")),
        };
        if first > start || last < end {
            return Err(err(
                0,
                format!(
                    "the funding rates cover {} to {}, the prices run from {} to {}: a rate must be in force at every price (rule: funding rows start at or before the first price and reach the last)",
                    crate::csv::format_time(first),
                    crate::csv::format_time(last),
                    crate::csv::format_time(start),
                    crate::csv::format_time(end)
                ),
            ));
        }
        Ok(())
    }
}

/// Load a funding file, keeping the rows that matter for `from ≤ t < to` (the row in force at
/// `from` and every later one before `to`); every row is checked.
pub fn load_funding_file(
    path: &std::path::Path,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<FundingSeries, CsvError> {
    let f = std::fs::File::open(path).map_err(|e| err(0, format!("cannot read {}: {e}", path.display())))?;
    load_funding_reader(std::io::BufReader::new(f), from, to)
}

/// [`load_funding_file`] from a reader.
pub fn load_funding_reader<R: std::io::BufRead>(
    mut r: R,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<FundingSeries, CsvError> {
    let mut buf = Vec::with_capacity(128);
    let mut line = 0usize;
    let mut cols: Option<(usize, usize, f64, usize)> = None;
    let mut rows: Vec<(u64, f64)> = Vec::new();
    let mut lines: Vec<usize> = Vec::new();
    while let Some(text) = next_line(&mut r, &mut buf, line + 1)? {
        line += 1;
        let rec: Vec<&str> = text.split(',').map(|f| f.trim().trim_matches('"').trim()).collect();
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        let Some((t, c, per_day, width)) = cols else {
            let names: Vec<String> = rec.iter().map(|f| f.to_ascii_lowercase()).collect();
            let find = |cands: &[&str]| names.iter().position(|n| cands.contains(&n.as_str()));
            let t = find(&["timestamp", "time", "date", "unix", "datetime"]).ok_or_else(|| {
                err(line, "the first line must be a header with a time column (timestamp, time, date or unix) and a rate column (funding_rate per day, funding_rate_8h or funding_rate_1h)")
            })?;
            let (c, per_day) = if let Some(c) = find(&["funding_rate", "rate", "funding_rate_1d"]) {
                (c, 1.0)
            } else if let Some(c) = find(&["funding_rate_8h"]) {
                (c, 3.0)
            } else if let Some(c) = find(&["funding_rate_1h"]) {
                (c, 24.0)
            } else {
                return Err(err(
                    line,
                    "the header has no rate column: name it funding_rate (a fraction per day), funding_rate_8h or funding_rate_1h",
                ));
            };
            cols = Some((t, c, per_day, rec.len()));
            continue;
        };
        if rec.len() != width {
            return Err(err(line, format!("{} fields, but the header has {width}", rec.len())));
        }
        let time = parse_time(rec[t]).map_err(|m| err(line, m))?;
        let raw: f64 =
            rec[c].parse().map_err(|_| err(line, format!("funding rate '{}' is not a number", excerpt(rec[c]))))?;
        let rate = raw * per_day;
        if !rate.is_finite() || rate.abs() > MAX_DAILY_RATE {
            return Err(err(
                line,
                format!(
                    "funding rate {} is {rate} a day: outside ±{MAX_DAILY_RATE} a day (rule: a fraction, 0.0001 is 0.01%)",
                    excerpt(rec[c])
                ),
            ));
        }
        if let Some(&(prev, _)) = rows.last() {
            let prev_line = lines.last().copied().unwrap_or(0);
            if time == prev {
                return Err(err(line, format!("duplicate time {time} (also on line {prev_line})")));
            }
            if time < prev {
                return Err(err(line, format!("time {time} is before the previous row's {prev} (rows must ascend)")));
            }
        }
        rows.push((time, rate));
        lines.push(line);
    }
    if cols.is_none() {
        return Err(err(0, "the funding file is empty"));
    }
    if rows.len() < 2 {
        return Err(err(0, format!("need at least 2 funding rows, found {}", rows.len())));
    }
    let mut counts = std::collections::BTreeMap::new();
    for w in rows.windows(2) {
        *counts.entry(w[1].0 - w[0].0).or_insert(0usize) += 1;
    }
    let interval = counts.iter().max_by_key(|(d, c)| (**c, std::cmp::Reverse(**d))).map(|(d, _)| *d).unwrap_or(0);
    for (k, w) in rows.windows(2).enumerate() {
        let d = w[1].0 - w[0].0;
        if d != interval {
            return Err(err(
                lines[k + 1],
                format!("gap: {d} s after {} (the rows are {interval} s apart; every interval needs its rate)", w[0].0),
            ));
        }
    }
    // the row in force at `from`, and those before `to`
    let first = from.map_or(0, |f| rows.iter().rposition(|r| r.0 <= f).unwrap_or(0));
    let end = to.map_or(rows.len(), |t| rows.iter().position(|r| r.0 >= t).unwrap_or(rows.len()).max(first + 1));
    Ok(FundingSeries { rows: rows[first..end].to_vec(), interval })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<FundingSeries, CsvError> {
        load_funding_reader(text.as_bytes(), None, None)
    }

    #[test]
    fn table_bad_files_name_the_line_and_the_rule() {
        let cases = [
            ("no header", "1700000000,0.0001\n1700003600,0.0001\n", 1, "header"),
            ("no rate column", "timestamp,premium_x\n1700000000,0.0001\n", 1, "no rate column"),
            ("not a number", "timestamp,funding_rate\n1700000000,abc\n1700003600,0.1\n", 2, "not a number"),
            ("absurd", "timestamp,funding_rate\n1700000000,0.0001\n1700003600,5\n", 3, "outside"),
            ("absurd per 8h", "timestamp,funding_rate_8h\n1700000000,0.5\n1700003600,0.1\n", 2, "outside"),
            ("nan", "timestamp,funding_rate\n1700000000,NaN\n1700003600,0.1\n", 2, "outside"),
            ("duplicate", "timestamp,funding_rate\n1700000000,0.1\n1700000000,0.1\n", 3, "duplicate"),
            ("descending", "timestamp,funding_rate\n1700003600,0.1\n1700000000,0.1\n", 3, "ascend"),
            (
                "gap",
                "timestamp,funding_rate\n1700000000,0.1\n1700003600,0.1\n1700007200,0.1\n1700014400,0.1\n",
                5,
                "gap",
            ),
            ("width", "timestamp,funding_rate\n1700000000,0.1,3\n1700003600,0.1\n", 2, "fields"),
            ("one row", "timestamp,funding_rate\n1700000000,0.1\n", 0, "at least 2"),
        ];
        for (case, text, line, words) in cases {
            let e = load(text).expect_err(case);
            assert_eq!(e.line, line, "case {case}: {e}");
            assert!(e.to_string().contains(words), "case {case}: {e}");
        }
    }

    #[test]
    fn units_window_and_lookup() {
        let s = load("time,funding_rate_8h\n1700000000,0.0001\n1700028800,-0.0002\n1700057600,0.0003\n").unwrap();
        assert_eq!(s.interval, 28_800);
        assert!((s.rows[1].1 + 0.0006).abs() < 1e-15, "per 8 h × 3 = per day");
        let mut h = 0;
        assert_eq!(s.rate_at(1_700_000_000 + 100, &mut h), s.rows[0].1);
        assert_eq!(s.rate_at(1_700_057_600, &mut h), s.rows[2].1);
        assert_eq!(s.rate_at(1_700_000_001, &mut h), s.rows[0].1, "reads may go back");
        assert!(s.check_covers(1_700_000_000, 1_700_080_000).is_ok());
        let e = s.check_covers(1_699_999_999, 1_700_080_000).unwrap_err();
        assert!(e.to_string().contains("must be in force"), "{e}");
        assert!(s.check_covers(1_700_000_000, 1_700_086_401).is_err());
        let w = load_funding_reader(
            "time,funding_rate\n1700000000,0.1\n1700003600,0.2\n1700007200,0.3\n1700010800,0.4\n".as_bytes(),
            Some(1_700_004_000),
            Some(1_700_007_200),
        )
        .unwrap();
        assert_eq!(w.rows, vec![(1_700_003_600, 0.2)], "the row in force at the start, and those before the end");
    }
}
