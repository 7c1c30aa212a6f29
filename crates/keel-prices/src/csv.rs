//! OHLCV CSV loading with strict checks: header detection; unix seconds, milliseconds or
//! ISO-8601 times (real instants only); ascending order; every row as wide as the header; no
//! gaps, duplicates, unparsable rows, or prices outside 1e-8..1e12 USD. Lines are read one at a
//! time and bounded, so a malformed file costs no more memory than its bars. Every problem
//! names its line and quotes at most a short excerpt.

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

pub(crate) fn err(line: usize, message: impl Into<String>) -> CsvError {
    CsvError { line, message: message.into() }
}

/// The latest time keel reads: 9999-12-31 23:59:59 UTC.
pub const MAX_TIME: u64 = 253_402_300_799;

/// Parse a time: unix seconds, unix milliseconds (≥ 1e11), or ISO-8601 / RFC 3339 read by
/// `jiff` (`2020-03-12`, `2020-03-12 10:00:00` and `2020-03-12T10:00` as UTC,
/// `2020-03-12T10:00:00Z`, `…+05:30`, `…+0530`). A date that does not exist (`2021-02-30`),
/// an hour 24, a fraction of a second or a time past year 9999 is refused, never rolled over.
pub fn parse_time(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let unix = |v: u64| -> Result<u64, String> {
        let v = if v >= 100_000_000_000 { v / 1000 } else { v };
        if v > MAX_TIME {
            return Err(format!("time '{t}' is after the year 9999"));
        }
        Ok(v)
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        let v: u64 = t.parse().map_err(|_| format!("time '{t}' is too large"))?;
        return unix(v);
    }
    if let Ok(f) = t.parse::<f64>() {
        if f.is_finite() && f >= 0.0 && f.fract() == 0.0 && f < 1e16 {
            return unix(f as u64);
        }
        return Err(format!("time '{t}' is not a whole number of seconds"));
    }
    let ts = match t.parse::<jiff::Timestamp>() {
        Ok(ts) => ts,
        Err(with_offset) => match t.parse::<jiff::civil::DateTime>() {
            // no offset: UTC
            Ok(dt) => dt.to_zoned(jiff::tz::TimeZone::UTC).map_err(|e| format!("time '{t}': {e}"))?.timestamp(),
            Err(_) => {
                // jiff's reason helps for something shaped like a date ("day must be in 1..=28")
                let dated = t.len() >= 5 && t.as_bytes()[..4].iter().all(u8::is_ascii_digit) && t.as_bytes()[4] == b'-';
                let why = if dated { format!(": {with_offset}") } else { String::new() };
                return Err(format!(
                    "time '{}' is not unix seconds, milliseconds or ISO-8601 (YYYY-MM-DD HH:MM:SS){why}",
                    excerpt(t)
                ));
            }
        },
    };
    if ts.subsec_nanosecond() != 0 {
        return Err(format!("time '{t}' has a fraction of a second; bars start on whole seconds"));
    }
    u64::try_from(ts.as_second()).map_err(|_| format!("time '{t}' is before 1970")).and_then(unix)
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

/// The longest line a bar file may have (a bar is a few dozen bytes).
pub const MAX_LINE: usize = 4096;
/// The cheapest price a bar may have, USD (as [`keel_core::product::bounds`]).
pub const MIN_PRICE: f64 = 1e-8;
/// The dearest price a bar may have, USD.
pub const MAX_PRICE: f64 = 1e12;

/// A field as a message quotes it: at most 40 characters.
pub(crate) fn excerpt(s: &str) -> String {
    let t = s.trim();
    if t.chars().count() <= 40 { t.to_string() } else { format!("{}…", t.chars().take(40).collect::<String>()) }
}

fn price(field: &str, name: &str, line: usize) -> Result<f64, CsvError> {
    let v: f64 = field.trim().parse().map_err(|_| err(line, format!("{name} '{}' is not a number", excerpt(field))))?;
    if !v.is_finite() {
        return Err(err(line, format!("{name} {} is not finite", excerpt(field))));
    }
    if v <= 0.0 {
        return Err(err(line, format!("{name} {v} is not positive")));
    }
    if !(MIN_PRICE..=MAX_PRICE).contains(&v) {
        return Err(err(
            line,
            format!("{name} {} is outside the accepted range 0.00000001 to 1000000000000 USD", excerpt(field)),
        ));
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
    load_bars_reader(text.as_bytes(), allow_gaps, from, to)
}

/// [`load_bars_window`] from a file, read line by line: memory holds the bars, never a whole
/// file or an overlong line.
pub fn load_bars_file(
    path: &std::path::Path,
    allow_gaps: bool,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<BarSeries, CsvError> {
    let f = std::fs::File::open(path).map_err(|e| err(0, format!("cannot read {}: {e}", path.display())))?;
    load_bars_reader(std::io::BufReader::with_capacity(1 << 16, f), allow_gaps, from, to)
}

/// One line of at most [`MAX_LINE`] bytes, without its line ending; `None` at the end.
pub(crate) fn next_line<R: std::io::BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    line: usize,
) -> Result<Option<String>, CsvError> {
    use std::io::{BufRead, Read};
    buf.clear();
    let n = r
        .by_ref()
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| err(line, format!("unreadable: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if n > MAX_LINE {
        return Err(err(
            line,
            format!("longer than {MAX_LINE} bytes; a bar is one short line (time, open, high, low, close)"),
        ));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    match std::str::from_utf8(buf) {
        Ok(s) => Ok(Some(s.to_string())),
        Err(_) => Err(err(line, "not UTF-8 text")),
    }
}

/// Bars from a reader of CSV lines (see [`load_bars_window`]).
pub fn load_bars_reader<R: std::io::BufRead>(
    mut r: R,
    allow_gaps: bool,
    from: Option<u64>,
    to: Option<u64>,
) -> Result<BarSeries, CsvError> {
    let mut cols = (0usize, 1usize, 2usize, 3usize, 4usize);
    let mut bars: Vec<Bar> = Vec::new();
    let mut lines = Vec::new();
    let mut buf = Vec::with_capacity(256);
    let mut width: Option<(usize, &'static str)> = None;
    let mut line = 0usize;
    while let Some(text) = next_line(&mut r, &mut buf, line + 1)? {
        line += 1;
        let rec: Vec<&str> = text.split(',').map(|f| f.trim().trim_matches('"').trim()).collect();
        if rec.iter().all(|f| f.is_empty()) {
            continue;
        }
        if line == 1 && parse_time(rec[0]).is_err() {
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
            width = Some((rec.len(), "the header has"));
            continue;
        }
        // every row as wide as the header (or the first row): an extra or a missing field
        // shifts the columns, and a shifted close is a wrong price, not a warning
        match width {
            None => width = Some((rec.len(), "the first row has")),
            Some((w, what)) if rec.len() != w => {
                return Err(err(line, format!("{} fields, but {what} {w}", rec.len())));
            }
            Some(_) => {}
        }
        let get = |j: usize, name: &str| {
            rec.get(j).copied().ok_or_else(|| err(line, format!("missing {name} column ({} fields)", rec.len())))
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
            let prev_line = lines.last().copied().unwrap_or(0);
            if time == prev.time {
                return Err(err(line, format!("duplicate time {time} (also on line {prev_line})")));
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
        assert_eq!(parse_time("2020-03-12T15:30:00+0530").unwrap(), 1_584_007_200, "+0530 is 5 h 30 min");
        for bad in [
            "yesterday",
            "2020-13-01",
            "2021-02-30",
            "2020-02-31",
            "99999999999-01-01",
            "999999999999999999",
            "2020-03-12T24:00:00Z",
            "2020-03-12T10:00:00.5Z",
        ] {
            assert!(parse_time(bad).is_err(), "{bad} accepted as {:?}", parse_time(bad));
        }
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
                "line 3: 3 fields, but the header has 5",
            ),
            (
                "an extra field shifts the close",
                "0,1,1,1,1\n3600,1,2000,1,2000,5\n",
                "line 2: 6 fields, but the first row has 5",
            ),
            (
                "a tiny price",
                "0,1,1,1,1\n3600,1,1,1e-9,1\n",
                "line 2: low 1e-9 is outside the accepted range 0.00000001 to 1000000000000 USD",
            ),
            (
                "a huge price",
                "0,1,1,1,1\n3600,1,1e308,1,1\n",
                "line 2: high 1e308 is outside the accepted range 0.00000001 to 1000000000000 USD",
            ),
            (
                "an impossible date",
                "2021-02-28,1,1,1,1\n2021-02-30,1,1,1,1\n",
                "line 2: time '2021-02-30' is not unix seconds, milliseconds or ISO-8601 (YYYY-MM-DD HH:MM:SS): parsed date is not valid: parameter 'day' for `2021-02` is invalid, must be in range `1..=28`",
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
    fn an_overlong_line_is_refused_quickly_with_a_short_message() {
        // a 256 MB field used to take about 1 GB and be echoed whole in the error
        let field = "1".repeat(64 << 20);
        let text = format!("0,1,1,1,1\n3600,1,1,1,{field}\n");
        let e = load_bars(&text, false).unwrap_err().to_string();
        assert_eq!(e, "line 2: longer than 4096 bytes; a bar is one short line (time, open, high, low, close)");
        let e = load_bars("0,1,1,1,1\n3600,1,1,1,1e999x\n", false).unwrap_err().to_string();
        assert!(e.len() < 120, "{e}");
        // no line ending at all (a sparse file of zero bytes)
        let zeros = vec![0u8; 8 << 20];
        let e = load_bars_reader(&zeros[..], false, None, None).unwrap_err().to_string();
        assert!(e.starts_with("line 1: longer than 4096 bytes"), "{e}");
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
