//! Deployments more than one conformance suite uses.
pub mod compound;
