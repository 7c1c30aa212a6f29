//! OHLCV CSV loading with strict checks: header detection; unix seconds, milliseconds or
//! ISO-8601 times; ascending order; no gaps, duplicates, unparsable rows, or non-positive or
//! non-finite prices. Every problem names its line.

use std::fmt;

/// One OHLC bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bar {
    /// Open time, unix seconds.
    pub time: u64,
    /// Open price.
    pub open: f64,
    /// High price.
    pub high: f64,
    /// Low price.
    pub low: f64,
    /// Close price.
    pub close: f64,
}

/// Loaded bars and what was tolerated.
#[derive(Debug, Clone, PartialEq)]
pub struct BarSeries {
    /// Bars in ascending time.
    pub bars: Vec<Bar>,
    /// Bar interval in seconds (the most common spacing).
    pub interval: u64,
    /// Gaps passed over with `allow_gaps` (line, message).
    pub warnings: Vec<String>,
}

/// A CSV problem at a line (1-based, header included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// Line number in the file, 1-based; 0 for whole-file problems.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 { write!(f, "{}", self.message) } else { write!(f, "line {}: {}", self.line, self.message) }
    }
}

impl std::error::Error for CsvError {}

fn err(line: usize, message: impl Into<String>) -> CsvError {
    CsvError { line, message: message.into() }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse a time: unix seconds, unix milliseconds (≥ 1e11), or ISO-8601
/// (`2020-03-12 10:00:00`, `2020-03-12T10:00:00Z`, `2020-03-12T10:00:00+00:00`, `2020-03-12`).
pub fn parse_time(s: &str) -> Result<u64, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let v: u64 = t.parse().map_err(|_| format!("time '{t}' is too large"))?;
        return Ok(if v >= 100_000_000_000 { v / 1000 } else { v });
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() && f >= 0.0 && f.fract() == 0.0 {
            let v = f as u64;
            return Ok(if v >= 100_000_000_000 { v / 1000 } else { v });
        }
        return Err(format!("time '{t}' is not a whole number of seconds"));
    }
    let bad = || format!("time '{t}' is not unix seconds, milliseconds or ISO-8601 (YYYY-MM-DD HH:MM:SS)");
    let (date, rest) = t.split_at(t.find(['T', ' ']).unwrap_or(t.len()));
    let mut dp = date.split('-');
    let y: i64 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let m: u32 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let d: u32 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    if dp.next().is_some() || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    let mut secs = 0i64;
    let mut offset = 0i64;
    let rest = rest.trim_start_matches(['T', ' ']);
    if !rest.is_empty() {
        let (clock, tz) = match rest.find(['Z', '+', '-']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let mut cp = clock.split(':');
        let h: i64 = cp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let mi: i64 = cp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let se: f64 = cp.next().map(|x| x.parse().map_err(|_| bad())).transpose()?.unwrap_or(0.0);
        if h > 23 || mi > 59 || !(0.0..61.0).contains(&se) {
            return Err(bad());
        }
        secs = h * 3600 + mi * 60 + se as i64;
        if tz.len() > 1 {
            let sign = if tz.starts_with('-') { -1 } else { 1 };
            let mut zp = tz[1..].split(':');
            let zh: i64 = zp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
            let zm: i64 = zp.next().and_then(|x| x.parse().ok()).unwrap_or(0);
            offset = sign * (zh * 3600 + zm * 60);
        }
    }
    let v = days_from_civil(y, m, d) * 86_400 + secs - offset;
    u64::try_from(v).map_err(|_| format!("time '{t}' is before 1970"))
}

/// `YYYY-MM-DD HH:MM` (UTC) of a unix time, for messages.
pub fn format_time(t: u64) -> String {
    let days = (t / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + if m <= 2 { 1 } else { 0 };
    let s = t % 86_400;
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", s / 3600, s % 3600 / 60)
}

fn price(field: &str, name: &str, line: usize) -> Result<f64, CsvError> {
    let v: f64 = field.trim().parse().map_err(|_| err(line, format!("{name} '{}' is not a number", field.trim())))?;
    if !v.is_finite() {
        return Err(err(line, format!("{name} {v} is not finite")));
    }
    if v <= 0.0 {
        return Err(err(line, format!("{name} {v} is not positive")));
    }
    Ok(v)
}

/// Load bars from CSV text. With `allow_gaps`, missing bars are listed as warnings instead of
/// refused; everything else is always an error.
pub fn load_bars(text: &str, allow_gaps: bool) -> Result<BarSeries, CsvError> {
    load_bars_window(text, allow_gaps, None, None)
}

/// [`load_bars`] keeping only bars with `from ≤ time < to`: every row is still checked, but
/// spacing (gaps) only inside the window, so a gap elsewhere in the file does not matter.
pub fn load_bars_window(
    text: &str,
    allow_gaps: bool,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<BarSeries, CsvError> {
    let mut rdr = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let mut cols = (0usize, 1usize, 2usize, 3usize, 4usize);
    let mut bars: Vec<Bar> = Vec::new();
    let mut lines = Vec::new();
    for (i, rec) in rdr.records().enumerate() {
        let line = i + 1;
        let rec = rec.map_err(|e| err(line, format!("unreadable row: {e}")))?;
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        if i == 0 && parse_time(rec.get(0).unwrap_or("")).is_err() {
            // A header: find the columns by name.
            let names: Vec<String> = rec.iter().map(|f| f.to_ascii_lowercase()).collect();
            let find = |cands: &[&str]| names.iter().position(|n| cands.contains(&n.as_str()));
            let t = find(&["timestamp", "time", "date", "unix", "datetime", "open_time"])
                .ok_or_else(|| err(1, "header has no time column (timestamp, time, date or unix)"))?;
            let o = find(&["open"]).ok_or_else(|| err(1, "header has no 'open' column"))?;
            let h = find(&["high"]).ok_or_else(|| err(1, "header has no 'high' column"))?;
            let l = find(&["low"]).ok_or_else(|| err(1, "header has no 'low' column"))?;
            let c = find(&["close"]).ok_or_else(|| err(1, "header has no 'close' column"))?;
            cols = (t, o, h, l, c);
            continue;
        }
        let get = |j: usize, name: &str| {
            rec.get(j).ok_or_else(|| err(line, format!("missing {name} column ({} fields)", rec.len())))
        };
        let time = parse_time(get(cols.0, "time")?).map_err(|m| err(line, m))?;
        let open = price(get(cols.1, "open")?, "open", line)?;
        let high = price(get(cols.2, "high")?, "high", line)?;
        let low = price(get(cols.3, "low")?, "low", line)?;
        let close = price(get(cols.4, "close")?, "close", line)?;
        if high < open.max(close) || low > open.min(close) || low > high {
            return Err(err(
                line,
                format!("inconsistent bar: low {low}, high {high} do not bracket open {open} and close {close}"),
            ));
        }
        if let Some(prev) = bars.last() {
            if time == prev.time {
                return Err(err(line, format!("duplicate time {time} (also on line {})", lines.last().unwrap())));
            }
            if time < prev.time {
                return Err(err(
                    line,
                    format!("time {time} is before the previous row's {} (rows must ascend)", prev.time),
                ));
            }
        }
        bars.push(Bar { time, open, high, low, close });
        lines.push(line);
    }
    if from.is_some() || to.is_some() {
        let keep: Vec<bool> =
            bars.iter().map(|b| from.is_none_or(|f| b.time >= f) && to.is_none_or(|t| b.time < t)).collect();
        let mut k = keep.iter();
        bars.retain(|_| *k.next().unwrap_or(&false));
        let mut k = keep.iter();
        lines.retain(|_| *k.next().unwrap_or(&false));
    }
    if bars.len() < 2 {
        let scope = if from.is_some() || to.is_some() { " in the window" } else { "" };
        return Err(err(0, format!("need at least 2 bars{scope}, found {}", bars.len())));
    }
    // The interval is the most common spacing.
    let mut counts = std::collections::BTreeMap::new();
    for w in bars.windows(2) {
        *counts.entry(w[1].time - w[0].time).or_insert(0usize) += 1;
    }
    let interval = counts.iter().max_by_key(|(d, c)| (**c, std::cmp::Reverse(**d))).map(|(d, _)| *d).unwrap_or(0);
    let mut warnings = Vec::new();
    for (k, w) in bars.windows(2).enumerate() {
        let d = w[1].time - w[0].time;
        if d != interval {
            let msg = if d % interval == 0 {
                format!("gap: {} missing bar(s) between {} and {}", d / interval - 1, w[0].time, w[1].time)
            } else {
                format!("irregular spacing: {d} s after {} (bars are {interval} s apart)", w[0].time)
            };
            if allow_gaps && d % interval == 0 {
                warnings.push(format!("line {}: {msg}", lines[k + 1]));
            } else if d % interval == 0 {
                return Err(err(lines[k + 1], format!("{msg} (pass --allow-gaps to bridge it)")));
            } else {
                return Err(err(lines[k + 1], msg));
            }
        }
    }
    Ok(BarSeries { bars, interval, warnings })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_times() {
        let cases = [
            ("1584007200", 1_584_007_200),
            ("1584007200000", 1_584_007_200),
            ("2020-03-12 10:00:00", 1_584_007_200),
            ("2020-03-12T10:00:00Z", 1_584_007_200),
            ("2020-03-12T12:00:00+02:00", 1_584_007_200),
            ("2020-03-12", 1_583_971_200),
        ];
        for (s, want) in cases {
            assert_eq!(parse_time(s).unwrap(), want, "case {s}");
        }
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2020-13-01").is_err());
    }

    const GOOD: &str =
        "timestamp,open,high,low,close,volume\n0,100,110,90,105,1\n3600,105,106,100,101,1\n7200,101,103,99,102,1\n";

    #[test]
    fn loads_with_header_and_interval() {
        let s = load_bars(GOOD, false).unwrap();
        assert_eq!(s.bars.len(), 3);
        assert_eq!(s.interval, 3600);
        let no_header = GOOD.lines().skip(1).collect::<Vec<_>>().join("\n");
        assert_eq!(load_bars(&no_header, false).unwrap().bars, s.bars);
    }

    #[test]
    fn table_malformed_rows_name_the_line() {
        let cases = [
            (
                "gap",
                "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,1,1,1\n10800,1,1,1,1\n",
                "line 4: gap: 1 missing bar(s) between 3600 and 10800 (pass --allow-gaps to bridge it)",
            ),
            (
                "duplicate",
                "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,1,1,1\n3600,1,1,1,1\n",
                "line 4: duplicate time 3600 (also on line 3)",
            ),
            (
                "descending",
                "timestamp,open,high,low,close\n3600,1,1,1,1\n0,1,1,1,1\n",
                "line 3: time 0 is before the previous row's 3600 (rows must ascend)",
            ),
            ("negative", "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,1,-1,1\n", "line 3: low -1 is not positive"),
            ("zero", "timestamp,open,high,low,close\n0,0,1,1,1\n3600,1,1,1,1\n", "line 2: open 0 is not positive"),
            ("nan", "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,NaN,1,1\n", "line 3: high NaN is not finite"),
            ("inf", "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,inf,1,1\n", "line 3: high inf is not finite"),
            (
                "unparsable",
                "timestamp,open,high,low,close\n0,1,1,1,1\n3600,one,1,1,1\n",
                "line 3: open 'one' is not a number",
            ),
            (
                "bad time",
                "timestamp,open,high,low,close\n0,1,1,1,1\nnoon,1,1,1,1\n",
                "line 3: time 'noon' is not unix seconds, milliseconds or ISO-8601 (YYYY-MM-DD HH:MM:SS)",
            ),
            (
                "short row",
                "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,1\n",
                "line 3: missing low column (3 fields)",
            ),
            (
                "inconsistent",
                "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,0.5,0.4,1\n",
                "line 3: inconsistent bar: low 0.4, high 0.5 do not bracket open 1 and close 1",
            ),
            ("no close column", "timestamp,open,high,low\n0,1,1,1\n", "line 1: header has no 'close' column"),
            ("too short", "timestamp,open,high,low,close\n0,1,1,1,1\n", "need at least 2 bars, found 1"),
        ];
        for (case, text, want) in cases {
            assert_eq!(load_bars(text, false).unwrap_err().to_string(), want, "case {case}");
        }
    }

    #[test]
    fn a_window_only_checks_spacing_inside_it() {
        let text = "0,1,1,1,1\n3600,1,1,1,1\n10800,1,1,1,1\n14400,1,1,1,1\n18000,1,1,1,1\n";
        assert!(load_bars(text, false).is_err(), "the gap at 7200 counts for the whole file");
        let s = load_bars_window(text, false, Some(10_800), None).unwrap();
        assert_eq!(s.bars.len(), 3);
        let e = load_bars_window(text, false, Some(0), Some(14_400)).unwrap_err().to_string();
        assert!(e.contains("gap") && e.contains("line 3"), "{e}");
        assert!(load_bars_window(text, false, Some(20_000), None).unwrap_err().to_string().contains("in the window"));
    }

    #[test]
    fn allow_gaps_warns() {
        let s = load_bars(
            "timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,1,1,1\n7200,1,1,1,1\n10800,1,1,1,1\n18000,1,1,1,1\n18001,1,1,1,1\n",
            true,
        );
        // The last row is irregular (not a multiple of the interval): an error even with gaps allowed.
        assert_eq!(s.unwrap_err().to_string(), "line 7: irregular spacing: 1 s after 18000 (bars are 3600 s apart)");
        let s = load_bars("timestamp,open,high,low,close\n0,1,1,1,1\n3600,1,1,1,1\n10800,1,1,1,1\n", true).unwrap();
        assert_eq!(s.warnings, vec!["line 4: gap: 1 missing bar(s) between 3600 and 10800".to_string()]);
    }
}
