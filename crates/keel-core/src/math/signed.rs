//! Signed fixed point ([`SignedWad`]), truncating toward zero as Solidity's signed division does.

use super::{I256, MathError, U256, WAD, decimal};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A signed fixed-point number with 18 decimals. Multiplication and division truncate toward
/// zero (Solidity `int256` semantics, as in Set's `PreciseUnitMath` signed helpers).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SignedWad(pub I256);

impl SignedWad {
    /// Zero.
    pub const ZERO: Self = Self(I256::ZERO);

    fn unit() -> I256 {
        I256::from_raw(WAD)
    }

    /// One whole unit.
    pub fn one() -> Self {
        Self(Self::unit())
    }

    /// Parse a decimal string with an optional leading `-`.
    pub fn parse(s: &str) -> Result<Self, decimal::DecimalError> {
        let (neg, body) = match s.trim().strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.trim()),
        };
        let mag = decimal::parse_units(body, 18)?;
        let v = I256::checked_from_sign_and_abs(
            if neg { alloy_primitives::Sign::Negative } else { alloy_primitives::Sign::Positive },
            mag,
        )
        .ok_or(decimal::DecimalError::TooLarge(s.to_string()))?;
        Ok(Self(v))
    }

    /// `trunc(self · rhs / 1e18)` toward zero.
    pub fn mul_trunc(self, rhs: Self) -> Result<Self, MathError> {
        let p = self.0.checked_mul(rhs.0).ok_or(MathError::Overflow("SignedWad::mul_trunc"))?;
        Ok(Self(p / Self::unit()))
    }

    /// `trunc(self · 1e18 / rhs)` toward zero.
    pub fn div_trunc(self, rhs: Self) -> Result<Self, MathError> {
        if rhs.0.is_zero() {
            return Err(MathError::DivisionByZero("SignedWad::div_trunc"));
        }
        let p = self.0.checked_mul(Self::unit()).ok_or(MathError::Overflow("SignedWad::div_trunc"))?;
        Ok(Self(p / rhs.0))
    }

    /// Absolute value as an unsigned integer.
    pub fn unsigned_abs(self) -> U256 {
        self.0.unsigned_abs()
    }

    /// True when below zero.
    pub fn is_negative(self) -> bool {
        self.0.is_negative()
    }
}

impl fmt::Display for SignedWad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mag = decimal::format_units(self.0.unsigned_abs(), 18);
        if self.0.is_negative() { write!(f, "-{mag}") } else { f.write_str(&mag) }
    }
}

impl fmt::Debug for SignedWad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SignedWad({self})")
    }
}

/// Set's signed `preciseMul`: `trunc(a·b / 1e18)`, toward zero.
pub fn pmul_i(a: I256, b: I256) -> Result<I256, MathError> {
    SignedWad(a).mul_trunc(SignedWad(b)).map(|x| x.0)
}

/// Set's signed `preciseDiv`: `trunc(a·1e18 / b)`, toward zero.
pub fn pdiv_i(a: I256, b: I256) -> Result<I256, MathError> {
    SignedWad(a).div_trunc(SignedWad(b)).map(|x| x.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_toward_zero() {
        let third = SignedWad::parse("-1").unwrap().div_trunc(SignedWad::parse("3").unwrap()).unwrap();
        assert_eq!(third.to_string(), "-0.333333333333333333");
        let tiny = SignedWad(I256::try_from(-1i64).unwrap()).mul_trunc(SignedWad::parse("0.5").unwrap()).unwrap();
        assert_eq!(tiny, SignedWad::ZERO, "-0.5 wei truncates to 0, not -1");
    }

    #[test]
    fn parse_display_roundtrip() {
        for s in ["-2.3", "0", "1.5", "-0.000000000000000001"] {
            assert_eq!(SignedWad::parse(s).unwrap().to_string(), s);
        }
    }
}
