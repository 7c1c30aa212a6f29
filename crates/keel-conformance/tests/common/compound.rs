//! The Compound v2 deployment the Compound and Set suites share: Compound's `Comptroller`,
//! `CErc20` and `WhitePaperInterestRateModel` from the compiled contracts
//! `@setprotocol/set-protocol-v2` ships (`external/abi/compound`), its `CompoundPriceOracleMock`
//! and `StandardTokenMock`, mirrored in keel's `CompoundMarket`, and the comparison of the two.
#![allow(dead_code)] // each suite uses a part

use alloy_primitives::{Address, U256};
use alloy_sol_types::{SolCall, SolValue, sol};
use keel_conformance::{Chain, artifact};
use keel_core::math::Wad;
use keel_core::oracle::PriceFeed;
use keel_core::venue::compound::{CompoundMarket, InterestRateModel, MarketConfig};
use rand::Rng;
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

pub const SET: &str = "@setprotocol/set-protocol-v2/";

pub fn ok(r: Result<alloy_primitives::Bytes, keel_conformance::Revert>, what: &str) -> alloy_primitives::Bytes {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Send an admin call that answers with an error code, requiring 0.
pub fn admin(c: &mut Chain, to: Address, data: Vec<u8>, what: &str) {
    let out = ok(c.transact(to, data), what);
    if out.len() >= 32 {
        let code = U256::abi_decode(&out[..32]).unwrap();
        assert!(code.is_zero(), "{what}: error code {code}");
    }
}

pub struct Asset {
    pub ctoken: Address,
    pub token: Address,
    pub price_usd: u64,
    pub id: usize,
    pub decimals: u8,
}

pub struct Market {
    pub chain: Chain,
    pub comptroller: Address,
    pub oracle: Address,
    pub assets: Vec<Asset>,
    pub keel: CompoundMarket,
    pub users: Vec<Address>,
}

pub fn e16(x: u64) -> U256 {
    U256::from(x) * U256::from(10_000_000_000_000_000u64)
}

pub fn deploy(rng: &mut ChaCha8Rng) -> Market {
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
        assets.push(Asset { ctoken, token, price_usd, id, decimals });
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

pub fn read(c: &mut Chain, to: Address, data: Vec<u8>) -> U256 {
    U256::abi_decode(&c.call(to, data).unwrap()[..32]).unwrap()
}

/// Every market's totals and every user's balances and liquidity, equal on both sides.
pub fn compare(m: &mut Market, what: &str) {
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
