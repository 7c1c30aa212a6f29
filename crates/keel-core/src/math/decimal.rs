//! Exact decimal-string conversion to and from scaled integers (never through `f64`).

use super::U256;
use thiserror::Error;

/// Why a decimal string could not be turned into base units.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecimalError {
    /// Empty input.
    #[error("empty number")]
    Empty,
    /// Not of the form `123`, `123.45` or `.5`.
    #[error("'{0}' is not a decimal number")]
    NotANumber(String),
    /// Negative where only non-negative values make sense.
    #[error("'{0}' is negative; a non-negative number is required")]
    Negative(String),
    /// More fractional digits than the unit holds.
    #[error("'{value}' has more than {decimals} decimals")]
    TooPrecise {
        /// The input.
        value: String,
        /// The number of decimals allowed.
        decimals: u8,
    },
    /// Does not fit in 256 bits.
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// Parse `s` (e.g. `"2.3"`) into an integer scaled by `10^decimals`, exactly.
/// Trailing fractional zeros beyond `decimals` are accepted (`"1.50"` with 1 decimal).
pub fn parse_units(s: &str, decimals: u8) -> Result<U256, DecimalError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(DecimalError::Empty);
    }
    if t.starts_with('-') {
        return Err(DecimalError::Negative(t.to_string()));
    }
    // plain digits with at most one point: no sign, no digit separators, no exponent, so a
    // typo such as `+0.001` or `0.0_01` is refused rather than read as something else
    let (int, frac) = match t.split_once('.') {
        Some((i, f)) => (i, f),
        None => (t, ""),
    };
    let all_digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty()) || !all_digits(int) || !all_digits(frac) {
        return Err(DecimalError::NotANumber(s.to_string()));
    }
    let Some(unit) = super::checked_pow10(decimals as u32) else {
        return Err(DecimalError::TooLarge(format!("{s} (at {decimals} decimals)")));
    };
    let frac_trim = frac.trim_end_matches('0');
    if frac_trim.len() > decimals as usize {
        return Err(DecimalError::TooPrecise { value: s.to_string(), decimals });
    }
    let too_large = || DecimalError::TooLarge(s.to_string());
    let int_v = if int.is_empty() { U256::ZERO } else { U256::from_str_radix(int, 10).map_err(|_| too_large())? };
    let mut frac_padded = frac_trim.to_string();
    while frac_padded.len() < decimals as usize {
        frac_padded.push('0');
    }
    let frac_v = if frac_padded.is_empty() {
        U256::ZERO
    } else {
        U256::from_str_radix(&frac_padded, 10).map_err(|_| too_large())?
    };
    int_v.checked_mul(unit).and_then(|v| v.checked_add(frac_v)).ok_or_else(too_large)
}

/// Format an integer scaled by `10^decimals` as a plain decimal, trailing zeros trimmed
/// (`2300000000000000000`, 18 → `"2.3"`).
pub fn format_units(v: U256, decimals: u8) -> String {
    // 10^78 does not fit in 256 bits: every value is below one whole unit
    let Some(unit) = super::checked_pow10(decimals as u32) else {
        if v.is_zero() {
            return "0".into();
        }
        let f = v.to_string();
        return format!("0.{}{}", "0".repeat(decimals as usize - f.len()), f).trim_end_matches('0').to_string();
    };
    let int = v / unit;
    let frac = v % unit;
    if frac.is_zero() {
        return int.to_string();
    }
    let mut f = frac.to_string();
    while f.len() < decimals as usize {
        f.insert(0, '0');
    }
    format!("{int}.{}", f.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_parse() {
        let ok: &[(&str, u8, u128)] = &[
            ("2", 18, 2_000_000_000_000_000_000),
            ("2.3", 18, 2_300_000_000_000_000_000),
            (".5", 18, 500_000_000_000_000_000),
            ("1.50", 1, 15),
            ("0.000001", 6, 1),
        ];
        for (s, d, want) in ok {
            assert_eq!(parse_units(s, *d).unwrap(), U256::from(*want), "case {s}");
        }
        let bad: &[(&str, u8, &str)] = &[
            ("", 18, "empty number"),
            ("abc", 18, "'abc' is not a decimal number"),
            ("-1", 18, "'-1' is negative; a non-negative number is required"),
            ("0.0000001", 6, "'0.0000001' has more than 6 decimals"),
            ("1e18", 18, "'1e18' is not a decimal number"),
            (".", 18, "'.' is not a decimal number"),
            ("leading plus", 18, "'+0.001' is not a decimal number"),
            ("digit separator", 18, "'0.0_01' is not a decimal number"),
            ("1", 78, "'1 (at 78 decimals)' is too large"),
        ];
        for (s, d, msg) in bad {
            let s = match *s {
                "leading plus" => "+0.001",
                "digit separator" => "0.0_01",
                other => other,
            };
            assert_eq!(parse_units(s, *d).unwrap_err().to_string(), *msg, "case {s}");
        }
    }

    #[test]
    fn format() {
        assert_eq!(format_units(U256::from(1u64), 18), "0.000000000000000001");
        assert_eq!(format_units(U256::from(25u64), 1), "2.5");
        assert_eq!(format_units(U256::ZERO, 18), "0");
        assert_eq!(format_units(U256::from(5u64), 80), format!("0.{}5", "0".repeat(79)));
    }
}
