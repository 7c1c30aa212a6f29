//! keel-core's Perp v2 clearing house (`venue::perp_v2`: `vamm_swap`, `settle_trade`, funding,
//! `mark_price`, `liquidate`; the vAMM's oracle in `venue::oracle`; the token's `PriceGuards`)
//! against Perpetual Protocol's Curie contracts from `@perp/curie-contract` 2.8.4's published
//! bytecode — `ClearingHouse`, `Exchange`, `OrderBook`, `AccountBalance`, `Vault`,
//! `InsuranceFund`, `MarketRegistry`, `ClearingHouseConfig`, `BaseToken`, `QuoteToken` — on a
//! `UniswapV3Pool` from `@uniswap/v3-core`, with keel's own index feed
//! (`evm/contracts/PerpIndexFeed.sol`) and USDC.
//!
//! Random sequences: a market at a random price in a random fee tier, a random exchange fee
//! ratio and insurance-fund share and a random `maxTickCrossedWithinBlock`; a maker's orders
//! (one full-range, 0–6 narrow or wide); then, over days, a taker's deposits and
//! `openPosition`s — both directions, exact input and exact output, from dust to 20x the
//! collateral, reductions, exact closes and reversals — among index moves, time passing, another
//! trader moving the market and liquidation attempts. Half the sequences have crashes: once the
//! taker is above 4x, the market is pushed against it, the index follows and time passes until
//! it is liquidated. Both sides must accept or refuse together, with the same reason
//! (`CH_NEFCI`, `CH_NEFCM`, `CH_EAV`, `EX_OPB`, `EX_OPLAS`, `UB_UOA`); after every operation the
//! mark price, the taker's position size, open notional, owed realised and unrealised PnL,
//! pending funding, vault balance (bad debt covered) and free collateral, the insurance fund's
//! fees, and the pool's price, tick and liquidity must be equal to the wei.

use alloy_primitives::aliases::{I24, U160};
use alloy_primitives::{Address, FixedBytes, I256, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use keel_conformance::{Chain, artifact, for_each_sequence, own_bytecode};
use keel_core::strategy::fli::perp_token::PriceGuards;
use keel_core::venue::amm::{LiquidityPosition, Pool, PoolToken, sqrt_price_at_tick, tick_spacing_for_fee};
use keel_core::venue::oracle::Oracle;
use keel_core::venue::perp_v2::{
    MarketFees, PerpV2Error, PerpV2Market, PerpV2Params, TwapConfig, funding_market_twap_x96, mark_price, market_price,
    vamm_swap,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

sol! {
    interface IInit {
        function initialize() external;
    }
    interface IConfig {
        function setSettlementTokenBalanceCap(uint256 cap) external;
    }
    interface IVirtual {
        function initialize(string name, string symbol) external;
        function mintMaximumTo(address recipient) external;
        function addWhitelist(address account) external;
    }
    interface IBase {
        function initialize(string name, string symbol, address priceFeed) external;
    }
    interface IFactory {
        function createPool(address tokenA, address tokenB, uint24 fee) external returns (address pool);
    }
    interface IPool {
        function initialize(uint160 sqrtPriceX96) external;
        function increaseObservationCardinalityNext(uint16 n) external;
        function slot0() external view returns (uint160 sqrtPriceX96, int24 tick, uint16 observationIndex, uint16 observationCardinality, uint16 observationCardinalityNext, uint8 feeProtocol, bool unlocked);
        function liquidity() external view returns (uint128);
    }
    interface IMarketRegistry {
        function initialize(address factory, address quoteToken) external;
        function addPool(address baseToken, uint24 feeRatio) external returns (address);
        function setFeeRatio(address baseToken, uint24 feeRatio) external;
        function setInsuranceFundFeeRatio(address baseToken, uint24 ratio) external;
        function setMaxOrdersPerMarket(uint8 n) external;
    }
    interface IOrderBook {
        function initialize(address marketRegistry) external;
        function setExchange(address exchange) external;
    }
    interface IAccountBalance {
        function initialize(address config, address orderBook) external;
        function setVault(address vault) external;
        function getTakerPositionSize(address trader, address baseToken) external view returns (int256);
        function getTakerOpenNotional(address trader, address baseToken) external view returns (int256);
        function getPnlAndPendingFee(address trader) external view returns (int256 owedRealizedPnl, int256 unrealizedPnl, uint256 pendingFee);
        function getMarkPrice(address baseToken) external view returns (uint256);
    }
    interface IExchange {
        function initialize(address marketRegistry, address orderBook, address config) external;
        function setAccountBalance(address accountBalance) external;
        function setMaxTickCrossedWithinBlock(address baseToken, uint24 n) external;
    }
    interface IInsuranceFund {
        function initialize(address token) external;
        function setVault(address vault) external;
    }
    interface IVault {
        function initialize(address insuranceFund, address config, address accountBalance, address exchange) external;
        function deposit(address token, uint256 amount) external;
        function getFreeCollateralByRatio(address trader, uint24 ratio) external view returns (int256);
        function getBalance(address trader) external view returns (int256);
    }
    interface ICallee {
        function setClearingHouse(address clearingHouse) external;
    }
    interface IClearingHouse {
        function initialize(address config, address vault, address quoteToken, address factory, address exchange, address accountBalance, address insuranceFund) external;
        struct AddLiquidityParams { address baseToken; uint256 base; uint256 quote; int24 lowerTick; int24 upperTick; uint256 minBase; uint256 minQuote; bool useTakerBalance; uint256 deadline; }
        struct AddLiquidityResponse { uint256 base; uint256 quote; uint256 fee; uint256 liquidity; }
        function addLiquidity(AddLiquidityParams params) external returns (AddLiquidityResponse);
        struct OpenPositionParams { address baseToken; bool isBaseToQuote; bool isExactInput; uint256 amount; uint256 oppositeAmountBound; uint256 deadline; uint160 sqrtPriceLimitX96; bytes32 referralCode; }
        function openPosition(OpenPositionParams params) external returns (uint256 base, uint256 quote);
    }
    interface ILiquidate {
        function liquidate(address trader, address baseToken) external;
    }
    interface IExchangeView {
        function getPendingFundingPayment(address trader, address baseToken) external view returns (int256);
    }
    interface IToken {
        function mint(address to, uint256 amount) external;
        function approve(address spender, uint256 amount) external returns (bool);
    }
    interface IFeed {
        function setPrice(uint256 price) external;
    }
}

const CURIE: &str = "@perp/curie-contract/artifacts/contracts";
const E18: u128 = 1_000_000_000_000_000_000;
/// The settlement token's decimals (USDC) and the factor to wad.
const USDC_TO_WAD: u128 = 1_000_000_000_000;

fn curie(name: &str) -> alloy_primitives::Bytes {
    artifact(&format!("{CURIE}/{name}.sol/{name}.json"))
}

fn ok(c: &mut Chain, to: Address, data: Vec<u8>, what: &str) -> alloy_primitives::Bytes {
    c.transact(to, data).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Deploy one of Curie's upgradeable contracts (no proxy: the implementation itself) and call
/// its `initialize` with `init`.
fn deploy(c: &mut Chain, name: &str, init: Vec<u8>) -> Address {
    let a = c.deploy(&curie(name), &[]).unwrap_or_else(|e| panic!("deploy {name}: {e}"));
    ok(c, a, init, name);
    a
}

/// The Curie deployment of one market.
struct Curie {
    chain: Chain,
    usdc: Address,
    feed: Address,
    base: Address,
    pool: Address,
    vault: Address,
    account_balance: Address,
    exchange: Address,
    insurance_fund: Address,
    clearing_house: Address,
}

impl Curie {
    fn call<C: SolCall>(&mut self, to: Address, call: C) -> C::Return {
        let out = self.chain.call(to, call.abi_encode()).unwrap_or_else(|e| panic!("view: {e}"));
        C::abi_decode_returns(&out).expect("decode")
    }

    fn deposit(&mut self, who: Address, usdc: u128) {
        let (token, vault) = (self.usdc, self.vault);
        ok(&mut self.chain, token, IToken::mintCall { to: who, amount: U256::from(usdc) }.abi_encode(), "mint");
        self.chain
            .transact_from(who, token, IToken::approveCall { spender: vault, amount: U256::MAX }.abi_encode())
            .expect("approve");
        self.chain
            .transact_from(who, vault, IVault::depositCall { token, amount: U256::from(usdc) }.abi_encode())
            .unwrap_or_else(|e| panic!("deposit: {e}"));
    }

    fn slot0(&mut self) -> (U160, i32, u128) {
        let s = self.call(self.pool, IPool::slot0Call {});
        let l = self.call(self.pool, IPool::liquidityCall {});
        (s.sqrtPriceX96, s.tick.as_i32(), l)
    }
}

/// Deploy Curie as its test fixture wires it: one market of `base` over `quote` on a Uniswap v3
/// pool at `sqrt_price` with fee tier `fee`.
fn deploy_curie(fee: u32, sqrt_price: U160, index: U256, fees: MarketFees, max_tick: u32) -> Curie {
    let mut c = Chain::new();
    let usdc = c
        .deploy(&own_bytecode("TestToken"), &("USDC".to_string(), U256::from(6u8)).abi_encode_params())
        .expect("deploy USDC");
    let feed = c.deploy(&own_bytecode("PerpIndexFeed"), &[]).expect("deploy feed");
    ok(&mut c, feed, IFeed::setPriceCall { price: index }.abi_encode(), "index");
    let factory = c
        .deploy(&artifact("@uniswap/v3-core/artifacts/contracts/UniswapV3Factory.sol/UniswapV3Factory.json"), &[])
        .expect("deploy factory");
    let config = deploy(&mut c, "ClearingHouseConfig", IInit::initializeCall {}.abi_encode());
    ok(&mut c, config, IConfig::setSettlementTokenBalanceCapCall { cap: U256::MAX }.abi_encode(), "cap");
    let quote = deploy(
        &mut c,
        "QuoteToken",
        IVirtual::initializeCall { name: "vUSD".into(), symbol: "vUSD".into() }.abi_encode(),
    );
    // the base must be token0: deploy until its address sorts below the quote's
    let base = loop {
        let b = c.deploy(&curie("BaseToken"), &[]).expect("deploy BaseToken");
        if b < quote {
            break b;
        }
    };
    ok(
        &mut c,
        base,
        IBase::initializeCall { name: "vETH".into(), symbol: "vETH".into(), priceFeed: feed }.abi_encode(),
        "base",
    );
    let pool = Address::abi_decode(&ok(
        &mut c,
        factory,
        IFactory::createPoolCall { tokenA: base, tokenB: quote, fee: fee.try_into().unwrap() }.abi_encode(),
        "createPool",
    ))
    .unwrap();
    ok(&mut c, pool, IPool::initializeCall { sqrtPriceX96: sqrt_price }.abi_encode(), "pool initialize");
    // the mark price reads 15 s and 30 min TWAPs: the pool must keep more than one observation
    ok(&mut c, pool, IPool::increaseObservationCardinalityNextCall { n: 16 }.abi_encode(), "cardinality");

    let registry =
        deploy(&mut c, "MarketRegistry", IMarketRegistry::initializeCall { factory, quoteToken: quote }.abi_encode());
    let order_book = deploy(&mut c, "OrderBook", IOrderBook::initializeCall { marketRegistry: registry }.abi_encode());
    let init = IAccountBalance::initializeCall { config, orderBook: order_book }.abi_encode();
    let account_balance = deploy(&mut c, "AccountBalance", init);
    let init = IExchange::initializeCall { marketRegistry: registry, orderBook: order_book, config }.abi_encode();
    let exchange = deploy(&mut c, "Exchange", init);
    ok(&mut c, exchange, IExchange::setAccountBalanceCall { accountBalance: account_balance }.abi_encode(), "ex ab");
    ok(&mut c, order_book, IOrderBook::setExchangeCall { exchange }.abi_encode(), "ob exchange");
    let insurance_fund = deploy(&mut c, "InsuranceFund", IInsuranceFund::initializeCall { token: usdc }.abi_encode());
    let init =
        IVault::initializeCall { insuranceFund: insurance_fund, config, accountBalance: account_balance, exchange };
    let vault = deploy(&mut c, "Vault", init.abi_encode());
    ok(&mut c, insurance_fund, IInsuranceFund::setVaultCall { vault }.abi_encode(), "if vault");
    ok(&mut c, account_balance, IAccountBalance::setVaultCall { vault }.abi_encode(), "ab vault");
    let init = IClearingHouse::initializeCall {
        config,
        vault,
        quoteToken: quote,
        factory,
        exchange,
        accountBalance: account_balance,
        insuranceFund: insurance_fund,
    };
    let clearing_house = deploy(&mut c, "ClearingHouse", init.abi_encode());
    for token in [quote, base] {
        ok(&mut c, token, IVirtual::mintMaximumToCall { recipient: clearing_house }.abi_encode(), "mint max");
        ok(&mut c, token, IVirtual::addWhitelistCall { account: clearing_house }.abi_encode(), "whitelist ch");
        ok(&mut c, token, IVirtual::addWhitelistCall { account: pool }.abi_encode(), "whitelist pool");
    }
    for callee in [registry, order_book, exchange, account_balance, vault] {
        ok(&mut c, callee, ICallee::setClearingHouseCall { clearingHouse: clearing_house }.abi_encode(), "set ch");
    }
    let tier = fee.try_into().unwrap();
    ok(&mut c, registry, IMarketRegistry::addPoolCall { baseToken: base, feeRatio: tier }.abi_encode(), "addPool");
    let ex = fees.exchange_fee_ratio.try_into().unwrap();
    ok(&mut c, registry, IMarketRegistry::setFeeRatioCall { baseToken: base, feeRatio: ex }.abi_encode(), "fee");
    let share = fees.insurance_fund_fee_ratio.try_into().unwrap();
    ok(
        &mut c,
        registry,
        IMarketRegistry::setInsuranceFundFeeRatioCall { baseToken: base, ratio: share }.abi_encode(),
        "if fee",
    );
    ok(&mut c, registry, IMarketRegistry::setMaxOrdersPerMarketCall { n: 255 }.abi_encode(), "max orders");
    let n = max_tick.try_into().unwrap();
    ok(&mut c, exchange, IExchange::setMaxTickCrossedWithinBlockCall { baseToken: base, n }.abi_encode(), "max tick");
    Curie { chain: c, usdc, feed, base, pool, vault, account_balance, exchange, insurance_fund, clearing_house }
}

fn i24(t: i32) -> I24 {
    I24::try_from(t).unwrap()
}

/// The reason code a refusal starts with (`CH_NEFCI: …` → `CH_NEFCI`).
fn code(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().to_string()
}

/// `SettlementTokenMath.formatSettlementToken` for 6 decimals: down, toward −∞.
fn to_usdc(x: I256) -> I256 {
    let d = I256::try_from(USDC_TO_WAD).unwrap();
    let q = x / d;
    if x.is_negative() && x % d != I256::ZERO { q - I256::ONE } else { q }
}

/// A rough size for choosing amounts (never for money).
fn float(x: impl ToString) -> f64 {
    x.to_string().parse().expect("number")
}

#[derive(Default)]
struct Tally {
    ops: u64,
    accepted: BTreeMap<&'static str, u64>,
    both_refused: BTreeMap<String, u64>,
    makers: u64,
    seconds: u64,
    /// Liquidations of an account under water (bad debt).
    under_water: u64,
    /// The lowest margin ratio the taker reached (account value / position value).
    min_margin_ratio: Option<f64>,
}

/// keel's side of the market: the vAMM and its oracle, the clearing house's global funding and
/// the taker's account (`market`), the price guards, the insurance fund's fees.
#[derive(Clone)]
struct Keel {
    pool: Pool,
    oracle: Oracle,
    market: PerpV2Market,
    guards: PriceGuards,
    fees: MarketFees,
    twap: TwapConfig,
    first_trade: Option<u64>,
    insurance_fees: U256,
}

impl Keel {
    /// What every clearing-house call does first (`Exchange.settleFunding`): the global funding
    /// growth to `now` from the market and index TWAPs, and the tick the price guard measures from.
    fn settle_block(&mut self, now: u64, index: U256) -> Result<(), String> {
        let twap = funding_market_twap_x96(&self.oracle, &self.pool, now, self.first_trade, self.twap)
            .map_err(|e| e.to_string())?;
        self.market.accrue_funding_x96(now, twap, index).map_err(|e| e.to_string())?;
        self.guards.observe(now, self.pool.tick());
        Ok(())
    }

    fn mark(&self, now: u64, index: U256) -> U256 {
        mark_price(&self.oracle, &self.pool, now, index, index, self.twap).expect("mark price")
    }

    /// One `openPosition`, by the taker (booked on `market`) or by another trader (only the
    /// vAMM, the oracle, the global funding and the insurance fund see it). Atomic.
    fn open(
        &mut self,
        taker: bool,
        now: u64,
        index: U256,
        b2q: bool,
        exact_in: bool,
        amount: U256,
    ) -> Result<(), String> {
        let mut k = self.clone();
        k.settle_block(now, index)?;
        let mark = k.mark(now, index);
        let spread = PriceGuards::spread(&k.pool, index).map_err(|e| e.to_string())?;
        let tick_before = k.pool.tick();
        let swap = vamm_swap(&mut k.pool, k.fees, b2q, exact_in, amount, None).map_err(|e| e.to_string())?;
        k.guards.check(spread, &k.pool, index).map_err(|e| e.to_string())?;
        if k.pool.tick() != tick_before {
            k.oracle.write(now, tick_before);
        }
        if taker {
            k.market
                .settle_trade(swap.exchanged_position_size, swap.quote(), mark)
                .map_err(|e: PerpV2Error| e.to_string())?;
        }
        k.first_trade.get_or_insert(now);
        k.insurance_fees += swap.insurance_fund_fee;
        *self = k;
        Ok(())
    }

    /// `liquidate(taker, base)` by a well-funded liquidator. Atomic. Whether the account was
    /// under water (all of the penalty to the liquidator).
    fn liquidate(&mut self, now: u64, index: U256) -> Result<bool, String> {
        let mut k = self.clone();
        k.settle_block(now, index)?;
        let mark = k.mark(now, index);
        let l = k.market.liquidate(mark).map_err(|e| e.to_string())?;
        k.insurance_fees += l.to_insurance_fund;
        *self = k;
        Ok(l.to_insurance_fund.is_zero() && !l.penalty.is_zero())
    }
}

fn run_sequence(seed: u64, t: &mut Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(0x9e27_0000 + seed);
    let fee = [500u32, 3000, 10000][rng.random_range(0..3)];
    let spacing = tick_spacing_for_fee(fee).unwrap();
    let price: f64 = 10f64.powf(rng.random_range(0.0..4.5)); // $1 to ~$30 000 a base
    let tick0 = ((price.ln() / 1.0001f64.ln()) as i32).div_euclid(spacing) * spacing + rng.random_range(0..spacing);
    let sqrt0 = sqrt_price_at_tick(tick0).unwrap() + U160::from(rng.random_range(0u64..1_000_000));
    let fees = MarketFees {
        exchange_fee_ratio: [fee, 0, 100, 500, 1000, 2500, 10000][rng.random_range(0..7)],
        insurance_fund_fee_ratio: [0, 100_000, 250_000, 1_000_000][rng.random_range(0..4)],
    };
    let max_tick = [1000u32, 1000, 250, 50][rng.random_range(0..4)];
    let index0 = market_price(sqrt0).unwrap();
    let opened = Chain::new().now;
    let mut cu = deploy_curie(fee, sqrt0, index0, fees, max_tick);
    let ctx = format!("seed {seed} (fee {fee}, {fees:?}, max tick {max_tick}, price {price:.2})");
    // the insurance fund's own USDC backs bad debt (`CH_IIC` otherwise)
    let (usdc, fund) = (cu.usdc, cu.insurance_fund);
    ok(&mut cu.chain, usdc, IToken::mintCall { to: fund, amount: U256::from(10u128.pow(24)) }.abi_encode(), "fund");

    // the maker, half an hour after the pool opened (a settlement reads 15-minute TWAPs): a
    // full-range order and some narrow or wide ones around the price
    cu.chain.warp(1800);
    let maker = Address::repeat_byte(0x3a);
    cu.deposit(maker, 10u128.pow(24)); // 1e18 USDC
    let full = (-887272 / spacing) * spacing;
    let mut ranges = vec![(full, -full)];
    for _ in 0..rng.random_range(0..=6) {
        let center = tick0.div_euclid(spacing) + rng.random_range(-300..=300);
        let half = if rng.random_bool(0.5) { rng.random_range(1..=10) } else { rng.random_range(10..=3000) };
        let (lo, hi) = ((center - half) * spacing, (center + half) * spacing);
        if lo > full && hi < -full {
            ranges.push((lo, hi));
        }
    }
    let mut positions = Vec::new();
    let mut depth = 0f64; // quote in the full-range order
    for (lo, hi) in ranges {
        // depth from $10k to $100M of quote in the order
        let quote_amount = 10f64.powf(rng.random_range(4.0..8.0)) * 1e18;
        if depth == 0.0 {
            depth = quote_amount;
        }
        let base_amount = quote_amount / price;
        let r = cu.chain.transact_from(
            maker,
            cu.clearing_house,
            IClearingHouse::addLiquidityCall {
                params: IClearingHouse::AddLiquidityParams {
                    baseToken: cu.base,
                    base: U256::from(base_amount as u128),
                    quote: U256::from(quote_amount as u128),
                    lowerTick: i24(lo),
                    upperTick: i24(hi),
                    minBase: U256::ZERO,
                    minQuote: U256::ZERO,
                    useTakerBalance: false,
                    deadline: U256::MAX,
                },
            }
            .abi_encode(),
        );
        let r = IClearingHouse::addLiquidityCall::abi_decode_returns(&r.unwrap_or_else(|e| panic!("{ctx}: add {e}")))
            .unwrap();
        let liquidity: u128 = r.liquidity.to();
        if liquidity > 0 {
            positions.push(LiquidityPosition { tick_lower: lo, tick_upper: hi, liquidity });
        }
        t.makers += 1;
    }
    let token = |s: &str| PoolToken { symbol: s.into(), decimals: 18 };
    let pool = Pool::new("vAMM", token("vETH"), token("vUSD"), fee, sqrt0, &positions).unwrap();
    assert_eq!(cu.slot0(), (pool.sqrt_price_x96(), pool.tick(), pool.liquidity()), "{ctx}: pool after the orders");
    // the pool's oracle: opened with one observation, grown to 16, written by the full-range mint
    let mut oracle = Oracle::new(opened);
    oracle.grow(16);
    oracle.write(cu.chain.now, pool.tick());
    let mut k = Keel {
        pool,
        oracle,
        // the maker's order was the market's first settlement
        market: PerpV2Market::new(PerpV2Params::default(), cu.chain.now),
        guards: PriceGuards { max_tick_crossed: max_tick, max_price_spread: 100_000, ..Default::default() },
        fees,
        twap: TwapConfig::default(),
        first_trade: None,
        insurance_fees: U256::ZERO,
    };

    // trading starts an hour later
    cu.chain.warp(3600);
    let taker = Address::repeat_byte(0x7a);
    let mover = Address::repeat_byte(0x6b); // another trader who moves the market
    let liquidator = Address::repeat_byte(0x1d);
    cu.deposit(mover, 10u128.pow(24));
    cu.deposit(liquidator, 10u128.pow(24));
    let mut index = index0;
    let crashes = rng.random_bool(0.5);
    let first = 10u128.pow(rng.random_range(2..=7)) * 1_000_000; // $100 to $10M
    cu.deposit(taker, first);
    k.market.deposit(U256::from(first * USDC_TO_WAD)).unwrap();
    let mark = k.mark(cu.chain.now, index);
    let on_chain_mark = cu.call(cu.account_balance, IAccountBalance::getMarkPriceCall { baseToken: cu.base });
    assert_eq!(on_chain_mark, mark, "{ctx}: the mark price of a pool that sat at one tick is that tick's price");

    for step in 0..rng.random_range(5..60) {
        t.ops += 1;
        let now = cu.chain.now;
        let started = now;
        // in a crash, other traders push the market against a leveraged taker, the index
        // follows and time passes, until the taker is liquidated
        let leverage = {
            let mark = k.mark(now, index);
            let av = float(k.market.account_value(mark).unwrap());
            float(k.market.position_value(mark).unwrap().unsigned_abs()) / av.max(1.0)
        };
        let crash = crashes && leverage > 4.0;
        let roll = if crash {
            // index, time, mover, liquidation
            [10, 10, 20, 20, 40, 40, 40, 40, 52, 52][rng.random_range(0..10)]
        } else {
            rng.random_range(0..100)
        };
        let p = float(market_price(k.pool.sqrt_price_x96()).unwrap()) / E18 as f64;
        let (kind, ours, theirs): (&str, Result<(), String>, Result<_, keel_conformance::Revert>) = if roll < 4 {
            let usdc = rng.random_range(1..=1_000_000u128) * 1_000_000;
            cu.deposit(taker, usdc);
            k.market.deposit(U256::from(usdc * USDC_TO_WAD)).unwrap();
            ("deposit", Ok(()), Ok(Default::default()))
        } else if roll < 16 {
            // the index moves up to 15% around the market price (the price band is 10%), or
            // follows it within 1%
            let bps = if !crash && rng.random_bool(0.5) {
                rng.random_range(8_500u64..=11_500)
            } else {
                rng.random_range(9_900..=10_100)
            };
            index = market_price(k.pool.sqrt_price_x96()).unwrap() * U256::from(bps) / U256::from(10_000u64);
            let feed = cu.feed;
            ok(&mut cu.chain, feed, IFeed::setPriceCall { price: index }.abi_encode(), "index");
            ("index", Ok(()), Ok(Default::default()))
        } else if roll < 30 {
            // time passes: seconds to a day
            let dt = if crash {
                rng.random_range(15..900)
            } else {
                [rng.random_range(1..30), rng.random_range(30..3_600), rng.random_range(3_600..86_400)]
                    [rng.random_range(0..3)]
            };
            cu.chain.warp(dt);
            ("time", Ok(()), Ok(Default::default()))
        } else if roll < 50 {
            // another trader moves the market, against the taker more often than not: up to
            // 20% of the full-range order's depth
            let against = k.market.account.base.is_positive();
            let b2q = if crash || rng.random_bool(0.6) { against } else { !against };
            let notional = if crash {
                depth * rng.random_range(0.002..0.03)
            } else {
                depth * 10f64.powf(rng.random_range(-5.0..-0.7))
            };
            let amount = if b2q { notional / p } else { notional };
            let amount = U256::from(amount as u128).max(U256::from(1u64));
            let ours = k.open(false, now, index, b2q, true, amount);
            ("mover", ours, cu.chain.transact_from(mover, cu.clearing_house, open_call(cu.base, b2q, true, amount)))
        } else if roll < 56 || k.market.is_liquidatable(k.mark(now, index)).unwrap_or(false) {
            let ours = k.liquidate(now, index).map(|under_water| t.under_water += u64::from(under_water));
            let call = ILiquidate::liquidateCall { trader: taker, baseToken: cu.base }.abi_encode();
            ("liquidate", ours, cu.chain.transact_from(liquidator, cu.clearing_house, call))
        } else {
            let size = k.market.account.base;
            let collateral = float(k.market.account.collateral) / E18 as f64;
            let (b2q, exact_in, amount) = if !size.is_zero() && rng.random_bool(0.3) {
                // reduce, close exactly or reverse: the position's base, in its own unit
                let close = size.is_positive();
                let frac = [0.25, 0.5, 1.0, 1.0, 1.5, 3.0][rng.random_range(0..6)];
                let abs = U256::from((float(size.unsigned_abs()) * frac) as u128);
                let abs = if frac == 1.0 { size.unsigned_abs() } else { abs };
                // selling base: exact input; buying it back: exact output
                (close, close, abs)
            } else {
                let b2q = rng.random_bool(0.5);
                let exact_in = rng.random_bool(0.5);
                // dust to 20x, often close to the 10x the initial margin allows
                let leverage = if rng.random_bool(0.3) {
                    rng.random_range(5.0..9.9)
                } else {
                    10f64.powf(rng.random_range(-6.0..1.3))
                };
                let notional = collateral * leverage;
                // the exact side is base for a sale by input or a purchase by output
                let amount = if b2q == exact_in { notional / p } else { notional };
                (b2q, exact_in, U256::from((amount * 1e18) as u128).max(U256::from(1u64)))
            };
            let ours = k.open(true, now, index, b2q, exact_in, amount);
            ("open", ours, cu.chain.transact_from(taker, cu.clearing_house, open_call(cu.base, b2q, exact_in, amount)))
        };
        let what = format!("{ctx} step {step} at +{}s: {kind}", now - opened);
        match (&ours, &theirs) {
            (Ok(()), Ok(_)) => *t.accepted.entry(kind).or_default() += 1,
            (Err(a), Err(b)) => {
                assert_eq!(code(a), code(&b.0), "{what}: both refused, for different reasons");
                *t.both_refused.entry(format!("{kind} {}", code(a))).or_default() += 1;
            }
            _ => panic!("{what}: keel {ours:?}, contract {theirs:?}"),
        }
        // the books, to the wei, as the views see them now (funding accrued to this block)
        let now = cu.chain.now;
        let mut view = k.clone();
        view.settle_block(now, index).unwrap_or_else(|e| panic!("{what}: view {e}"));
        let mark = view.mark(now, index);
        let m = &view.market;
        let (base, ab) = (cu.base, cu.account_balance);
        let at = format!("{ctx} after step {step} ({kind})");
        assert_eq!(cu.call(ab, IAccountBalance::getMarkPriceCall { baseToken: base }), mark, "{at}: mark price");
        let size = cu.call(ab, IAccountBalance::getTakerPositionSizeCall { trader: taker, baseToken: base });
        let notional = cu.call(ab, IAccountBalance::getTakerOpenNotionalCall { trader: taker, baseToken: base });
        assert_eq!((size, notional), (m.account.base, m.account.quote), "{at}: position");
        let pnl = cu.call(ab, IAccountBalance::getPnlAndPendingFeeCall { trader: taker });
        assert_eq!(pnl.owedRealizedPnl, m.account.owed_realized_pnl, "{at}: owed realised PnL");
        let unrealized = m.position_value(mark).unwrap() + m.account.quote;
        assert_eq!(pnl.unrealizedPnl, unrealized, "{at}: unrealised PnL");
        let funding =
            cu.call(cu.exchange, IExchangeView::getPendingFundingPaymentCall { trader: taker, baseToken: base });
        assert_eq!(funding, m.pending_funding().unwrap(), "{at}: pending funding");
        let fund = cu.call(ab, IAccountBalance::getPnlAndPendingFeeCall { trader: cu.insurance_fund });
        assert_eq!(fund.owedRealizedPnl, I256::try_from(view.insurance_fees).unwrap(), "{at}: insurance fund fees");
        let balance = cu.call(cu.vault, IVault::getBalanceCall { trader: taker });
        let unit = I256::try_from(USDC_TO_WAD).unwrap();
        assert_eq!(balance * unit, m.account.collateral, "{at}: the vault balance (bad debt covered)");
        let free = cu.call(
            cu.vault,
            IVault::getFreeCollateralByRatioCall { trader: taker, ratio: 100_000u32.try_into().unwrap() },
        );
        let ours = m.free_collateral(mark, m.params.im_ratio).unwrap();
        assert_eq!(free, to_usdc(ours), "{at}: free collateral by the initial margin ratio");
        assert_eq!(cu.slot0(), (k.pool.sqrt_price_x96(), k.pool.tick(), k.pool.liquidity()), "{at}: pool");
        t.seconds += cu.chain.now - started;
        if !m.account.base.is_zero() {
            let r = float(m.margin_ratio(mark).unwrap()) / E18 as f64;
            t.min_margin_ratio = Some(t.min_margin_ratio.map_or(r, |x: f64| x.min(r)));
        }
    }
}

fn open_call(base: Address, b2q: bool, exact_in: bool, amount: U256) -> Vec<u8> {
    IClearingHouse::openPositionCall {
        params: IClearingHouse::OpenPositionParams {
            baseToken: base,
            isBaseToQuote: b2q,
            isExactInput: exact_in,
            amount,
            oppositeAmountBound: U256::ZERO,
            deadline: U256::MAX,
            sqrtPriceLimitX96: U160::ZERO,
            referralCode: FixedBytes::ZERO,
        },
    }
    .abi_encode()
}

#[test]
fn random_sequences_match_perp_curie_to_the_wei() {
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(30, |seed| run_sequence(seed, &mut t)) else { return };
    let refused: u64 = t.both_refused.values().sum();
    eprintln!(
        "perp v2: {n} sequences, {} maker orders, {} operations over {:.1} simulated days, {refused} refused by both with the same reason; 0 mismatches",
        t.makers,
        t.ops,
        t.seconds as f64 / 86_400.0
    );
    eprintln!(
        "  lowest margin ratio of the taker: {:.4}; liquidations under water: {}",
        t.min_margin_ratio.unwrap_or(f64::NAN),
        t.under_water
    );
    for (k, v) in &t.accepted {
        eprintln!("  {k}: {v} accepted by both");
    }
    for (k, v) in &t.both_refused {
        eprintln!("  {k}: {v} refused by both");
    }
}
