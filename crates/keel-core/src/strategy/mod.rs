//! Leverage methodologies, one per module. Each is a pure state machine over the venues in
//! [`crate::venue`]; drivers call its entry points with an explicit `now` and caller.

pub mod fli;
