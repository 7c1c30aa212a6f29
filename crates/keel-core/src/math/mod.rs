//! Fixed-point arithmetic on 256-bit integers.
//!
//! Two families of helpers live here and must not be mixed up (they differ by a wei):
//! - the strategy's floor/ceil helpers ([`pmul`], [`pdiv`], [`pmul_up`], [`pdiv_up`]), as Set's
//!   `PreciseUnitMath` rounds;
//! - the lending market's half-up helpers ([`ray_mul`], [`ray_div`], [`wad_mul`], [`wad_div`],
//!   [`percent_mul`], [`percent_div`]), as Aave's `WadRayMath`/`PercentageMath` round.
//!
//! Every operation is checked: an overflow, an underflow or a division by zero is a
//! [`MathError`], never a wrap.

mod decimal;
mod fixed;
mod signed;

pub use alloy_primitives::{I256, U256};
pub use decimal::{DecimalError, format_units, parse_units};
pub use fixed::{Ray, Wad};
pub use signed::{SignedWad, pdiv_i, pmul_i};

use thiserror::Error;

/// 1e18, the unit of a [`Wad`].
pub const WAD: U256 = alloy_primitives::uint!(1_000_000_000_000_000_000_U256);
/// 1e27, the unit of a [`Ray`].
pub const RAY: U256 = alloy_primitives::uint!(1_000_000_000_000_000_000_000_000_000_U256);
/// 1e4, Aave's percentage factor (basis points).
pub const PERCENTAGE_FACTOR: U256 = alloy_primitives::uint!(10_000_U256);

/// Why an arithmetic operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MathError {
    /// The exact result does not fit in 256 bits.
    #[error("arithmetic overflow in {0}")]
    Overflow(&'static str),
    /// A subtraction would go below zero.
    #[error("arithmetic underflow in {0}")]
    Underflow(&'static str),
    /// A division by zero was attempted.
    #[error("division by zero in {0}")]
    DivisionByZero(&'static str),
}

/// Checked `a + b`.
#[inline]
pub fn add(a: U256, b: U256, op: &'static str) -> Result<U256, MathError> {
    a.checked_add(b).ok_or(MathError::Overflow(op))
}

/// Checked `a − b`.
#[inline]
pub fn sub(a: U256, b: U256, op: &'static str) -> Result<U256, MathError> {
    a.checked_sub(b).ok_or(MathError::Underflow(op))
}

/// Checked `a · b`.
#[inline]
pub fn mul(a: U256, b: U256, op: &'static str) -> Result<U256, MathError> {
    a.checked_mul(b).ok_or(MathError::Overflow(op))
}

/// Checked `floor(a / b)`. Division by 1e27, 1e18 or 1e4 takes a fast exact path:
/// `10^n = 2^n · 5^n` and `5^n` fits in one limb, so `floor(a / 10^n) = floor((a >> n) / 5^n)`.
#[inline]
pub fn div(a: U256, b: U256, op: &'static str) -> Result<U256, MathError> {
    if b.is_zero() {
        return Err(MathError::DivisionByZero(op));
    }
    Ok(div_fast(a, b))
}

const E6: U256 = alloy_primitives::uint!(1_000_000_U256);
const E8: U256 = alloy_primitives::uint!(100_000_000_U256);

#[inline]
fn div_fast(a: U256, b: U256) -> U256 {
    if b == RAY {
        div_limb(a >> 27usize, &R27)
    } else if b == WAD {
        div_limb(a >> 18usize, &R18)
    } else if b == PERCENTAGE_FACTOR {
        div_limb(a >> 4usize, &R4)
    } else if b == E6 {
        div_limb(a >> 6usize, &R6)
    } else if b == E8 {
        div_limb(a >> 8usize, &R8)
    } else {
        a / b
    }
}

/// A one-limb divisor.
struct Divisor {
    d: u128,
}

const fn divisor(d: u64) -> Divisor {
    Divisor { d: d as u128 }
}

const R27: Divisor = divisor(7_450_580_596_923_828_125);
const R18: Divisor = divisor(3_814_697_265_625);
const R4: Divisor = divisor(625);
const R6: Divisor = divisor(15_625);
const R8: Divisor = divisor(390_625);

/// `floor(a / d)` for a one-limb divisor: schoolbook division, one 128-by-64-bit step a limb
/// (cheaper than a general 256-bit division).
#[inline]
fn div_limb(a: U256, dv: &Divisor) -> U256 {
    let limbs = a.as_limbs();
    let mut q = [0u64; 4];
    let mut r: u128 = 0;
    for i in (0..4).rev() {
        let n = (r << 64) | limbs[i] as u128;
        if n < dv.d {
            r = n;
            continue;
        }
        q[i] = (n / dv.d) as u64;
        r = n % dv.d;
    }
    U256::from_limbs(q)
}

/// `floor(a·b / d)`; the product must fit in 256 bits (as Solidity's checked `mul` then `div`).
#[inline]
pub fn mul_div_down(a: U256, b: U256, d: U256, op: &'static str) -> Result<U256, MathError> {
    div(mul_fast(a, b, op)?, d, op)
}

/// `ceil(a·b / d)`; the product must fit in 256 bits.
#[inline]
pub fn mul_div_up(a: U256, b: U256, d: U256, op: &'static str) -> Result<U256, MathError> {
    let p = mul(a, b, op)?;
    if d.is_zero() {
        return Err(MathError::DivisionByZero(op));
    }
    if p.is_zero() {
        return Ok(U256::ZERO);
    }
    // (p − 1)/d + 1 cannot overflow.
    Ok((p - U256::from(1)) / d + U256::from(1))
}

/// Set's `preciseMul`: `floor(a·b / 1e18)`.
#[inline]
pub fn pmul(a: U256, b: U256) -> Result<U256, MathError> {
    mul_div_down(a, b, WAD, "preciseMul")
}

/// Set's `preciseDiv`: `floor(a·1e18 / b)`.
#[inline]
pub fn pdiv(a: U256, b: U256) -> Result<U256, MathError> {
    mul_div_down(a, WAD, b, "preciseDiv")
}

/// Set's `preciseMulCeil`: `ceil(a·b / 1e18)`.
#[inline]
pub fn pmul_up(a: U256, b: U256) -> Result<U256, MathError> {
    mul_div_up(a, b, WAD, "preciseMulCeil")
}

/// Set's `preciseDivCeil`: `ceil(a·1e18 / b)`.
#[inline]
pub fn pdiv_up(a: U256, b: U256) -> Result<U256, MathError> {
    mul_div_up(a, WAD, b, "preciseDivCeil")
}

/// The full 256-bit product of two 128-bit numbers (four limb multiplies; cannot overflow).
#[inline]
fn mul_128(a: u128, b: u128) -> U256 {
    const M: u128 = u64::MAX as u128;
    let (a0, a1, b0, b1) = (a & M, a >> 64, b & M, b >> 64);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let t = (p00 >> 64) + (p01 & M) + (p10 & M);
    let t2 = (t >> 64) + (p01 >> 64) + (p10 >> 64) + (p11 & M);
    let r3 = (t2 >> 64) + (p11 >> 64);
    U256::from_limbs([p00 as u64, t as u64, t2 as u64, r3 as u64])
}

/// Checked `a · b`, with a fast path when both fit in 128 bits.
#[inline]
fn mul_fast(a: U256, b: U256, op: &'static str) -> Result<U256, MathError> {
    let (la, lb) = (a.as_limbs(), b.as_limbs());
    if la[2] | la[3] | lb[2] | lb[3] == 0 {
        return Ok(mul_128(a.to::<u128>(), b.to::<u128>()));
    }
    mul(a, b, op)
}

/// `(a·b + half) / unit`: Aave's half-up multiplication.
#[inline]
fn half_up_mul(a: U256, b: U256, unit: U256, op: &'static str) -> Result<U256, MathError> {
    let p = mul_fast(a, b, op)?;
    Ok(div_fast(add(p, unit >> 1, op)?, unit))
}

/// `(a·unit + b/2) / b`: Aave's half-up division.
#[inline]
fn half_up_div(a: U256, b: U256, unit: U256, op: &'static str) -> Result<U256, MathError> {
    if b.is_zero() {
        return Err(MathError::DivisionByZero(op));
    }
    let n = add(mul_fast(a, unit, op)?, b >> 1, op)?;
    // Same integers, same rounding: a native 128-bit division when both fit.
    if n.bit_len() <= 128 && b.bit_len() <= 128 {
        return Ok(U256::from(n.to::<u128>() / b.to::<u128>()));
    }
    Ok(div_fast(n, b))
}

/// Aave `rayMul`: `(a·b + RAY/2) / RAY`.
#[inline]
pub fn ray_mul(a: U256, b: U256) -> Result<U256, MathError> {
    half_up_mul(a, b, RAY, "rayMul")
}

/// Aave `rayDiv`: `(a·RAY + b/2) / b`.
#[inline]
pub fn ray_div(a: U256, b: U256) -> Result<U256, MathError> {
    half_up_div(a, b, RAY, "rayDiv")
}

/// Aave `wadMul`: `(a·b + WAD/2) / WAD`.
#[inline]
pub fn wad_mul(a: U256, b: U256) -> Result<U256, MathError> {
    half_up_mul(a, b, WAD, "wadMul")
}

/// Aave `wadDiv`: `(a·WAD + b/2) / b`.
#[inline]
pub fn wad_div(a: U256, b: U256) -> Result<U256, MathError> {
    half_up_div(a, b, WAD, "wadDiv")
}

/// Aave `percentMul`: `(v·p + 5 000) / 10 000`, `p` in basis points.
#[inline]
pub fn percent_mul(v: U256, bp: U256) -> Result<U256, MathError> {
    half_up_mul(v, bp, PERCENTAGE_FACTOR, "percentMul")
}

/// Aave `percentDiv`: `(v·10 000 + p/2) / p`, `p` in basis points.
#[inline]
pub fn percent_div(v: U256, bp: U256) -> Result<U256, MathError> {
    half_up_div(v, bp, PERCENTAGE_FACTOR, "percentDiv")
}

static POW10: std::sync::LazyLock<[U256; 78]> = std::sync::LazyLock::new(|| {
    let mut t = [U256::from(1u64); 78];
    for i in 1..78 {
        t[i] = t[i - 1] * U256::from(10u64);
    }
    t
});

/// `10^n` as a U256, from a table. `10^78` and above do not fit in 256 bits: they saturate
/// to `U256::MAX` rather than panic. Callers take `n` from asset decimals, which every product
/// file limits to [`MAX_ASSET_DECIMALS`] at the edge; [`checked_pow10`] is the strict form.
#[inline]
pub fn pow10(n: u32) -> U256 {
    checked_pow10(n).unwrap_or(U256::MAX)
}

/// `10^n`, or `None` when it does not fit in 256 bits (`n > 77`).
#[inline]
pub fn checked_pow10(n: u32) -> Option<U256> {
    POW10.get(n as usize).copied()
}

/// The most decimals an asset may have anywhere in keel (the FLI strategy's own limit, the
/// reference `decimalAdjustment = 28 − decimals`). With at most 28 decimals, supply caps,
/// prices and their products stay inside 256 bits.
pub const MAX_ASSET_DECIMALS: u8 = 28;

/// Lossy conversion for analytics and charts only: `v / 10^decimals` as `f64` (relative
/// error about 1e-16).
pub fn to_f64(v: U256, decimals: u8) -> f64 {
    let l = v.as_limbs();
    let x = l[0] as f64
        + l[1] as f64 * 18_446_744_073_709_551_616.0
        + l[2] as f64 * 3.402_823_669_209_385e38
        + l[3] as f64 * 6.277_101_735_386_681e57;
    x / 10f64.powi(decimals as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(v: u128) -> U256 {
        U256::from(v)
    }

    #[test]
    fn constants() {
        assert_eq!(WAD, pow10(18));
        assert_eq!(RAY, pow10(27));
    }

    #[test]
    fn table_rounding() {
        // (case, got, want)
        let cases: Vec<(&str, U256, U256)> = vec![
            ("pmul floors", pmul(u(1), u(1)).unwrap(), u(0)),
            ("pmul_up ceils", pmul_up(u(1), u(1)).unwrap(), u(1)),
            ("pdiv floors 1/3", pdiv(u(1), u(3)).unwrap(), u(333_333_333_333_333_333)),
            ("pdiv_up ceils 1/3", pdiv_up(u(1), u(3)).unwrap(), u(333_333_333_333_333_334)),
            ("rayMul half rounds up", ray_mul(RAY / u(2), u(1)).unwrap(), u(1)),
            ("rayMul below half rounds down", ray_mul(RAY / u(2) - u(1), u(1)).unwrap(), u(0)),
            ("rayDiv half up", ray_div(u(1), u(2) * RAY).unwrap(), u(1)),
            ("percentMul half up", percent_mul(u(1), u(5_000)).unwrap(), u(1)),
            ("percentMul below half", percent_mul(u(1), u(4_999)).unwrap(), u(0)),
            ("percentDiv", percent_div(u(105), u(10_500)).unwrap(), u(100)),
            ("wadDiv", wad_div(u(1), u(3)).unwrap(), u(333_333_333_333_333_333)),
            ("wadDiv 2/3 half up", wad_div(u(2), u(3)).unwrap(), u(666_666_666_666_666_667)),
        ];
        for (case, got, want) in cases {
            assert_eq!(got, want, "case: {case}");
        }
    }

    proptest::proptest! {
        #[test]
        fn fast_product_is_exact(a in proptest::prelude::any::<u128>(), b in proptest::prelude::any::<u128>()) {
            proptest::prop_assert_eq!(mul_128(a, b), U256::from(a) * U256::from(b));
        }

        #[test]
        fn fast_constant_division_is_exact(hi in proptest::prelude::any::<u128>(), lo in proptest::prelude::any::<u128>()) {
            let a = (U256::from(hi) << 128) | U256::from(lo);
            for d in [RAY, WAD, PERCENTAGE_FACTOR, E6, E8] {
                proptest::prop_assert_eq!(div_fast(a, d), a / d);
                // Values of every size, including those just under a multiple of the divisor.
                let small = a >> ((lo % 256) as usize);
                proptest::prop_assert_eq!(div_fast(small, d), small / d);
                let edge = (small / d) * d;
                if !edge.is_zero() {
                    let below = edge - U256::from(1u64);
                    proptest::prop_assert_eq!(div_fast(below, d), below / d);
                    proptest::prop_assert_eq!(div_fast(edge, d), edge / d);
                }
            }
        }
    }

    #[test]
    fn errors_not_wraps() {
        assert_eq!(pmul(U256::MAX, u(2)), Err(MathError::Overflow("preciseMul")));
        assert_eq!(pdiv(u(1), u(0)), Err(MathError::DivisionByZero("preciseDiv")));
        assert_eq!(sub(u(1), u(2), "x"), Err(MathError::Underflow("x")));
        assert_eq!(ray_mul(U256::MAX, u(2)), Err(MathError::Overflow("rayMul")));
    }

    #[test]
    fn to_f64_is_close() {
        assert_eq!(to_f64(u(1_500_000_000_000_000_000), 18), 1.5);
        assert_eq!(to_f64(u(2_500_000), 6), 2.5);
    }
}
