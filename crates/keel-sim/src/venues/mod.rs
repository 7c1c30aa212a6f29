//! The agents of each venue a token can live on, behind [`crate::market::Venue`]: the PerpV2
//! vAMM ([`perp`]) and the Synthetix-style perps market ([`synthetix`]). The lending FLI market
//! is driven by [`crate::engine`].

pub mod perp;
pub mod synthetix;
