//! keel's PerpV2 FLI token (`strategy::fli::perp_token::PerpFliToken`: `issue_tokens`,
//! `redeem`, `trade_units`) against Set's `PerpV2LeverageModuleV2` and `DebtIssuanceModuleV2`
//! from `@setprotocol/set-protocol-v2` 0.1.16's published bytecode — with Set's `Controller`,
//! `IntegrationRegistry` and `SetTokenCreator` (a real `SetToken` of USDC) and the module's
//! linked libraries (`PerpV2LibraryV2`, `PerpV2Positions`, `PositionV2`) — on the Curie deployment
//! the Perp suite uses (`common::curie`). The module's `Quoter` (Perp's periphery, not on the npm
//! registry) serves only its simulation views, which no state-changing call reaches; the suite
//! gives it an address with no code, so a call into it would fail the suite.
//!
//! Random sequences: a market at a random price, exchange fee and insurance share, a maker's
//! full-range order and some narrow ones; a Set of USDC issued to an issuer, its USDC deposited
//! in the Perp vault by the manager and levered long or short (1–9x) by `trade`; then issues (from a
//! few wei of a Set to twice the supply) and redeems (sometimes all the issuer holds, which may
//! be the whole supply), manager trades (lever, delever, close exactly, reverse; with and without
//! a quote bound), index moves, time passing and another trader moving the market. Both sides
//! must accept or refuse together with the same reason; after every operation the Set's
//! position size, open notional, owed realised PnL, pending funding and vault balance, the
//! issuer's USDC and Sets, the supply, the insurance fund's fees and the pool must be equal to
//! the wei. keel's token is given Curie's mark price for its margin checks (`venue_mark`) and its
//! market's funding is accrued where the clearing house settles it.

mod common;

use alloy_primitives::{Address, I256, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use common::Tally;
use common::compound::SET;
use common::curie::{
    E18, IAccountBalance, IExchangeView, IFeed, IToken, IVault, MarketSpec, OpenMarket, USDC_TO_WAD, code, float, ok,
    open_call, open_market, place_maker_orders,
};
use common::set::{IBalance, IDebtIssuance, ISetToken, ISetTokenCreator, SetCore, set_artifact};
use keel_conformance::{Chain, artifact_linked, for_each_sequence};
use keel_core::error::FliError;
use keel_core::math::pmul;
use keel_core::product::PerpProduct;
use keel_core::strategy::fli::perp_token::{PerpFliToken, PriceGuards};
use keel_core::venue::perp_v2::{MarketTwaps, PerpV2Market, PerpV2Params, TwapConfig, market_price, vamm_swap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

sol! {
    interface IPerpLeverage {
        function updateAnySetAllowed(bool anySetAllowed) external;
        function initialize(address setToken) external;
        function deposit(address setToken, uint256 collateralQuantityUnits) external;
        function trade(address setToken, address baseToken, int256 baseQuantityUnits, uint256 quoteBoundQuantityUnits) external;
    }
}

const ISSUER: Address = Address::repeat_byte(0x1a);
const FEE_RECIPIENT: Address = Address::repeat_byte(0xfe);
const MOVER: Address = Address::repeat_byte(0x6b);
/// The module's `Quoter`: no code (the module calls it only from its simulation views).
const QUOTER: Address = Address::repeat_byte(0x0b);

/// keel's side: the token (its vAMM, account, guards and fees) and what the clearing house keeps
/// around it: the pool's oracle, the first trade's time and the insurance fund's fees.
#[derive(Clone)]
struct Keel {
    token: PerpFliToken,
    twaps: MarketTwaps,
    insurance_fees: U256,
}

impl Keel {
    /// `Exchange.settleFunding` at `now` (what every `openPosition` does first), and the price
    /// guard's window; the token is given the mark and the index of the block.
    fn settle_block(&mut self, now: u64, index: U256) -> Result<(), String> {
        self.token.settle_block(&self.twaps, now, index).map_err(|e| e.to_string())
    }

    /// Run one of the token's calls that may swap: settles the block first when the clearing
    /// house would (a trade, or a withdrawal from an account with a position), records the
    /// pool's tick in its oracle when the swap moved it, and the insurance fund's share.
    fn token_call<T>(
        &mut self,
        now: u64,
        index: U256,
        f: impl FnOnce(&mut PerpFliToken) -> Result<T, FliError>,
    ) -> Result<T, String> {
        let mut k = self.clone();
        k.settle_block(now, index)?;
        let (tick, price) = (k.token.pool.tick(), k.token.pool.sqrt_price_x96());
        let out = f(&mut k.token).map_err(|e| e.to_string())?;
        k.twaps.record(now, tick, price, &k.token.pool);
        *self = k;
        Ok(out)
    }

    /// Another trader's `openPosition` (exact input): only the vAMM, the oracle, the global
    /// funding and the insurance fund see it. Atomic.
    fn mover(&mut self, now: u64, index: U256, b2q: bool, amount: U256) -> Result<(), String> {
        let mut k = self.clone();
        k.settle_block(now, index)?;
        let t = &mut k.token;
        let spread = PriceGuards::spread(&t.pool, index).map_err(|e| e.to_string())?;
        let tick = t.pool.tick();
        let fees = t.fees();
        let swap = vamm_swap(&mut t.pool, fees, b2q, true, amount, None).map_err(|e| e.to_string())?;
        t.guards.check(spread, &t.pool, index).map_err(|e| e.to_string())?;
        if t.pool.tick() != tick {
            k.twaps.oracle.write(now, tick);
        }
        k.twaps.first_trade.get_or_insert(now);
        k.insurance_fees += swap.insurance_fund_fee;
        *self = k;
        Ok(())
    }
}

/// The Set side: Curie, Set's contracts and the Set.
struct SetSide {
    cu: common::curie::Curie,
    issuance: Address,
    module: Address,
    set: Address,
}

impl SetSide {
    fn usdc_of(&mut self, who: Address) -> U256 {
        let usdc = self.cu.usdc;
        self.cu.call(usdc, IBalance::balanceOfCall { a: who })
    }

    fn sets_of(&mut self, who: Address) -> U256 {
        let set = self.set;
        self.cu.call(set, ISetToken::balanceOfCall { a: who })
    }
}

/// One random sequence; with `premium`, a scripted one: the Set levers long, another trader
/// lifts the vAMM, half an hour passes, the index is set 0.2% under the market and stays there
/// while time passes and holders issue and redeem (the token pays funding to date on every step).
fn run_sequence(seed: u64, t: &mut Tally, premium: bool) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x5e7_9000 + seed);
    let spec = MarketSpec {
        prices: 1.0..4.5, // $10 to ~$30 000 a base
        exchange_fees: &[0, 100, 500, 1000, 2500],
        insurance_shares: &[0, 100_000, 250_000],
        max_ticks: &[1000, 1000, 250],
    };
    let OpenMarket { mut cu, fee, price, tick0, sqrt0, index0, fees, max_tick, opened, ctx } =
        open_market(&mut rng, seed, &spec);
    let usdc = cu.usdc;

    // the maker: a full-range order and 0–3 narrow or wide ones of $100k to $100M of quote
    let book = place_maker_orders(&mut cu, &mut rng, fee, sqrt0, tick0, price, 3, 5.0..8.0, opened, &ctx);
    let (pool, oracle, depth) = (book.pool, book.oracle, book.depth);
    let market = PerpV2Market::new(PerpV2Params::default(), cu.chain.now);

    // Set: controller, registry, creator, issuance and the PerpV2 leverage module
    let c = &mut cu.chain;
    let owner = c.sender;
    let core = SetCore::deploy(c, owner, "protocol/modules/DebtIssuanceModuleV2.sol/DebtIssuanceModuleV2.json");
    let (creator, issuance) = (core.creator, core.issuance);
    let lib = |c: &mut Chain, path: &str| c.deploy(&set_artifact(path), &[]).unwrap_or_else(|e| panic!("{path}: {e}"));
    let library = lib(c, "protocol/integration/lib/PerpV2LibraryV2.sol/PerpV2LibraryV2.json");
    let positions_lib = lib(c, "protocol/integration/lib/PerpV2Positions.sol/PerpV2Positions.json");
    let position_v2 = lib(c, "protocol/lib/PositionV2.sol/PositionV2.json");
    let code_ = artifact_linked(
        &format!("{SET}artifacts/contracts/protocol/modules/PerpV2LeverageModuleV2.sol/PerpV2LeverageModuleV2.json"),
        &[("PerpV2LibraryV2", library), ("PerpV2Positions", positions_lib), ("PositionV2", position_v2)],
    );
    let args = (core.controller, cu.vault, QUOTER, cu.registry, U256::from(1u8));
    let module = c.deploy(&code_, &args.abi_encode_params()).unwrap_or_else(|e| panic!("deploy module: {e}"));
    core.initialize(c, module, &[]);
    ok(c, module, IPerpLeverage::updateAnySetAllowedCall { anySetAllowed: true }.abi_encode(), "any set");

    // the Set: `unit` USDC a Set, `first` Sets issued to the issuer
    let unit = U256::from(10u64.pow(rng.random_range(6..=9))); // $1 to $1000 a Set
    let create = ISetTokenCreator::createCall {
        components: vec![usdc],
        units: vec![I256::try_from(unit).unwrap()],
        modules: vec![issuance, module],
        manager: owner,
        name: "ETH perp FLI".into(),
        symbol: "ETHFLIP".into(),
    };
    let set = Address::abi_decode(&ok(c, creator, create.abi_encode(), "create Set")).unwrap();
    let init = IDebtIssuance::initializeCall {
        setToken: set,
        maxManagerFee: U256::from(E18 / 10),
        managerIssueFee: U256::ZERO,
        managerRedeemFee: U256::ZERO,
        feeRecipient: FEE_RECIPIENT,
        managerIssuanceHook: Address::ZERO,
    };
    ok(c, issuance, init.abi_encode(), "issuance initialize");
    ok(c, module, IPerpLeverage::initializeCall { setToken: set }.abi_encode(), "module initialize");
    ok(c, usdc, IToken::mintCall { to: ISSUER, amount: U256::from(10u128.pow(30)) }.abi_encode(), "issuer USDC");
    c.transact_from(ISSUER, usdc, IBalance::approveCall { spender: issuance, amount: U256::MAX }.abi_encode())
        .expect("approve");
    let first = U256::from(10u64).pow(U256::from(18 + rng.random_range(0..5u64)));
    c.transact_from(
        ISSUER,
        issuance,
        IDebtIssuance::issueCall { setToken: set, quantity: first, to: ISSUER }.abi_encode(),
    )
    .unwrap_or_else(|e| panic!("{ctx}: first issue {e}"));
    ok(c, module, IPerpLeverage::depositCall { setToken: set, collateralQuantityUnits: unit }.abi_encode(), "deposit");
    // then the manager's issue and redeem fees: 0, 0.05%, 0.1%, 0.5% or 1% each (0 one time in three)
    let fee_rate = |rng: &mut ChaCha8Rng| {
        let bp = if rng.random_range(0..3) == 0 { 0u64 } else { [5u64, 10, 50, 100][rng.random_range(0..4)] };
        U256::from(bp) * U256::from(100_000_000_000_000u64)
    };
    let (issue_fee, redeem_fee) = (fee_rate(&mut rng), fee_rate(&mut rng));
    if !issue_fee.is_zero() {
        let call = IDebtIssuance::updateIssueFeeCall { setToken: set, newIssueFee: issue_fee };
        ok(c, issuance, call.abi_encode(), "issue fee");
    }
    if !redeem_fee.is_zero() {
        let call = IDebtIssuance::updateRedeemFeeCall { setToken: set, newRedeemFee: redeem_fee };
        ok(c, issuance, call.abi_encode(), "redeem fee");
    }
    let ctx = format!("{ctx} fees {issue_fee}/{redeem_fee}");
    let mut s = SetSide { cu, issuance, module, set };
    s.cu.deposit(MOVER, 10u128.pow(24));

    // keel: the same token, its collateral what the Set deposited
    let p = PerpProduct::from_toml(include_str!("../../../products/eth2x-perp.toml")).unwrap();
    let collateral = unit * first / U256::from(E18) * U256::from(USDC_TO_WAD);
    let mut tok = PerpFliToken::new(p.strategy().unwrap(), market, pool, collateral, first, index0).unwrap();
    tok.guards = PriceGuards { max_tick_crossed: max_tick, max_price_spread: 100_000, ..Default::default() };
    tok.fees = Some(fees);
    tok.initial_nav = unit * U256::from(USDC_TO_WAD);
    let twaps = MarketTwaps { oracle, first_trade: None, twap: TwapConfig::default() };
    let mut k = Keel { token: tok, twaps, insurance_fees: U256::ZERO };

    // trading starts an hour later; the manager levers long or short to 1–9x
    s.cu.chain.warp(3600);
    let mut index = index0;
    let long = premium || rng.random_bool(0.6);
    // funding the contract has settled for the Set (what its pending funding showed before each
    // operation that settled it)
    let mut settled_on_chain = I256::ZERO;
    let mut issuer_sets = first;
    let mut recipient_sets = U256::ZERO;
    for step in 0..rng.random_range(10..50) {
        t.ops += 1;
        let now = s.cu.chain.now;
        let supply = k.token.supply;
        let base = k.token.market.account.base;
        let base_unit = keel_core::math::pdiv_i(base, I256::try_from(supply).unwrap()).unwrap();
        let p = float(market_price(k.token.pool.sqrt_price_x96()).unwrap()) / E18 as f64;
        let roll = match (premium, step) {
            (false, 0) => 60,
            (true, 0) => 70, // the manager levers
            (true, 1) => 60, // another trader lifts the vAMM
            (true, 2) => 50, // the market's TWAPs catch up
            (true, 3) => 42, // the index goes 0.2% under it, and stays
            (true, _) => [rng.random_range(0..40), 50][step % 2],
            (false, _) => rng.random_range(0..100),
        };
        let usdc_before = s.usdc_of(ISSUER);
        let set_ = s.set;
        let funding_before = s
            .cu
            .call(s.cu.exchange, IExchangeView::getPendingFundingPaymentCall { trader: set_, baseToken: s.cu.base });
        let (kind, ours, theirs): (&str, Result<Option<U256>, String>, _) = if roll < 22 {
            // issue: a few wei to twice the supply (on a premium path, small: the holders' trades
            // must not push the vAMM under the index)
            let q = if premium {
                let f = 10f64.powf(rng.random_range(-4.0..-2.5));
                U256::from((float(supply) * f) as u128).max(U256::from(1u8))
            } else if rng.random_range(0..10) == 0 {
                U256::from(rng.random_range(1..1_000_000u64))
            } else {
                let f = 10f64.powf(rng.random_range(-4.0..0.3));
                U256::from((float(supply) * f) as u128).max(U256::from(1u8))
            };
            let fee = pmul(q, issue_fee).unwrap();
            let ours = k.token_call(now, index, |tok| tok.issue_tokens(q, fee, U256::MAX)).map(Some);
            if ours.is_ok() {
                recipient_sets += fee;
            }
            let call = IDebtIssuance::issueCall { setToken: s.set, quantity: q, to: ISSUER };
            if ours.is_ok() {
                issuer_sets += q;
            }
            ("issue", ours, s.cu.chain.transact_from(ISSUER, s.issuance, call.abi_encode()))
        } else if roll < 40 && !issuer_sets.is_zero() {
            // redeem: a part of what the issuer holds, or all of it
            let q = if premium {
                let f = 10f64.powf(rng.random_range(-4.0..-2.5));
                U256::from((float(issuer_sets) * f) as u128).clamp(U256::from(1u8), issuer_sets)
            } else if rng.random_range(0..25) == 0 {
                issuer_sets
            } else if rng.random_range(0..10) == 0 {
                U256::from(rng.random_range(1..1_000_000u64)).min(issuer_sets)
            } else {
                let f = 10f64.powf(rng.random_range(-4.0..0.0));
                U256::from((float(issuer_sets) * f) as u128).clamp(U256::from(1u8), issuer_sets)
            };
            let fee = pmul(q, redeem_fee).unwrap();
            let ours = k.token_call(now, index, |tok| tok.redeem(q, fee)).map(Some);
            if ours.is_ok() {
                recipient_sets += fee;
            }
            if ours.is_ok() {
                issuer_sets -= q;
            }
            let call = IDebtIssuance::redeemCall { setToken: s.set, quantity: q, to: ISSUER };
            ("redeem", ours, s.cu.chain.transact_from(ISSUER, s.issuance, call.abi_encode()))
        } else if roll < 48 {
            let bps = if premium { 9_980 } else { rng.random_range(9_300u64..=10_700) };
            index = market_price(k.token.pool.sqrt_price_x96()).unwrap() * U256::from(bps) / U256::from(10_000u64);
            let feed = s.cu.feed;
            ok(&mut s.cu.chain, feed, IFeed::setPriceCall { price: index }.abi_encode(), "index");
            ("index", Ok(None), Ok(Default::default()))
        } else if roll < 56 {
            let dt = if premium {
                if step == 2 { 1_800 } else { rng.random_range(300..900) }
            } else {
                [rng.random_range(1..30), rng.random_range(30..3_600), rng.random_range(3_600..86_400)]
                    [rng.random_range(0..3)]
            };
            s.cu.chain.warp(dt);
            ("time", Ok(None), Ok(Default::default()))
        } else if roll < 66 {
            let b2q = !premium && rng.random_bool(0.5);
            let notional = if premium { depth * 0.01 } else { depth * 10f64.powf(rng.random_range(-5.0..-1.5)) };
            let amount = if b2q { notional / p } else { notional };
            let amount = U256::from(amount as u128).max(U256::from(1u64));
            let ours = k.mover(now, index, b2q, amount).map(|_| None);
            (
                "mover",
                ours,
                s.cu.chain.transact_from(MOVER, s.cu.clearing_house, open_call(s.cu.base, b2q, true, amount)),
            )
        } else {
            // the manager trades: open toward 1–9x, delever, close exactly or reverse
            let units = if base_unit.unsigned_abs() <= U256::from(1u8) || step == 0 {
                let av = float(k.token.market.account.collateral) / float(supply) * E18 as f64;
                let lev = rng.random_range(1.0..9.0);
                let u = av * lev / p;
                let u = I256::try_from(u as u128).unwrap();
                if long { u } else { -u }
            } else {
                match rng.random_range(0..6) {
                    0 => -base_unit,
                    1 => base_unit * I256::try_from(-3).unwrap() / I256::try_from(2).unwrap(),
                    n => {
                        let f = [0.1, 0.3, -0.2, -0.5][n - 2];
                        let u = (float(base_unit.unsigned_abs()) * f) as i128;
                        let u = I256::try_from(u).unwrap();
                        if base_unit.is_negative() { -u } else { u }
                    }
                }
            };
            let units = if units.is_zero() { I256::ONE } else { units };
            // a quote bound a token around the market price, half the time
            let bound = if rng.random_bool(0.5) {
                U256::ZERO
            } else {
                let slip =
                    if units.is_positive() { rng.random_range(0.99..1.05) } else { rng.random_range(0.95..1.01) };
                U256::from((float(units.unsigned_abs()) * p * slip) as u128)
            };
            let ours = k.token_call(now, index, |tok| tok.trade_units(units, bound).map(|_| None));
            let call = IPerpLeverage::tradeCall {
                setToken: s.set,
                baseToken: s.cu.base,
                baseQuantityUnits: units,
                quoteBoundQuantityUnits: bound,
            };
            ("trade", ours, s.cu.chain.transact(s.module, call.abi_encode()))
        };
        let what = format!("{ctx} step {step} at +{}s: {kind}", now - opened);
        match (&ours, &theirs) {
            (Ok(_), Ok(_)) => *t.accepted.entry(kind).or_default() += 1,
            (Err(a), Err(b)) => {
                assert_eq!(code(a), code(&b.0), "{what}: both refused, for different reasons ({a} / {})", b.0);
                *t.refused.entry(format!("{kind} {}", code(a))).or_default() += 1;
            }
            _ => panic!("{what}: keel {ours:?}, contract {theirs:?}"),
        }
        // the issuer's USDC moved as keel's token says
        let usdc_after = s.usdc_of(ISSUER);
        if let Ok(Some(paid)) = ours {
            let moved = if kind == "issue" { usdc_before - usdc_after } else { usdc_after - usdc_before };
            assert_eq!(moved * U256::from(USDC_TO_WAD), paid, "{what}: the issuer's USDC");
        }
        let at = format!("{ctx} after step {step} ({kind})");
        let (set, module, usdc) = (s.set, s.module, s.cu.usdc);
        assert_eq!(s.cu.call(set, ISetToken::totalSupplyCall {}), k.token.supply, "{at}: supply");
        assert_eq!(s.sets_of(ISSUER), issuer_sets, "{at}: the issuer's Sets");
        assert_eq!(s.sets_of(FEE_RECIPIENT), recipient_sets, "{at}: the fee recipient's Sets");
        let now = s.cu.chain.now;
        let mut view = k.clone();
        view.settle_block(now, index).unwrap_or_else(|e| panic!("{what}: view {e}"));
        let m = &view.token.market;
        let (base, ab) = (s.cu.base, s.cu.account_balance);
        // the module reads the stored size (`getBase`), not the view that hides dust
        let size = s.cu.call(ab, IAccountBalance::getBaseCall { trader: set, baseToken: base });
        let notional = s.cu.call(ab, IAccountBalance::getQuoteCall { trader: set, baseToken: base });
        assert_eq!((size, notional), (m.account.base, m.account.quote), "{at}: position");
        let pnl = s.cu.call(ab, IAccountBalance::getPnlAndPendingFeeCall { trader: set });
        assert_eq!(pnl.owedRealizedPnl, m.account.owed_realized_pnl, "{at}: owed realised PnL");
        let funding =
            s.cu.call(s.cu.exchange, IExchangeView::getPendingFundingPaymentCall { trader: set, baseToken: base });
        assert_eq!(funding, m.pending_funding().unwrap(), "{at}: pending funding");
        // an accepted issue, redeem or trade settled what was pending before it
        if ours.is_ok() && matches!(kind, "issue" | "redeem" | "trade") {
            settled_on_chain += funding_before - funding;
        }
        assert_eq!(m.funding_paid().unwrap(), settled_on_chain + funding, "{at}: funding paid to date");
        if premium && kind == "time" && step > 3 && m.account.base.is_positive() {
            // a long on a vAMM above its index pays (a few wei of rounding aside)
            assert!(settled_on_chain + funding > I256::ZERO, "{at}: a long above the index pays funding");
            *t.accepted.entry("paying funding").or_default() += 1;
        }
        let balance = s.cu.call(s.cu.vault, IVault::getBalanceCall { trader: set });
        assert_eq!(balance * I256::try_from(USDC_TO_WAD).unwrap(), m.account.collateral, "{at}: vault balance");
        let fund = s.cu.call(ab, IAccountBalance::getPnlAndPendingFeeCall { trader: s.cu.insurance_fund });
        assert_eq!(
            fund.owedRealizedPnl,
            I256::try_from(view.insurance_fees + k.token.insurance_fund_fees).unwrap(),
            "{at}: insurance fund fees"
        );
        assert_eq!(
            s.cu.slot0(),
            (k.token.pool.sqrt_price_x96(), k.token.pool.tick(), k.token.pool.liquidity()),
            "{at}: pool"
        );
        assert_eq!(s.usdc_of(set), U256::ZERO, "{at}: the Set keeps no USDC outside the vault");
        let _ = s.cu.call(set, ISetToken::getExternalPositionRealUnitCall { component: usdc, positionModule: module });
        if k.token.supply.is_zero() {
            // an empty Set issues at the unit its last redemption left; keel at its initial NAV
            *t.ended.entry("the whole supply redeemed").or_default() += 1;
            return;
        }
    }
}

#[test]
fn keel_perp_token_issues_redeems_and_trades_as_set_does() {
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(20, |seed| run_sequence(seed, &mut t, false)) else { return };
    let refused: u64 = t.refused.values().sum();
    eprintln!(
        "set perp v2: {n} sequences, {} operations, {refused} refused by both with the same reason; 0 mismatches",
        t.ops
    );
    for (k, v) in &t.accepted {
        eprintln!("  {k}: {v} accepted by both");
    }
    for (k, v) in &t.refused {
        eprintln!("  {k}: {v} refused by both");
    }
    for (k, v) in &t.ended {
        eprintln!("  sequences ended by a deliberate difference ({k}): {v}");
    }
}

#[test]
fn a_long_set_above_the_index_pays_the_funding_curie_charges() {
    // keel's token on a short path where the vAMM trades above the index: the funding it has
    // paid to date (settled and pending) equals Curie's, step by step, and is positive
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(4, |seed| run_sequence(seed, &mut t, true)) else { return };
    eprintln!(
        "set perp v2, premium paths: {n} sequences, {} operations, {} checks of a long paying; 0 mismatches",
        t.ops,
        t.accepted.get("paying funding").copied().unwrap_or(0)
    );
    assert!(t.accepted.get("paying funding").copied().unwrap_or(0) > 0, "a long paid: {:?}", t.accepted);
}
