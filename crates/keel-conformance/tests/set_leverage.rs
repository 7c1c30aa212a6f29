//! keel-core's leverage module (`venue::leverage::LeverageVenue`: lever, delever and delever to
//! zero against a lending market and a pool) and its issuance (`venue::issuance::Issuance`:
//! issue and redeem in units) against Set's `CompoundLeverageModule` and `DebtIssuanceModule` from
//! `@setprotocol/set-protocol-v2` 0.1.16's published bytecode — with Set's `Controller`,
//! `IntegrationRegistry`, `SetTokenCreator` (a real `SetToken`) and `DebtIssuanceModule` — on the
//! Compound v2 deployment the Compound suite uses (`common::compound`) and a `UniswapV3Pool` from
//! `@uniswap/v3-core`, which Set trades through keel's adapter (`evm/contracts/SetExchange.sol`).
//!
//! Random sequences: a Compound market pair (WETH collateral, USDC borrow) with random risk and
//! rate parameters and a lender's USDC; a WETH/USDC pool at the oracle's price with a full-range
//! position and narrow ones; a random protocol fee on the module and manager issue / redeem
//! fees; a Set of cWETH issued to an issuer; then levers (borrowing a part of what the collateral
//! allows, sometimes more) and delevers (redeeming a part of the collateral, sometimes more than
//! the debt needs), with a minimum receive quantity that sometimes refuses the trade, delevers to
//! zero (the whole debt with interest; the rest stays in the Set), issues and redeems (the issuer
//! buying the cTokens it brings, the redeemer redeeming those it takes), among blocks passing and
//! moves of the oracle price. Both sides must accept or refuse together, with the module's
//! reason; after every operation both markets' totals, the Set's and the issuer's cTokens,
//! borrow and liquidity, the pool's price, tick and liquidity, the fee recipient's protocol fees,
//! the Set's USDC and its unit, the supply and holdings of Sets and the Set's position units must
//! be equal to the wei. The two deliberate differences of `conformance.md` §4 end a sequence.
//!
//! The second test runs keel's FLI strategy (`FliToken`, Compound rules) against Index Coop's
//! `FlexibleLeverageStrategyExtension` from `@setprotocol/index-coop-contracts` 0.0.25, managing
//! the same Set through its `BaseManager` (`conformance.md` §2.8).

mod common;

use alloy_primitives::aliases::{I24, U160};
use alloy_primitives::{Address, Bytes, I256, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use common::compound::{ICToken, IOracle, IToken, Market, SET, compare, deploy};
use common::set::{IBalance, IDebtIssuance, ISetController, ISetToken, ISetTokenCreator, SetCore, set_artifact};
use common::uniswap::{IDriver, IFactory, IPool};
use keel_conformance::{Chain, artifact, artifact_linked, for_each_sequence, own_bytecode};
use keel_core::error::{AmmError, Error, FliError};
use keel_core::math::{Wad, pdiv, pdiv_up, pmul};
use keel_core::product::Product;
use keel_core::strategy::fli::ShouldRebalance;
use keel_core::strategy::fli::token::FliToken;
use keel_core::token::{Ledger, TokenConfig};
use keel_core::venue::amm::{LiquidityPosition, Pool, PoolToken, sqrt_price_x96_from_f64, tick_spacing_for_fee};
use keel_core::venue::compound::CompoundMarket;
use keel_core::venue::issuance::{Cash, Issuance};
use keel_core::venue::leverage::{LeverageVenue, TradeReport};
use keel_core::venue::money_market::MoneyMarket;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

sol! {
    interface ICompoundLeverage {
        function updateAnySetAllowed(bool anySetAllowed) external;
        function initialize(address setToken, address[] collateralAssets, address[] borrowAssets) external;
        function lever(address setToken, address borrowAsset, address collateralAsset, uint256 borrowQuantity, uint256 minReceiveQuantity, string tradeAdapterName, bytes tradeData) external;
        function delever(address setToken, address collateralAsset, address repayAsset, uint256 redeemQuantity, uint256 minRepayQuantity, string tradeAdapterName, bytes tradeData) external;
        function deleverToZeroBorrowBalance(address setToken, address collateralAsset, address repayAsset, uint256 redeemQuantity, string tradeAdapterName, bytes tradeData) external;
        function sync(address setToken, bool shouldAccrueInterest) external;
    }
}

const ADAPTER: &str = "KEEL";
/// One Set, as a unit of account for amounts per Set.
const ONE: u128 = 1_000_000_000_000_000_000;
const FEE_RECIPIENT: Address = Address::repeat_byte(0xfe);
const ISSUER: Address = Address::repeat_byte(0x1a);
const WETH: usize = 0;
const USDC: usize = 1;

fn sent(r: Result<Bytes, keel_conformance::Revert>, what: &str) -> Bytes {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn read<C: SolCall>(c: &mut Chain, to: Address, call: C) -> C::Return {
    C::abi_decode_returns(&c.call(to, call.abi_encode()).unwrap_or_else(|e| panic!("view: {e}"))).expect("decode")
}

/// Compound, the pool and Set, with keel's mirror of the first two.
struct World {
    m: Market,
    pool: Address,
    keel_pool: Pool,
    leverage: Address,
    issuance: Address,
    set: Address,
    protocol_fee: Wad,
    /// keel's view of the Set's supply, balances and issue / redeem fees.
    ledger: Ledger,
    /// keel's view of the USDC the Set holds and its unit.
    cash: Cash,
    /// keel's `UniswapV3Driver` on the pool: another trader moving it.
    driver: Address,
}

impl World {
    fn weth(&self) -> Address {
        self.m.assets[WETH].token
    }
    fn usdc(&self) -> Address {
        self.m.assets[USDC].token
    }
}

fn build(rng: &mut ChaCha8Rng) -> World {
    let mut m = deploy(rng);
    let now = m.chain.now;
    let owner = m.chain.sender;
    // the collateral must count
    let (weth, usdc) = (m.assets[WETH].id, m.assets[USDC].id);
    if m.keel.markets[weth].config.collateral_factor.is_zero() {
        let cf = U256::from(rng.random_range(30u64..=90)) * U256::from(10_000_000_000_000_000u64);
        m.keel.markets[weth].config.collateral_factor = cf;
        let call = common::compound::IComptroller::_setCollateralFactorCall { cToken: m.assets[WETH].ctoken, f: cf };
        common::compound::admin(&mut m.chain, m.comptroller, call.abi_encode(), "collateral factor");
    }
    // a lender's USDC for the Set to borrow
    let lender = m.users[0];
    let cash = U256::from(10u64).pow(U256::from(6 + rng.random_range(6..9u64)));
    m.keel.mint(lender, usdc, cash, now).expect("keel lend");
    sent(m.chain.transact_from(lender, m.assets[USDC].ctoken, ICToken::mintCall { amount: cash }.abi_encode()), "lend");

    // the pool at the oracle's price
    let (t_weth, t_usdc) = (m.assets[WETH].token, m.assets[USDC].token);
    let fee = [500u32, 3000][rng.random_range(0..2)];
    let spacing = tick_spacing_for_fee(fee).unwrap();
    let usd = m.assets[WETH].price_usd as f64;
    let weth_first = t_weth < t_usdc;
    // token1 per token0 in base units
    let ratio = if weth_first { usd * 1e6 / 1e18 } else { 1e18 / (usd * 1e6) };
    let sqrt_p = sqrt_price_x96_from_f64(ratio).unwrap();
    let (token0, token1) = if weth_first {
        (PoolToken { symbol: "WETH".into(), decimals: 18 }, PoolToken { symbol: "USDC".into(), decimals: 6 })
    } else {
        (PoolToken { symbol: "USDC".into(), decimals: 6 }, PoolToken { symbol: "WETH".into(), decimals: 18 })
    };
    let probe = Pool::new("probe", token0.clone(), token1.clone(), fee, sqrt_p, &[]).unwrap();
    let tick = probe.tick();
    let full = 887_272 / spacing * spacing;
    // liquidity L ≈ value / (2√P) in base units: $1M–$100M of depth in the full range
    let depth = 10f64.powf(rng.random_range(6.0..8.0));
    let sqrt_ratio = ratio.sqrt();
    let weth_units = depth / 2.0 / usd * 1e18;
    let l_full = if weth_first { weth_units * sqrt_ratio } else { weth_units / sqrt_ratio };
    let mut positions = vec![LiquidityPosition { tick_lower: -full, tick_upper: full, liquidity: l_full as u128 }];
    for _ in 0..rng.random_range(0..5) {
        let half = rng.random_range(1..=200) * spacing;
        let center = tick + rng.random_range(-100..=100) * spacing;
        let lo = (center - half).div_euclid(spacing) * spacing;
        let hi = (center + half).div_euclid(spacing) * spacing;
        if lo < hi && lo > -full && hi < full {
            let l = (l_full * rng.random_range(0.05..3.0)) as u128;
            positions.push(LiquidityPosition { tick_lower: lo, tick_upper: hi, liquidity: l });
        }
    }
    let keel_pool = Pool::new("set", token0, token1, fee, sqrt_p, &positions).unwrap();
    let c = &mut m.chain;
    let factory = c
        .deploy(&artifact("@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json"), &[])
        .unwrap();
    let create = IFactory::createPoolCall { tokenA: t_weth, tokenB: t_usdc, fee: fee.try_into().unwrap() };
    let pool = Address::abi_decode(&sent(c.transact(factory, create.abi_encode()), "createPool")).unwrap();
    sent(c.transact(pool, IPool::initializeCall { sqrtPriceX96: sqrt_p }.abi_encode()), "pool initialize");
    let driver = c.deploy(&own_bytecode("UniswapV3Driver"), &pool.abi_encode()).unwrap();
    for t in [t_weth, t_usdc] {
        sent(c.transact(t, IToken::mintCall { to: driver, amount: U256::from(1u8) << 200 }.abi_encode()), "fund LP");
    }
    for p in &positions {
        let (lo, hi) = (I24::try_from(p.tick_lower).unwrap(), I24::try_from(p.tick_upper).unwrap());
        let call = IDriver::mintCall { tickLower: lo, tickUpper: hi, amount: p.liquidity };
        sent(c.transact(driver, call.abi_encode()), "LP mint");
    }
    let exchange = c.deploy(&own_bytecode("SetV3Exchange"), &[]).unwrap();
    let adapter = c.deploy(&own_bytecode("SetV3ExchangeAdapter"), &(exchange, pool).abi_encode_params()).unwrap();

    // Set: controller, registry, creator, issuance and the leverage module
    let core = SetCore::deploy(c, FEE_RECIPIENT, "protocol/modules/DebtIssuanceModule.sol/DebtIssuanceModule.json");
    let (controller, creator, issuance) = (core.controller, core.creator, core.issuance);
    let library = c.deploy(&set_artifact("protocol/integration/lib/Compound.sol/Compound.json"), &[]).unwrap();
    let code = artifact_linked(
        &format!("{SET}artifacts/contracts/protocol/modules/CompoundLeverageModule.sol/CompoundLeverageModule.json"),
        &[("Compound", library)],
    );
    let args = (controller, Address::repeat_byte(0xc0), m.comptroller, Address::ZERO, Address::repeat_byte(0xee));
    let leverage = c.deploy(&code, &args.abi_encode_params()).unwrap_or_else(|e| panic!("deploy leverage module: {e}"));
    core.initialize(c, leverage, &[(ADAPTER, adapter)]);
    let fee_bp = [0u64, 0, 5, 10, 30, 100][rng.random_range(0..6)];
    let protocol_fee = Wad(U256::from(fee_bp) * U256::from(100_000_000_000_000u64));
    if fee_bp > 0 {
        let add =
            ISetController::addFeeCall { module: leverage, feeType: U256::ZERO, newFeePercentage: protocol_fee.0 };
        sent(c.transact(controller, add.abi_encode()), "protocol fee");
    }

    // the Set: one Set is what the issuer's WETH mints in cWETH; its address is the creator's first
    let set = creator.create(1);
    let deposit = U256::from(10u64).pow(U256::from(18 + rng.random_range(0..4u64)));
    let ctokens = m.keel.mint(set, weth, deposit, now).expect("keel collateral");
    let c = &mut m.chain;
    sent(c.transact(t_weth, IToken::mintCall { to: ISSUER, amount: deposit }.abi_encode()), "issuer WETH");
    let cweth = m.assets[WETH].ctoken;
    sent(
        c.transact_from(ISSUER, t_weth, IBalance::approveCall { spender: cweth, amount: U256::MAX }.abi_encode()),
        "a",
    );
    sent(c.transact_from(ISSUER, cweth, ICToken::mintCall { amount: deposit }.abi_encode()), "issuer cWETH");
    let create = ISetTokenCreator::createCall {
        components: vec![cweth],
        units: vec![I256::try_from(ctokens).unwrap()],
        modules: vec![issuance, leverage],
        manager: owner,
        name: "ETH FLI".into(),
        symbol: "ETHFLI".into(),
    };
    let made = Address::abi_decode(&sent(c.transact(creator, create.abi_encode()), "create Set")).unwrap();
    assert_eq!(made, set, "the Set's address");
    let init = IDebtIssuance::initializeCall {
        setToken: set,
        maxManagerFee: U256::from(ONE / 10),
        managerIssueFee: U256::ZERO,
        managerRedeemFee: U256::ZERO,
        feeRecipient: owner,
        managerIssuanceHook: Address::ZERO,
    };
    sent(c.transact(issuance, init.abi_encode()), "issuance initialize");
    sent(
        c.transact(leverage, ICompoundLeverage::updateAnySetAllowedCall { anySetAllowed: true }.abi_encode()),
        "allow",
    );
    let init =
        ICompoundLeverage::initializeCall { setToken: set, collateralAssets: vec![t_weth], borrowAssets: vec![t_usdc] };
    sent(c.transact(leverage, init.abi_encode()), "leverage initialize");
    m.keel.enter_markets(set, &[weth, usdc]).expect("keel enter");
    sent(
        c.transact_from(ISSUER, cweth, IBalance::approveCall { spender: issuance, amount: U256::MAX }.abi_encode()),
        "a",
    );
    let issue = IDebtIssuance::issueCall { setToken: set, quantity: U256::from(ONE), to: ISSUER };
    sent(c.transact_from(ISSUER, issuance, issue.abi_encode()), "issue");
    // random manager fees on later issues and redeems (0 one time in three)
    let mut fee = || {
        let bp = [0u64, 0, 5, 10, 50, 100][rng.random_range(0..6)];
        Wad(U256::from(bp) * U256::from(100_000_000_000_000u64))
    };
    let (mint_fee, redeem_fee) = (fee(), fee());
    // (the module refuses to "update" a fee to what it is)
    if !mint_fee.0.is_zero() {
        let up = IDebtIssuance::updateIssueFeeCall { setToken: set, newIssueFee: mint_fee.0 };
        sent(c.transact(issuance, up.abi_encode()), "issue fee");
    }
    if !redeem_fee.0.is_zero() {
        let up = IDebtIssuance::updateRedeemFeeCall { setToken: set, newRedeemFee: redeem_fee.0 };
        sent(c.transact(issuance, up.abi_encode()), "redeem fee");
    }
    let usdc_token = m.assets[USDC].token;
    let approve = IBalance::approveCall { spender: issuance, amount: U256::MAX };
    sent(c.transact_from(ISSUER, usdc_token, approve.abi_encode()), "a");
    let config = TokenConfig {
        name: "ETH FLI".into(),
        symbol: "ETHFLI".into(),
        supply_cap: U256::MAX,
        mint_fee,
        redeem_fee,
        streaming_fee: Wad::ZERO,
        fee_recipient: owner,
    };
    let mut ledger = Ledger::new(config, now).unwrap();
    ledger.mint(ISSUER, U256::from(ONE));
    m.users.push(set);
    m.users.push(ISSUER);
    World { m, pool, keel_pool, leverage, issuance, set, protocol_fee, ledger, cash: Cash::default(), driver }
}

/// What a keel error reads as from the module.
fn reason(e: &Error, lever: bool) -> String {
    match e {
        Error::Fli(FliError::Revert(s)) => (*s).to_string(),
        Error::Amm(AmmError::SlippageTooHigh { .. }) => "Slippage too high".into(),
        // the step that failed, as Set's Compound library names it
        Error::Lending(l) => {
            let m = l.to_string();
            if m.contains("redeemTokens zero") {
                // Compound's require, a revert the module passes on
                "redeemTokens zero".into()
            } else if m.contains("transfer") {
                // a cToken transfer the comptroller refuses returns false: the Set's check of
                // its balance after the transfer fails
                "Invalid post transfer balance".into()
            } else if lever {
                if m.contains("mint") { "Mint failed" } else { "Borrow failed" }.into()
            } else if m.contains("repay") {
                "Repay failed".into()
            } else {
                "Redeem underlying failed".into()
            }
        }
        other => format!("{other}"),
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    accepted: BTreeMap<&'static str, u64>,
    refused: BTreeMap<String, u64>,
}

fn run_sequence(seed: u64, t: &mut Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = build(&mut rng);
    let (weth, usdc) = (w.m.assets[WETH].id, w.m.assets[USDC].id);
    let mut fees = [U256::ZERO; 2];
    check(&mut w, &fees, seed, 0, "setup");
    for step in 1..rng.random_range(5..40) {
        let now = w.m.chain.now;
        let supply = w.ledger.total_supply();
        if supply.is_zero() {
            // everything redeemed: nothing left to lever
            return;
        }
        let roll = rng.random_range(0..100);
        let what: &'static str = if roll < 30 {
            // borrow a part of what the collateral allows (or a little more)
            let (liquidity, _) = w.m.keel.account_liquidity(w.set, now).unwrap_or_default();
            let usdc_price = U256::from(10u64).pow(U256::from(30u64)); // $1 in Compound's 36 − 6 decimals
            let room = liquidity * U256::from(10u64).pow(U256::from(18u64)) / usdc_price;
            let share = if rng.random_bool(0.75) { rng.random_range(0.05..0.6) } else { rng.random_range(0.6..1.05) };
            let borrow = U256::from((room.saturating_to::<u128>() as f64 * share) as u128).max(U256::from(1u8));
            let units = pdiv(borrow, supply).unwrap();
            let min = min_receive(&mut rng, &w, usdc, borrow);
            let kr = keel_trade(&mut w, Action::Lever, units, pdiv(min, supply).unwrap(), supply);
            let call = ICompoundLeverage::leverCall {
                setToken: w.set,
                borrowAsset: w.usdc(),
                collateralAsset: w.weth(),
                borrowQuantity: units,
                minReceiveQuantity: pdiv(min, supply).unwrap(),
                tradeAdapterName: ADAPTER.into(),
                tradeData: Bytes::new(),
            };
            let cr = w.m.chain.transact(w.leverage, call.abi_encode()).map(|_| ()).map_err(|e| e.0);
            agree(t, "lever", seed, step, kr.map(|r| fees[WETH] += r.protocol_fee).map_err(|e| reason(&e, true)), cr);
            "lever"
        } else if roll < 50 {
            // redeem collateral worth 5–110% of the debt at the oracle (so some delevers bring
            // more than is owed), or a part of all of it
            let held = w.m.keel.supply_balance_stored(w.set, weth).unwrap_or_default();
            let owed = w.m.keel.borrow_balance_stored(w.set, usdc).unwrap_or_default();
            let usd = w.m.keel.underlying_price(weth, now).unwrap_or_default(); // per wei, scaled by 1e36
            let worth = if usd.is_zero() { U256::ZERO } else { owed * U256::from(10u64).pow(U256::from(30u64)) / usd };
            let redeem = if !owed.is_zero() && rng.random_bool(0.8) {
                U256::from((worth.saturating_to::<u128>() as f64 * rng.random_range(0.05..1.1)) as u128)
            } else {
                U256::from((held.saturating_to::<u128>() as f64 * rng.random_range(0.01..0.5)) as u128)
            };
            let units = pdiv(redeem, supply).unwrap();
            let min = min_receive(&mut rng, &w, weth, redeem);
            let kr = keel_trade(&mut w, Action::Delever, units, pdiv(min, supply).unwrap(), supply);
            let call = ICompoundLeverage::deleverCall {
                setToken: w.set,
                collateralAsset: w.weth(),
                repayAsset: w.usdc(),
                redeemQuantity: units,
                minRepayQuantity: pdiv(min, supply).unwrap(),
                tradeAdapterName: ADAPTER.into(),
                tradeData: Bytes::new(),
            };
            let cr = w.m.chain.transact(w.leverage, call.abi_encode()).map(|_| ()).map_err(|e| e.0);
            agree(
                t,
                "delever",
                seed,
                step,
                kr.map(|r| fees[USDC] += r.protocol_fee).map_err(|e| reason(&e, false)),
                cr,
            );
            "delever"
        } else if roll < 58 {
            // redeem collateral worth 90–140% of the debt at the oracle (or, one time in five,
            // 1–50% of it all), swap it all and repay the whole debt; the rest stays in the Set
            let held = w.m.keel.supply_balance_stored(w.set, weth).unwrap_or_default();
            let owed = w.m.keel.borrow_balance_current(w.set, usdc, now).unwrap_or_default();
            let usd = w.m.keel.underlying_price(weth, now).unwrap_or_default();
            let worth = if usd.is_zero() { U256::ZERO } else { owed * U256::from(10u64).pow(U256::from(30u64)) / usd };
            let redeem = if rng.random_bool(0.8) {
                U256::from((worth.saturating_to::<u128>() as f64 * rng.random_range(0.9..1.4)) as u128)
            } else {
                U256::from((held.saturating_to::<u128>() as f64 * rng.random_range(0.01..0.5)) as u128)
            };
            let units = pdiv(redeem, supply).unwrap();
            let kr = keel_trade(&mut w, Action::DeleverToZero, units, U256::ZERO, supply);
            let call = ICompoundLeverage::deleverToZeroBorrowBalanceCall {
                setToken: w.set,
                collateralAsset: w.weth(),
                repayAsset: w.usdc(),
                redeemQuantity: units,
                tradeAdapterName: ADAPTER.into(),
                tradeData: Bytes::new(),
            };
            let cr = w.m.chain.transact(w.leverage, call.abi_encode()).map(|_| ()).map_err(|e| e.0);
            let kr = kr.map(|r| w.cash.add_surplus(r.surplus, supply).unwrap());
            agree(t, "delever to zero", seed, step, kr.map_err(|e| reason(&e, false)), cr);
            "delever to zero"
        } else if roll < 80 && both_in_usdc(&w) {
            // Set's CompoundLeverageModule runs its debt hook for the cash too (AaveLeverageModule
            // does not, and keel follows it): shown once, then the two part
            if roll < 70 {
                issue(&mut rng, &mut w, t, seed, step);
            } else {
                *t.refused.entry("redeem with USDC cash and debt: not compared".into()).or_default() += 1;
            }
            return;
        } else if roll < 70 {
            issue(&mut rng, &mut w, t, seed, step);
            "issue"
        } else if roll < 80 {
            if !redeem(&mut rng, &mut w, t, seed, step) {
                // keel repaid what Set's Compound module refuses to: the two part here
                return;
            }
            "redeem"
        } else if roll < 90 {
            let blocks = rng.random_range(1..50_000u64);
            w.m.chain.warp(blocks * 12);
            "time"
        } else {
            // the oracle moves (the pool does not follow: only the Set trades it here)
            let usd = (w.m.assets[WETH].price_usd as f64 * rng.random_range(0.7..1.3)).max(1.0);
            let e8 = (usd * 1e8) as i128;
            let price = U256::from(e8 as u128) * U256::from(10u64).pow(U256::from(10u64));
            let ct = w.m.assets[WETH].ctoken;
            sent(
                w.m.chain.transact(w.m.oracle, IOracle::setUnderlyingPriceCall { cToken: ct, price }.abi_encode()),
                "p",
            );
            w.m.keel.post_price(weth, e8, now);
            "price"
        };
        check(&mut w, &fees, seed, step, what);
    }
}

/// A quantity of Sets: a part of `of` (0.01%–200%), one time in ten a few wei.
fn quantity(rng: &mut ChaCha8Rng, of: U256) -> U256 {
    if rng.random_bool(0.1) {
        return U256::from(rng.random_range(1..1_000_000u64));
    }
    let part = (rng.random_range(-4.0f64..0.3)).exp2().min(2.0);
    U256::from((of.saturating_to::<u128>() as f64 * part) as u128).max(U256::from(1u8))
}

/// The Set holds USDC as cash (a default position) and owes USDC (the module's external
/// position).
fn both_in_usdc(w: &World) -> bool {
    !w.cash.unit.is_zero() && !w.m.keel.borrow_balance_stored(w.set, w.m.assets[USDC].id).unwrap().is_zero()
}

/// Run `f` on keel's issuance of the Set (its account on keel's market, now).
fn on_issuance<T>(w: &mut World, f: impl FnOnce(&mut Issuance) -> T) -> T {
    let mut market = MoneyMarket::CompoundV2(std::mem::replace(&mut w.m.keel, CompoundMarket::new()));
    let (account, collateral, borrow, now) = (w.set, w.m.assets[WETH].id, w.m.assets[USDC].id, w.m.chain.now);
    let out = f(&mut Issuance { market: &mut market, account, collateral, borrow, now });
    let MoneyMarket::CompoundV2(k) = market else { unreachable!("a Compound market") };
    w.m.keel = k;
    out
}

/// keel's side of an issue or redeem both accepted: the Set's cash and the fee's Sets.
fn book(w: &mut World, cash: Cash, fee: U256) {
    w.cash = cash;
    let owner = w.ledger.config.fee_recipient;
    w.ledger.mint(owner, fee);
}

fn balance(w: &mut World, token: Address, of: Address) -> U256 {
    read(&mut w.m.chain, token, IBalance::balanceOfCall { a: of })
}

/// The issuer issues a quantity of Sets: keel's issuance against `DebtIssuanceModule.issue`.
/// The issuer buys the cTokens it lacks with WETH first and brings any USDC the Set's cash
/// unit asks for; it receives the debt share in USDC. With USDC both cash and debt, Set's
/// `CompoundLeverageModule.componentIssueHook` also runs for the cash and borrows the debt
/// share a second time, into the Set (`AaveLeverageModule` skips equity: "the loan would be
/// taken out twice"); keel borrows it once, and the test checks exactly that difference.
fn issue(rng: &mut ChaCha8Rng, w: &mut World, t: &mut Tally, seed: u64, step: usize) {
    let now = w.m.chain.now;
    let supply = w.ledger.total_supply();
    let q = quantity(rng, supply);
    let (total, fee) = w.ledger.issue_quantities(q).unwrap();
    let (set, weth, cash) = (w.set, w.m.assets[WETH].id, w.cash);
    let need = on_issuance(w, |i| i.amounts(total, supply, cash.unit, false)).unwrap();
    // what the issuer pays for the cTokens it lacks, at Compound's accrued exchange rate
    let short = need.position.saturating_sub(w.m.keel.ctoken_balance(ISSUER, weth));
    let rate = w.m.keel.exchange_rate_current(weth, now).unwrap();
    let pay = (short * rate).div_ceil(U256::from(ONE));
    let mut cash_after = w.cash;
    let kr = on_issuance(w, |i| i.issue(ISSUER, total, supply, &mut cash_after));
    let (t_weth, t_usdc, cweth) = (w.weth(), w.usdc(), w.m.assets[WETH].ctoken);
    let c = &mut w.m.chain;
    if !pay.is_zero() {
        sent(c.transact(t_weth, IToken::mintCall { to: ISSUER, amount: pay }.abi_encode()), "issuer WETH");
        sent(c.transact_from(ISSUER, cweth, ICToken::mintCall { amount: pay }.abi_encode()), "issuer cWETH");
    }
    if !need.cash.is_zero() {
        sent(c.transact(t_usdc, IToken::mintCall { to: ISSUER, amount: need.cash }.abi_encode()), "issuer USDC");
    }
    let usdc_before = balance(w, t_usdc, ISSUER);
    let call = IDebtIssuance::issueCall { setToken: set, quantity: q, to: ISSUER };
    let cr = w.m.chain.transact_from(ISSUER, w.issuance, call.abi_encode()).map(|_| ()).map_err(|e| e.0);
    if both_in_usdc(w) {
        t.ops += 1;
        let what = match (&kr, &cr) {
            (Ok(r), Ok(())) => {
                let held = balance(w, t_usdc, set);
                assert_eq!(held, cash_after.balance + r.borrow_out, "seq {seed} step {step}: Set's second borrow");
                "issue with USDC cash and debt: Set borrows the debt share twice"
            }
            (Ok(_), Err(_)) => "issue with USDC cash and debt: Set's second borrow fails",
            (Err(_), _) => "issue with USDC cash and debt: refused by keel",
        };
        *t.refused.entry(what.into()).or_default() += 1;
        return;
    }
    if kr.is_err() && !pay.is_zero() {
        // the issuer's purchase of cTokens stands on chain, where it is its own transaction
        w.m.keel.mint(ISSUER, weth, pay, now).expect("keel: the issuer's cTokens");
    }
    if let Ok(r) = &kr {
        assert_eq!(r.collateral_in, pay, "seq {seed} step {step}: the issuer's WETH");
        assert_eq!(r.position_in, need.position, "seq {seed} step {step}: cTokens brought");
        if cr.is_ok() {
            let got = balance(w, t_usdc, ISSUER) + need.cash - usdc_before;
            assert_eq!(got, r.borrow_out, "seq {seed} step {step}: USDC handed to the issuer");
        }
        w.ledger.mint(ISSUER, q);
        book(w, cash_after, fee);
    }
    agree(t, "issue", seed, step, kr.map(|_| ()).map_err(|e| reason(&e, true)), cr);
}

/// The issuer redeems a part of its Sets (one time in ten all of them): keel's issuance
/// against `DebtIssuanceModule.redeem`. The issuer brings the USDC of the debt share, takes the
/// cTokens and redeems them for WETH. Returns false where keel repays the whole debt and Set's
/// Compound module reverts (`conformance.md` §4): the sequence ends there.
fn redeem(rng: &mut ChaCha8Rng, w: &mut World, t: &mut Tally, seed: u64, step: usize) -> bool {
    let supply = w.ledger.total_supply();
    let held = w.ledger.balance_of(ISSUER);
    if held.is_zero() {
        return true;
    }
    let q = if rng.random_bool(0.1) { held } else { quantity(rng, held).min(held) };
    let (net, fee) = w.ledger.redeem_quantities(q).unwrap();
    let (set, cash) = (w.set, w.cash);
    let need = on_issuance(w, |i| i.amounts(net, supply, cash.unit, true));
    let mut cash_after = w.cash;
    let kr = on_issuance(w, |i| i.redeem(ISSUER, net, supply, &mut cash_after));
    let (t_weth, t_usdc, cweth) = (w.weth(), w.usdc(), w.m.assets[WETH].ctoken);
    if let Ok(need) = need
        && !need.debt.is_zero()
    {
        let c = &mut w.m.chain;
        sent(c.transact(t_usdc, IToken::mintCall { to: ISSUER, amount: need.debt }.abi_encode()), "redeemer USDC");
    }
    let (weth_before, usdc_before) = (balance(w, t_weth, ISSUER), balance(w, t_usdc, ISSUER));
    let call = IDebtIssuance::redeemCall { setToken: set, quantity: q, to: ISSUER };
    let cr = w.m.chain.transact_from(ISSUER, w.issuance, call.abi_encode()).map(|_| ()).map_err(|e| e.0);
    if let Ok(r) = &kr {
        if r.surplus > U256::ZERO {
            assert!(
                cr.is_err(),
                "seq {seed} step {step}: keel repaid {} over the debt and Set's redeem went through",
                r.surplus
            );
            t.ops += 1;
            *t.refused.entry("redeem: keel repays the debt, Set's Compound module reverts".into()).or_default() += 1;
            return false;
        }
        if cr.is_ok() {
            if !r.position_out.is_zero() {
                let call = ICToken::redeemCall { tokens: r.position_out };
                sent(w.m.chain.transact_from(ISSUER, cweth, call.abi_encode()), "redeem cWETH");
            }
            let weth_got = balance(w, t_weth, ISSUER) - weth_before;
            assert_eq!(weth_got, r.collateral_out, "seq {seed} step {step}: WETH to the redeemer");
            let usdc_paid = usdc_before + r.cash_out - balance(w, t_usdc, ISSUER);
            assert_eq!(usdc_paid, r.borrow_in, "seq {seed} step {step}: USDC from the redeemer");
        }
        w.ledger.burn(ISSUER, q);
        book(w, cash_after, fee);
    }
    agree(t, "redeem", seed, step, kr.map(|_| ()).map_err(|e| reason(&e, false)), cr);
    true
}

/// The least the trade must return: keel's quote less 0–2%, or (one time in six) 0.5% more.
fn min_receive(rng: &mut ChaCha8Rng, w: &World, sold: usize, amount: U256) -> U256 {
    let symbol = w.m.keel.markets[sold].config.symbol.clone();
    let quote = w
        .keel_pool
        .direction_selling(&symbol)
        .ok()
        .and_then(|dir| w.keel_pool.clone().swap_exact_input(dir, amount, U256::ZERO, None).ok())
        .map(|o| o.amount_out)
        .unwrap_or_default();
    if rng.random_bool(1.0 / 6.0) {
        quote + quote / U256::from(200u8) + U256::from(1u8)
    } else {
        quote - pmul(quote, U256::from((rng.random_range(0.0..0.02) * 1e18) as u128)).unwrap()
    }
}

/// What the manager asks the module for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Lever,
    Delever,
    DeleverToZero,
}

/// keel's lever, delever or delever to zero on the Set's account.
fn keel_trade(w: &mut World, action: Action, units: U256, min_units: U256, supply: U256) -> Result<TradeReport, Error> {
    let now = w.m.chain.now;
    let mut market = MoneyMarket::CompoundV2(std::mem::replace(&mut w.m.keel, CompoundMarket::new()));
    let (mut m2, mut p2) = (market.clone(), w.keel_pool.clone());
    let mut venue = LeverageVenue {
        market: &mut m2,
        pool: &mut p2,
        account: w.set,
        collateral: w.m.assets[WETH].id,
        borrow: w.m.assets[USDC].id,
        protocol_fee: w.protocol_fee,
        now,
        oracle_fill: false,
    };
    let out = match action {
        Action::Lever => venue.lever(units, min_units, supply),
        Action::Delever => venue.delever(units, min_units, supply),
        Action::DeleverToZero => venue.delever_to_zero(units, supply),
    };
    if out.is_ok() {
        market = m2;
        w.keel_pool = p2;
    }
    let MoneyMarket::CompoundV2(k) = market else { unreachable!("a Compound market") };
    w.m.keel = k;
    out
}

fn agree(
    t: &mut Tally,
    what: &'static str,
    seed: u64,
    step: usize,
    keel: Result<(), String>,
    chain: Result<(), String>,
) {
    t.ops += 1;
    match (keel, chain) {
        (Ok(()), Ok(())) => *t.accepted.entry(what).or_default() += 1,
        (Err(k), Err(c)) => {
            assert_eq!(k, c, "seq {seed} step {step} {what}: refused by both, for different reasons");
            *t.refused.entry(format!("{what}: {c}")).or_default() += 1;
        }
        (k, c) => panic!("seq {seed} step {step} {what}: keel {k:?}, Set {c:?}"),
    }
}

/// Compound's markets and the Set's account, the pool, the protocol fees and the Set's units.
fn check(w: &mut World, fees: &[U256; 2], seed: u64, step: usize, what: &str) {
    let at = format!("seq {seed} step {step} after {what}");
    compare(&mut w.m, &at);
    let s = read(&mut w.m.chain, w.pool, IPool::slot0Call {});
    let l = read(&mut w.m.chain, w.pool, IPool::liquidityCall {});
    assert_eq!(U160::from(s.sqrtPriceX96), w.keel_pool.sqrt_price_x96(), "{at}: pool price");
    assert_eq!(s.tick.as_i32(), w.keel_pool.tick(), "{at}: pool tick");
    assert_eq!(l, w.keel_pool.liquidity(), "{at}: pool liquidity");
    for (k, fee) in fees.iter().enumerate() {
        let token = w.m.assets[k].token;
        let got = read(&mut w.m.chain, token, IBalance::balanceOfCall { a: FEE_RECIPIENT });
        assert_eq!(got, *fee, "{at}: protocol fees in asset {k}");
    }
    let held = read(&mut w.m.chain, w.m.assets[USDC].token, IBalance::balanceOfCall { a: w.set });
    assert_eq!(held, w.cash.balance, "{at}: the Set's USDC");
    let usdc = w.usdc();
    let unit = read(&mut w.m.chain, w.set, ISetToken::getDefaultPositionRealUnitCall { component: usdc });
    assert_eq!(unit, I256::try_from(w.cash.unit).unwrap(), "{at}: the Set's USDC unit");
    let supply = read(&mut w.m.chain, w.set, ISetToken::totalSupplyCall {});
    assert_eq!(supply, w.ledger.total_supply(), "{at}: supply");
    for who in [ISSUER, w.ledger.config.fee_recipient] {
        let got = read(&mut w.m.chain, w.set, ISetToken::balanceOfCall { a: who });
        assert_eq!(got, w.ledger.balance_of(who), "{at}: Sets held by {who}");
    }
    if supply.is_zero() {
        // all redeemed: the module syncs nothing
        return;
    }
    // the units as the next operation syncs them (an issue leaves the stored unit behind)
    let sync = ICompoundLeverage::syncCall { setToken: w.set, shouldAccrueInterest: false };
    sent(w.m.chain.transact(w.leverage, sync.abi_encode()), "sync");
    let (ct, id) = (w.m.assets[WETH].ctoken, w.m.assets[WETH].id);
    let unit = read(&mut w.m.chain, w.set, ISetToken::getDefaultPositionRealUnitCall { component: ct });
    let want = pdiv(w.m.keel.ctoken_balance(w.set, id), supply).unwrap();
    assert_eq!(unit, I256::try_from(want).unwrap(), "{at}: collateral unit");
    let debt = read(
        &mut w.m.chain,
        w.set,
        ISetToken::getExternalPositionRealUnitCall { component: w.m.assets[USDC].token, positionModule: w.leverage },
    );
    let owed = w.m.keel.borrow_balance_stored(w.set, w.m.assets[USDC].id).unwrap();
    assert_eq!(debt, -I256::try_from(pdiv_up(owed, supply).unwrap()).unwrap(), "{at}: debt unit");
}

#[test]
fn keel_levers_delevers_issues_and_redeems_as_set_does() {
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(30, |seed| run_sequence(seed, &mut t)) else { return };
    eprintln!("Set CompoundLeverageModule: {n} sequences, {} operations; accepted by both {:?}", t.ops, t.accepted);
    eprintln!("refused by both: {:?}", t.refused);
    assert!(t.accepted.get("lever").copied().unwrap_or(0) > 0, "no lever went through");
}

// ---------------------------------------------------------------------------------------------
// The FLI strategy: keel's `FliToken` (`strategy::fli`, Compound rules of `fli.md` §8) against
// Index Coop's `FlexibleLeverageStrategyExtension` from `@setprotocol/index-coop-contracts`
// 0.0.25's published bytecode, managing the Set above through Index Coop's `BaseManager`.

sol! {
    interface IBaseManager {
        function addAdapter(address adapter) external;
    }
    interface ISetManager {
        function setManager(address manager) external;
    }
    interface IChainlinkFeed {
        function setAnswer(int256 answer) external;
    }
    interface IFliExtension {
        struct ContractSettings { address setToken; address leverageModule; address comptroller; address collateralPriceOracle; address borrowPriceOracle; address targetCollateralCToken; address targetBorrowCToken; address collateralAsset; address borrowAsset; uint256 collateralDecimalAdjustment; uint256 borrowDecimalAdjustment; }
        struct MethodologySettings { uint256 targetLeverageRatio; uint256 minLeverageRatio; uint256 maxLeverageRatio; uint256 recenteringSpeed; uint256 rebalanceInterval; }
        struct ExecutionSettings { uint256 unutilizedLeveragePercentage; uint256 slippageTolerance; uint256 twapCooldownPeriod; }
        struct ExchangeSettings { uint256 twapMaxTradeSize; uint256 exchangeLastTradeTimestamp; uint256 incentivizedTwapMaxTradeSize; bytes leverExchangeData; bytes deleverExchangeData; }
        struct IncentiveSettings { uint256 etherReward; uint256 incentivizedLeverageRatio; uint256 incentivizedSlippageTolerance; uint256 incentivizedTwapCooldownPeriod; }
        function engage(string exchangeName) external;
        function rebalance(string exchangeName) external;
        function iterateRebalance(string exchangeName) external;
        function ripcord(string exchangeName) external;
        function disengage(string exchangeName) external;
        function updateCallerStatus(address[] callers, bool[] statuses) external;
        function shouldRebalance() external view returns (string[] memory, uint8[] memory);
        function getCurrentLeverageRatio() external view returns (uint256);
        function twapLeverageRatio() external view returns (uint256);
        function globalLastTradeTimestamp() external view returns (uint256);
        function getExchangeSettings(string exchangeName) external view returns (ExchangeSettings memory);
    }
}

const OPERATOR: Address = Address::repeat_byte(0x0e);
const KEEPER: Address = Address::repeat_byte(0x0c);
const ICC: &str = "@setprotocol/index-coop-contracts/artifacts/contracts";

/// The strategy on both sides.
struct Strategy {
    extension: Address,
    feeds: [Address; 2],
    token: FliToken,
}

/// Deploy the extension for the world's Set (its manager becomes Index Coop's `BaseManager`)
/// with the settings of `products/eth2x-fli-compound.toml` but for trade sizes scaled to the
/// Set, and keel's `FliToken` on the same market, pool, Set and settings.
fn strategy(rng: &mut ChaCha8Rng, w: &mut World) -> Strategy {
    let product = Product::from_toml(include_str!("../../../products/eth2x-fli-compound.toml")).unwrap();
    let mut fli = product.strategy(OPERATOR).unwrap();
    fli.incentive.ether_reward = U256::ZERO; // the extension holds no ether here
    let held = w.m.keel.supply_balance_stored(w.set, w.m.assets[WETH].id).unwrap();
    // chunks of 2–30% of the collateral, ripcord chunks twice that
    let twap = pmul(held, U256::from((rng.random_range(0.02..0.3) * 1e18) as u128)).unwrap().max(U256::from(1u8));
    let x = &mut fli.exchanges[0].1;
    (x.twap_max_trade_size, x.incentivized_twap_max_trade_size) = (twap, twap * U256::from(2u8));
    (x.lever_route, x.delever_route) = (ADAPTER.into(), ADAPTER.into());
    fli.exchanges[0].0 = ADAPTER.into();
    fli.allowed_callers.insert(KEEPER);
    let (m, e, i) = (&fli.methodology, &fli.execution, &fli.incentive);
    let c = &mut w.m.chain;
    let owner = c.sender;
    let mut feeds = [Address::ZERO; 2];
    for (k, f) in feeds.iter_mut().enumerate() {
        *f = c.deploy(&own_bytecode("ChainlinkFeed"), &[]).unwrap();
        let answer = I256::try_from(w.m.keel.markets[w.m.assets[k].id].feed.answer).unwrap();
        sent(c.transact(*f, IChainlinkFeed::setAnswerCall { answer }.abi_encode()), "feed");
    }
    let manager = c
        .deploy(
            &artifact(&format!("{ICC}/manager/BaseManager.sol/BaseManager.json")),
            &(w.set, OPERATOR, owner).abi_encode_params(),
        )
        .unwrap();
    let settings = IFliExtension::ContractSettings {
        setToken: w.set,
        leverageModule: w.leverage,
        comptroller: w.m.comptroller,
        collateralPriceOracle: feeds[WETH],
        borrowPriceOracle: feeds[USDC],
        targetCollateralCToken: w.m.assets[WETH].ctoken,
        targetBorrowCToken: w.m.assets[USDC].ctoken,
        collateralAsset: w.m.assets[WETH].token,
        borrowAsset: w.m.assets[USDC].token,
        collateralDecimalAdjustment: U256::from(fli.collateral_decimal_adjustment),
        borrowDecimalAdjustment: U256::from(fli.borrow_decimal_adjustment),
    };
    let methodology = IFliExtension::MethodologySettings {
        targetLeverageRatio: m.target_leverage_ratio,
        minLeverageRatio: m.min_leverage_ratio,
        maxLeverageRatio: m.max_leverage_ratio,
        recenteringSpeed: m.recentering_speed,
        rebalanceInterval: U256::from(m.rebalance_interval),
    };
    let execution = IFliExtension::ExecutionSettings {
        unutilizedLeveragePercentage: e.unutilized_leverage_percentage,
        slippageTolerance: e.slippage_tolerance,
        twapCooldownPeriod: U256::from(e.twap_cooldown_period),
    };
    let incentive = IFliExtension::IncentiveSettings {
        etherReward: i.ether_reward,
        incentivizedLeverageRatio: i.incentivized_leverage_ratio,
        incentivizedSlippageTolerance: i.incentivized_slippage_tolerance,
        incentivizedTwapCooldownPeriod: U256::from(i.incentivized_twap_cooldown_period),
    };
    let exchange = IFliExtension::ExchangeSettings {
        twapMaxTradeSize: twap,
        exchangeLastTradeTimestamp: U256::ZERO,
        incentivizedTwapMaxTradeSize: twap * U256::from(2u8),
        leverExchangeData: Bytes::new(),
        deleverExchangeData: Bytes::new(),
    };
    let args = (manager, settings, methodology, execution, incentive, vec![ADAPTER.to_string()], vec![exchange]);
    let code = artifact(&format!(
        "{ICC}/adapters/FlexibleLeverageStrategyExtension.sol/FlexibleLeverageStrategyExtension.json"
    ));
    let extension = c.deploy(&code, &args.abi_encode_params()).unwrap_or_else(|e| panic!("deploy extension: {e}"));
    sent(c.transact(w.set, ISetManager::setManagerCall { manager }.abi_encode()), "set manager");
    sent(
        c.transact_from(OPERATOR, manager, IBaseManager::addAdapterCall { adapter: extension }.abi_encode()),
        "adapter",
    );
    let callers = IFliExtension::updateCallerStatusCall { callers: vec![KEEPER], statuses: vec![true] };
    sent(c.transact_from(OPERATOR, extension, callers.abi_encode()), "callers");
    let token = FliToken {
        ledger: w.ledger.clone(),
        market: MoneyMarket::CompoundV2(w.m.keel.clone()),
        pools: BTreeMap::from([(ADAPTER.to_string(), w.keel_pool.clone())]),
        fli,
        account: w.set,
        collateral: w.m.assets[WETH].id,
        borrow: w.m.assets[USDC].id,
        idle_borrow: w.cash.balance,
        idle_borrow_unit: Some(w.cash.unit),
        protocol_fee: w.protocol_fee,
        initial_collateral_per_token: U256::ZERO,
        oracle_fill: false,
        underlying_is_borrow: false,
    };
    Strategy { extension, feeds, token }
}

/// Post every price again at `now` on both sides (the extension's Chainlink answers carry no
/// time; keel refuses a stale price, `fli.md` §17.1, so the suite keeps them fresh).
fn refresh_prices(w: &mut World, st: &mut Strategy, weth_e8: Option<i128>) {
    let now = w.m.chain.now;
    for k in [WETH, USDC] {
        let id = w.m.assets[k].id;
        let answer = if k == WETH {
            weth_e8.unwrap_or(w.m.keel.markets[id].feed.answer)
        } else {
            w.m.keel.markets[id].feed.answer
        };
        w.m.keel.post_price(id, answer, now);
        if let MoneyMarket::CompoundV2(km) = &mut st.token.market {
            km.post_price(id, answer, now);
        }
        let f = st.feeds[k];
        sent(
            w.m.chain
                .transact(f, IChainlinkFeed::setAnswerCall { answer: I256::try_from(answer).unwrap() }.abi_encode()),
            "feed",
        );
        if k == WETH {
            let price = U256::from(answer as u128) * U256::from(10u64).pow(U256::from(10u64));
            let ct = w.m.assets[WETH].ctoken;
            sent(
                w.m.chain.transact(w.m.oracle, IOracle::setUnderlyingPriceCall { cToken: ct, price }.abi_encode()),
                "p",
            );
        }
    }
}

/// The keel token's venues and books back into the world, for `check`.
fn sync_world(w: &mut World, st: &Strategy) {
    let MoneyMarket::CompoundV2(k) = &st.token.market else { unreachable!("a Compound market") };
    w.m.keel = k.clone();
    w.keel_pool = st.token.pools[ADAPTER].clone();
    w.ledger = st.token.ledger.clone();
    w.cash = st.token.cash().unwrap();
}

/// What a keel strategy error reads as from the extension (or the module it calls).
fn strategy_reason(e: &Error) -> String {
    match e {
        // fli.md §17.3: keel names the limit; the extension's SafeMath underflows
        Error::Fli(FliError::CannotDelever { .. } | FliError::NoBorrowCapacity { .. } | FliError::Insolvent) => {
            "SafeMath: subtraction overflow".into()
        }
        Error::Lending(_) => reason(e, true),
        _ => reason(e, false),
    }
}

/// The extension's state and views beside keel's. Once disengaging, keel's unwind (`fli.md`
/// §17.2: timestamps set, the TWAP cleared, rebalances refused) leaves only the leverage ratio to
/// compare.
fn check_strategy(w: &mut World, st: &Strategy, at: &str, disengaging: bool) {
    let now = w.m.chain.now;
    let x = st.extension;
    let c = &mut w.m.chain;
    let tok = &st.token;
    let chain_lr = c
        .call(x, IFliExtension::getCurrentLeverageRatioCall {}.abi_encode())
        .ok()
        .map(|r| IFliExtension::getCurrentLeverageRatioCall::abi_decode_returns(&r).unwrap());
    let keel_lr = tok.current_leverage_ratio(now).ok();
    if chain_lr.is_some() || keel_lr.is_some() {
        assert_eq!(chain_lr, keel_lr, "{at}: current leverage ratio");
    }
    if disengaging {
        return;
    }
    assert_eq!(
        read(c, x, IFliExtension::twapLeverageRatioCall {}),
        tok.fli.twap_leverage_ratio,
        "{at}: TWAP leverage ratio"
    );
    let global = read(c, x, IFliExtension::globalLastTradeTimestampCall {});
    assert_eq!(global, U256::from(tok.fli.global_last_trade_timestamp), "{at}: global last trade");
    let ex = read(c, x, IFliExtension::getExchangeSettingsCall { exchangeName: ADAPTER.into() });
    assert_eq!(
        ex.exchangeLastTradeTimestamp,
        U256::from(tok.fli.exchanges[0].1.last_trade_timestamp),
        "{at}: exchange last trade"
    );
    let chain_should = c.call(x, IFliExtension::shouldRebalanceCall {}.abi_encode()).ok().map(|r| {
        let r = IFliExtension::shouldRebalanceCall::abi_decode_returns(&r).unwrap();
        r._0.into_iter().zip(r._1).collect::<Vec<_>>()
    });
    let keel_should =
        tok.should_rebalance(now).ok().map(|v| v.into_iter().map(|(n, s)| (n, s as u8)).collect::<Vec<_>>());
    assert_eq!(chain_should, keel_should, "{at}: shouldRebalance");
}

fn run_strategy(seed: u64, t: &mut common::Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(0xf11_0000 + seed);
    let mut w = build(&mut rng);
    let mut st = strategy(&mut rng, &mut w);
    let mut fees = [U256::ZERO; 2];
    check(&mut w, &fees, seed, 0, "setup");
    check_strategy(&mut w, &st, &format!("seq {seed} setup"), false);
    let mut disengaging = false;
    let steps = rng.random_range(10..60);
    for step in 1..=steps {
        refresh_prices(&mut w, &mut st, None);
        let now = w.m.chain.now;
        let roll = if step == 1 {
            0
        } else if disengaging {
            99
        } else {
            rng.random_range(1..100)
        };
        let unlevered = w.m.keel.borrow_balance_stored(w.set, w.m.assets[USDC].id).unwrap_or_default().is_zero();
        let call = if roll == 0 || (roll < 50 && unlevered && rng.random_bool(0.8)) {
            Some("engage")
        } else if roll < 50 {
            // the keeper does what keel's shouldRebalance says, or, one time in four, calls
            // something to see both refuse it
            let due = st.token.should_rebalance(now).ok().and_then(|v| v.first().map(|x| x.1));
            let pick = ["rebalance", "iterate", "ripcord"][rng.random_range(0..3)];
            match due {
                Some(ShouldRebalance::Rebalance) if rng.random_bool(0.75) => Some("rebalance"),
                Some(ShouldRebalance::IterateRebalance) if rng.random_bool(0.75) => Some("iterate"),
                Some(ShouldRebalance::Ripcord) if rng.random_bool(0.75) => Some("ripcord"),
                _ if rng.random_bool(0.25) => Some(pick),
                _ => None,
            }
        } else if roll < 97 {
            None
        } else {
            Some("disengage")
        };
        let what: &'static str = match call {
            Some(name) => {
                let (from, data) = match name {
                    "engage" => (OPERATOR, IFliExtension::engageCall { exchangeName: ADAPTER.into() }.abi_encode()),
                    "rebalance" => (KEEPER, IFliExtension::rebalanceCall { exchangeName: ADAPTER.into() }.abi_encode()),
                    "iterate" => {
                        (KEEPER, IFliExtension::iterateRebalanceCall { exchangeName: ADAPTER.into() }.abi_encode())
                    }
                    "ripcord" => (KEEPER, IFliExtension::ripcordCall { exchangeName: ADAPTER.into() }.abi_encode()),
                    _ => (OPERATOR, IFliExtension::disengageCall { exchangeName: ADAPTER.into() }.abi_encode()),
                };
                let mut tok = st.token.clone();
                let ours = match name {
                    "engage" => tok.engage(from, ADAPTER, now),
                    "rebalance" => tok.rebalance(from, ADAPTER, now),
                    "iterate" => tok.iterate_rebalance(from, ADAPTER, now),
                    "ripcord" => tok.ripcord(from, ADAPTER, now),
                    _ => tok.disengage(from, ADAPTER, now),
                };
                let theirs = w.m.chain.transact_from(from, st.extension, data).map(|_| ()).map_err(|e| e.0);
                t.ops += 1;
                match (&ours, &theirs) {
                    (Ok(o), Ok(())) => {
                        if let Some(r) = &o.trade {
                            fees[if r.is_lever { WETH } else { USDC }] += r.protocol_fee;
                        }
                        st.token = tok;
                        *t.accepted.entry(name).or_default() += 1;
                    }
                    (Ok(o), Err(c)) if name == "iterate" && o.trade.is_none() && c == "Quantity is 0" => {
                        // fli.md §17.7: an iterate at its target ends the TWAP in keel
                        *t.ended.entry("iterate with nothing to trade (§17.7)").or_default() += 1;
                        return;
                    }
                    (Err(k), Err(c)) => {
                        let k = strategy_reason(k);
                        assert_eq!(&k, c, "seq {seed} step {step} {name}: refused by both, for different reasons");
                        *t.refused.entry(format!("{name}: {c}")).or_default() += 1;
                    }
                    _ => panic!("seq {seed} step {step} {name}: keel {ours:?}, the extension {theirs:?}"),
                }
                if name == "disengage" && ours.is_ok() {
                    disengaging = true;
                    // keel's unwind (fli.md §17.2): one step a TWAP cooldown
                    let cooldown = st.token.fli.execution.twap_cooldown_period;
                    w.m.chain.warp(cooldown + 1);
                }
                name
            }
            None if roll < 75 => {
                let dt = [rng.random_range(1..120), rng.random_range(120..7_200), rng.random_range(7_200..200_000)]
                    [rng.random_range(0..3)];
                w.m.chain.warp(dt);
                "time"
            }
            None => {
                // the oracle moves 1–12% (or crashes) and another trader moves the pool to it
                let id = w.m.assets[WETH].id;
                let old = w.m.keel.markets[id].feed.answer as f64 / 1e8;
                // one time in eight a crash of 15–30%, which a ripcord answers
                let usd = if rng.random_bool(0.125) {
                    old * (1.0 - rng.random_range(0.15..0.3))
                } else if rng.random_bool(0.5) {
                    old * (1.0 + rng.random_range(0.01..0.12))
                } else {
                    old * (1.0 - rng.random_range(0.01..0.12))
                };
                let e8 = (usd * 1e8) as i128;
                refresh_prices(&mut w, &mut st, Some(e8));
                let weth_first = w.m.assets[WETH].token < w.m.assets[USDC].token;
                let ratio = if weth_first { usd * 1e6 / 1e18 } else { 1e18 / (usd * 1e6) };
                let target = sqrt_price_x96_from_f64(ratio).unwrap();
                let zero_for_one = target < w.keel_pool.sqrt_price_x96();
                let amount = U256::from(10u64).pow(U256::from(40u64));
                let call = IDriver::swapCall {
                    zeroForOne: zero_for_one,
                    amountSpecified: I256::try_from(amount).unwrap(),
                    sqrtPriceLimitX96: target,
                };
                sent(w.m.chain.transact(w.driver, call.abi_encode()), "move the pool");
                let pool = st.token.pools.get_mut(ADAPTER).unwrap();
                pool.swap_exact_input(zero_for_one, amount, U256::ZERO, Some(target)).unwrap();
                "price"
            }
        };
        sync_world(&mut w, &st);
        check(&mut w, &fees, seed, step, what);
        check_strategy(&mut w, &st, &format!("seq {seed} step {step} after {what}"), disengaging);
        if disengaging && w.m.keel.borrow_balance_stored(w.set, w.m.assets[USDC].id).unwrap_or_default().is_zero() {
            *t.ended.entry("unwound by disengage").or_default() += 1;
            return;
        }
    }
}

#[test]
fn keel_fli_strategy_runs_as_the_index_coop_extension_does() {
    let mut t = common::Tally::default();
    let Some(n) = for_each_sequence(20, |seed| run_strategy(seed, &mut t)) else { return };
    eprintln!(
        "FLI strategy (FlexibleLeverageStrategyExtension): {n} sequences, {} calls; accepted by both {:?}",
        t.ops, t.accepted
    );
    eprintln!("refused by both: {:?}", t.refused);
    eprintln!("sequences ended: {:?}", t.ended);
}
