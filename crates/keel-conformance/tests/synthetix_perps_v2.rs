//! keel-core's Synthetix-style market (`venue::synthetix::PerpsMarket`) against Synthetix's
//! Perps V2 contracts from the `synthetix` package's published bytecode (its Optimism deployment:
//! `ProxyPerpsV2` routing to `PerpsV2Market`, `PerpsV2MarketViews`, `PerpsV2MarketLiquidate`,
//! `PerpsV2MarketDelayedIntent` and `PerpsV2MarketDelayedExecution` over `PerpsV2MarketState`,
//! configured through `PerpsV2MarketSettings` on `FlexibleStorage` behind an `AddressResolver`),
//! with keel's stand-in for the rest of Synthetix (`evm/contracts/SynthetixSystem.sol`: one
//! oracle price, sUSD issued and burnt, the fee pool).
//!
//! Random sequences: a market with random fees, skew scale, funding velocity, leverage and
//! open-interest caps, keeper fees, liquidation ratios and delayed-order ages at a random price;
//! two traders (the token and another), then 10–80 operations: margin deposits and withdrawals,
//! trades (`modifyPosition`) of either sign from dust to past the maximum leverage, with a
//! desired fill price that sometimes refuses them, price moves, time passing, off-chain delayed
//! orders submitted, executed and cancelled by their owner or a keeper, and liquidations (flag,
//! then liquidate; a keeper tries whenever keel says a position can be liquidated, three times
//! in four, and at random). Both sides must accept or refuse together with the same reason; after every
//! operation each trader's margin, size, last price, remaining margin, accrued funding,
//! liquidatability and pending order, the market's skew, size, funding rate and funding entry,
//! and the sUSD burnt, issued and paid to the fee pool must be equal to the wei.

use alloy_primitives::{Address, B256, Bytes, I256, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use keel_conformance::{Chain, for_each_sequence, own_bytecode, synthetix_compiled, synthetix_contract};
use keel_core::venue::synthetix::{PerpsError, PerpsMarket, PerpsParams};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

sol! {
    interface IResolver {
        function importAddresses(bytes32[] names, address[] destinations) external;
    }
    interface IMixin {
        function rebuildCache() external;
    }
    interface IState {
        function addAssociatedContracts(address[] associatedContracts) external;
        function linkOrInitializeState() external;
    }
    interface IProxy {
        function addRoute(bytes4 selector, address implementation, bool isView) external;
    }
    interface ISystem {
        function setPrice(uint256 p) external;
        function setMarket(address m) external;
        function issued(address account) external view returns (uint256);
        function burnt(address account) external view returns (uint256);
        function feesPaid() external view returns (uint256);
    }
    interface ISettings {
        struct Parameters {
            uint256 takerFee;
            uint256 makerFee;
            uint256 takerFeeDelayedOrder;
            uint256 makerFeeDelayedOrder;
            uint256 takerFeeOffchainDelayedOrder;
            uint256 makerFeeOffchainDelayedOrder;
            uint256 maxLeverage;
            uint256 maxMarketValue;
            uint256 maxFundingVelocity;
            uint256 skewScale;
            uint256 nextPriceConfirmWindow;
            uint256 delayedOrderConfirmWindow;
            uint256 minDelayTimeDelta;
            uint256 maxDelayTimeDelta;
            uint256 offchainDelayedOrderMinAge;
            uint256 offchainDelayedOrderMaxAge;
            bytes32 offchainMarketKey;
            uint256 offchainPriceDivergence;
            uint256 liquidationPremiumMultiplier;
            uint256 liquidationBufferRatio;
            uint256 maxLiquidationDelta;
            uint256 maxPD;
        }
        function setParameters(bytes32 marketKey, Parameters parameters) external;
        function setMinInitialMargin(uint256 minMargin) external;
        function setMinKeeperFee(uint256 sUSD) external;
        function setMaxKeeperFee(uint256 sUSD) external;
        function setLiquidationFeeRatio(uint256 ratio) external;
        function setKeeperLiquidationFee(uint256 keeperFee) external;
    }
    interface IMarket {
        function transferMargin(int256 marginDelta) external;
        function modifyPosition(int256 sizeDelta, uint256 desiredFillPrice) external;
        function recomputeFunding() external returns (uint256 lastIndex);
    }
    interface ILiquidate {
        function flagPosition(address account) external;
        function liquidatePosition(address account) external;
    }
    interface IIntent {
        function submitOffchainDelayedOrder(int256 sizeDelta, uint256 desiredFillPrice) external;
    }
    interface IExecution {
        function executeOffchainDelayedOrder(address account, bytes[] priceUpdateData) external payable;
        function cancelOffchainDelayedOrder(address account) external;
    }
    interface IViews {
        struct Position { uint64 id; uint64 lastFundingIndex; uint128 margin; uint128 lastPrice; int128 size; }
        struct DelayedOrder {
            bool isOffchain;
            int128 sizeDelta;
            uint128 desiredFillPrice;
            uint128 targetRoundId;
            uint128 commitDeposit;
            uint128 keeperDeposit;
            uint256 executableAtTime;
            uint256 intentionTime;
            bytes32 trackingCode;
        }
        function positions(address account) external view returns (Position);
        function delayedOrders(address account) external view returns (DelayedOrder);
        function marketSize() external view returns (uint128 size);
        function marketSkew() external view returns (int128 skew);
        function fundingLastRecomputed() external view returns (uint32 timestamp);
        function fundingRateLastRecomputed() external view returns (int128 fundingRate);
        function fundingSequence(uint256 index) external view returns (int128 netFunding);
        function fundingSequenceLength() external view returns (uint256 length);
        function currentFundingRate() external view returns (int256 fundingRate);
        function remainingMargin(address account) external view returns (uint256 marginRemaining, bool invalid);
        function accruedFunding(address account) external view returns (int256 funding, bool invalid);
        function canLiquidate(address account) external view returns (bool);
    }
}

const E18: u128 = 1_000_000_000_000_000_000;
/// The market key and base asset the deployment uses.
const MARKET_KEY: &str = "sETHPERP";
const BASE_ASSET: &str = "sETH";
/// The two traders keel numbers 1 and 2, and the keeper that flags, liquidates, executes and
/// cancels for others.
const TRADERS: [(u64, u8); 2] = [(1, 0xa1), (2, 0xb2)];
const KEEPER: u8 = 0xc3;

fn key(s: &str) -> B256 {
    let mut b = [0u8; 32];
    b[..s.len()].copy_from_slice(s.as_bytes());
    B256::from(b)
}

fn ok(c: &mut Chain, to: Address, data: Vec<u8>, what: &str) -> Bytes {
    c.transact(to, data).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn deploy(c: &mut Chain, name: &str, args: &[u8], libraries: &[(&str, Address)]) -> Address {
    c.deploy(&synthetix_contract(name, libraries), args).unwrap_or_else(|e| panic!("deploy {name}: {e}"))
}

/// A wad from a float (random parameters only; never money keel computes).
fn wad(x: f64) -> U256 {
    U256::from((x * 1e9).round() as u128) * U256::from(1_000_000_000u64)
}

fn signed(x: U256) -> I256 {
    I256::try_from(x).expect("int256")
}

/// One Perps V2 market as Synthetix deploys it, with keel's stand-in for the rest.
struct Market {
    chain: Chain,
    system: Address,
    proxy: Address,
}

impl Market {
    fn view<C: SolCall>(&mut self, call: C) -> C::Return {
        let out = self.chain.call(self.proxy, call.abi_encode()).unwrap_or_else(|e| panic!("view: {e}"));
        C::abi_decode_returns(&out).expect("decode")
    }

    fn system<C: SolCall>(&mut self, call: C) -> C::Return {
        let out = self.chain.call(self.system, call.abi_encode()).unwrap_or_else(|e| panic!("system: {e}"));
        C::abi_decode_returns(&out).expect("decode")
    }

    fn send(&mut self, from: Address, data: Vec<u8>) -> Result<(), String> {
        self.chain.transact_from(from, self.proxy, data).map(|_| ()).map_err(|e| e.0)
    }

    fn set_price(&mut self, price: U256) {
        let system = self.system;
        ok(&mut self.chain, system, ISystem::setPriceCall { p: price }.abi_encode(), "price");
    }
}

/// Deploy the market's contracts, route the proxy, and configure it with keel's `params`.
fn deploy_market(params: &PerpsParams, price: U256) -> Market {
    let mut c = Chain::new();
    let owner = c.sender;
    // the deployment records these three as OVM runtime code: compiled from the package's sources
    let compiled = |c: &mut Chain, name: &str, args: &[u8]| {
        c.deploy(&synthetix_compiled(name, &[]), args).unwrap_or_else(|e| panic!("deploy {name}: {e}"))
    };
    let resolver = compiled(&mut c, "AddressResolver", &owner.abi_encode());
    let system = c.deploy(&own_bytecode("SynthetixSystem"), &[]).expect("deploy SynthetixSystem");
    let storage = compiled(&mut c, "FlexibleStorage", &resolver.abi_encode());
    let settings = deploy(&mut c, "PerpsV2MarketSettings", &(owner, resolver).abi_encode_params(), &[]);
    let decimal_math = compiled(&mut c, "SafeDecimalMath", &[]);
    let proxy = deploy(&mut c, "ProxyPerpsV2", &owner.abi_encode(), &[]);
    let state_args =
        (owner, Vec::<Address>::new(), key(BASE_ASSET), key(MARKET_KEY), Address::ZERO).abi_encode_params();
    let state = deploy(&mut c, "PerpsV2MarketState", &state_args, &[]);
    let fragment_args = (proxy, state, owner, resolver).abi_encode_params();
    let market = deploy(&mut c, "PerpsV2Market", &fragment_args, &[]);
    let views = deploy(&mut c, "PerpsV2MarketViews", &(state, owner, resolver).abi_encode_params(), &[]);
    let liquidate = deploy(&mut c, "PerpsV2MarketLiquidate", &fragment_args, &[]);
    let intent = deploy(&mut c, "PerpsV2MarketDelayedIntent", &fragment_args, &[]);
    let execution =
        deploy(&mut c, "PerpsV2MarketDelayedExecution", &fragment_args, &[("SafeDecimalMath", decimal_math)]);

    let writers = vec![market, liquidate, intent, execution];
    ok(&mut c, state, IState::addAssociatedContractsCall { associatedContracts: writers }.abi_encode(), "associate");
    ok(&mut c, state, IState::linkOrInitializeStateCall {}.abi_encode(), "initialize state");
    let names = [
        ("FlexibleStorage", storage),
        ("PerpsV2MarketSettings", settings),
        ("ExchangeRates", system),
        ("Exchanger", system),
        ("SystemStatus", system),
        ("FuturesMarketManager", system),
        ("PerpsV2ExchangeRate", system),
    ];
    let import = IResolver::importAddressesCall {
        names: names.iter().map(|(n, _)| key(n)).collect(),
        destinations: names.iter().map(|(_, a)| *a).collect(),
    };
    ok(&mut c, resolver, import.abi_encode(), "import addresses");
    for a in [settings, market, views, liquidate, intent, execution] {
        ok(&mut c, a, IMixin::rebuildCacheCall {}.abi_encode(), "rebuild cache");
    }
    let routes: Vec<([u8; 4], Address, bool)> = vec![
        (IMarket::transferMarginCall::SELECTOR, market, false),
        (IMarket::modifyPositionCall::SELECTOR, market, false),
        (IMarket::recomputeFundingCall::SELECTOR, market, false),
        (ILiquidate::flagPositionCall::SELECTOR, liquidate, false),
        (ILiquidate::liquidatePositionCall::SELECTOR, liquidate, false),
        (IIntent::submitOffchainDelayedOrderCall::SELECTOR, intent, false),
        (IExecution::executeOffchainDelayedOrderCall::SELECTOR, execution, false),
        (IExecution::cancelOffchainDelayedOrderCall::SELECTOR, execution, false),
        (IViews::positionsCall::SELECTOR, views, true),
        (IViews::delayedOrdersCall::SELECTOR, views, true),
        (IViews::marketSizeCall::SELECTOR, views, true),
        (IViews::marketSkewCall::SELECTOR, views, true),
        (IViews::fundingLastRecomputedCall::SELECTOR, views, true),
        (IViews::fundingRateLastRecomputedCall::SELECTOR, views, true),
        (IViews::fundingSequenceCall::SELECTOR, views, true),
        (IViews::fundingSequenceLengthCall::SELECTOR, views, true),
        (IViews::currentFundingRateCall::SELECTOR, views, true),
        (IViews::remainingMarginCall::SELECTOR, views, true),
        (IViews::accruedFundingCall::SELECTOR, views, true),
        (IViews::canLiquidateCall::SELECTOR, views, true),
    ];
    for (selector, implementation, is_view) in routes {
        let call = IProxy::addRouteCall { selector: selector.into(), implementation, isView: is_view };
        ok(&mut c, proxy, call.abi_encode(), "route");
    }
    ok(&mut c, system, ISystem::setMarketCall { m: proxy }.abi_encode(), "market");
    ok(&mut c, system, ISystem::setPriceCall { p: price }.abi_encode(), "price");

    let p = params;
    ok(&mut c, settings, ISettings::setMinInitialMarginCall { minMargin: p.min_initial_margin }.abi_encode(), "mim");
    ok(&mut c, settings, ISettings::setMinKeeperFeeCall { sUSD: p.min_keeper_fee }.abi_encode(), "min keeper fee");
    ok(&mut c, settings, ISettings::setMaxKeeperFeeCall { sUSD: p.max_keeper_fee }.abi_encode(), "max keeper fee");
    let ratio = ISettings::setLiquidationFeeRatioCall { ratio: p.liquidation_fee_ratio };
    ok(&mut c, settings, ratio.abi_encode(), "liquidation fee ratio");
    let fee = ISettings::setKeeperLiquidationFeeCall { keeperFee: p.keeper_liquidation_fee };
    ok(&mut c, settings, fee.abi_encode(), "keeper liquidation fee");
    // keel charges one fee pair whatever the order type: the suite gives every type the same
    let parameters = ISettings::Parameters {
        takerFee: p.taker_fee,
        makerFee: p.maker_fee,
        takerFeeDelayedOrder: p.taker_fee,
        makerFeeDelayedOrder: p.maker_fee,
        takerFeeOffchainDelayedOrder: p.taker_fee,
        makerFeeOffchainDelayedOrder: p.maker_fee,
        maxLeverage: p.max_leverage,
        maxMarketValue: p.max_market_value,
        maxFundingVelocity: p.max_funding_velocity,
        skewScale: p.skew_scale,
        nextPriceConfirmWindow: U256::from(2),
        delayedOrderConfirmWindow: U256::from(120),
        minDelayTimeDelta: U256::from(60),
        maxDelayTimeDelta: U256::from(6000),
        offchainDelayedOrderMinAge: U256::from(p.delayed_order_min_age),
        offchainDelayedOrderMaxAge: U256::from(p.delayed_order_max_age),
        offchainMarketKey: key("ocETHPERP"),
        offchainPriceDivergence: U256::from(E18),
        liquidationPremiumMultiplier: p.liquidation_premium_multiplier,
        liquidationBufferRatio: p.liquidation_buffer_ratio,
        // keel liquidates in one step whatever the size and skew (conformance.md §4)
        maxLiquidationDelta: U256::MAX,
        maxPD: U256::MAX,
    };
    let set = ISettings::setParametersCall { marketKey: key(MARKET_KEY), parameters };
    ok(&mut c, settings, set.abi_encode(), "parameters");
    Market { chain: c, system, proxy }
}

/// Random market parameters around a random price.
fn random_market(rng: &mut ChaCha8Rng) -> (PerpsParams, U256) {
    let price = 10f64.powf(rng.random_range(0.0..4.7));
    // the skew scale in base units: $1M–$1B of notional moves the price by 100%
    let skew_scale = 10f64.powf(rng.random_range(6.0..9.0)) / price;
    let min_keeper_fee = rng.random_range(0.0..20.0);
    let min_initial_margin = min_keeper_fee + rng.random_range(0.0..100.0);
    let params = PerpsParams {
        max_leverage: wad(rng.random_range(1.5..100.0)),
        // below the skew scale, as on every deployed market (ETH: 22 300 against 1 000 000), so
        // no accepted trade takes the skew past it (conformance.md §4)
        max_market_value: wad(skew_scale * rng.random_range(0.02..0.95)),
        skew_scale: wad(skew_scale),
        taker_fee: wad(rng.random_range(0.0..0.005)),
        maker_fee: wad(rng.random_range(0.0..0.002)),
        max_funding_velocity: wad(rng.random_range(0.0..20.0)),
        min_keeper_fee: wad(min_keeper_fee),
        max_keeper_fee: wad(min_keeper_fee + rng.random_range(0.0..200.0)),
        liquidation_fee_ratio: wad(rng.random_range(0.0..0.005)),
        liquidation_buffer_ratio: wad(rng.random_range(0.0..0.02)),
        min_initial_margin: wad(min_initial_margin),
        keeper_liquidation_fee: wad(rng.random_range(0.0..10.0)),
        liquidation_premium_multiplier: wad(rng.random_range(0.2..3.0)),
        delayed_order_min_age: rng.random_range(1..15),
        delayed_order_max_age: rng.random_range(16..120),
    };
    (params, wad(price))
}

/// The sUSD that left or reached each party, as keel's market implies it.
#[derive(Default, Debug, PartialEq, Eq)]
struct Flows {
    burnt: BTreeMap<u8, U256>,
    issued: BTreeMap<u8, U256>,
    fees: U256,
}

impl Flows {
    fn burn(&mut self, who: u8, x: U256) {
        *self.burnt.entry(who).or_default() += x;
    }
    fn issue(&mut self, who: u8, x: U256) {
        *self.issued.entry(who).or_default() += x;
    }
}

/// What a keel error reads as on chain.
fn reason(e: &PerpsError) -> String {
    match e {
        PerpsError::InvalidPrice => "Invalid price".into(),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    seconds: u64,
    refused: BTreeMap<String, u64>,
    accepted: BTreeMap<&'static str, u64>,
}

/// Both sides ran one operation: they must agree on whether it went through and why not.
fn agree(
    t: &mut Tally,
    what: &'static str,
    seed: u64,
    step: usize,
    keel: &Result<(), PerpsError>,
    chain: &Result<(), String>,
) {
    t.ops += 1;
    match (keel, chain) {
        (Ok(()), Ok(())) => *t.accepted.entry(what).or_default() += 1,
        // keel refuses a fill at or below zero (a skew past the skew scale); the contract casts
        // it to a uint and refuses later, for whichever check the wrapped price fails
        (Err(PerpsError::InvalidPrice), Err(c)) => {
            *t.refused.entry(format!("{what}: fill at or below 0 (contract: {c})")).or_default() += 1;
        }
        (Err(k), Err(c)) => {
            assert_eq!(&reason(k), c, "seq {seed} step {step} {what}: refused by both, for different reasons");
            *t.refused.entry(format!("{what}: {c}")).or_default() += 1;
        }
        (k, c) => panic!("seq {seed} step {step} {what}: keel {k:?}, contract {c:?}"),
    }
}

fn addr(b: u8) -> Address {
    Address::repeat_byte(b)
}

/// Compare every trader's account, the market and the sUSD flows.
fn compare(m: &mut Market, k: &PerpsMarket, flows: &Flows, price: U256, seed: u64, step: usize, what: &str) {
    let now = m.chain.now;
    let at = |field: &str| format!("seq {seed} step {step} after {what}: {field}");
    for (id, b) in TRADERS {
        let a = addr(b);
        let p = m.view(IViews::positionsCall { account: a });
        let kp = k.positions.get(&id).cloned().unwrap_or_default();
        assert_eq!(U256::from(p.margin), kp.margin, "{}", at(&format!("trader {id} margin")));
        assert_eq!(I256::try_from(p.size).unwrap(), kp.size, "{}", at(&format!("trader {id} size")));
        if !kp.size.is_zero() {
            assert_eq!(U256::from(p.lastPrice), kp.last_price, "{}", at(&format!("trader {id} last price")));
        }
        let r = m.view(IViews::remainingMarginCall { account: a });
        let kr = k.remaining_margin(id, now, price).expect("keel remaining margin");
        assert_eq!(r.marginRemaining, kr, "{}", at(&format!("trader {id} remaining margin")));
        let f = m.view(IViews::accruedFundingCall { account: a });
        let kf = if kp.size.is_zero() {
            I256::ZERO
        } else {
            let next = k.next_funding(now, price).expect("keel funding");
            keel_core::math::pmul_i(kp.size, next - kp.last_funding).expect("funding")
        };
        assert_eq!(f.funding, kf, "{}", at(&format!("trader {id} accrued funding")));
        let l = m.view(IViews::canLiquidateCall { account: a });
        assert_eq!(l, k.can_liquidate(id, now, price).expect("keel"), "{}", at(&format!("trader {id} liquidatable")));
        let o = m.view(IViews::delayedOrdersCall { account: a });
        match k.orders.get(&id) {
            None => assert_eq!(o.sizeDelta, 0, "{}", at(&format!("trader {id} has no order in keel"))),
            Some(ko) => {
                assert_eq!(I256::try_from(o.sizeDelta).unwrap(), ko.size_delta, "{}", at("order size"));
                assert_eq!(U256::from(o.desiredFillPrice), ko.desired_fill_price, "{}", at("order desired price"));
                assert_eq!(o.intentionTime, U256::from(ko.intention_time), "{}", at("order time"));
                assert_eq!(U256::from(o.keeperDeposit), ko.keeper_deposit, "{}", at("order keeper deposit"));
            }
        }
        let burnt = m.system(ISystem::burntCall { account: a });
        assert_eq!(burnt, flows.burnt.get(&b).copied().unwrap_or_default(), "{}", at(&format!("sUSD burnt from {id}")));
        let issued = m.system(ISystem::issuedCall { account: a });
        assert_eq!(
            issued,
            flows.issued.get(&b).copied().unwrap_or_default(),
            "{}",
            at(&format!("sUSD issued to {id}"))
        );
    }
    let issued = m.system(ISystem::issuedCall { account: addr(KEEPER) });
    assert_eq!(issued, flows.issued.get(&KEEPER).copied().unwrap_or_default(), "{}", at("sUSD issued to the keeper"));
    assert_eq!(m.system(ISystem::feesPaidCall {}), flows.fees, "{}", at("fee pool"));
    assert_eq!(I256::try_from(m.view(IViews::marketSkewCall {})).unwrap(), k.skew, "{}", at("skew"));
    assert_eq!(U256::from(m.view(IViews::marketSizeCall {})), k.market_size, "{}", at("market size"));
    let rate = I256::try_from(m.view(IViews::fundingRateLastRecomputedCall {})).unwrap();
    assert_eq!(rate, k.funding_rate, "{}", at("funding rate last recomputed"));
    assert_eq!(u64::from(m.view(IViews::fundingLastRecomputedCall {})), k.funding_time, "{}", at("funding time"));
    let len = m.view(IViews::fundingSequenceLengthCall {});
    let entry = I256::try_from(m.view(IViews::fundingSequenceCall { index: len - U256::from(1) })).unwrap();
    assert_eq!(entry, k.funding, "{}", at("funding entry"));
    let current = m.view(IViews::currentFundingRateCall {});
    assert_eq!(current, k.current_funding_rate(now).expect("keel"), "{}", at("current funding rate"));
}

/// keel's liquidation as the keeper runs it on chain (flag, then liquidate, in one block): the
/// fees to the keeper, what is left of the margin to the fee pool.
fn keel_liquidate(k: &mut PerpsMarket, flows: &mut Flows, id: u64, now: u64, price: U256) -> Result<(), PerpsError> {
    let remaining = k.remaining_margin(id, now, price)?;
    let deposit = k.orders.get(&id).map(|o| o.keeper_deposit).unwrap_or_default();
    let fees = k.liquidate(id, now, price)?;
    flows.issue(KEEPER, fees + deposit);
    flows.fees += remaining.saturating_sub(fees);
    Ok(())
}

fn run_sequence(seed: u64, t: &mut Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (params, mut price) = random_market(&mut rng);
    let mut m = deploy_market(&params, price);
    m.chain.warp(60);
    let mut k = PerpsMarket::new(params.clone(), m.chain.now);
    // the market's funding clock starts at its first recomputation; keel's at creation
    k.funding_time = 0;
    let mut flows = Flows::default();
    let start = m.chain.now;
    let steps = rng.random_range(10..80);
    for step in 0..steps {
        let now = m.chain.now;
        let roll = rng.random_range(0..100);
        // executions and cancellations go to a trader with an order when there is one
        let pending: Vec<_> = TRADERS.iter().filter(|(i, _)| k.orders.contains_key(i)).copied().collect();
        let free: Vec<_> = TRADERS.iter().filter(|(i, _)| !k.orders.contains_key(i)).copied().collect();
        let rescue = TRADERS.iter().find(|(i, _)| k.can_liquidate(*i, now, price).unwrap_or(false)).copied();
        let (id, b) = match (pending.first(), free.first()) {
            // a trader whose position can be liquidated mostly tries to top it up first
            _ if rescue.is_some() && rng.random_bool(0.8) => rescue.expect("rescue"),
            (Some(&t), _) if roll >= 88 => t,
            // margin and immediate trades mostly from a trader free to make them
            (_, Some(&t)) if roll < 50 && rng.random_bool(0.8) => t,
            _ => TRADERS[rng.random_range(0..2)],
        };
        let who = addr(b);
        // with no order pending anywhere, an execution or cancellation becomes a submission
        let roll = if pending.is_empty() && roll >= 88 { 80 } else { roll };
        let roll = if rescue.is_some_and(|(i, _)| i == id) && rng.random_bool(0.8) { 0 } else { roll };
        // a trader without margin deposits before anything else
        let roll = if k.remaining_margin(id, now, price).unwrap_or_default().is_zero() && (12..50).contains(&roll) {
            0
        } else {
            roll
        };
        let what: &'static str = if roll < 12 {
            // a deposit: $1–$5M or $0.01–$50; a top-up when the position can be liquidated
            let pos = k.positions.get(&id).cloned().unwrap_or_default();
            let top_up = k.can_liquidate(id, now, price).unwrap_or(false);
            let x = if top_up {
                // a top-up around what lifts the margin to the liquidation margin: the margin
                // after it from −½ to 2 liquidation margins, or past the premium as well
                let lm = k.liquidation_margin(pos.size, price).expect("keel");
                let have = k.margin_plus_profit_funding(&pos, now, price).expect("keel");
                let target = if rng.random_bool(0.8) {
                    signed(keel_core::math::pmul(lm, wad(rng.random_range(0.0..2.5))).expect("top-up"))
                        - signed(lm / U256::from(2))
                } else {
                    signed(lm + k.liquidation_premium(pos.size, price).expect("keel")) * I256::try_from(2).unwrap()
                };
                (target - have).max(signed(U256::from(E18 / 100))).unsigned_abs()
            } else if rng.random_bool(0.25) {
                wad(rng.random_range(0.01..50.0))
            } else {
                wad(10f64.powf(rng.random_range(0.0..6.7)))
            };
            let kr = k.transfer_margin(id, signed(x), now, price).map(|_| ());
            if kr.is_ok() {
                flows.burn(b, x);
            }
            let cr = m.send(who, IMarket::transferMarginCall { marginDelta: signed(x) }.abi_encode());
            let what = if top_up { "top-up" } else { "deposit" };
            agree(t, what, seed, step, &kr, &cr);
            what
        } else if roll < 22 {
            // a withdrawal: part, all, or a little more than the remaining margin
            let left = k.remaining_margin(id, now, price).unwrap_or_default();
            let x = match rng.random_range(0..10) {
                0..=5 => left * U256::from(rng.random_range(1..1000u64)) / U256::from(1000u64),
                6..=8 => left,
                _ => left + U256::from(1u64),
            };
            if x.is_zero() {
                continue;
            }
            let kr = k.transfer_margin(id, -signed(x), now, price).map(|_| ());
            if kr.is_ok() {
                flows.issue(b, x);
            }
            let cr = m.send(who, IMarket::transferMarginCall { marginDelta: -signed(x) }.abi_encode());
            agree(t, "withdraw", seed, step, &kr, &cr);
            "withdraw"
        } else if roll < 50 {
            // a trade, priced off keel's fill with a desired price that usually admits it
            let Some(size) = trade_size(&mut rng, &k, id, now, price) else { continue };
            let desired = desired_price(&mut rng, &k, size, price);
            let kr = k.modify_position(id, size, now, price, Some(desired)).map(|f| flows.fees += f.fee);
            let cr =
                m.send(who, IMarket::modifyPositionCall { sizeDelta: size, desiredFillPrice: desired }.abi_encode());
            agree(t, "trade", seed, step, &kr, &cr);
            "trade"
        } else if roll < 62 {
            // the price moves: ±0.1%–30%
            let up = rng.random_bool(0.5);
            let by = wad(rng.random_range(0.001..0.3));
            let delta = keel_core::math::pmul(price, by).expect("price");
            price = if up { price + delta } else { price - delta };
            m.set_price(price);
            "price"
        } else if roll < 74 {
            // time passes: seconds (around a delayed order's ages) or up to three days
            let s = if rng.random_bool(0.6) {
                rng.random_range(1..=params.delayed_order_max_age + 10)
            } else {
                rng.random_range(60..3 * 86_400)
            };
            m.chain.warp(s);
            "time"
        } else if roll < 80 {
            liquidate(&mut m, &mut k, &mut flows, t, id, price, seed, step);
            "liquidate"
        } else if roll < 88 {
            let Some(size) = trade_size(&mut rng, &k, id, now, price) else { continue };
            let desired = desired_price(&mut rng, &k, size, price);
            let kr = k.submit_delayed_order(id, size, desired, now, price);
            let call = IIntent::submitOffchainDelayedOrderCall { sizeDelta: size, desiredFillPrice: desired };
            let cr = m.send(who, call.abi_encode());
            agree(t, "submit", seed, step, &kr, &cr);
            "submit"
        } else if roll < 95 {
            // most executions wait for the order's window (older than the minimum age, younger
            // than the maximum)
            if let Some(o) = k.orders.get(&id).cloned()
                && rng.random_bool(0.7)
            {
                let at =
                    o.intention_time + rng.random_range(params.delayed_order_min_age + 1..params.delayed_order_max_age);
                if at > m.chain.now {
                    m.chain.set_time(at);
                }
            }
            let now = m.chain.now;
            let by_owner = rng.random_bool(0.4);
            let from = if by_owner { who } else { addr(KEEPER) };
            let kr = k.execute_delayed_order(id, now, price, by_owner).map(|(fill, paid)| {
                flows.fees += fill.fee;
                flows.issue(KEEPER, paid);
            });
            let call = IExecution::executeOffchainDelayedOrderCall { account: who, priceUpdateData: vec![] };
            let cr = m.send(from, call.abi_encode());
            agree(t, "execute", seed, step, &kr, &cr);
            "execute"
        } else {
            let by_owner = rng.random_bool(0.5);
            let from = if by_owner { who } else { addr(KEEPER) };
            let kr = k.cancel_delayed_order(id, now, price, by_owner).map(|paid| flows.issue(KEEPER, paid));
            let cr = m.send(from, IExecution::cancelOffchainDelayedOrderCall { account: who }.abi_encode());
            agree(t, "cancel", seed, step, &kr, &cr);
            "cancel"
        };
        // a keeper liquidates what keel says it can, three times in four (else the trader may
        // try to trade, deposit or withdraw first)
        for (id, _) in TRADERS {
            if what != "liquidate" && k.can_liquidate(id, m.chain.now, price).unwrap_or(false) && rng.random_bool(0.75)
            {
                liquidate(&mut m, &mut k, &mut flows, t, id, price, seed, step);
            }
        }
        compare(&mut m, &k, &flows, price, seed, step, what);
    }
    t.seconds += m.chain.now - start;
}

#[allow(clippy::too_many_arguments)]
fn liquidate(
    m: &mut Market,
    k: &mut PerpsMarket,
    flows: &mut Flows,
    t: &mut Tally,
    id: u64,
    price: U256,
    seed: u64,
    step: usize,
) {
    let who = addr(TRADERS.iter().find(|(i, _)| *i == id).expect("trader").1);
    let kr = keel_liquidate(k, flows, id, m.chain.now, price);
    let cr = m
        .send(addr(KEEPER), ILiquidate::flagPositionCall { account: who }.abi_encode())
        .and_then(|()| m.send(addr(KEEPER), ILiquidate::liquidatePositionCall { account: who }.abi_encode()));
    agree(t, "liquidate", seed, step, &kr, &cr);
}

/// A trade size: a leverage on the trader's margin (0.05–5x, up to 90% of the market's maximum,
/// or 90–120% of it), either direction; 30% of the time against the position (a part of it,
/// all, or a reversal); 2% of the time dust (1–999 wei of size).
fn trade_size(rng: &mut ChaCha8Rng, k: &PerpsMarket, id: u64, now: u64, price: U256) -> Option<I256> {
    let pos = k.positions.get(&id).cloned().unwrap_or_default();
    if !pos.size.is_zero() && rng.random_bool(0.3) {
        let per_mille = [250i64, 500, 1000, 1000, 1500, 3000][rng.random_range(0..6)];
        return Some(-(pos.size * I256::try_from(per_mille).unwrap() / I256::try_from(1000).unwrap()));
    }
    let margin = k.remaining_margin(id, now, price).unwrap_or_default().max(U256::from(E18));
    let max = k.params.max_leverage;
    let lev = match rng.random_range(0..20) {
        0..=11 => wad(rng.random_range(0.05..5.0)),
        12..=16 => keel_core::math::pmul(max, wad(rng.random_range(0.05..0.9))).ok()?,
        _ => keel_core::math::pmul(max, wad(rng.random_range(0.9..1.2))).ok()?,
    };
    let notional = keel_core::math::pmul(margin, lev).ok()?;
    let size = keel_core::math::pdiv(notional, price).ok()?;
    let size = if rng.random_bool(0.02) { U256::from(rng.random_range(1..1000u64)) } else { size };
    if size.is_zero() {
        return None;
    }
    let size = signed(size);
    Some(if rng.random_bool(0.5) { size } else { -size })
}

/// The worst fill the trader accepts: keel's fill moved 0–3% against the trader, or, one time
/// in eight, 0.1% in the trader's favour (so the market refuses it).
fn desired_price(rng: &mut ChaCha8Rng, k: &PerpsMarket, size: I256, price: U256) -> U256 {
    let fill = k.fill_price(size, price).unwrap_or(price);
    let slack = keel_core::math::pmul(fill, wad(rng.random_range(0.0..0.03))).unwrap_or_default();
    let tight = keel_core::math::pmul(fill, wad(0.001)).unwrap_or_default();
    match (size.is_positive(), rng.random_bool(0.125)) {
        (true, false) => fill + slack,
        (true, true) => fill - tight,
        (false, false) => fill.saturating_sub(slack),
        (false, true) => fill + tight,
    }
}

#[test]
fn keel_matches_synthetix_perps_v2() {
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(30, |seed| run_sequence(seed, &mut t)) else { return };
    let days = t.seconds as f64 / 86_400.0;
    eprintln!(
        "Synthetix Perps V2: {n} sequences, {} operations over {days:.1} days; accepted by both {:?}",
        t.ops, t.accepted
    );
    eprintln!("refused by both: {:?}", t.refused);
    assert!(t.accepted.get("trade").copied().unwrap_or(0) > 0, "no trade went through");
}
