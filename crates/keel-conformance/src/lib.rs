//! keel's conformance harness: the protocols' **published bytecode**, taken from their own npm
//! packages (pinned by `evm/package-lock.json`, installed by `.ci/run` with `npm ci`), run on an
//! in-process EVM (`revm`), so keel-core's venues can be compared with the real contracts to
//! the wei on the same random sequences (`docs/spec/conformance.md`).
//!
//! Nothing of the protocols is copied into the repository: [`artifact`] reads a contract's
//! creation bytecode from `evm/node_modules/<package>/…` ([`synthetix_contract`] from the
//! deployment record of the `synthetix` package; [`synthetix_compiled`] compiles the three
//! Synthetix contracts that record holds only as OVM runtime code from the package's sources).
//! keel's own test contracts (tokens, drivers that answer the protocols' callbacks, the stand-in
//! for the rest of Synthetix) live in `evm/contracts/` and are compiled with solc-js by
//! `evm/compile.js` ([`own`]).
//!
//! Without `evm/node_modules` the suites skip, unless `KEEL_REQUIRE_EVM=1` (CI sets it), which
//! makes that a failure. `KEEL_CONFORMANCE_SEQUENCES` sets how many random sequences each suite
//! runs (CI runs a bounded number; the README gives the longer run).

use alloy_primitives::{Address, Bytes, U256};
use revm::{
    Context, ExecuteCommitEvm, ExecuteEvm, MainBuilder, MainContext,
    context::{
        TxEnv,
        result::{ExecutionResult, Output},
    },
    database::{CacheDB, EmptyDB},
    state::AccountInfo,
};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Gas for one transaction (under the Osaka per-transaction cap).
const GAS: u64 = 16_000_000;

/// The folder holding `package.json`, `node_modules/` and keel's own contracts.
pub fn evm_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("evm")
}

/// Whether the protocols' packages are installed; panics when they must be
/// (`KEEL_REQUIRE_EVM=1`) and are not.
pub fn available() -> bool {
    let ok = evm_dir().join("node_modules/solc").exists();
    if !ok {
        assert!(
            std::env::var("KEEL_REQUIRE_EVM").as_deref() != Ok("1"),
            "KEEL_REQUIRE_EVM=1 but crates/keel-conformance/evm/node_modules is missing (run `npm ci` there)"
        );
        eprintln!("skipping: run `npm ci` in crates/keel-conformance/evm for the conformance suites");
    }
    ok
}

/// How many random sequences a suite runs: `KEEL_CONFORMANCE_SEQUENCES`, else `default`.
pub fn sequences(default: u64) -> u64 {
    match std::env::var("KEEL_CONFORMANCE_SEQUENCES") {
        Ok(v) => v.parse().unwrap_or_else(|_| panic!("KEEL_CONFORMANCE_SEQUENCES={v:?} is not a whole number")),
        Err(_) => default,
    }
}

/// Run a suite's random sequences, seeds `0..sequences(default)`, each through `run`. Returns
/// how many ran, or `None` when the packages are not installed (the suite skips).
pub fn for_each_sequence(default: u64, mut run: impl FnMut(u64)) -> Option<u64> {
    if !available() {
        return None;
    }
    let n = sequences(default);
    (0..n).for_each(&mut run);
    Some(n)
}

/// The creation bytecode of a published contract: `path` is the Hardhat artifact inside
/// `node_modules`, e.g. `@uniswap/v3-core/artifacts/contracts/UniswapV3Pool.sol/UniswapV3Pool.json`.
pub fn artifact(path: &str) -> Bytes {
    let file = evm_dir().join("node_modules").join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let json: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let code = json["bytecode"].as_str().unwrap_or_else(|| panic!("{}: no bytecode", file.display()));
    code.parse().unwrap_or_else(|e| panic!("{}: bytecode: {e}", file.display()))
}

/// The creation bytecode of a published contract whose artifact has library placeholders,
/// linked to the deployed `libraries` (name → address), as Hardhat links them.
pub fn artifact_linked(path: &str, libraries: &[(&str, Address)]) -> Bytes {
    let file = evm_dir().join("node_modules").join(path);
    let json: Value = serde_json::from_str(&std::fs::read_to_string(&file).expect("artifact")).expect("artifact json");
    let mut code = alloy_primitives::hex::decode(
        json["bytecode"]
            .as_str()
            .expect("bytecode")
            .trim_start_matches("0x")
            .replace(|c: char| !c.is_ascii_hexdigit(), "0"),
    )
    .expect("bytecode hex");
    for (_, libs) in json["linkReferences"].as_object().into_iter().flatten() {
        for (name, places) in libs.as_object().into_iter().flatten() {
            let address = libraries
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("{}: library {name} not given", file.display()))
                .1;
            for place in places.as_array().into_iter().flatten() {
                let start = place["start"].as_u64().expect("start") as usize;
                code[start..start + 20].copy_from_slice(address.as_slice());
            }
        }
    }
    code.into()
}

/// The Synthetix deployment keel's Perps V2 suite takes its bytecode from: the Optimism
/// deployment recorded in the `synthetix` package (`publish/deployed/mainnet-ovm/deployment.json`,
/// whose `sources` hold each contract's ABI and bytecode), parsed once per process.
pub fn synthetix_deployment() -> &'static Value {
    static D: OnceLock<Value> = OnceLock::new();
    D.get_or_init(|| {
        let file = evm_dir().join("node_modules/synthetix/publish/deployed/mainnet-ovm/deployment.json");
        let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    })
}

/// Replace each library placeholder `__$<34 hex digits>$__` of `code` (hex) whose digits are
/// the start of `keccak256(<unit>:<library>)`, as solc writes them, with the library's address.
fn link_placeholders(what: &str, mut code: String, unit: &str, libraries: &[(&str, Address)]) -> Bytes {
    for (library, address) in libraries {
        let hash = alloy_primitives::keccak256(format!("{unit}:{library}"));
        let placeholder = format!("__${}$__", &alloy_primitives::hex::encode(hash)[..34]);
        assert!(code.contains(&placeholder), "{what}: no placeholder for library {library}");
        code = code.replace(&placeholder, &alloy_primitives::hex::encode(address));
    }
    assert!(!code.contains("__$"), "{what}: a library is not linked");
    code.parse().unwrap_or_else(|e| panic!("{what}: bytecode: {e}"))
}

/// The published creation bytecode of a contract of the Synthetix deployment
/// ([`synthetix_deployment`]), with its external libraries linked to the deployed `libraries`
/// (name → address). Synthetix compiles each contract from one flattened file, so a library's
/// placeholder hashes `<Contract>.sol:<Library>`. Panics when the deployment records runtime
/// code for `name` (its older contracts), which cannot be deployed: use [`synthetix_compiled`].
pub fn synthetix_contract(name: &str, libraries: &[(&str, Address)]) -> Bytes {
    let code = synthetix_deployment()["sources"][name]["bytecode"]
        .as_str()
        .unwrap_or_else(|| panic!("synthetix deployment: no contract {name}"))
        .trim_start_matches("0x")
        .to_string();
    // creation code starts by copying the runtime out: its first instructions are the
    // free-memory pointer, the callvalue check and a CODECOPY, never the calldata-size check
    // (`CALLDATASIZE LT`, 0x3610) a runtime dispatcher starts with
    assert!(
        !code[..40.min(code.len())].contains("3610"),
        "synthetix {name}: the deployment records runtime code; compile it with synthetix_compiled"
    );
    link_placeholders(&format!("synthetix {name}"), code, &format!("{name}.sol"), libraries)
}

/// The creation bytecode of Synthetix contracts compiled from the `synthetix` package's own
/// sources by `evm/compile-synthetix.js` (solc 0.5.16 from the npm registry, the deployment's
/// settings), for the contracts whose deployed code the package records only as runtime code of
/// the pre-2021 OVM compiler. Compiled once per process with every name asked for first.
pub fn synthetix_compiled(name: &str, libraries: &[(&str, Address)]) -> Bytes {
    const NAMES: [&str; 3] = ["AddressResolver", "FlexibleStorage", "SafeDecimalMath"];
    static C: OnceLock<Value> = OnceLock::new();
    assert!(NAMES.contains(&name), "synthetix_compiled: {name} is not among {NAMES:?}");
    let compiled = C.get_or_init(|| {
        let out = Command::new("node")
            .arg("compile-synthetix.js")
            .args(NAMES)
            .current_dir(evm_dir())
            .output()
            .expect("run node compile-synthetix.js");
        assert!(out.status.success(), "solc 0.5.16: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("compiler output")
    });
    let code = compiled[name]["bytecode"].as_str().expect("bytecode").to_string();
    link_placeholders(&format!("synthetix {name}"), code, &format!("contracts/{name}.sol"), libraries)
}

/// keel's own test contracts, compiled once per process: name → `{abi, bytecode}`.
pub fn own() -> &'static Value {
    static C: OnceLock<Value> = OnceLock::new();
    C.get_or_init(|| {
        let out = Command::new("node").arg("compile.js").current_dir(evm_dir()).output().expect("run node compile.js");
        assert!(out.status.success(), "solc: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("compiler output")
    })
}

/// The creation bytecode of one of keel's own test contracts.
pub fn own_bytecode(name: &str) -> Bytes {
    let code = own()[name]["bytecode"].as_str().unwrap_or_else(|| panic!("no test contract {name}"));
    code.parse().expect("bytecode")
}

/// Why a call failed: the revert reason when the contract gave one (`Error(string)`), else the
/// raw revert data or the halt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert(pub String);

impl std::fmt::Display for Revert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn revert_reason(data: &[u8]) -> String {
    // Error(string): selector 0x08c379a0, then an ABI-encoded string.
    if data.len() >= 68 && data[..4] == [0x08, 0xc3, 0x79, 0xa0] {
        let len = U256::from_be_slice(&data[36..68]).saturating_to::<usize>();
        if let Some(s) = data.get(68..68 + len) {
            return String::from_utf8_lossy(s).into_owned();
        }
    }
    if data.is_empty() {
        "reverted without a reason".into()
    } else {
        format!("reverted with 0x{}", alloy_primitives::hex::encode(data))
    }
}

type Evm = revm::MainnetEvm<revm::handler::MainnetContext<CacheDB<EmptyDB>>>;

/// One in-memory chain: a funded sender, a clock, deploy / transact / call.
pub struct Chain {
    evm: Evm,
    /// The account every transaction is sent from.
    pub sender: Address,
    /// The next block's timestamp, seconds.
    pub now: u64,
}

impl Default for Chain {
    fn default() -> Self {
        Self::new()
    }
}

impl Chain {
    /// An empty chain at timestamp 1 700 000 000 with one funded sender.
    pub fn new() -> Chain {
        let sender = Address::repeat_byte(0x5e);
        let mut db = CacheDB::new(EmptyDB::default());
        db.insert_account_info(sender, AccountInfo { balance: U256::from(10u128.pow(30)), ..Default::default() });
        let evm = Context::mainnet()
            .with_db(db)
            .modify_cfg_chained(|c| {
                c.disable_nonce_check = true;
                // Aave's and Synthetix's deployed contracts exceed EIP-170 in unoptimised builds.
                c.limit_contract_code_size = Some(usize::MAX);
            })
            .build_mainnet();
        let mut chain = Chain { evm, sender, now: 1_700_000_000 };
        chain.set_time(chain.now);
        chain
    }

    /// Set the block timestamp (and a block number that advances with it, 12 s a block).
    pub fn set_time(&mut self, now: u64) {
        self.now = now;
        self.evm.ctx.block.timestamp = U256::from(now);
        self.evm.ctx.block.number = U256::from(now / 12);
    }

    /// Move the clock forward.
    pub fn warp(&mut self, seconds: u64) {
        self.set_time(self.now + seconds);
    }

    fn tx(&self, kind: revm::primitives::TxKind, data: Bytes) -> TxEnv {
        self.tx_from(self.sender, kind, data)
    }

    fn tx_from(&self, from: Address, kind: revm::primitives::TxKind, data: Bytes) -> TxEnv {
        TxEnv::builder().caller(from).kind(kind).data(data).gas_limit(GAS).gas_price(0).build().expect("tx")
    }

    /// [`Chain::transact`] sent by `from` (any address: gas is free on this chain).
    pub fn transact_from(&mut self, from: Address, to: Address, data: Vec<u8>) -> Result<Bytes, Revert> {
        let tx = self.tx_from(from, revm::primitives::TxKind::Call(to), data.into());
        match self.evm.transact_commit(tx).map_err(|e| Revert(format!("{e:?}")))? {
            ExecutionResult::Success { output, .. } => Ok(output.into_data()),
            other => Err(Self::failure(other)),
        }
    }

    /// Deploy `creation` followed by the ABI-encoded constructor `args`.
    pub fn deploy(&mut self, creation: &Bytes, args: &[u8]) -> Result<Address, Revert> {
        let mut data = creation.to_vec();
        data.extend_from_slice(args);
        let tx = self.tx(revm::primitives::TxKind::Create, data.into());
        match self.evm.transact_commit(tx).map_err(|e| Revert(format!("{e:?}")))? {
            ExecutionResult::Success { output: Output::Create(_, Some(a)), .. } => Ok(a),
            other => Err(Self::failure(other)),
        }
    }

    /// Send a transaction to `to` from [`Chain::sender`] and keep its effects; the return data,
    /// or why it reverted (a reverted transaction changes nothing).
    pub fn transact(&mut self, to: Address, data: Vec<u8>) -> Result<Bytes, Revert> {
        self.transact_from(self.sender, to, data)
    }

    /// Run a call against the current state without keeping its effects.
    pub fn call(&mut self, to: Address, data: Vec<u8>) -> Result<Bytes, Revert> {
        self.call_from(self.sender, to, data)
    }

    /// [`Chain::call`] as `from` (what a contract that answers with error codes would return
    /// to that caller).
    pub fn call_from(&mut self, from: Address, to: Address, data: Vec<u8>) -> Result<Bytes, Revert> {
        let tx = self.tx_from(from, revm::primitives::TxKind::Call(to), data.into());
        let r = self.evm.transact(tx).map_err(|e| Revert(format!("{e:?}")))?;
        match r.result {
            ExecutionResult::Success { output, .. } => Ok(output.into_data()),
            other => Err(Self::failure(other)),
        }
    }

    fn failure(r: ExecutionResult) -> Revert {
        match r {
            ExecutionResult::Revert { output, .. } => Revert(revert_reason(&output)),
            ExecutionResult::Halt { reason, .. } => Revert(format!("halted: {reason:?}")),
            ExecutionResult::Success { .. } => Revert("deployment returned no address".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revert_reasons_decode() {
        let mut data = vec![0x08, 0xc3, 0x79, 0xa0];
        data.extend(alloy_sol_types::SolValue::abi_encode_params(&("SPL".to_string(),)));
        assert_eq!(revert_reason(&data), "SPL");
        assert_eq!(revert_reason(&[]), "reverted without a reason");
        assert_eq!(revert_reason(&[1, 2]), "reverted with 0x0102");
    }
}
