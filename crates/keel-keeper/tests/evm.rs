//! The keeper against a real EVM node (Hardhat) and mock strategy contracts: each enum leads to
//! the right call; reverts are skipped without sending; a ripcord lost to a rival is normal; a
//! gas price above the cap waits; a dropped transaction is resent and a stuck one replaced;
//! the node failing and coming back; a PerpV2 strategy; dry-run sends nothing. Every check
//! reads the node's blocks, not the keeper's logs.

use alloy_primitives::Address;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use keel_keeper::config::Config;
use keel_keeper::keeper::Keeper;
use keel_keeper::testing::{DRIVER, KEEPER, KEEPER_KEY, Mock, Node, RIVAL, available, describe_call};

/// A config for `strategies` (name, address, kind, extra TOML), caps 20/100 gwei, 1 gwei tip.
fn config_for(stuck_after: u64, strategies: &[(&str, Address, &str, &str)]) -> Config {
    let mut text = format!(
        "poll = \"100ms\"\n[signer]\nkey_env = \"UNUSED_IN_TESTS\"\n[gas]\nmax_fee_gwei = \"20\"\n\
         ripcord_max_fee_gwei = \"100\"\npriority_fee_gwei = \"1\"\nstuck_after_blocks = {stuck_after}\n"
    );
    for (name, address, kind, extra) in strategies {
        text.push_str(&format!(
            "[[strategy]]\nname = \"{name}\"\naddress = \"{address}\"\nkind = \"{kind}\"\n{extra}\n"
        ));
    }
    Config::from_toml(&text).unwrap()
}

fn config(address: Address, kind: &str, extra: &str) -> Config {
    config_for(3, &[("s", address, kind, extra)])
}

fn keeper(node: &Node, cfg: Config, dry_run: bool) -> Keeper {
    let signer: PrivateKeySigner = KEEPER_KEY.parse().unwrap();
    let mut k = Keeper::new(&node.url, cfg, signer, dry_run).unwrap();
    k.set_backoff(keel_core::strategy::keeper::BackoffConfig { base_ms: 0, max_ms: 0 });
    k
}

/// A node, a one-exchange FLI mock whose `shouldRebalance` says `state`, and a keeper on it
/// (`None` where the node cannot run here).
fn one_fli(state: u8, dry_run: bool) -> Option<(Node, Address, Keeper)> {
    if !available() {
        return None;
    }
    let node = Node::start();
    let at = node.deploy_fli(&["uniswap-v3"]);
    node.set_states(at, &[state]);
    let k = keeper(&node, config(at, "fli", ""), dry_run);
    Some((node, at, k))
}

/// Rounds until the keeper has nothing in flight and nothing to do (at most `n`).
fn rounds(k: &mut Keeper, n: usize) -> Vec<String> {
    let mut all = Vec::new();
    for _ in 0..n {
        all.extend(k.round().unwrap());
    }
    all
}

#[test]
fn each_enum_leads_to_the_right_call_and_the_largest_chunk_wins() {
    if !available() {
        return;
    }
    let node = Node::start();
    let at = node.deploy_fli(&["uniswap-v3", "balancer"]);
    let mut k = keeper(&node, config(at, "fli", ""), false);
    let script: &[(&[u8], &[u64], &str)] = &[
        (&[1, 0], &[0, 0], "rebalance(uniswap-v3)"),
        (&[0, 2], &[0, 0], "iterateRebalance(balancer)"),
        (&[1, 1], &[5, 9], "rebalance(balancer)"),
        (&[2, 3], &[9, 1], "ripcord(balancer)"),
    ];
    let mut want = Vec::new();
    for (states, chunks, call) in script {
        node.set_chunks(at, chunks);
        node.set_states(at, states);
        let lines = rounds(&mut k, 3);
        want.push(call.to_string());
        assert_eq!(node.keeper_calls(), want, "{lines:?}");
    }
    assert_eq!(k.metrics.strategies.lock().unwrap()["s"].failures, 0);
}

#[test]
fn a_call_that_would_revert_is_skipped_without_sending() {
    let Some((node, at, mut k)) = one_fli(1, false) else { return };
    node.set_revert(at, "Cooldown not elapsed or not valid leverage ratio");
    let lines = rounds(&mut k, 2);
    assert!(
        lines.iter().any(|l| l.contains("not sent, it would revert: Cooldown not elapsed or not valid leverage ratio")),
        "{lines:?}"
    );
    assert!(node.keeper_calls().is_empty());
    assert_eq!(node.rpc.nonce(KEEPER.parse().unwrap(), "latest").unwrap(), 0);
}

#[test]
fn a_ripcord_lost_to_a_rival_is_normal() {
    let Some((node, at, mut k)) = one_fli(3, false) else { return };
    node.automine(false);
    let sent = k.round().unwrap();
    assert!(sent.iter().any(|l| l.contains("ripcord(\"uniswap-v3\"): sent")), "{sent:?}");
    // the rival pays a higher tip and lands first in the same block
    node.call(
        "eth_sendTransaction",
        serde_json::json!([{ "from": RIVAL, "to": at, "data": alloy_primitives::Bytes::from(Mock::ripcordCall { e: "uniswap-v3".into() }.abi_encode()),
            "gas": "0x100000", "maxPriorityFeePerGas": "0xba43b7400", "maxFeePerGas": "0x174876e800" }]),
    );
    node.mine();
    let lines = k.round().unwrap();
    assert!(lines.iter().any(|l| l.contains("another keeper's ripcord landed first")), "{lines:?}");
    assert_eq!(k.metrics.strategies.lock().unwrap()["s"].failures, 0, "a lost race is not a failure");
    assert_eq!(node.transactions_from(RIVAL).len(), 1);
    assert_eq!(node.keeper_calls(), vec!["ripcord(uniswap-v3)".to_string()], "our ripcord was mined (and reverted)");
}

#[test]
fn a_gas_price_above_the_cap_waits_then_sends() {
    let Some((node, _, mut k)) = one_fli(1, false) else { return };
    node.next_base_fee_gwei(50);
    node.mine();
    let lines = rounds(&mut k, 2);
    assert!(lines.iter().any(|l| l.contains("above the 20.000 gwei cap")), "{lines:?}");
    assert!(node.keeper_calls().is_empty(), "nothing sent while gas is above the cap");
    node.next_base_fee_gwei(2);
    node.mine();
    rounds(&mut k, 2);
    assert_eq!(node.keeper_calls(), vec!["rebalance(uniswap-v3)".to_string()]);
}

#[test]
fn a_dropped_transaction_is_resent_and_a_stuck_one_replaced() {
    let Some((node, _, mut k)) = one_fli(1, false) else { return };
    node.automine(false);
    let sent = k.round().unwrap();
    let hash = sent.iter().find_map(|l| l.split("sent ").nth(1)).unwrap().split(' ').next().unwrap().to_string();
    node.call("hardhat_dropTransaction", serde_json::json!([hash]));
    let lines = k.round().unwrap();
    assert!(lines.iter().any(|l| l.contains("was dropped by the node; resent it")), "{lines:?}");
    // blocks too expensive for it: stuck for 3 blocks, then replaced with a higher fee
    for _ in 0..3 {
        node.next_base_fee_gwei(10);
        node.mine();
    }
    let lines = k.round().unwrap();
    assert!(lines.iter().any(|l| l.contains("replacing")), "{lines:?}");
    node.mine();
    let lines = rounds(&mut k, 2);
    assert!(lines.iter().any(|l| l.contains("mined")), "{lines:?}");
    let txs = node.transactions_from(KEEPER);
    assert_eq!(txs.len(), 1, "one transaction for one decision");
    assert_eq!(describe_call(&txs[0].2), "rebalance(uniswap-v3)");
    assert_ne!(txs[0].0.to_string(), hash, "the replacement was mined");
}

#[test]
fn a_ripcord_takes_the_nonce_of_a_stuck_routine_call() {
    if !available() {
        return;
    }
    let node = Node::start();
    let (a, b) = (node.deploy_fli(&["uniswap-v3"]), node.deploy_fli(&["uniswap-v3"]));
    node.set_states(a, &[1]);
    let cfg = config_for(50, &[("a", a, "fli", ""), ("b", b, "fli", "")]);
    let mut k = keeper(&node, cfg, false);
    node.automine(false);
    let sent = k.round().unwrap();
    assert!(sent.iter().any(|l| l.contains("a: rebalance(\"uniswap-v3\"): sent")), "{sent:?}");
    // gas rises above the routine call's max fee: it is stuck; then b needs a ripcord
    node.next_base_fee_gwei(10);
    node.set_states(b, &[3]);
    node.mine();
    let lines = k.round().unwrap();
    assert!(lines.iter().any(|l| l.contains("b: ripcord(\"uniswap-v3\"): sent")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("replaced on nonce 0 by the ripcord")), "{lines:?}");
    node.mine();
    let lines = rounds(&mut k, 1);
    assert!(lines.iter().any(|l| l.contains("b: ripcord(\"uniswap-v3\"): mined")), "{lines:?}");
    let txs = node.transactions_from(KEEPER);
    assert_eq!(txs.len(), 1, "one transaction on nonce 0");
    assert_eq!((txs[0].1, describe_call(&txs[0].2)), (b, "ripcord(uniswap-v3)".to_string()));
}

#[test]
fn node_failures_are_survived() {
    if !available() {
        return;
    }
    let node = Node::start();
    let port = node.port;
    let at = node.deploy_fli(&["uniswap-v3"]);
    let mut k = keeper(&node, config(at, "fli", ""), false);
    node.kill();
    assert!(k.round().is_err(), "the node is down");
    // the run loop backs off and keeps going
    let mut lines = Vec::new();
    let stop = std::sync::atomic::AtomicBool::new(false);
    keel_keeper::run(&mut k, keel_keeper::config::Poll::Every(10), &stop, Some(2), |l| lines.push(l.to_string()));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("node error") && l.contains("backing off")), "{lines:?}");
    assert_eq!(*k.metrics.rpc_failures.lock().unwrap(), 2);
    // the node comes back (a fresh chain; the same deployer nonce gives the same address)
    let node = Node::start_on(port);
    assert_eq!(node.deploy_fli(&["uniswap-v3"]), at);
    node.set_states(at, &[1]);
    rounds(&mut k, 2);
    assert_eq!(node.keeper_calls(), vec!["rebalance(uniswap-v3)".to_string()]);
}

#[test]
fn a_perp_v2_strategy_with_bounds() {
    if !available() {
        return;
    }
    let node = Node::start();
    let at = node.deploy("MockPerpStrategy", vec![]);
    let mut k = keeper(&node, config(at, "perp-v2", "bounds = { min = \"-1.8\", max = \"-2.2\" }"), false);
    let mut want = Vec::new();
    for (state, call) in [(2u8, "iterateRebalance()"), (1, "rebalance()"), (3, "ripcord()")] {
        node.send(DRIVER, at, Mock::setStateCall { s: state }.abi_encode());
        rounds(&mut k, 3);
        want.push(call.to_string());
        assert_eq!(node.keeper_calls(), want);
    }
}

#[test]
fn dry_run_sends_nothing() {
    let Some((node, _, mut k)) = one_fli(1, true) else { return };
    let lines = rounds(&mut k, 3);
    assert!(lines.iter().any(|l| l.contains("dry run, would send")), "{lines:?}");
    assert!(node.keeper_calls().is_empty());
    assert_eq!(node.rpc.nonce(KEEPER.parse().unwrap(), "pending").unwrap(), 0);
}
