//! Leverage methodologies, one per module. Each is a pure state machine over the venues in
//! [`crate::venue`]; drivers call its entry points with an explicit `now` and caller.
//!
//! - [`fli`]: Set's FLI on a lending market (with its token) and on a perp (`fli::perp`).
//! - [`threshold`]: TLX / Synthetix Leverage rules — trigger, full-rebalance size, fees.
//! - [`continuous`]: IndexZoo Bear rules — price levels, safety margins, tick decision, split.
//! - [`daily`]: exchange-style daily schedule with intraday triggers.
//! - [`keeper`]: the keeper policy every keel keeper runs (pure).
//!
//! `daily` and `continuous` are `Policy` variants of the perp token in `threshold::token`.

pub mod continuous;
pub mod daily;
pub mod fli;
pub mod keeper;
pub mod threshold;
