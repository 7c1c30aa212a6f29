//! keel-core's Perp v2 taker trades (`venue::perp_v2::vamm_swap`, `PerpV2Market::settle_trade`,
//! the token's `PriceGuards`) against Perpetual Protocol's Curie contracts from
//! `@perp/curie-contract` 2.8.4's published bytecode — `ClearingHouse`, `Exchange`,
//! `OrderBook`, `AccountBalance`, `Vault`, `InsuranceFund`, `MarketRegistry`,
//! `ClearingHouseConfig`, `BaseToken`, `QuoteToken` — on a `UniswapV3Pool` from
//! `@uniswap/v3-core`, with keel's own index feed (`evm/contracts/PerpIndexFeed.sol`) and USDC.
//!
//! Random sequences: a market at a random price in a random fee tier, a random exchange fee
//! ratio and insurance-fund share and a random `maxTickCrossedWithinBlock`; a maker's orders
//! (one full-range, 0–6 narrow or wide); then a taker's random deposits, index moves and
//! `openPosition`s — both directions, exact input and exact output, from dust to many times
//! the collateral, reductions, exact closes and reversals. Both sides must accept or refuse
//! together, with the same reason (`CH_NEFCI`, `CH_NEFCM`, `EX_OPB`, `EX_OPLAS`); after every
//! operation the taker's position size, open notional, owed realised PnL and unrealised PnL,
//! the insurance fund's fees, free collateral, the pool's price, tick and liquidity must be
//! equal to the wei.
//!
//! The clock stands still during the trades (one block timestamp, an hour after the market
//! opened): funding does not accrue and every market TWAP sits at the opening tick, so the mark
//! price is that tick's price (checked against `getMarkPrice`). Funding over time, the mark
//! price's median of TWAPs and liquidation are not in this suite yet (`conformance.md` §5).

use alloy_primitives::aliases::{I24, U160};
use alloy_primitives::{Address, FixedBytes, I256, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use keel_conformance::{Chain, artifact, for_each_sequence, own_bytecode};
use keel_core::strategy::fli::perp_token::PriceGuards;
use keel_core::venue::amm::{LiquidityPosition, Pool, PoolToken, sqrt_price_at_tick, tick_spacing_for_fee};
use keel_core::venue::perp_v2::{MarketFees, PerpV2Error, PerpV2Market, PerpV2Params, market_price, vamm_swap};
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

fn deploy(c: &mut Chain, name: &str) -> Address {
    let a = c.deploy(&curie(name), &[]).unwrap_or_else(|e| panic!("deploy {name}: {e}"));
    ok(c, a, IInit::initializeCall {}.abi_encode(), name);
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
    let config = deploy(&mut c, "ClearingHouseConfig");
    ok(&mut c, config, IConfig::setSettlementTokenBalanceCapCall { cap: U256::MAX }.abi_encode(), "cap");
    let quote = c.deploy(&curie("QuoteToken"), &[]).expect("deploy QuoteToken");
    ok(&mut c, quote, IVirtual::initializeCall { name: "vUSD".into(), symbol: "vUSD".into() }.abi_encode(), "quote");
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

    let registry = c.deploy(&curie("MarketRegistry"), &[]).expect("deploy MarketRegistry");
    ok(&mut c, registry, IMarketRegistry::initializeCall { factory, quoteToken: quote }.abi_encode(), "registry");
    let order_book = c.deploy(&curie("OrderBook"), &[]).expect("deploy OrderBook");
    ok(&mut c, order_book, IOrderBook::initializeCall { marketRegistry: registry }.abi_encode(), "order book");
    let account_balance = c.deploy(&curie("AccountBalance"), &[]).expect("deploy AccountBalance");
    ok(
        &mut c,
        account_balance,
        IAccountBalance::initializeCall { config, orderBook: order_book }.abi_encode(),
        "account balance",
    );
    let exchange = c.deploy(&curie("Exchange"), &[]).expect("deploy Exchange");
    ok(
        &mut c,
        exchange,
        IExchange::initializeCall { marketRegistry: registry, orderBook: order_book, config }.abi_encode(),
        "exchange",
    );
    ok(&mut c, exchange, IExchange::setAccountBalanceCall { accountBalance: account_balance }.abi_encode(), "ex ab");
    ok(&mut c, order_book, IOrderBook::setExchangeCall { exchange }.abi_encode(), "ob exchange");
    let insurance_fund = c.deploy(&curie("InsuranceFund"), &[]).expect("deploy InsuranceFund");
    ok(&mut c, insurance_fund, IInsuranceFund::initializeCall { token: usdc }.abi_encode(), "insurance fund");
    let vault = c.deploy(&curie("Vault"), &[]).expect("deploy Vault");
    ok(
        &mut c,
        vault,
        IVault::initializeCall { insuranceFund: insurance_fund, config, accountBalance: account_balance, exchange }
            .abi_encode(),
        "vault",
    );
    ok(&mut c, insurance_fund, IInsuranceFund::setVaultCall { vault }.abi_encode(), "if vault");
    ok(&mut c, account_balance, IAccountBalance::setVaultCall { vault }.abi_encode(), "ab vault");
    let clearing_house = c.deploy(&curie("ClearingHouse"), &[]).expect("deploy ClearingHouse");
    ok(
        &mut c,
        clearing_house,
        IClearingHouse::initializeCall {
            config,
            vault,
            quoteToken: quote,
            factory,
            exchange,
            accountBalance: account_balance,
            insuranceFund: insurance_fund,
        }
        .abi_encode(),
        "clearing house",
    );
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
    Curie { chain: c, usdc, feed, base, pool, vault, account_balance, insurance_fund, clearing_house }
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
    trades: u64,
    both_refused: BTreeMap<String, u64>,
    makers: u64,
}

/// keel's side of one taker trade, as the token trades: guards observed at the block's first
/// settlement, the swap, the guards, the booking at the mark.
#[allow(clippy::too_many_arguments)]
fn keel_trade(
    pool: &mut Pool,
    market: &mut PerpV2Market,
    guards: &mut PriceGuards,
    fees: MarketFees,
    now: u64,
    index: U256,
    mark: U256,
    base_to_quote: bool,
    exact_input: bool,
    amount: U256,
) -> Result<U256, String> {
    guards.observe(now, pool.tick());
    let spread = PriceGuards::spread(pool, index).map_err(|e| e.to_string())?;
    let mut p = pool.clone();
    let swap = vamm_swap(&mut p, fees, base_to_quote, exact_input, amount, None).map_err(|e| e.to_string())?;
    guards.check(spread, &p, index).map_err(|e| e.to_string())?;
    let mut m = market.clone();
    m.settle_trade(swap.exchanged_position_size, swap.quote(), mark).map_err(|e: PerpV2Error| e.to_string())?;
    (*pool, *market) = (p, m);
    Ok(swap.insurance_fund_fee)
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
    let mut cu = deploy_curie(fee, sqrt0, index0, fees, max_tick);
    let ctx = format!("seed {seed} (fee {fee}, {fees:?}, max tick {max_tick}, price {price:.2})");

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
    for (lo, hi) in ranges {
        // depth from $10k to $100M of quote in the order
        let quote_amount = 10f64.powf(rng.random_range(4.0..8.0)) * 1e18;
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
    let mut pool = Pool::new("vAMM", token("vETH"), token("vUSD"), fee, sqrt0, &positions).unwrap();
    assert_eq!(cu.slot0(), (pool.sqrt_price_x96(), pool.tick(), pool.liquidity()), "{ctx}: pool after the orders");

    // trading starts an hour later, in one block
    cu.chain.warp(3600);
    let now = cu.chain.now;
    let mark = market_price(sqrt_price_at_tick(pool.tick()).unwrap()).unwrap();
    let on_chain_mark = cu.call(cu.account_balance, IAccountBalance::getMarkPriceCall { baseToken: cu.base });
    assert_eq!(on_chain_mark, mark, "{ctx}: the mark price of a pool that sat at one tick is that tick's price");

    let taker = Address::repeat_byte(0x7a);
    let mut market = PerpV2Market::new(PerpV2Params::default(), now);
    let mut guards = PriceGuards { max_tick_crossed: max_tick, max_price_spread: 100_000, ..Default::default() };
    let mut index = index0;
    let mut insurance_fees = U256::ZERO;
    let first = 10u128.pow(rng.random_range(2..=7)) * 1_000_000; // $100 to $10M
    cu.deposit(taker, first);
    market.deposit(U256::from(first * USDC_TO_WAD)).unwrap();

    for step in 0..rng.random_range(5..40) {
        t.ops += 1;
        let roll = rng.random_range(0..100);
        if roll < 8 {
            let usdc = rng.random_range(1..=1_000_000u128) * 1_000_000;
            cu.deposit(taker, usdc);
            market.deposit(U256::from(usdc * USDC_TO_WAD)).unwrap();
        } else if roll < 18 {
            // the index moves up to 15% around the market price (the price band is 10%)
            let p = market_price(pool.sqrt_price_x96()).unwrap();
            let bps = rng.random_range(8_500u64..=11_500);
            index = p * U256::from(bps) / U256::from(10_000u64);
            let feed = cu.feed;
            ok(&mut cu.chain, feed, IFeed::setPriceCall { price: index }.abi_encode(), "index");
        } else {
            let size = market.account.base;
            let collateral = float(market.account.collateral) / E18 as f64;
            let p = float(market_price(pool.sqrt_price_x96()).unwrap()) / E18 as f64;
            let (base_to_quote, exact_input, amount) = if !size.is_zero() && rng.random_bool(0.3) {
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
                let leverage = 10f64.powf(rng.random_range(-6.0..1.3)); // dust to 20x
                let notional = collateral * leverage;
                // the exact side is base for a sale by input or a purchase by output
                let amount = if b2q == exact_in { notional / p } else { notional };
                (b2q, exact_in, U256::from((amount * 1e18) as u128).max(U256::from(1u64)))
            };
            let ours = keel_trade(
                &mut pool,
                &mut market,
                &mut guards,
                fees,
                now,
                index,
                mark,
                base_to_quote,
                exact_input,
                amount,
            );
            let theirs = cu.chain.transact_from(
                taker,
                cu.clearing_house,
                IClearingHouse::openPositionCall {
                    params: IClearingHouse::OpenPositionParams {
                        baseToken: cu.base,
                        isBaseToQuote: base_to_quote,
                        isExactInput: exact_input,
                        amount,
                        oppositeAmountBound: U256::ZERO,
                        deadline: U256::MAX,
                        sqrtPriceLimitX96: U160::ZERO,
                        referralCode: FixedBytes::ZERO,
                    },
                }
                .abi_encode(),
            );
            let what = format!(
                "{ctx} step {step}: open {} {} {amount} (size {size})",
                if base_to_quote { "B2Q" } else { "Q2B" },
                if exact_input { "exact in" } else { "exact out" }
            );
            match (&ours, &theirs) {
                (Ok(to_fund), Ok(_)) => {
                    insurance_fees += *to_fund;
                    t.trades += 1;
                }
                (Err(a), Err(b)) => {
                    assert_eq!(code(a), code(&b.0), "{what}: both refused, for different reasons");
                    *t.both_refused.entry(code(a)).or_default() += 1;
                }
                _ => panic!("{what}: keel {ours:?}, contract {theirs:?}"),
            }
        }
        // the books, to the wei
        let (base, ab) = (cu.base, cu.account_balance);
        let size = cu.call(ab, IAccountBalance::getTakerPositionSizeCall { trader: taker, baseToken: base });
        let notional = cu.call(ab, IAccountBalance::getTakerOpenNotionalCall { trader: taker, baseToken: base });
        let pnl = cu.call(ab, IAccountBalance::getPnlAndPendingFeeCall { trader: taker });
        let fund = cu.call(ab, IAccountBalance::getPnlAndPendingFeeCall { trader: cu.insurance_fund });
        let at = format!("{ctx} after step {step}");
        assert_eq!((size, notional), (market.account.base, market.account.quote), "{at}: position");
        assert_eq!(pnl.owedRealizedPnl, market.account.owed_realized_pnl, "{at}: owed realised PnL");
        let unrealized = market.position_value(mark).unwrap() + market.account.quote;
        assert_eq!(pnl.unrealizedPnl, unrealized, "{at}: unrealised PnL");
        assert_eq!(fund.owedRealizedPnl, I256::try_from(insurance_fees).unwrap(), "{at}: insurance fund fees");
        let free = cu.call(
            cu.vault,
            IVault::getFreeCollateralByRatioCall { trader: taker, ratio: 100_000u32.try_into().unwrap() },
        );
        let ours = market.free_collateral(mark, market.params.im_ratio).unwrap();
        assert_eq!(free, to_usdc(ours), "{at}: free collateral by the initial margin ratio");
        assert_eq!(cu.slot0(), (pool.sqrt_price_x96(), pool.tick(), pool.liquidity()), "{at}: pool");
    }
}

#[test]
fn random_taker_trades_match_perp_curie_to_the_wei() {
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(30, |seed| run_sequence(seed, &mut t)) else { return };
    let refused: u64 = t.both_refused.values().sum();
    eprintln!(
        "perp v2: {n} sequences, {} maker orders, {} operations, {} trades accepted by both, {refused} refused by both with the same reason; 0 mismatches",
        t.makers, t.ops, t.trades
    );
    for (k, v) in &t.both_refused {
        eprintln!("  {k}: {v}");
    }
}
