//! Test support: a local Hardhat node (from `crates/keel-keeper/evm`, installed by `.ci/run`
//! with `npm ci`), the mock strategy contracts compiled with solc-js, and the chain read back
//! block by block. Without `evm/node_modules` the EVM tests are skipped, unless
//! `KEEL_REQUIRE_EVM=1` (CI sets it), which makes that a failure.

use crate::rpc::Rpc;
use alloy_primitives::{Address, B256, Bytes, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Hardhat's account #0: deploys and drives the mocks.
pub const DRIVER: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// Hardhat's account #1: the keeper under test.
pub const KEEPER_KEY: &str = "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
/// Its address.
pub const KEEPER: &str = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";
/// Hardhat's account #2: a competing keeper.
pub const RIVAL: &str = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC";

fn evm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("evm")
}

/// Whether the node can run here; panics when it must (`KEEL_REQUIRE_EVM=1`) and cannot.
pub fn available() -> bool {
    let ok = evm_dir().join("node_modules/.bin/hardhat").exists() && evm_dir().join("node_modules/solc").exists();
    if !ok {
        assert!(
            std::env::var("KEEL_REQUIRE_EVM").as_deref() != Ok("1"),
            "KEEL_REQUIRE_EVM=1 but crates/keel-keeper/evm/node_modules is missing (run npm ci there)"
        );
        eprintln!("skipping: run `npm ci` in crates/keel-keeper/evm for the EVM tests");
    }
    ok
}

/// The mock contracts: name → (abi, creation bytecode).
pub fn contracts() -> &'static Value {
    static C: OnceLock<Value> = OnceLock::new();
    C.get_or_init(|| {
        let out = Command::new("node").arg("compile.js").current_dir(evm_dir()).output().expect("run node compile.js");
        assert!(out.status.success(), "solc: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("compiler output")
    })
}

/// A Hardhat node on a free loopback port; killed when dropped.
pub struct Node {
    child: Child,
    /// Its URL.
    pub url: String,
    /// A client.
    pub rpc: Rpc,
    /// Its port.
    pub port: u16,
}

impl Node {
    /// Start a node on a free port.
    pub fn start() -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Node::start_on(port)
    }

    /// Start a node on `port`.
    pub fn start_on(port: u16) -> Node {
        let child = Command::new(evm_dir().join("node_modules/.bin/hardhat"))
            .args(["node", "--hostname", "127.0.0.1", "--port", &port.to_string()])
            .current_dir(evm_dir())
            .env("HARDHAT_DISABLE_TELEMETRY_PROMPT", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hardhat node");
        let url = format!("http://127.0.0.1:{port}");
        let rpc = Rpc::new(&url);
        let t0 = Instant::now();
        while rpc.chain_id().is_err() {
            assert!(t0.elapsed() < Duration::from_secs(60), "hardhat node did not start on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        Node { child, url, rpc, port }
    }

    /// A raw call; panics on an error.
    pub fn call(&self, method: &str, params: Value) -> Value {
        self.rpc.call(method, params).unwrap_or_else(|e| panic!("{method}: {e}"))
    }

    /// Send a transaction from an unlocked account; with automine on, wait for it.
    pub fn send(&self, from: &str, to: Address, data: Vec<u8>) -> B256 {
        let h = self.call(
            "eth_sendTransaction",
            json!([{ "from": from, "to": to, "data": Bytes::from(data), "gas": "0x7a1200" }]),
        );
        h.as_str().unwrap().parse().unwrap()
    }

    /// Deploy `name` with ABI-encoded constructor arguments; returns its address.
    pub fn deploy(&self, name: &str, args: Vec<u8>) -> Address {
        let code = contracts()[name]["bytecode"].as_str().unwrap();
        let mut data: Vec<u8> = code.parse::<Bytes>().unwrap().to_vec();
        data.extend(args);
        let h = self.call(
            "eth_sendTransaction",
            json!([{ "from": DRIVER, "data": Bytes::from(data), "gas": "0x7a1200", "value": "0xde0b6b3a7640000" }]),
        );
        let r = self.call("eth_getTransactionReceipt", json!([h]));
        r["contractAddress"].as_str().unwrap().parse().unwrap()
    }

    /// Turn automining on or off.
    pub fn automine(&self, on: bool) {
        self.call("evm_setAutomine", json!([on]));
    }

    /// Mine one block.
    pub fn mine(&self) {
        self.call("evm_mine", json!([]));
    }

    /// The base fee of the next block, gwei.
    pub fn next_base_fee_gwei(&self, gwei: u64) {
        self.call("hardhat_setNextBlockBaseFeePerGas", json!([format!("0x{:x}", gwei as u128 * 1_000_000_000)]));
    }

    /// Every transaction sent by `from`, oldest first, read from the blocks: (hash, to, input).
    pub fn transactions_from(&self, from: &str) -> Vec<(B256, Address, Bytes)> {
        let n = self.rpc.head().unwrap().number;
        let mut out = Vec::new();
        for b in 0..=n {
            let block = self.call("eth_getBlockByNumber", json!([format!("0x{b:x}"), true]));
            for tx in block["transactions"].as_array().unwrap() {
                if tx["from"].as_str().unwrap().eq_ignore_ascii_case(from) {
                    out.push((
                        tx["hash"].as_str().unwrap().parse().unwrap(),
                        tx["to"].as_str().unwrap().parse().unwrap(),
                        tx["input"].as_str().unwrap().parse().unwrap(),
                    ));
                }
            }
        }
        out
    }

    /// Stop the node (as a crash would).
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

sol! {
    /// The mocks' test-only setters.
    interface Mock {
        function setStates(uint8[] calldata s) external;
        function setChunks(uint256[] calldata c) external;
        function setRevert(string calldata r) external;
        function setIncentive(uint256 i) external;
        function setState(uint8 s) external;
        function ripcord(string calldata e) external;
    }
}

impl Node {
    /// Deploy a mock lending FLI strategy with these exchanges.
    pub fn deploy_fli(&self, names: &[&str]) -> Address {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        self.deploy("MockFliStrategy", (names,).abi_encode_params())
    }

    /// Set what the FLI mock's `shouldRebalance` returns, one enum per exchange.
    pub fn set_states(&self, at: Address, s: &[u8]) {
        self.send(DRIVER, at, Mock::setStatesCall { s: s.to_vec() }.abi_encode());
    }

    /// Set the FLI mock's chunk sizes.
    pub fn set_chunks(&self, at: Address, c: &[u64]) {
        self.send(DRIVER, at, Mock::setChunksCall { c: c.iter().map(|x| U256::from(*x)).collect() }.abi_encode());
    }

    /// Make the FLI mock's rebalance and iterate revert with `reason` ("" to stop).
    pub fn set_revert(&self, at: Address, reason: &str) {
        self.send(DRIVER, at, Mock::setRevertCall { r: reason.to_string() }.abi_encode());
    }

    /// The calls the keeper made, from the blocks.
    pub fn keeper_calls(&self) -> Vec<String> {
        self.transactions_from(KEEPER).iter().map(|(_, _, input)| describe_call(input)).collect()
    }
}

/// A call as the tests compare it: function name and exchange argument.
pub fn describe_call(input: &[u8]) -> String {
    use crate::abi::{IFliStrategy, IPerpStrategy};
    use alloy_sol_types::SolCall;
    let sel: [u8; 4] = input[..4].try_into().unwrap();
    let arg = || String::from_utf8_lossy(&input[4 + 64 + 32..]).trim_end_matches('\0').to_string();
    match sel {
        IFliStrategy::rebalanceCall::SELECTOR => format!(
            "rebalance({})",
            IFliStrategy::rebalanceCall::abi_decode(input).map(|c| c.exchangeName).unwrap_or_else(|_| arg())
        ),
        IFliStrategy::iterateRebalanceCall::SELECTOR => {
            format!(
                "iterateRebalance({})",
                IFliStrategy::iterateRebalanceCall::abi_decode(input).map(|c| c.exchangeName).unwrap_or_default()
            )
        }
        IFliStrategy::ripcordCall::SELECTOR => format!(
            "ripcord({})",
            IFliStrategy::ripcordCall::abi_decode(input).map(|c| c.exchangeName).unwrap_or_default()
        ),
        IPerpStrategy::rebalanceCall::SELECTOR => "rebalance()".into(),
        IPerpStrategy::iterateRebalanceCall::SELECTOR => "iterateRebalance()".into(),
        IPerpStrategy::ripcordCall::SELECTOR => "ripcord()".into(),
        _ => format!("0x{}", input.iter().take(4).map(|b| format!("{b:02x}")).collect::<String>()),
    }
}
