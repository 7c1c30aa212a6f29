//! Calendar dates of unix times (UTC), without a time-zone library.

/// `(year, month 1–12, day 1–31)` of a count of days since 1970-01-01.
pub(crate) fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + if m <= 2 { 1 } else { 0 }, m, d)
}

/// `YYYY-MM-DD` of a unix time.
pub fn date(t: f64) -> String {
    let (y, m, d) = civil((t / 86_400.0).floor() as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM` (UTC) of a unix time.
pub fn date_time(t: u64) -> String {
    let s = t % 86_400;
    format!("{} {:02}:{:02}", date(t as f64), s / 3_600, s % 3_600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date(1_584_007_200.0), "2020-03-12");
        assert_eq!(date(0.0), "1970-01-01");
        assert_eq!(date_time(1_584_007_200 + 3_660), "2020-03-12 11:01");
        assert_eq!(civil(-1), (1969, 12, 31));
    }
}
