//! The ranges a product file's values must lie in so that everything derived from them stays
//! representable: pool sqrt prices inside Uniswap's tick range and 160 bits, values inside 256
//! bits, oracle answers with 8 decimals. A value outside is refused when the file is read,
//! naming the field, the value and the range, so nothing accepted can fail later.
//!
//! | what | accepted |
//! | --- | --- |
//! | USD price of an asset | `0.00000001` to `1000000000000` (1e-8 to 1e12), at most 8 decimals |
//! | asset decimals | 0 to 28 ([`MAX_ASSET_DECIMALS`]) |
//! | a pool's quote, base units of one asset per base unit of the other | 1e-30 to 1e30 |
//! | names, symbols, asset symbols | 1 to 64 characters, no control characters |
//! | oracle heartbeat | 1 s to 30 days |
//! | oracle deviation threshold | 0 to below 100% |

use crate::math::{MAX_ASSET_DECIMALS, U256, Wad, checked_pow10};
use alloy_primitives::U512;

/// The smallest USD price keel accepts: one unit of an 8-decimal oracle answer.
pub const MIN_USD_PRICE: &str = "0.00000001";
/// The largest USD price keel accepts.
pub const MAX_USD_PRICE: &str = "1000000000000";
/// A pool may quote at most this many base units of one asset per base unit of the other
/// (and at least its inverse): Uniswap v3's range is about 2.9e-39 to 3.4e38, and the margin
/// leaves room for the price to move 1e8-fold either way and for the liquidity bands around it.
pub const MAX_POOL_QUOTE_EXP: u32 = 30;
/// Longest name or symbol.
pub const MAX_TEXT_LEN: usize = 64;
/// Longest oracle heartbeat, seconds (30 days).
pub const MAX_HEARTBEAT: u64 = 30 * 86_400;

/// The smallest accepted price as a wad (1e10).
pub fn min_price_wad() -> U256 {
    U256::from(10_000_000_000u64)
}

/// The largest accepted price as a wad (1e30).
pub fn max_price_wad() -> U256 {
    checked_pow10(30).unwrap_or(U256::MAX)
}

/// Parse a USD price as a product file or the API writes it: a plain decimal with at most 8
/// decimals (oracle answers have 8) inside [`MIN_USD_PRICE`]..=[`MAX_USD_PRICE`]. Returns a wad.
pub fn usd_price(s: &str) -> Result<U256, String> {
    let e8 = crate::math::parse_units(s, 8).map_err(|e| match e {
        crate::math::DecimalError::TooPrecise { .. } => {
            format!("'{}' has more than 8 decimals (oracle answers have 8)", s.trim())
        }
        other => other.to_string(),
    })?;
    let wad = e8.checked_mul(U256::from(10_000_000_000u64)).ok_or_else(|| out_of_band(s))?;
    check_usd_price(wad).map_err(|_| out_of_band(s))?;
    Ok(wad)
}

fn out_of_band(s: &str) -> String {
    format!("{} USD is outside the accepted range {MIN_USD_PRICE} to {MAX_USD_PRICE} USD", s.trim())
}

/// Check a wad USD price against the band (and the 8-decimal rule).
pub fn check_usd_price(wad: U256) -> Result<(), String> {
    if !(wad % U256::from(10_000_000_000u64)).is_zero() {
        return Err(format!("{} has more than 8 decimals (oracle answers have 8)", Wad(wad)));
    }
    if wad < min_price_wad() || wad > max_price_wad() {
        return Err(out_of_band(&Wad(wad).to_string()));
    }
    Ok(())
}

/// Parse asset decimals: a whole number from 0 to [`MAX_ASSET_DECIMALS`].
pub fn decimals(s: &str) -> Result<u8, String> {
    match s.trim().parse::<u8>() {
        Ok(d) if d <= MAX_ASSET_DECIMALS => Ok(d),
        _ => Err(format!(
            "'{}' is not a whole number of decimals from 0 to {MAX_ASSET_DECIMALS} (the FLI strategy's limit)",
            s.trim()
        )),
    }
}

/// A name or symbol: 1 to [`MAX_TEXT_LEN`] characters, no control characters, not blank.
pub fn text(s: &str) -> Result<String, String> {
    let n = s.chars().count();
    if s.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if n > MAX_TEXT_LEN {
        return Err(format!("is {n} characters long; at most {MAX_TEXT_LEN}"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters (newlines, tabs, ...)".into());
    }
    Ok(s.to_string())
}

/// An oracle heartbeat in seconds: 1 s to 30 days.
pub fn heartbeat(secs: u64) -> Result<u64, String> {
    if secs == 0 || secs > MAX_HEARTBEAT {
        return Err(format!("{secs} s is outside the accepted range 1 s to 30 d"));
    }
    Ok(secs)
}

/// An oracle deviation threshold (wad fraction): 0 to below 100%.
pub fn deviation(v: U256) -> Result<U256, String> {
    if v >= crate::math::WAD {
        return Err(format!("{}% is not below 100%", Wad(v * U256::from(100u64))));
    }
    Ok(v)
}

/// Check that a pool between two assets quotes inside 1e-30..1e30 base units per base unit:
/// `price_a · 10^decimals_b / (price_b · 10^decimals_a)` for USD prices (wads) and decimals.
/// The message names both assets and the quote.
pub fn check_pool_quote(
    (sym_a, dec_a, price_a): (&str, u8, U256),
    (sym_b, dec_b, price_b): (&str, u8, U256),
) -> Result<(), String> {
    let (Some(ua), Some(ub), Some(lim)) =
        (checked_pow10(dec_a as u32), checked_pow10(dec_b as u32), checked_pow10(MAX_POOL_QUOTE_EXP))
    else {
        return Err(format!("decimals {dec_a} and {dec_b} must be at most {MAX_ASSET_DECIMALS}"));
    };
    if price_a.is_zero() || price_b.is_zero() {
        return Err("prices must be positive".into());
    }
    // base units of b per base unit of a = (price_a / 10^dec_a) / (price_b / 10^dec_b)
    let num = U512::from(price_a) * U512::from(ub);
    let den = U512::from(price_b) * U512::from(ua);
    let lim = U512::from(lim);
    if num > den * lim || num * lim < den {
        let q = Wad(price_a).to_f64() / Wad(price_b).to_f64() * 10f64.powi(dec_b as i32 - dec_a as i32);
        return Err(format!(
            "at {} USD for {sym_a} ({dec_a} decimals) and {} USD for {sym_b} ({dec_b} decimals) a pool would quote \
             {q:.3e} {sym_b} base units per {sym_a} base unit, outside the range keel supports (1e-{MAX_POOL_QUOTE_EXP} to 1e{MAX_POOL_QUOTE_EXP})",
            Wad(price_a),
            Wad(price_b)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_table() {
        let cases: &[(&str, &str, Result<&str, &str>)] = &[
            ("smallest", "0.00000001", Ok("0.00000001")),
            ("largest", "1000000000000", Ok("1000000000000")),
            ("eth", "2000.5", Ok("2000.5")),
            ("below the band", "0.000000001", Err("more than 8 decimals")),
            ("above the band", "1000000000000.00000001", Err("outside the accepted range")),
            ("zero", "0", Err("outside the accepted range")),
            ("huge", "1e308", Err("not a decimal number")),
            ("sign", "+1", Err("not a decimal number")),
        ];
        for (name, s, want) in cases {
            match (usd_price(s), want) {
                (Ok(w), Ok(x)) => assert_eq!(Wad(w).to_string(), *x, "{name}"),
                (Err(e), Err(x)) => assert!(e.contains(x), "{name}: {e}"),
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn decimals_and_text() {
        assert_eq!(decimals("28"), Ok(28));
        for bad in ["29", "78", "255", "-1", "1.5", "x"] {
            assert!(decimals(bad).unwrap_err().contains("from 0 to 28"), "{bad}");
        }
        assert!(text("").is_err());
        assert!(text("  ").is_err());
        assert!(text("a\nb").is_err());
        assert!(text(&"x".repeat(65)).is_err());
        assert_eq!(text("ETH2x-FLI").as_deref(), Ok("ETH2x-FLI"));
        assert!(heartbeat(0).is_err());
        assert!(deviation(crate::math::WAD).is_err());
    }

    #[test]
    fn pool_quotes() {
        let w = |s: &str| usd_price(s).unwrap();
        assert!(check_pool_quote(("WETH", 18, w("2000")), ("USDC", 6, w("1"))).is_ok());
        // the cheapest price against a 28-decimal asset and a 0-decimal one: 1e-8·1e0/(1e12·1e28)
        let e = check_pool_quote(("A", 28, w("0.00000001")), ("B", 0, w("1000000000000"))).unwrap_err();
        assert!(e.contains("outside the range keel supports"), "{e}");
        assert!(e.contains("A (28 decimals)"), "{e}");
        assert!(check_pool_quote(("B", 0, w("1000000000000")), ("A", 28, w("0.00000001"))).is_err());
    }
}
