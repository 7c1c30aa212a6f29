//! Perpetual Protocol's Curie deployment of one market, as the Perp and Set PerpV2 suites
//! deploy it: `ClearingHouse`, `Exchange`, `OrderBook`, `AccountBalance`, `Vault`,
//! `InsuranceFund`, `MarketRegistry`, `ClearingHouseConfig`, `BaseToken`, `QuoteToken` from
//! `@perp/curie-contract` 2.8.4 on a `UniswapV3Pool` from `@uniswap/v3-core`, with keel's own
//! index feed (`evm/contracts/PerpIndexFeed.sol`) and USDC.
#![allow(dead_code)] // each suite uses a part

use alloy_primitives::aliases::{I24, U160};
use alloy_primitives::{Address, FixedBytes, I256, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use keel_conformance::{Chain, artifact, own_bytecode};
use keel_core::venue::amm::{LiquidityPosition, Pool, PoolToken};
use keel_core::venue::oracle::Oracle;
use keel_core::venue::perp_v2::MarketFees;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

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
        function getBase(address trader, address baseToken) external view returns (int256);
        function getQuote(address trader, address baseToken) external view returns (int256);
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

pub const CURIE: &str = "@perp/curie-contract/artifacts/contracts";
pub const E18: u128 = 1_000_000_000_000_000_000;
/// The settlement token's decimals (USDC) and the factor to wad.
pub const USDC_TO_WAD: u128 = 1_000_000_000_000;

pub fn curie(name: &str) -> alloy_primitives::Bytes {
    artifact(&format!("{CURIE}/{name}.sol/{name}.json"))
}

pub fn ok(c: &mut Chain, to: Address, data: Vec<u8>, what: &str) -> alloy_primitives::Bytes {
    c.transact(to, data).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Deploy one of Curie's upgradeable contracts (no proxy: the implementation itself) and call
/// its `initialize` with `init`.
pub fn deploy(c: &mut Chain, name: &str, init: Vec<u8>) -> Address {
    let a = c.deploy(&curie(name), &[]).unwrap_or_else(|e| panic!("deploy {name}: {e}"));
    ok(c, a, init, name);
    a
}

/// The Curie deployment of one market.
pub struct Curie {
    pub chain: Chain,
    pub usdc: Address,
    pub feed: Address,
    pub base: Address,
    pub pool: Address,
    pub vault: Address,
    pub account_balance: Address,
    pub exchange: Address,
    pub insurance_fund: Address,
    pub registry: Address,
    pub clearing_house: Address,
}

impl Curie {
    pub fn call<C: SolCall>(&mut self, to: Address, call: C) -> C::Return {
        let out = self.chain.call(to, call.abi_encode()).unwrap_or_else(|e| panic!("view: {e}"));
        C::abi_decode_returns(&out).expect("decode")
    }

    pub fn deposit(&mut self, who: Address, usdc: u128) {
        let (token, vault) = (self.usdc, self.vault);
        ok(&mut self.chain, token, IToken::mintCall { to: who, amount: U256::from(usdc) }.abi_encode(), "mint");
        self.chain
            .transact_from(who, token, IToken::approveCall { spender: vault, amount: U256::MAX }.abi_encode())
            .expect("approve");
        self.chain
            .transact_from(who, vault, IVault::depositCall { token, amount: U256::from(usdc) }.abi_encode())
            .unwrap_or_else(|e| panic!("deposit: {e}"));
    }

    pub fn slot0(&mut self) -> (U160, i32, u128) {
        let s = self.call(self.pool, IPool::slot0Call {});
        let l = self.call(self.pool, IPool::liquidityCall {});
        (s.sqrtPriceX96, s.tick.as_i32(), l)
    }
}

/// Deploy Curie as its test fixture wires it: one market of `base` over `quote` on a Uniswap v3
/// pool at `sqrt_price` with fee tier `fee`.
pub fn deploy_curie(fee: u32, sqrt_price: U160, index: U256, fees: MarketFees, max_tick: u32) -> Curie {
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
    Curie {
        chain: c,
        usdc,
        feed,
        base,
        pool,
        vault,
        account_balance,
        exchange,
        insurance_fund,
        registry,
        clearing_house,
    }
}

pub fn i24(t: i32) -> I24 {
    I24::try_from(t).unwrap()
}

/// The reason code a refusal starts with (`CH_NEFCI: …` → `CH_NEFCI`).
pub fn code(reason: &str) -> String {
    reason.split(':').next().unwrap_or(reason).trim().to_string()
}

/// `SettlementTokenMath.formatSettlementToken` for 6 decimals: down, toward −∞.
pub fn to_usdc(x: I256) -> I256 {
    let d = I256::try_from(USDC_TO_WAD).unwrap();
    let q = x / d;
    if x.is_negative() && x % d != I256::ZERO { q - I256::ONE } else { q }
}

/// `openPosition` with no bound, deadline or price limit.
pub fn open_call(base: Address, b2q: bool, exact_in: bool, amount: U256) -> Vec<u8> {
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

/// The vAMM after the maker's orders, as keel mirrors it.
pub struct MakerBook {
    /// keel's vAMM: the same orders as Uniswap positions.
    pub pool: Pool,
    /// The pool's oracle: opened with one observation at `opened`, grown to 16, written by the
    /// full-range mint.
    pub oracle: Oracle,
    /// Quote in the full-range order (wad, as a float for choosing amounts).
    pub depth: f64,
    /// Orders placed.
    pub orders: u64,
}

/// A maker's orders half an hour after the pool opened (a settlement reads 15-minute TWAPs): a
/// full-range order and up to `narrow` narrow or wide ones around `tick0`, each of 10^`depth`
/// dollars of quote (`depth` a range of exponents), by a maker with $1e18 in the vault; keel's
/// vAMM is built from the same positions and checked against the pool.
#[allow(clippy::too_many_arguments)]
pub fn place_maker_orders(
    cu: &mut Curie,
    rng: &mut ChaCha8Rng,
    fee: u32,
    sqrt0: U160,
    tick0: i32,
    price: f64,
    narrow: usize,
    depth: std::ops::Range<f64>,
    opened: u64,
    ctx: &str,
) -> MakerBook {
    let spacing = keel_core::venue::amm::tick_spacing_for_fee(fee).expect("fee tier");
    cu.chain.warp(1800);
    let maker = Address::repeat_byte(0x3a);
    cu.deposit(maker, 10u128.pow(24)); // 1e18 USDC
    let full = (-887272 / spacing) * spacing;
    let mut ranges = vec![(full, -full)];
    for _ in 0..rng.random_range(0..=narrow) {
        let center = tick0.div_euclid(spacing) + rng.random_range(-300..=300);
        let half = if rng.random_bool(0.5) { rng.random_range(1..=10) } else { rng.random_range(10..=3000) };
        let (lo, hi) = ((center - half) * spacing, (center + half) * spacing);
        if lo > full && hi < -full {
            ranges.push((lo, hi));
        }
    }
    let mut positions = Vec::new();
    let mut in_full = 0f64;
    let mut orders = 0;
    for (lo, hi) in ranges {
        let quote_amount = 10f64.powf(rng.random_range(depth.clone())) * 1e18;
        if in_full == 0.0 {
            in_full = quote_amount;
        }
        let call = IClearingHouse::addLiquidityCall {
            params: IClearingHouse::AddLiquidityParams {
                baseToken: cu.base,
                base: U256::from((quote_amount / price) as u128),
                quote: U256::from(quote_amount as u128),
                lowerTick: i24(lo),
                upperTick: i24(hi),
                minBase: U256::ZERO,
                minQuote: U256::ZERO,
                useTakerBalance: false,
                deadline: U256::MAX,
            },
        };
        // a narrow order the pool refuses (Uniswap's `mint` of no liquidity reverts with no
        // reason) changes nothing; keel's vAMM does not get it either. The full range must fill.
        let r = match cu.chain.transact_from(maker, cu.clearing_house, call.abi_encode()) {
            Ok(r) => r,
            Err(e) if (lo, hi) != (full, -full) => {
                eprintln!("{ctx}: the maker's order [{lo}, {hi}] of {quote_amount:e} quote refused: {e}");
                continue;
            }
            Err(e) => panic!("{ctx}: the full-range order: {e}"),
        };
        let r = IClearingHouse::addLiquidityCall::abi_decode_returns(&r).expect("decode");
        let liquidity: u128 = r.liquidity.to();
        if liquidity > 0 {
            positions.push(LiquidityPosition { tick_lower: lo, tick_upper: hi, liquidity });
        }
        orders += 1;
    }
    let token = |s: &str| PoolToken { symbol: s.into(), decimals: 18 };
    let pool = Pool::new("vAMM", token("vETH"), token("vUSD"), fee, sqrt0, &positions).expect("vAMM");
    assert_eq!(cu.slot0(), (pool.sqrt_price_x96(), pool.tick(), pool.liquidity()), "{ctx}: pool after the orders");
    let mut oracle = Oracle::new(opened);
    oracle.grow(16);
    oracle.write(cu.chain.now, pool.tick());
    MakerBook { pool, oracle, depth: in_full, orders }
}

/// A rough size for choosing amounts (never for money).
pub fn float(x: impl ToString) -> f64 {
    x.to_string().parse().expect("number")
}

/// The random draws of a market: what the suites vary.
pub struct MarketSpec {
    /// Exponents of the base's price in dollars.
    pub prices: std::ops::Range<f64>,
    /// Exchange fee ratios (1e6 units) besides the pool's own tier.
    pub exchange_fees: &'static [u32],
    /// Insurance-fund shares of the fee (1e6 units).
    pub insurance_shares: &'static [u32],
    /// `maxTickCrossedWithinBlock` values.
    pub max_ticks: &'static [u32],
}

/// A market drawn from a spec and deployed, its insurance fund holding $1e18 (bad debt is paid
/// from it; `CH_IIC` otherwise).
pub struct OpenMarket {
    pub cu: Curie,
    pub fee: u32,
    pub price: f64,
    pub tick0: i32,
    pub sqrt0: U160,
    pub index0: U256,
    pub fees: MarketFees,
    pub max_tick: u32,
    /// When the pool opened (the chain's first block).
    pub opened: u64,
    /// Names the sequence in a failure.
    pub ctx: String,
}

/// Draw a market (fee tier, a price near a random tick, the exchange fee — the pool's tier or
/// one of the spec's —, insurance share and tick limit) and deploy it, the index at the price.
pub fn open_market(rng: &mut ChaCha8Rng, seed: u64, spec: &MarketSpec) -> OpenMarket {
    let fee = [500u32, 3000, 10000][rng.random_range(0..3)];
    let spacing = keel_core::venue::amm::tick_spacing_for_fee(fee).expect("fee tier");
    let price: f64 = 10f64.powf(rng.random_range(spec.prices.clone()));
    let tick0 = ((price.ln() / 1.0001f64.ln()) as i32).div_euclid(spacing) * spacing + rng.random_range(0..spacing);
    let sqrt0 =
        keel_core::venue::amm::sqrt_price_at_tick(tick0).expect("tick") + U160::from(rng.random_range(0u64..1_000_000));
    let n = spec.exchange_fees.len() + 1;
    let exchange = match rng.random_range(0..n) {
        0 => fee,
        k => spec.exchange_fees[k - 1],
    };
    let share = spec.insurance_shares[rng.random_range(0..spec.insurance_shares.len())];
    let fees = MarketFees { exchange_fee_ratio: exchange, insurance_fund_fee_ratio: share };
    let max_tick = spec.max_ticks[rng.random_range(0..spec.max_ticks.len())];
    let index0 = keel_core::venue::perp_v2::market_price(sqrt0).expect("price");
    let opened = Chain::new().now;
    let mut cu = deploy_curie(fee, sqrt0, index0, fees, max_tick);
    let ctx = format!("seed {seed} (fee {fee}, {fees:?}, max tick {max_tick}, price {price:.2})");
    let (usdc, fund) = (cu.usdc, cu.insurance_fund);
    ok(&mut cu.chain, usdc, IToken::mintCall { to: fund, amount: U256::from(10u128.pow(24)) }.abi_encode(), "fund");
    OpenMarket { cu, fee, price, tick0, sqrt0, index0, fees, max_tick, opened, ctx }
}
