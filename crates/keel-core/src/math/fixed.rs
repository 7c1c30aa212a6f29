//! Unsigned fixed-point newtypes: [`Wad`] (1e18) and [`Ray`] (1e27).

use super::{MathError, RAY, U256, WAD, decimal, mul_div_down, mul_div_up};
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! fixed_type {
    ($name:ident, $unit:expr, $decimals:expr, $doc:literal) => {
        #[doc = $doc]
        #[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub U256);

        impl $name {
            /// Zero.
            pub const ZERO: Self = Self(U256::ZERO);
            /// One whole unit (1.0).
            pub const ONE: Self = Self($unit);
            /// Number of decimals of the representation.
            pub const DECIMALS: u8 = $decimals;

            /// The raw scaled integer.
            #[inline]
            pub const fn raw(self) -> U256 {
                self.0
            }

            /// A whole number `n` as fixed point (`n · unit`).
            pub fn from_int(n: u64) -> Self {
                Self(U256::from(n) * $unit)
            }

            /// Parse a decimal string such as `2.3` exactly; more decimals than fit is an error.
            pub fn parse(s: &str) -> Result<Self, decimal::DecimalError> {
                decimal::parse_units(s, $decimals).map(Self)
            }

            /// `floor(self · rhs)`.
            #[inline]
            pub fn mul_down(self, rhs: Self) -> Result<Self, MathError> {
                mul_div_down(self.0, rhs.0, $unit, concat!(stringify!($name), "::mul_down")).map(Self)
            }

            /// `ceil(self · rhs)`.
            #[inline]
            pub fn mul_up(self, rhs: Self) -> Result<Self, MathError> {
                mul_div_up(self.0, rhs.0, $unit, concat!(stringify!($name), "::mul_up")).map(Self)
            }

            /// `floor(self / rhs)`.
            #[inline]
            pub fn div_down(self, rhs: Self) -> Result<Self, MathError> {
                mul_div_down(self.0, $unit, rhs.0, concat!(stringify!($name), "::div_down")).map(Self)
            }

            /// `ceil(self / rhs)`.
            #[inline]
            pub fn div_up(self, rhs: Self) -> Result<Self, MathError> {
                mul_div_up(self.0, $unit, rhs.0, concat!(stringify!($name), "::div_up")).map(Self)
            }

            /// Checked addition.
            #[inline]
            pub fn checked_add(self, rhs: Self) -> Result<Self, MathError> {
                self.0.checked_add(rhs.0).map(Self).ok_or(MathError::Overflow(concat!(stringify!($name), "::add")))
            }

            /// Checked subtraction.
            #[inline]
            pub fn checked_sub(self, rhs: Self) -> Result<Self, MathError> {
                self.0.checked_sub(rhs.0).map(Self).ok_or(MathError::Underflow(concat!(stringify!($name), "::sub")))
            }

            /// Lossy `f64`, for analytics and charts only.
            pub fn to_f64(self) -> f64 {
                super::to_f64(self.0, $decimals)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&decimal::format_units(self.0, $decimals))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), decimal::format_units(self.0, $decimals))
            }
        }
    };
}

fixed_type!(
    Wad,
    WAD,
    18,
    "An unsigned fixed-point number with 18 decimals (1e18 = 1.0): ratios, USD values, fractions."
);
fixed_type!(Ray, RAY, 27, "An unsigned fixed-point number with 27 decimals (1e27 = 1.0): Aave indexes and rates.");

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arb_u256() -> impl Strategy<Value = U256> {
        (any::<u128>(), any::<u128>()).prop_map(|(hi, lo)| (U256::from(hi) << 128) | U256::from(lo))
    }

    fn arb_u128() -> impl Strategy<Value = U256> {
        any::<u128>().prop_map(U256::from)
    }

    proptest! {
        #[test]
        fn mul_down_le_mul_up_and_within_one(a in arb_u128(), b in arb_u128()) {
            let (a, b) = (Wad(a), Wad(b));
            let d = a.mul_down(b).unwrap();
            let u = a.mul_up(b).unwrap();
            prop_assert!(d <= u);
            prop_assert!(u.0 - d.0 <= U256::from(1));
        }

        #[test]
        fn div_down_le_div_up_and_within_one(a in arb_u128(), b in arb_u128().prop_filter("nonzero", |b| !b.is_zero())) {
            let (a, b) = (Wad(a), Wad(b));
            let d = a.div_down(b).unwrap();
            let u = a.div_up(b).unwrap();
            prop_assert!(d <= u);
            prop_assert!(u.0 - d.0 <= U256::from(1));
        }

        #[test]
        fn mul_by_one_is_identity(a in arb_u128()) {
            prop_assert_eq!(Wad(a).mul_down(Wad::ONE).unwrap(), Wad(a));
            prop_assert_eq!(Ray(a).mul_up(Ray::ONE).unwrap(), Ray(a));
        }

        #[test]
        fn div_then_mul_never_exceeds(a in arb_u128(), b in arb_u128().prop_filter("nonzero", |b| !b.is_zero())) {
            // floor(floor(a/b)·b) ≤ a: rounding down never creates value.
            let q = Wad(a).div_down(Wad(b)).unwrap();
            let back = q.mul_down(Wad(b)).unwrap();
            prop_assert!(back.0 <= a);
        }

        #[test]
        fn parse_format_roundtrip(a in arb_u128()) {
            let w = Wad(a);
            prop_assert_eq!(Wad::parse(&w.to_string()).unwrap(), w);
        }

        #[test]
        fn add_sub_checked(a in arb_u256(), b in arb_u256()) {
            match Wad(a).checked_add(Wad(b)) {
                Ok(s) => prop_assert_eq!(s.checked_sub(Wad(b)).unwrap(), Wad(a)),
                Err(e) => prop_assert!(matches!(e, MathError::Overflow(_))),
            }
        }
    }

    #[test]
    fn display() {
        assert_eq!(Wad::parse("2.3").unwrap().to_string(), "2.3");
        assert_eq!(Wad::from_int(2).to_string(), "2");
        assert_eq!(format!("{:?}", Ray::ONE), "Ray(1)");
    }
}
