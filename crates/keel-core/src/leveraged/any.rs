//! [`AnyToken`]: a token of any kind, as a value to store and replay. Adding a kind adds a
//! variant here (and its `LeveragedToken` implementation); drivers hold an `AnyToken` and work
//! through [`AnyToken::as_dyn`].

use super::{Kind, LeveragedToken};
use crate::product::AnyProduct;
use crate::strategy::fli::FliToken;
use crate::strategy::fli::perp_token::PerpFliToken;
use crate::strategy::threshold::token::ThresholdToken;
use alloy_primitives::Address;
use serde::{Deserialize, Serialize};

/// USD of liquidity a PerpV2 token's vAMM holds when a driver builds one from a product file.
pub const VAMM_TVL_USD: u64 = 200_000_000;

/// A token of any kind. Serialized as the token itself (the kinds' fields differ: a lending
/// token has a `ledger`, a PerpV2 token an `index_price`), so a stored lending token from before
/// this type existed loads unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum AnyToken {
    /// Lending FLI.
    Lending(Box<FliToken>),
    /// A threshold, daily or continuous token on a Synthetix-style market.
    Synthetix(Box<ThresholdToken>),
    /// A PerpV2 FLI token on a Perp-v2-style account and vAMM.
    Perp(Box<PerpFliToken>),
}

impl<'de> Deserialize<'de> for AnyToken {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_json::Value::deserialize(d)?;
        if v.get("ledger").is_some() {
            serde_json::from_value(v).map(AnyToken::Lending).map_err(D::Error::custom)
        } else if v.get("index_price").is_some() {
            serde_json::from_value(v).map(AnyToken::Perp).map_err(D::Error::custom)
        } else {
            serde_json::from_value(v).map(AnyToken::Synthetix).map_err(D::Error::custom)
        }
    }
}

impl AnyToken {
    /// Build the token a product file describes at `now`, run by `operator` (fee recipient),
    /// with no supply; its feed at the file's price.
    pub fn build(product: &AnyProduct, operator: Address, now: u64) -> Result<AnyToken, crate::Error> {
        Ok(match product {
            AnyProduct::Lending(p) => AnyToken::Lending(Box::new(p.build(operator, now)?)),
            AnyProduct::Threshold(p) => {
                let mut t = p.build(now);
                t.observe_price(now, p.price.0)?;
                AnyToken::Synthetix(Box::new(t))
            }
            AnyProduct::Perp(p) => {
                let tvl = crate::math::U256::from(VAMM_TVL_USD) * crate::math::WAD;
                AnyToken::Perp(Box::new(p.build(p.price.0, tvl, operator, now)?))
            }
        })
    }

    /// The token through the one interface.
    pub fn as_dyn(&self) -> &dyn LeveragedToken {
        match self {
            AnyToken::Lending(t) => t.as_ref(),
            AnyToken::Synthetix(t) => t.as_ref(),
            AnyToken::Perp(t) => t.as_ref(),
        }
    }

    /// The token through the one interface, to operate on.
    pub fn as_dyn_mut(&mut self) -> &mut dyn LeveragedToken {
        match self {
            AnyToken::Lending(t) => t.as_mut(),
            AnyToken::Synthetix(t) => t.as_mut(),
            AnyToken::Perp(t) => t.as_mut(),
        }
    }

    /// The lending FLI token, for what only it has (in-kind issue, pools, exchanges).
    pub fn lending(&self) -> Option<&FliToken> {
        match self {
            AnyToken::Lending(t) => Some(t),
            _ => None,
        }
    }

    /// The lending FLI token, mutably.
    pub fn lending_mut(&mut self) -> Option<&mut FliToken> {
        match self {
            AnyToken::Lending(t) => Some(t),
            _ => None,
        }
    }

    /// The kind.
    pub fn kind(&self) -> Kind {
        self.as_dyn().kind()
    }
}
