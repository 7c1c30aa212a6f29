//! Conversions at the edge between the simulator's f64 prices and the core's wad integers.

use keel_core::math::U256;

/// A USD price as a wad, rounded to 8 decimals as oracle answers are; `None` unless finite,
/// positive and below 1e15.
pub(crate) fn price_wad(p: f64) -> Option<U256> {
    (p.is_finite() && p > 0.0 && p < 1e15)
        .then(|| U256::from((p * 1e8).round() as u128) * U256::from(10_000_000_000u64))
}

/// A wad as f64 (analytics only).
pub(crate) fn wad_f64(x: U256) -> f64 {
    keel_core::math::to_f64(x, 18)
}

/// A signed wad as f64 (analytics only).
pub(crate) fn signed_wad_f64(x: keel_core::math::I256) -> f64 {
    let v = wad_f64(x.unsigned_abs());
    if x.is_negative() { -v } else { v }
}

/// A signed f64 amount as a signed wad (rounded to 1e-8); `None` unless finite and below 1e15.
pub(crate) fn signed_wad(x: f64) -> Option<keel_core::math::I256> {
    let w = keel_core::math::I256::try_from(price_wad(x.abs())?).ok()?;
    Some(if x < 0.0 { -w } else { w })
}
