//! The executor around the shared policy: observe each strategy on-chain, let
//! [`keel_core::strategy::keeper::decide`] choose, then simulate, price, sign, send and follow
//! the transaction to its receipt — replacing it when stuck, resending it when dropped, and
//! never sending a second transaction for one decision.

use crate::abi::{IFliStrategy, IPerpStrategy};
use crate::config::{Config, Kind, Strategy};
use crate::metrics::Metrics;
use crate::rpc::{Head, Receipt, Rpc, RpcError};
use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, B256, Bytes, TxKind, U256};
use alloy_signer::SignerSync;
use alloy_signer_local::PrivateKeySigner;
use alloy_sol_types::SolCall;
use keel_core::strategy::keeper::{
    Action, BackoffConfig, Candidate, Decision, Memory, Observation, Outcome, decide, record,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

const GWEI: u64 = 1_000_000_000;

fn gwei(v: U256) -> String {
    let g = v.saturating_to::<u128>() as f64 / GWEI as f64;
    format!("{g:.3}")
}

fn eth(v: U256) -> f64 {
    v.saturating_to::<u128>() as f64 / 1e18
}

/// A transaction sent for a decision and not yet mined.
#[derive(Debug, Clone)]
struct InFlight {
    decision: Decision,
    strategy: usize,
    nonce: u64,
    to: Address,
    data: Bytes,
    gas_limit: u64,
    max_fee: U256,
    tip: U256,
    cap: U256,
    hashes: Vec<B256>,
    raw: Vec<u8>,
    sent_block: u64,
}

/// The keeper.
pub struct Keeper {
    rpc: Rpc,
    signer: PrivateKeySigner,
    from: Address,
    chain_id: u64,
    cfg: Config,
    dry_run: bool,
    mem: Memory,
    backoff: BackoffConfig,
    inflight: Option<InFlight>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    t0: Instant,
    spent: HashMap<String, (u64, U256)>,
}

impl Keeper {
    /// Connect: reads the chain id (and checks it against the config's).
    pub fn new(rpc_url: &str, cfg: Config, signer: PrivateKeySigner, dry_run: bool) -> Result<Keeper, String> {
        let rpc = Rpc::new(rpc_url);
        let chain_id = rpc.chain_id().map_err(|e| format!("--rpc {rpc_url}: {e}"))?;
        if let Some(want) = cfg.chain_id
            && want != chain_id
        {
            return Err(format!("--rpc {rpc_url} is chain {chain_id}, but keeper.toml says chain_id = {want}"));
        }
        let from = signer.address();
        Ok(Keeper {
            rpc,
            signer,
            from,
            chain_id,
            cfg,
            dry_run,
            mem: Memory::default(),
            backoff: BackoffConfig::default(),
            inflight: None,
            metrics: Arc::new(Metrics::default()),
            t0: Instant::now(),
            spent: HashMap::new(),
        })
    }

    /// The node's latest block.
    pub fn head(&self) -> Result<Head, RpcError> {
        self.rpc.head()
    }

    /// The keeper's address.
    pub fn address(&self) -> Address {
        self.from
    }

    /// Set the back-off after refusals.
    pub fn set_backoff(&mut self, b: BackoffConfig) {
        self.backoff = b;
    }

    fn now_ms(&self) -> u64 {
        self.t0.elapsed().as_millis() as u64
    }

    fn day() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() / 86_400).unwrap_or(0)
    }

    fn spent_today(&self, name: &str) -> U256 {
        match self.spent.get(name) {
            Some((d, v)) if *d == Self::day() => *v,
            _ => U256::ZERO,
        }
    }

    /// One round: follow the transaction in flight, or observe, decide and act. Lines describe
    /// what happened (also logged). An `Err` is the node failing: the caller backs off.
    pub fn round(&mut self) -> Result<Vec<String>, RpcError> {
        let mut lines = Vec::new();
        let head = self.rpc.head()?;
        if let Some(f) = self.inflight.take()
            && let Some(still) = self.follow(f, head, &mut lines)?
        {
            // a ripcord anywhere outranks a routine call still in flight: it takes its nonce
            if still.decision.action != Action::Ripcord
                && let Some(d) = self.ripcord_wanted(head.number)?
            {
                self.execute(d, head, &mut lines, Some(still.clone()))?;
            }
            if self.inflight.is_none() {
                self.inflight = Some(still);
            }
            for l in &lines {
                tracing::info!(target: "keel_keeper", "{l}");
            }
            return Ok(lines);
        }
        let mut observed = Vec::new();
        for i in 0..self.cfg.strategies.len() {
            match self.observe(i, head.number) {
                Ok(o) => observed.push(o),
                Err(RpcError::Transport(e)) => return Err(RpcError::Transport(e)),
                Err(e) => {
                    let s = &self.cfg.strategies[i];
                    lines.push(format!("{}: cannot read the strategy: {e}", s.name));
                    self.metrics.with(&s.name, |m| m.failures += 1);
                }
            }
        }
        let mut decisions = decide(&observed, &self.mem, self.now_ms());
        decisions.sort_by_key(|d| d.action != Action::Ripcord);
        for d in decisions {
            if self.inflight.is_some() {
                break;
            }
            self.execute(d, head, &mut lines, None)?;
        }
        for l in &lines {
            tracing::info!(target: "keel_keeper", "{l}");
        }
        Ok(lines)
    }

    /// A ripcord some strategy asks for now (the policy's choice among them), if any.
    fn ripcord_wanted(&self, block: u64) -> Result<Option<Decision>, RpcError> {
        let mut observed = Vec::new();
        for i in 0..self.cfg.strategies.len() {
            match self.observe(i, block) {
                Ok(mut o) => {
                    o.candidates.retain(|c| c.action == Action::Ripcord);
                    observed.push(o);
                }
                Err(RpcError::Transport(e)) => return Err(RpcError::Transport(e)),
                Err(_) => {}
            }
        }
        Ok(decide(&observed, &self.mem, self.now_ms()).into_iter().next())
    }

    fn observe(&self, i: usize, block: u64) -> Result<Observation, RpcError> {
        let s = &self.cfg.strategies[i];
        let call = |data: Vec<u8>| self.rpc.eth_call(self.from, s.address, &data);
        let decode_err = |e: alloy_sol_types::Error| RpcError::Decode(format!("{}: {e}", s.name));
        let mut candidates = Vec::new();
        match s.kind {
            Kind::Fli => {
                let (names, enums) = match &s.bounds {
                    Some(b) => {
                        let c = IFliStrategy::shouldRebalanceWithBoundsCall {
                            customMinLeverageRatio: b.min.into_raw(),
                            customMaxLeverageRatio: b.max.into_raw(),
                        };
                        let r = IFliStrategy::shouldRebalanceWithBoundsCall::abi_decode_returns(&call(c.abi_encode())?)
                            .map_err(decode_err)?;
                        (r._0, r._1)
                    }
                    None => {
                        let r = IFliStrategy::shouldRebalanceCall::abi_decode_returns(&call(
                            IFliStrategy::shouldRebalanceCall {}.abi_encode(),
                        )?)
                        .map_err(decode_err)?;
                        (r._0, r._1)
                    }
                };
                for (n, e) in names.iter().zip(enums.iter()) {
                    if !s.exchanges.is_empty() && !s.exchanges.contains(n) {
                        continue;
                    }
                    if let Some(a) = Action::from_enum(*e) {
                        candidates.push(Candidate { exchange: n.clone(), action: a, chunk: U256::ZERO });
                    }
                }
                if candidates.len() > 1 {
                    let names: Vec<String> = candidates.iter().map(|c| c.exchange.clone()).collect();
                    let c = IFliStrategy::getChunkRebalanceNotionalCall { exchangeNames: names };
                    let r = IFliStrategy::getChunkRebalanceNotionalCall::abi_decode_returns(&call(c.abi_encode())?)
                        .map_err(decode_err)?;
                    for (c, size) in candidates.iter_mut().zip(r.sizes) {
                        c.chunk = size;
                    }
                }
                let lr = IFliStrategy::getCurrentLeverageRatioCall::abi_decode_returns(&call(
                    IFliStrategy::getCurrentLeverageRatioCall {}.abi_encode(),
                )?)
                .map_err(decode_err)?;
                self.metrics.with(&s.name, |m| m.leverage = lr.saturating_to::<u128>() as f64 / 1e18);
            }
            Kind::PerpV2 => {
                let e = match &s.bounds {
                    Some(b) => {
                        let c = IPerpStrategy::shouldRebalanceWithBoundsCall {
                            customMinLeverageRatio: b.min,
                            customMaxLeverageRatio: b.max,
                        };
                        IPerpStrategy::shouldRebalanceWithBoundsCall::abi_decode_returns(&call(c.abi_encode())?)
                            .map_err(decode_err)?
                    }
                    None => IPerpStrategy::shouldRebalanceCall::abi_decode_returns(&call(
                        IPerpStrategy::shouldRebalanceCall {}.abi_encode(),
                    )?)
                    .map_err(decode_err)?,
                };
                if let Some(a) = Action::from_enum(e) {
                    candidates.push(Candidate { exchange: String::new(), action: a, chunk: U256::ZERO });
                }
                let lr = IPerpStrategy::getCurrentLeverageRatioCall::abi_decode_returns(&call(
                    IPerpStrategy::getCurrentLeverageRatioCall {}.abi_encode(),
                )?)
                .map_err(decode_err)?;
                let f = lr.unsigned_abs().saturating_to::<u128>() as f64 / 1e18;
                self.metrics.with(&s.name, |m| m.leverage = if lr.is_negative() { -f } else { f });
            }
        }
        let wants: Vec<String> = candidates.iter().map(|c| format!("{}:{}", c.exchange, c.action.name())).collect();
        tracing::debug!(strategy = %s.name, block, leverage = self.metrics.strategies.lock().map(|m| m.get(&s.name).map(|f| f.leverage).unwrap_or(0.0)).unwrap_or(0.0), wants = ?wants, "state read");
        Ok(Observation { id: s.name.clone(), seq: block, blocked: None, candidates })
    }

    fn calldata(s: &Strategy, d: &Decision) -> Vec<u8> {
        let x = d.exchange.clone();
        match (&s.kind, d.action) {
            (Kind::Fli, Action::Rebalance) => IFliStrategy::rebalanceCall { exchangeName: x }.abi_encode(),
            (Kind::Fli, Action::Iterate) => IFliStrategy::iterateRebalanceCall { exchangeName: x }.abi_encode(),
            (Kind::Fli, Action::Ripcord) => IFliStrategy::ripcordCall { exchangeName: x }.abi_encode(),
            (Kind::PerpV2, Action::Rebalance) => IPerpStrategy::rebalanceCall {}.abi_encode(),
            (Kind::PerpV2, Action::Iterate) => IPerpStrategy::iterateRebalanceCall {}.abi_encode(),
            (Kind::PerpV2, Action::Ripcord) => IPerpStrategy::ripcordCall {}.abi_encode(),
        }
    }

    fn label(s: &Strategy, d: &Decision) -> String {
        if d.exchange.is_empty() {
            format!("{}: {}()", s.name, d.action.name())
        } else {
            format!("{}: {}(\"{}\")", s.name, d.action.name(), d.exchange)
        }
    }

    fn finish(&mut self, d: &Decision, outcome: Outcome) {
        let name = d.id.clone();
        match &outcome {
            Outcome::Done => self.metrics.with(&name, |m| m.last_success = Some(Instant::now())),
            Outcome::Raced(_) => {}
            Outcome::Refused(_) | Outcome::Lost(_) => self.metrics.with(&name, |m| m.failures += 1),
        }
        let now = self.now_ms();
        record(&mut self.mem, d, &outcome, now, self.backoff);
    }

    /// Simulate, price and send `d`; with `replacing`, on that transaction's nonce with fees at
    /// least 10% above it (a node's replacement rule), and only if that fits under the cap.
    fn execute(
        &mut self,
        d: Decision,
        head: Head,
        lines: &mut Vec<String>,
        replacing: Option<InFlight>,
    ) -> Result<(), RpcError> {
        let i = self.cfg.strategies.iter().position(|s| s.name == d.id).expect("a configured strategy");
        let s = self.cfg.strategies[i].clone();
        let label = Self::label(&s, &d);
        let data = Self::calldata(&s, &d);
        let is_ripcord = d.action == Action::Ripcord;
        // simulate from the keeper's address first
        if let Err(e) = self.rpc.eth_call(self.from, s.address, &data) {
            let reason = match &e {
                RpcError::Transport(_) => return Err(e),
                other => other.revert_reason().unwrap_or_else(|| other.to_string()),
            };
            if is_ripcord {
                lines.push(format!("{label}: not sent, another keeper's ripcord came first: {reason}"));
                self.finish(&d, Outcome::Raced(reason));
            } else {
                lines.push(format!("{label}: not sent, it would revert: {reason}"));
                self.finish(&d, Outcome::Refused(reason));
            }
            return Ok(());
        }
        let g = &self.cfg.gas;
        let cap = if is_ripcord { g.ripcord_max_fee } else { g.max_fee };
        let tip = g.priority_fee.min(cap);
        if head.base_fee + tip > cap {
            lines.push(format!(
                "{label}: waiting, base fee {} gwei + tip {} gwei is above the {} gwei cap",
                gwei(head.base_fee),
                gwei(tip),
                gwei(cap)
            ));
            return Ok(());
        }
        let max_fee = (head.base_fee * U256::from(2u64) + tip).min(cap);
        let gas = match self.rpc.estimate_gas(self.from, s.address, &data) {
            Ok(g) => g,
            Err(RpcError::Transport(e)) => return Err(RpcError::Transport(e)),
            Err(e) => {
                let reason = e.revert_reason().unwrap_or_else(|| e.to_string());
                lines.push(format!("{label}: not sent, gas estimate failed: {reason}"));
                self.finish(&d, Outcome::Refused(reason));
                return Ok(());
            }
        };
        let gas_limit = gas + gas / 5 + 10_000;
        let worst = U256::from(gas_limit) * max_fee;
        if !is_ripcord && self.spent_today(&s.name) + worst > s.daily_budget {
            let reason =
                format!("daily gas budget: spent {} ETH of {}", eth(self.spent_today(&s.name)), eth(s.daily_budget));
            lines.push(format!("{label}: not sent, {reason}"));
            self.finish(&d, Outcome::Refused(reason));
            return Ok(());
        }
        if is_ripcord {
            let data = match s.kind {
                Kind::Fli => IFliStrategy::getCurrentEtherIncentiveCall {}.abi_encode(),
                Kind::PerpV2 => IPerpStrategy::getCurrentEtherIncentiveCall {}.abi_encode(),
            };
            let reward = self
                .rpc
                .eth_call(self.from, s.address, &data)
                .ok()
                .and_then(|b| U256::try_from_be_slice(&b))
                .unwrap_or_default();
            lines.push(format!(
                "{label}: ripcord pays {:.6} ETH and costs at most {:.6} ETH{}",
                eth(reward),
                eth(worst),
                if reward < worst { " — sending anyway: the product's safety comes first" } else { "" }
            ));
        }
        if self.dry_run {
            lines.push(format!(
                "{label}: dry run, would send to {} with gas limit {gas_limit}, max fee {} gwei, tip {} gwei",
                s.address,
                gwei(max_fee),
                gwei(tip)
            ));
            self.metrics.with(&s.name, |m| m.last_action = format!("dry-run {}", d.action.name()));
            self.finish(&d, Outcome::Done);
            return Ok(());
        }
        let (nonce, max_fee, tip) = match &replacing {
            None => (self.rpc.nonce(self.from, "pending")?, max_fee, tip),
            Some(r) => {
                let up = |v: U256| v * U256::from(11u64) / U256::from(10u64) + U256::from(1u64);
                let (m, t) = (max_fee.max(up(r.max_fee)), tip.max(up(r.tip)));
                if m > cap || t > m {
                    lines.push(format!(
                        "{label}: cannot take over nonce {} from the stuck call under the {} gwei ripcord cap; waiting",
                        r.nonce,
                        gwei(cap)
                    ));
                    return Ok(());
                }
                (r.nonce, m, t)
            }
        };
        let f = InFlight {
            decision: d.clone(),
            strategy: i,
            nonce,
            to: s.address,
            data: Bytes::from(data),
            gas_limit,
            max_fee,
            tip,
            cap,
            // the old hashes are not followed: if the old call is mined after all, the nonce is
            // gone and the ripcord is decided again on the next round
            hashes: Vec::new(),
            raw: Vec::new(),
            sent_block: head.number,
        };
        match self.sign_and_send(f, lines, &label) {
            Ok(f) => {
                self.metrics.with(&s.name, |m| {
                    m.sent += 1;
                    m.last_action = d.action.name().to_string();
                });
                if let Some(r) = &replacing {
                    let old = Self::label(&self.cfg.strategies[r.strategy], &r.decision);
                    lines.push(format!("{old}: replaced on nonce {} by the ripcord", r.nonce));
                    let od = r.decision.clone();
                    self.finish(&od, Outcome::Raced("replaced by a ripcord".into()));
                }
                self.inflight = Some(f);
                Ok(())
            }
            Err(RpcError::Transport(e)) => {
                self.finish(&d, Outcome::Lost(e.clone()));
                Err(RpcError::Transport(e))
            }
            Err(e) => {
                lines.push(format!("{label}: the node refused the transaction: {e}"));
                self.finish(&d, Outcome::Lost(e.to_string()));
                Ok(())
            }
        }
    }

    fn sign(&self, f: &InFlight) -> (B256, Vec<u8>) {
        let tx = TxEip1559 {
            chain_id: self.chain_id,
            nonce: f.nonce,
            gas_limit: f.gas_limit,
            max_fee_per_gas: f.max_fee.saturating_to::<u128>(),
            max_priority_fee_per_gas: f.tip.saturating_to::<u128>(),
            to: TxKind::Call(f.to),
            value: U256::ZERO,
            access_list: Default::default(),
            input: f.data.clone(),
        };
        let sig = self.signer.sign_hash_sync(&tx.signature_hash()).expect("a local key signs");
        let env: TxEnvelope = tx.into_signed(sig).into();
        (*env.tx_hash(), env.encoded_2718())
    }

    fn sign_and_send(&self, mut f: InFlight, lines: &mut Vec<String>, label: &str) -> Result<InFlight, RpcError> {
        let (hash, raw) = self.sign(&f);
        self.rpc.send_raw(&raw)?;
        lines.push(format!(
            "{label}: sent {hash} (nonce {}, gas limit {}, max fee {} gwei, tip {} gwei)",
            f.nonce,
            f.gas_limit,
            gwei(f.max_fee),
            gwei(f.tip)
        ));
        f.hashes.push(hash);
        f.raw = raw;
        Ok(f)
    }

    /// Follow the transaction in flight. `Some` while it is still in flight.
    fn follow(&mut self, mut f: InFlight, head: Head, lines: &mut Vec<String>) -> Result<Option<InFlight>, RpcError> {
        let s = self.cfg.strategies[f.strategy].clone();
        let label = Self::label(&s, &f.decision);
        for h in f.hashes.clone().iter().rev() {
            if let Some(r) = self.rpc.receipt(*h)? {
                self.mined(&f, &s, *h, r, lines, &label);
                return Ok(None);
            }
        }
        if self.rpc.nonce(self.from, "latest")? > f.nonce {
            lines.push(format!("{label}: nonce {} was used by another transaction; deciding again", f.nonce));
            // like a lost race: no back-off, and a fresh decision on the next state
            let d = f.decision.clone();
            self.finish(&d, Outcome::Raced("nonce used by another transaction".into()));
            return Ok(None);
        }
        let last = *f.hashes.last().expect("a sent transaction");
        if !self.rpc.known(last)? {
            match self.rpc.send_raw(&f.raw) {
                Ok(_) => {
                    lines.push(format!("{label}: {last} was dropped by the node; resent it (same nonce {})", f.nonce))
                }
                Err(RpcError::Transport(e)) => return Err(RpcError::Transport(e)),
                Err(e) => lines.push(format!("{label}: {last} was dropped and could not be resent: {e}")),
            }
            f.sent_block = head.number;
            return Ok(Some(f));
        }
        if head.number >= f.sent_block + self.cfg.gas.stuck_after_blocks {
            let tip = (f.tip * U256::from(9u64) / U256::from(8u64) + U256::from(1u64)).min(f.cap);
            let max_fee = (f.max_fee * U256::from(9u64) / U256::from(8u64) + U256::from(1u64))
                .max(head.base_fee * U256::from(2u64) + tip)
                .min(f.cap);
            // nodes take a replacement only if both fees rise by 10%
            let enough = |new: U256, old: U256| new * U256::from(10u64) >= old * U256::from(11u64);
            if !enough(max_fee, f.max_fee) || !enough(tip, f.tip) {
                lines.push(format!("{label}: {last} is stuck and the fee is at its {} gwei cap; waiting", gwei(f.cap)));
                f.sent_block = head.number;
                return Ok(Some(f));
            }
            let mut g = f.clone();
            g.max_fee = max_fee;
            g.tip = tip;
            g.sent_block = head.number;
            match self.sign_and_send(g, lines, &format!("{label}: replacing {last}:")) {
                Ok(g) => return Ok(Some(g)),
                Err(RpcError::Transport(e)) => return Err(RpcError::Transport(e)),
                Err(e) => {
                    lines.push(format!("{label}: replacement refused: {e}"));
                    f.sent_block = head.number;
                }
            }
        }
        Ok(Some(f))
    }

    fn mined(&mut self, f: &InFlight, s: &Strategy, hash: B256, r: Receipt, lines: &mut Vec<String>, label: &str) {
        let paid = r.gas_used * r.effective_gas_price;
        let day = Self::day();
        let e = self.spent.entry(s.name.clone()).or_insert((day, U256::ZERO));
        if e.0 != day {
            *e = (day, U256::ZERO);
        }
        e.1 += paid;
        self.metrics.with(&s.name, |m| m.gas_spent_eth += eth(paid));
        let d = f.decision.clone();
        if r.success {
            lines.push(format!(
                "{label}: mined {hash} in block {}, gas used {}, paid {:.6} ETH",
                r.block_number,
                r.gas_used,
                eth(paid)
            ));
            self.finish(&d, Outcome::Done);
        } else {
            let reason = self
                .rpc
                .eth_call(self.from, f.to, &f.data)
                .err()
                .and_then(|e| e.revert_reason())
                .unwrap_or_else(|| "reverted".to_string());
            if d.action == Action::Ripcord {
                lines.push(format!(
                    "{label}: {hash} reverted in block {}: another keeper's ripcord landed first ({reason})",
                    r.block_number
                ));
                self.finish(&d, Outcome::Raced(reason));
            } else {
                lines.push(format!("{label}: {hash} reverted in block {}: {reason}", r.block_number));
                self.finish(&d, Outcome::Refused(reason));
            }
        }
    }
}
