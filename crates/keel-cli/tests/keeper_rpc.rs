//! `keel keeper --rpc` as an operator runs it, against a local Hardhat node and the mock
//! strategy: driven through a scripted sequence of states, it makes exactly the expected
//! transactions — read back from the node's blocks — serves its metrics, and in --dry-run sends
//! nothing.

use keel_keeper::testing::{KEEPER_KEY, Node, available};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn config_file(address: &str, tag: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("keel-keeper-{tag}-{}.toml", std::process::id()));
    std::fs::write(
        &path,
        format!(
            r#"
poll = "200ms"
[signer]
key_env = "KEEL_TEST_KEEPER_PRIVATE_KEY"
[gas]
max_fee_gwei = "50"
ripcord_max_fee_gwei = "200"
priority_fee_gwei = "1"
[[strategy]]
name = "eth2x"
address = "{address}"
kind = "fli"
bounds = {{ min = "1.8", max = "2.2" }}
daily_gas_budget_eth = "0.5"
"#
        ),
    )
    .unwrap();
    path
}

fn wait_for(node: &Node, n: usize, what: &str) {
    let t0 = Instant::now();
    while node.keeper_calls().len() < n {
        assert!(t0.elapsed() < Duration::from_secs(30), "the keeper never made {what}: {:?}", node.keeper_calls());
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_scripted_run_makes_exactly_the_expected_transactions() {
    if !available() {
        return;
    }
    let node = Node::start();
    let at = node.deploy_fli(&["uniswap-v3", "balancer"]);
    let cfg = config_file(&at.to_string(), "script");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut keeper = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args([
            "keeper",
            "--rpc",
            &node.url,
            "--config",
            cfg.to_str().unwrap(),
            "--metrics",
            &format!("127.0.0.1:{metrics_port}"),
        ])
        .env("KEEL_TEST_KEEPER_PRIVATE_KEY", KEEPER_KEY)
        .env("KEEL_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = keeper.stdout.take().unwrap();
    let log = std::thread::spawn(move || BufReader::new(out).lines().map_while(Result::ok).collect::<Vec<_>>());

    let mut want = Vec::new();
    let steps: &[(&[u8], &[u64], &str)] = &[
        (&[1, 0], &[0, 0], "rebalance(uniswap-v3)"),
        (&[0, 2], &[0, 0], "iterateRebalance(balancer)"),
        (&[1, 1], &[3, 8], "rebalance(balancer)"),
        (&[3, 0], &[0, 0], "ripcord(uniswap-v3)"),
    ];
    for (states, chunks, call) in steps {
        node.set_chunks(at, chunks);
        node.set_states(at, states);
        want.push(call.to_string());
        wait_for(&node, want.len(), call);
    }
    // a cooldown revert: skipped without sending, then sent once the contract allows it
    node.set_revert(at, "Cooldown not elapsed or not valid leverage ratio");
    node.set_states(at, &[1, 0]);
    std::thread::sleep(Duration::from_millis(1_500));
    assert_eq!(node.keeper_calls(), want, "nothing sent while the call would revert");
    node.set_revert(at, "");
    want.push("rebalance(uniswap-v3)".into());
    wait_for(&node, want.len(), "the rebalance after the cooldown");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(node.keeper_calls(), want, "exactly the expected transactions");

    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let text = agent
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .call()
        .unwrap()
        .body_mut()
        .read_to_string()
        .unwrap();
    assert!(text.contains("keel_keeper_transactions_total{strategy=\"eth2x\"} 5"), "{text}");
    assert!(text.contains("keel_keeper_leverage_ratio{strategy=\"eth2x\"} 2"), "{text}");
    let _ = keeper.kill();
    let _ = keeper.wait();
    let lines = log.join().unwrap();
    assert!(lines.iter().any(|l| l.contains("not sent, it would revert: Cooldown not elapsed")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("mined")), "{lines:?}");

    // --dry-run: decides and simulates, sends nothing
    node.set_states(at, &[0, 1]);
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["keeper", "--rpc", &node.url, "--config", cfg.to_str().unwrap(), "--dry-run", "--rounds", "3"])
        .env("KEEL_TEST_KEEPER_PRIVATE_KEY", KEEPER_KEY)
        .env("KEEL_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("dry run, would send"), "{stdout}");
    assert_eq!(node.keeper_calls(), want, "dry run sent nothing");
    let _ = std::fs::remove_file(cfg);
}

#[test]
fn a_missing_key_or_a_bad_config_is_refused_before_anything_runs() {
    let cfg = config_file("0x0000000000000000000000000000000000000001", "bad");
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["keeper", "--rpc", "http://127.0.0.1:1", "--config", cfg.to_str().unwrap()])
        .env_remove("KEEL_TEST_KEEPER_PRIVATE_KEY")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("KEEL_TEST_KEEPER_PRIVATE_KEY is not set"), "{err}");
    std::fs::write(&cfg, "[signer]\nkey = \"0x59c6\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keel"))
        .args(["keeper", "--rpc", "http://127.0.0.1:1", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("never put a private key in the config") || err.contains("missing field"), "{err}");
    assert!(!err.contains("0x59c6"), "the key is never echoed: {err}");
    let _ = std::fs::remove_file(cfg);
}
