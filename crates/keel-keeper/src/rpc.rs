//! A small blocking Ethereum JSON-RPC client over HTTP: exactly the calls the keeper makes.

use alloy_primitives::{Address, B256, Bytes, U256};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use thiserror::Error;

/// A JSON-RPC failure.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum RpcError {
    /// The node could not be reached or answered garbage: retried with back-off.
    #[error("node unreachable: {0}")]
    Transport(String),
    /// The node answered with an error (a revert carries its data).
    #[error("node error {code}: {message}")]
    Node {
        /// JSON-RPC error code.
        code: i64,
        /// Message.
        message: String,
        /// Revert data, if any.
        data: Option<Bytes>,
    },
    /// A result of the wrong shape.
    #[error("unexpected answer to {0}")]
    Decode(String),
}

impl RpcError {
    /// A revert's reason: decoded from its data, else from the node's message.
    pub fn revert_reason(&self) -> Option<String> {
        match self {
            RpcError::Node { message, data, .. } => {
                if let Some(r) = data.as_ref().and_then(|d| crate::abi::revert_reason(d)) {
                    return Some(r);
                }
                let m = message.as_str();
                let m =
                    m.split_once("reverted with reason string '").map(|(_, r)| r.trim_end_matches('\'')).unwrap_or(m);
                Some(m.strip_prefix("execution reverted: ").unwrap_or(m).to_string())
            }
            _ => None,
        }
    }
}

/// The latest block's number and base fee.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Block number.
    pub number: u64,
    /// Base fee per gas, wei.
    pub base_fee: U256,
}

/// A mined transaction's receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// Succeeded.
    pub success: bool,
    /// Gas used.
    pub gas_used: U256,
    /// Price paid per gas, wei.
    pub effective_gas_price: U256,
    /// Block it is in.
    pub block_number: u64,
}

/// A JSON-RPC endpoint.
pub struct Rpc {
    agent: ureq::Agent,
    url: String,
    id: AtomicU64,
}

fn hex_u64(v: &Value, what: &str) -> Result<u64, RpcError> {
    v.as_str()
        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| RpcError::Decode(what.to_string()))
}

fn hex_u256(v: &Value, what: &str) -> Result<U256, RpcError> {
    v.as_str().and_then(|s| s.parse::<U256>().ok()).ok_or_else(|| RpcError::Decode(what.to_string()))
}

impl Rpc {
    /// A client for `url`.
    pub fn new(url: &str) -> Rpc {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(15)))
            .build()
            .into();
        Rpc { agent, url: url.to_string(), id: AtomicU64::new(1) }
    }

    /// One call.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, RpcError> {
        let id = self.id.fetch_add(1, Ordering::Relaxed);
        let body = json!({ "jsonrpc": "2.0", "id": id, "method": method, "params": params });
        let mut resp = self.agent.post(&self.url).send_json(&body).map_err(|e| RpcError::Transport(e.to_string()))?;
        let v: Value = resp.body_mut().read_json().map_err(|e| RpcError::Transport(format!("{method}: {e}")))?;
        if let Some(err) = v.get("error") {
            let data = match err.get("data") {
                Some(Value::String(s)) => s.parse::<Bytes>().ok(),
                Some(Value::Object(o)) => o.get("data").and_then(|d| d.as_str()).and_then(|s| s.parse::<Bytes>().ok()),
                _ => None,
            };
            return Err(RpcError::Node {
                code: err.get("code").and_then(|c| c.as_i64()).unwrap_or(0),
                message: err.get("message").and_then(|m| m.as_str()).unwrap_or("").to_string(),
                data,
            });
        }
        v.get("result").cloned().ok_or_else(|| RpcError::Decode(method.to_string()))
    }

    /// `eth_chainId`.
    pub fn chain_id(&self) -> Result<u64, RpcError> {
        hex_u64(&self.call("eth_chainId", json!([]))?, "eth_chainId")
    }

    /// The latest block's number and base fee.
    pub fn head(&self) -> Result<Head, RpcError> {
        let b = self.call("eth_getBlockByNumber", json!(["latest", false]))?;
        Ok(Head {
            number: hex_u64(&b["number"], "block number")?,
            base_fee: hex_u256(&b["baseFeePerGas"], "baseFeePerGas").unwrap_or(U256::ZERO),
        })
    }

    /// `eth_getTransactionCount(address, tag)`.
    pub fn nonce(&self, a: Address, tag: &str) -> Result<u64, RpcError> {
        hex_u64(&self.call("eth_getTransactionCount", json!([a, tag]))?, "eth_getTransactionCount")
    }

    /// `eth_call` from `from` at the latest block.
    pub fn eth_call(&self, from: Address, to: Address, data: &[u8]) -> Result<Bytes, RpcError> {
        let v =
            self.call("eth_call", json!([{ "from": from, "to": to, "data": Bytes::copy_from_slice(data) }, "latest"]))?;
        v.as_str().and_then(|s| s.parse::<Bytes>().ok()).ok_or_else(|| RpcError::Decode("eth_call".into()))
    }

    /// `eth_estimateGas`.
    pub fn estimate_gas(&self, from: Address, to: Address, data: &[u8]) -> Result<u64, RpcError> {
        let v =
            self.call("eth_estimateGas", json!([{ "from": from, "to": to, "data": Bytes::copy_from_slice(data) }]))?;
        hex_u64(&v, "eth_estimateGas")
    }

    /// `eth_sendRawTransaction`: the hash.
    pub fn send_raw(&self, raw: &[u8]) -> Result<B256, RpcError> {
        let v = self.call("eth_sendRawTransaction", json!([Bytes::copy_from_slice(raw)]))?;
        v.as_str().and_then(|s| s.parse::<B256>().ok()).ok_or_else(|| RpcError::Decode("eth_sendRawTransaction".into()))
    }

    /// The receipt, once mined.
    pub fn receipt(&self, hash: B256) -> Result<Option<Receipt>, RpcError> {
        let v = self.call("eth_getTransactionReceipt", json!([hash]))?;
        if v.is_null() {
            return Ok(None);
        }
        Ok(Some(Receipt {
            success: hex_u64(&v["status"], "receipt status")? == 1,
            gas_used: hex_u256(&v["gasUsed"], "gasUsed")?,
            effective_gas_price: hex_u256(&v["effectiveGasPrice"], "effectiveGasPrice").unwrap_or(U256::ZERO),
            block_number: hex_u64(&v["blockNumber"], "blockNumber")?,
        }))
    }

    /// Whether the node knows the transaction (pending or mined).
    pub fn known(&self, hash: B256) -> Result<bool, RpcError> {
        Ok(!self.call("eth_getTransactionByHash", json!([hash]))?.is_null())
    }
}
