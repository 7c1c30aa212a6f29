//! keel-keeper: the production keeper for deployed FLI and PerpV2 strategy contracts.
//!
//! The policy is keel's own ([`keel_core::strategy::keeper`], the same one the service runs);
//! this crate is its Ethereum executor: a JSON-RPC client ([`rpc`]), the contracts' interfaces
//! ([`abi`]), the config ([`config`]) and signer ([`signer`]), the executor ([`keeper`]) and
//! Prometheus metrics ([`metrics`]). keel-core and the simulator do not depend on it.

#![warn(missing_docs)]

pub mod abi;
pub mod config;
pub mod keeper;
pub mod metrics;
pub mod rpc;
pub mod signer;
pub mod testing;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Run rounds until `stop` (or `rounds` rounds), backing off exponentially while the node
/// fails and recovering on its own. `on_line` sees every line of what happened.
pub fn run(
    k: &mut keeper::Keeper,
    poll: config::Poll,
    stop: &AtomicBool,
    rounds: Option<u64>,
    mut on_line: impl FnMut(&str),
) {
    let mut n = 0u64;
    let mut failures = 0u32;
    let mut last_block = None;
    while !stop.load(Ordering::SeqCst) && rounds.is_none_or(|r| n < r) {
        if let config::Poll::NewBlock(_) = poll {
            match k.head() {
                Ok(h) if Some(h.number) == last_block => {
                    std::thread::sleep(Duration::from_millis(poll_ms(poll)));
                    continue;
                }
                Ok(h) => last_block = Some(h.number),
                Err(_) => {}
            }
        }
        n += 1;
        match k.round() {
            Ok(lines) => {
                failures = 0;
                lines.iter().for_each(|l| on_line(l));
            }
            Err(e) => {
                failures += 1;
                *k.metrics.rpc_failures.lock().expect("metrics lock") += 1;
                let wait = (500u64 << failures.min(7)).min(60_000);
                on_line(&format!("node error ({e}); backing off {} ms", wait));
                tracing::warn!(error = %e, wait_ms = wait, "node error; backing off");
                std::thread::sleep(Duration::from_millis(wait));
                continue;
            }
        }
        if rounds.is_none_or(|r| n < r) {
            std::thread::sleep(Duration::from_millis(poll_ms(poll)));
        }
    }
}

fn poll_ms(p: config::Poll) -> u64 {
    match p {
        config::Poll::Every(ms) | config::Poll::NewBlock(ms) => ms,
    }
}
