//! keel-core's Compound v2 market (`venue::compound`) against Compound's `Comptroller`,
//! `CErc20` and `WhitePaperInterestRateModel`, from the compiled contracts
//! `@setprotocol/set-protocol-v2` ships (`external/abi/compound`), with its
//! `CompoundPriceOracleMock` and `StandardTokenMock`. Random sequences: two markets (an
//! 18-decimal volatile asset and a 6-decimal stable) with random collateral factors, reserve
//! factors and rate models, a random close factor and liquidation incentive, three users who
//! enter some markets, then random mints, redeems (by cTokens or underlying), borrows,
//! repayments (some above the debt), blocks passing, price moves and liquidations.
//!
//! Compound answers most failures with an error code instead of reverting, so each operation is
//! first called (`eth_call` as the user) and sent only when it would succeed: both sides must
//! succeed together or fail with the same cToken error code. After every operation each
//! market's totals, borrow index, cash, exchange rate and accrual block, and each user's
//! cTokens, stored borrow and account liquidity / shortfall, must be equal to the wei.

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use keel_conformance::{Chain, artifact, for_each_sequence};
use keel_core::error::LendingError;
use keel_core::math::Wad;
use keel_core::oracle::PriceFeed;
use keel_core::venue::compound::{CompoundMarket, InterestRateModel, MarketConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

sol! {
    interface IComptroller {
        function _setPriceOracle(address oracle) external returns (uint256);
        function _setMaxAssets(uint256 n) external returns (uint256);
        function _setCloseFactor(uint256 f) external returns (uint256);
        function _setLiquidationIncentive(uint256 f) external returns (uint256);
        function _supportMarket(address cToken) external returns (uint256);
        function _setCollateralFactor(address cToken, uint256 f) external returns (uint256);
        function enterMarkets(address[] cTokens) external returns (uint256[]);
        function getAccountLiquidity(address account) external view returns (uint256, uint256, uint256);
    }
    interface ICToken {
        function mint(uint256 amount) external returns (uint256);
        function redeem(uint256 tokens) external returns (uint256);
        function redeemUnderlying(uint256 amount) external returns (uint256);
        function borrow(uint256 amount) external returns (uint256);
        function repayBorrow(uint256 amount) external returns (uint256);
        function liquidateBorrow(address borrower, uint256 repayAmount, address cTokenCollateral) external returns (uint256);
        function _setReserveFactor(uint256 f) external returns (uint256);
        function totalSupply() external view returns (uint256);
        function totalBorrows() external view returns (uint256);
        function totalReserves() external view returns (uint256);
        function borrowIndex() external view returns (uint256);
        function getCash() external view returns (uint256);
        function exchangeRateStored() external view returns (uint256);
        function accrualBlockNumber() external view returns (uint256);
        function balanceOf(address a) external view returns (uint256);
        function borrowBalanceStored(address a) external view returns (uint256);
    }
    interface IToken {
        function mint(address to, uint256 amount) external;
        function approve(address spender, uint256 amount) external returns (bool);
    }
    interface IOracle {
        function setUnderlyingPrice(address cToken, uint256 price) external;
    }
}

const SET: &str = "@setprotocol/set-protocol-v2/";

fn ok(r: Result<alloy_primitives::Bytes, keel_conformance::Revert>, what: &str) -> alloy_primitives::Bytes {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Send an admin call that answers with an error code, requiring 0.
fn admin(c: &mut Chain, to: Address, data: Vec<u8>, what: &str) {
    let out = ok(c.transact(to, data), what);
    if out.len() >= 32 {
        let code = U256::abi_decode(&out[..32]).unwrap();
        assert!(code.is_zero(), "{what}: error code {code}");
    }
}

struct Asset {
    ctoken: Address,
    id: usize,
    decimals: u8,
}

struct Market {
    chain: Chain,
    comptroller: Address,
    oracle: Address,
    assets: Vec<Asset>,
    keel: CompoundMarket,
    users: Vec<Address>,
}

fn e16(x: u64) -> U256 {
    U256::from(x) * U256::from(10_000_000_000_000_000u64)
}

fn deploy(rng: &mut ChaCha8Rng) -> Market {
    let mut c = Chain::new();
    let now = c.now;
    let comptroller = c.deploy(&artifact(&format!("{SET}external/abi/compound/Comptroller.json")), &[]).unwrap();
    let oracle = c
        .deploy(
            &artifact(&format!(
                "{SET}artifacts/contracts/mocks/external/CompoundPriceOracleMock.sol/CompoundPriceOracleMock.json"
            )),
            &[],
        )
        .unwrap();
    let mut keel = CompoundMarket::new();
    keel.seconds_per_block = 12; // the harness chain's blocks
    // the Comptroller takes 0.05 < close factor ≤ 0.9 (keel once allowed 0.05: finding C1)
    let close = e16(rng.random_range(6..=90));
    let incentive = e16(rng.random_range(100..=150));
    keel.set_risk(close, incentive).unwrap();
    admin(&mut c, comptroller, IComptroller::_setPriceOracleCall { oracle }.abi_encode(), "oracle");
    admin(&mut c, comptroller, IComptroller::_setMaxAssetsCall { n: U256::from(8u8) }.abi_encode(), "max assets");
    admin(&mut c, comptroller, IComptroller::_setCloseFactorCall { f: close }.abi_encode(), "close factor");
    admin(&mut c, comptroller, IComptroller::_setLiquidationIncentiveCall { f: incentive }.abi_encode(), "incentive");
    let users: Vec<Address> = (1..=3u8).map(|i| Address::repeat_byte(0x10 + i)).collect();
    let mut assets = Vec::new();
    for (symbol, decimals, price_usd) in [("WETH", 18u8, rng.random_range(500..5_000u64)), ("USDC", 6u8, 1u64)] {
        let token = c
            .deploy(
                &artifact(&format!("{SET}artifacts/contracts/mocks/StandardTokenMock.sol/StandardTokenMock.json")),
                &(c.sender, U256::ZERO, symbol.to_string(), symbol.to_string(), U256::from(decimals))
                    .abi_encode_params(),
            )
            .unwrap();
        let base = e16(rng.random_range(0..=5));
        let mult = e16(rng.random_range(1..=40));
        let model = c
            .deploy(
                &artifact(&format!("{SET}external/abi/compound/WhitePaperInterestRateModel.json")),
                &(base, mult).abi_encode_params(),
            )
            .unwrap();
        let mut cfg = MarketConfig::new(
            symbol,
            decimals,
            if rng.random_bool(0.1) { 0 } else { rng.random_range(3_000..=9_000) },
            rng.random_range(0..=3_000),
            InterestRateModel::WhitePaper { base_rate: base, multiplier: mult },
        );
        // an initial exchange rate near Compound's 0.02, sometimes far from it
        cfg.initial_exchange_rate =
            cfg.initial_exchange_rate * U256::from(rng.random_range(1..=200u64)) / U256::from(100u64);
        let ctoken = c
            .deploy(
                &artifact(&format!("{SET}external/abi/compound/CERc20.json")),
                &(
                    token,
                    comptroller,
                    model,
                    cfg.initial_exchange_rate,
                    format!("c{symbol}"),
                    format!("c{symbol}"),
                    U256::from(8u8),
                )
                    .abi_encode_params(),
            )
            .unwrap();
        admin(&mut c, ctoken, ICToken::_setReserveFactorCall { f: cfg.reserve_factor }.abi_encode(), "reserve factor");
        admin(&mut c, comptroller, IComptroller::_supportMarketCall { cToken: ctoken }.abi_encode(), "support");
        let price_e8 = price_usd * 100_000_000;
        let price = U256::from(price_e8) * U256::from(10u64).pow(U256::from(28 - decimals as u64));
        ok(c.transact(oracle, IOracle::setUnderlyingPriceCall { cToken: ctoken, price }.abi_encode()), "price");
        admin(
            &mut c,
            comptroller,
            IComptroller::_setCollateralFactorCall { cToken: ctoken, f: cfg.collateral_factor }.abi_encode(),
            "collateral factor",
        );
        let mut feed = PriceFeed::new(format!("{symbol} / USD"), 8, 10 * 365 * 86_400, Wad::ZERO);
        feed.post(price_e8 as i128, now);
        let id = keel.add_market(cfg, feed, now).unwrap();
        // funds and allowances for every user (and for liquidations)
        for &u in &users {
            let plenty = U256::from(10u64).pow(U256::from(decimals as u64 + 12));
            ok(c.transact(token, IToken::mintCall { to: u, amount: plenty }.abi_encode()), "fund");
            ok(
                c.transact_from(u, token, IToken::approveCall { spender: ctoken, amount: U256::MAX }.abi_encode()),
                "approve",
            );
        }
        assets.push(Asset { ctoken, id, decimals });
    }
    let mut m = Market { chain: c, comptroller, oracle, assets, keel, users };
    // each user enters a random set of markets
    for u in m.users.clone() {
        let pick: Vec<usize> = (0..2).filter(|_| rng.random_bool(0.7)).collect();
        let ids: Vec<usize> = pick.iter().map(|&k| m.assets[k].id).collect();
        let addrs: Vec<Address> = pick.iter().map(|&k| m.assets[k].ctoken).collect();
        m.keel.enter_markets(u, &ids).unwrap();
        ok(
            m.chain.transact_from(u, m.comptroller, IComptroller::enterMarketsCall { cTokens: addrs }.abi_encode()),
            "enter",
        );
    }
    m
}

fn read(c: &mut Chain, to: Address, data: Vec<u8>) -> U256 {
    U256::abi_decode(&c.call(to, data).unwrap()[..32]).unwrap()
}

/// Every market's totals and every user's balances and liquidity, equal on both sides.
fn compare(m: &mut Market, what: &str) {
    let now = m.chain.now;
    for k in 0..m.assets.len() {
        let (ct, id) = (m.assets[k].ctoken, m.assets[k].id);
        let s = m.keel.markets[id].state;
        let init = m.keel.markets[id].config.initial_exchange_rate;
        let c = &mut m.chain;
        assert_eq!(read(c, ct, ICToken::totalSupplyCall {}.abi_encode()), s.total_supply, "{what}: {k} total supply");
        assert_eq!(read(c, ct, ICToken::totalBorrowsCall {}.abi_encode()), s.total_borrows, "{what}: {k} borrows");
        assert_eq!(read(c, ct, ICToken::totalReservesCall {}.abi_encode()), s.total_reserves, "{what}: {k} reserves");
        assert_eq!(read(c, ct, ICToken::borrowIndexCall {}.abi_encode()), s.borrow_index, "{what}: {k} borrow index");
        assert_eq!(read(c, ct, ICToken::getCashCall {}.abi_encode()), s.cash, "{what}: {k} cash");
        assert_eq!(
            read(c, ct, ICToken::exchangeRateStoredCall {}.abi_encode()),
            s.exchange_rate(init).unwrap(),
            "{what}: {k} exchange rate"
        );
        assert_eq!(
            read(c, ct, ICToken::accrualBlockNumberCall {}.abi_encode()),
            U256::from(s.accrual_block),
            "{what}: {k} accrual block"
        );
        for u in m.users.clone() {
            let c = &mut m.chain;
            assert_eq!(
                read(c, ct, ICToken::balanceOfCall { a: u }.abi_encode()),
                m.keel.ctoken_balance(u, id),
                "{what}: {k} cTokens of {u}"
            );
            assert_eq!(
                read(c, ct, ICToken::borrowBalanceStoredCall { a: u }.abi_encode()),
                m.keel.borrow_balance_stored(u, id).unwrap(),
                "{what}: {k} borrow of {u}"
            );
        }
    }
    for u in m.users.clone() {
        let out =
            m.chain.call(m.comptroller, IComptroller::getAccountLiquidityCall { account: u }.abi_encode()).unwrap();
        let (err, liq, short) = <(U256, U256, U256)>::abi_decode_params(&out).unwrap();
        assert!(err.is_zero(), "{what}: getAccountLiquidity error {err}");
        assert_eq!((liq, short), m.keel.account_liquidity(u, now).unwrap(), "{what}: liquidity of {u}");
    }
}

/// Call as `from`, then send if the answer is 0: `Ok` on success, else the error code (or
/// `u32::MAX` for a revert).
fn send(c: &mut Chain, from: Address, to: Address, data: Vec<u8>) -> Result<(), u32> {
    match c.call_from(from, to, data.clone()) {
        Err(_) => Err(u32::MAX),
        Ok(out) => {
            let code = U256::abi_decode(&out[..32]).unwrap();
            if !code.is_zero() {
                return Err(code.saturating_to::<u32>());
            }
            c.transact_from(from, to, data).map(|_| ()).map_err(|_| u32::MAX)
        }
    }
}

fn code(r: &Result<impl Sized, LendingError>) -> Result<(), u32> {
    match r {
        Ok(_) => Ok(()),
        Err(LendingError::Compound { code, .. }) => Err(*code),
        Err(_) => Err(u32::MAX),
    }
}

#[derive(Default)]
struct Tally {
    ops: u64,
    both_refused: u64,
    liquidations: u64,
    /// Per operation kind: (accepted, refused by both).
    kinds: std::collections::BTreeMap<String, (u64, u64)>,
}

fn run_sequence(seed: u64, t: &mut Tally) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut m = deploy(&mut rng);
    compare(&mut m, &format!("sequence {seed}: setup"));
    // every user starts with a deposit in each market, so most operations have something to act on
    for u in m.users.clone() {
        for k in 0..m.assets.len() {
            let (ct, id, dec) = (m.assets[k].ctoken, m.assets[k].id, m.assets[k].decimals);
            let amount = U256::from(10u64).pow(U256::from(dec as u64)) * U256::from(rng.random_range(1..50_000u64))
                / U256::from(m.keel.price(id, m.chain.now).unwrap() / U256::from(100_000_000u64));
            let now = m.chain.now;
            assert_eq!(code(&m.keel.mint(u, id, amount, now)), Ok(()));
            assert_eq!(send(&mut m.chain, u, ct, ICToken::mintCall { amount }.abi_encode()), Ok(()));
            t.ops += 1;
        }
    }
    compare(&mut m, &format!("sequence {seed}: deposits"));
    let n = rng.random_range(10..=60);
    for step in 0..n {
        let ui = rng.random_range(0..m.users.len());
        let u = m.users[ui];
        let k = rng.random_range(0..m.assets.len());
        let (ct, id, dec) = (m.assets[k].ctoken, m.assets[k].id, m.assets[k].decimals);
        let unit = U256::from(10u64).pow(U256::from(dec as u64));
        let now = m.chain.now;
        let frac = |rng: &mut ChaCha8Rng, x: U256| x * U256::from(rng.random_range(1..=1000u64)) / U256::from(1000u64);
        let kind = rng.random_range(0..14);
        let (label, keel, chain) = match kind {
            0 | 1 => {
                let amount =
                    unit * U256::from(rng.random_range(1..100_000u64)) / U256::from(rng.random_range(1..100u64));
                let r = code(&m.keel.mint(u, id, amount, now));
                (format!("mint {amount}"), r, send(&mut m.chain, u, ct, ICToken::mintCall { amount }.abi_encode()))
            }
            2 => {
                let held = m.keel.ctoken_balance(u, id);
                let tokens = if rng.random_bool(0.2) { held } else { frac(&mut rng, held).max(U256::from(1u8)) };
                let r = code(&m.keel.redeem(u, id, tokens, U256::ZERO, now));
                (
                    format!("redeem {tokens} cTokens"),
                    r,
                    send(&mut m.chain, u, ct, ICToken::redeemCall { tokens }.abi_encode()),
                )
            }
            3 => {
                let held = m.keel.supply_balance_stored(u, id).unwrap();
                let amount = frac(&mut rng, held).max(U256::from(1u8));
                let r = code(&m.keel.redeem(u, id, U256::ZERO, amount, now));
                let data = ICToken::redeemUnderlyingCall { amount }.abi_encode();
                (format!("redeem {amount} underlying"), r, send(&mut m.chain, u, ct, data))
            }
            4..=6 => {
                // a share of the account's liquidity (half the time nearly all), in the asset
                let (liq, _) = m.keel.account_liquidity(u, now).unwrap();
                let price = m.keel.underlying_price(id, now).unwrap();
                let share =
                    if rng.random_bool(0.5) { rng.random_range(950..=1010u64) } else { rng.random_range(1..=1000u64) };
                let amount = (liq * U256::from(share) / U256::from(1000u64) * U256::from(10u64).pow(U256::from(18u8))
                    / price)
                    .max(U256::from(1u8));
                let r = code(&m.keel.borrow(u, id, amount, now));
                (format!("borrow {amount}"), r, send(&mut m.chain, u, ct, ICToken::borrowCall { amount }.abi_encode()))
            }
            7 => {
                let owed = m.keel.borrow_balance_current(u, id, now).unwrap();
                let amount = match rng.random_range(0..10) {
                    0..=2 => U256::MAX,
                    3 => owed + U256::from(1u8),
                    _ => frac(&mut rng, owed).max(U256::from(1u8)),
                };
                let r = code(&m.keel.repay(u, id, amount, now));
                (
                    format!("repay {amount}"),
                    r,
                    send(&mut m.chain, u, ct, ICToken::repayBorrowCall { amount }.abi_encode()),
                )
            }
            8 => {
                let dt = rng.random_range(1..60 * 86_400u64);
                m.chain.warp(dt);
                t.ops += 1;
                compare(&mut m, &format!("sequence {seed} step {step}: {dt} s later"));
                continue;
            }
            9 | 10 => {
                // the volatile asset's price moves up to −40% / +25%
                let a = &m.assets[0];
                let (aid, act, adec) = (a.id, a.ctoken, a.decimals);
                let old = m.keel.price(aid, now).unwrap();
                let new = old * U256::from(rng.random_range(6_000..12_500u64)) / U256::from(10_000u64);
                m.keel.post_price(aid, i128::try_from(new).unwrap(), now);
                let price = new * U256::from(10u64).pow(U256::from(28 - adec as u64));
                ok(
                    m.chain.transact(m.oracle, IOracle::setUnderlyingPriceCall { cToken: act, price }.abi_encode()),
                    "price",
                );
                t.ops += 1;
                compare(&mut m, &format!("sequence {seed} step {step}: price {new}"));
                continue;
            }
            _ => {
                // the least liquid user is liquidated by the next one: debt in asset k,
                // collateral the other asset (or the same), a share of the close amount
                let u = *m
                    .users
                    .iter()
                    .max_by_key(|x| m.keel.account_liquidity(**x, now).map(|l| l.1).unwrap_or_default())
                    .unwrap();
                let liquidator = m.users[(m.users.iter().position(|x| *x == u).unwrap() + 1) % m.users.len()];
                let coll_k = if rng.random_bool(0.8) { 1 - k } else { k };
                let (coll_ct, coll_id) = (m.assets[coll_k].ctoken, m.assets[coll_k].id);
                let max = m.keel.max_liquidation_repay(u, id, coll_id, now).unwrap_or_default();
                let repay = match rng.random_range(0..10) {
                    0 => max + U256::from(1u8),
                    1..=4 => max,
                    _ => frac(&mut rng, max).max(U256::from(1u8)),
                };
                let r = m.keel.liquidate_borrow(liquidator, u, id, coll_id, repay, now);
                if r.is_ok() {
                    t.liquidations += 1;
                }
                let data = ICToken::liquidateBorrowCall { borrower: u, repayAmount: repay, cTokenCollateral: coll_ct }
                    .abi_encode();
                (
                    format!("liquidate {u} repaying {repay} against {coll_k}"),
                    code(&r),
                    send(&mut m.chain, liquidator, ct, data),
                )
            }
        };
        let what = format!("sequence {seed} step {step}: {label} of asset {k} by {u}");
        let name = label.split(' ').next().unwrap_or_default().to_string()
            + if label.contains("underlying") { " underlying" } else { "" };
        let e = t.kinds.entry(name).or_default();
        match (keel, chain) {
            (Ok(()), Ok(())) => e.0 += 1,
            (Err(a), Err(b)) if a == b => {
                e.1 += 1;
                t.both_refused += 1
            }
            (a, b) => panic!("{what}: keel {a:?}, Compound {b:?} (error codes; {} is a revert)", u32::MAX),
        }
        t.ops += 1;
        compare(&mut m, &what);
    }
}

#[test]
fn random_sequences_match_compound_to_the_wei() {
    let mut t = Tally::default();
    let Some(n) = for_each_sequence(30, |seed| run_sequence(seed, &mut t)) else { return };
    eprintln!(
        "compound v2: {n} sequences, {} operations ({} refused by both with the same code, {} liquidations); 0 mismatches",
        t.ops, t.both_refused, t.liquidations
    );
    for (k, (a, r)) in &t.kinds {
        eprintln!("  {k}: {a} accepted, {r} refused by both");
    }
}
