//! Shared test harness: build a product on fresh venues and move its market.
#![allow(dead_code)]

use keel_core::Address;
use keel_core::math::{U256, pdiv, pmul, pow10};
use keel_core::product::Product;
use keel_core::strategy::fli::FliToken;
use keel_core::venue::amm::sqrt_price_x96_from_ratio;

pub const T0: u64 = 1_700_000_000;
pub const OPERATOR: Address = Address::with_last_byte(0x01);
pub const KEEPER: Address = Address::with_last_byte(0x02);
pub const HOLDER: Address = Address::with_last_byte(0x03);
pub const STRANGER: Address = Address::with_last_byte(0x04);

/// Whole US dollars as an 8-decimal oracle answer.
pub fn usd(x: i128) -> i128 {
    x * 100_000_000
}

pub fn wad(x: u64) -> U256 {
    U256::from(x) * pow10(18)
}

pub fn product(text: &str) -> Product {
    Product::from_toml(text).unwrap()
}

/// The shipped ETH2x product with the tests' own initial unit: 0.05 WETH per token.
pub fn eth2x() -> Product {
    let mut p = product(include_str!("../../../../products/eth2x-fli.toml"));
    p.token.initial_collateral_per_token = wad(1) / U256::from(20u64);
    p
}

/// The shipped 2021 ETH2x on Compound v2 with the tests' initial unit (0.05 WETH per token).
pub fn eth2x_compound() -> Product {
    let mut p = product(include_str!("../../../../products/eth2x-fli-compound.toml"));
    p.token.initial_collateral_per_token = wad(1) / U256::from(20u64);
    p
}

/// ETH2x on fresh venues at $2000, `tokens` issued to HOLDER, KEEPER allowed, 5 ETH of rewards.
pub fn token_with_supply(tokens: u64) -> FliToken {
    token_of(&eth2x(), tokens)
}

/// `product` on fresh venues at $2000, `tokens` issued to HOLDER, KEEPER allowed, 5 ETH of
/// rewards.
pub fn token_of(product: &Product, tokens: u64) -> FliToken {
    let mut t = product.build(OPERATOR, T0).unwrap();
    t.update_caller_status(OPERATOR, &[KEEPER], &[true]).unwrap();
    t.fund_ether(wad(5));
    t.issue(HOLDER, wad(tokens), T0).unwrap();
    t
}

/// Post `usd` (whole dollars ×1e8 answer) to the collateral feed and the stable at $1, and
/// arbitrage every pool to the new price.
pub fn set_price(t: &mut FliToken, usd_e8: i128, now: u64) {
    let (c, b) = (t.collateral, t.borrow);
    t.market.post_price(c, usd_e8, now);
    t.market.post_price(b, 100_000_000, now);
    arbitrage(t);
}

/// Trade every pool back to the oracle price (an arbitrageur with unlimited capital).
pub fn arbitrage(t: &mut FliToken) {
    let cp = t.market.feed(t.collateral).answer as u128;
    let cd = t.market.decimals(t.collateral) as u32;
    let bd = t.market.decimals(t.borrow) as u32;
    for pool in t.pools.values_mut() {
        // token0 = borrow (USDC, $1), token1 = collateral: raw price1per0 = 10^cd / (p · 10^bd)
        let target =
            sqrt_price_x96_from_ratio(pow10(cd) * U256::from(100_000_000u64), U256::from(cp) * pow10(bd)).unwrap();
        pool.swap_toward(target, U256::MAX >> 4).unwrap();
    }
}

/// Leverage computed independently of the strategy: collateral value / equity, from the
/// market's balances and the oracle (wad).
pub fn independent_leverage(t: &FliToken, now: u64) -> U256 {
    let c = t.market.supply_balance(t.account, t.collateral, now).unwrap();
    let b = t.market.debt_balance(t.account, t.borrow, now).unwrap();
    let cp = t.market.price(t.collateral, now).unwrap() * pow10(10);
    let bp = t.market.price(t.borrow, now).unwrap() * pow10(22);
    let cv = pmul(cp, c).unwrap();
    let bv = pmul(bp, b).unwrap();
    pdiv(cv, cv - bv).unwrap()
}
