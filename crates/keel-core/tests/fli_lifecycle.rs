//! A token's life on realistic venues: engage 1x → 2x in TWAP chunks through a Uniswap v3 pool,
//! a price walk with routine rebalances, a crash in which ripcord fires before the market can
//! liquidate, and a disengage back to no debt. Invariants are checked after every step. The
//! same life runs on the Aave v3 product and on the 2021 Compound v2 one.

mod common;
use common::*;
use keel_core::math::U256;
use keel_core::strategy::fli::{FliEvent, FliToken, ShouldRebalance};
use keel_core::venue::lending::HEALTH_FACTOR_ONE;

fn check(t: &FliToken, now: u64, step: &str) {
    t.check_invariants(now).unwrap_or_else(|e| panic!("{step}: {e}"));
    let debt = t.market.debt_balance(t.account, t.borrow, now).unwrap();
    if !debt.is_zero() {
        assert_eq!(
            t.current_leverage_ratio(now).unwrap(),
            independent_leverage(t, now),
            "{step}: leverage = cV / (cV − bV)"
        );
    }
    let hf = t.market.account_data(t.account, now).unwrap().health_factor;
    assert!(hf >= HEALTH_FACTOR_ONE, "{step}: health factor {hf} below 1: the market could liquidate");
}

/// What a keeper does: follow shouldRebalance on the first exchange.
fn keep(t: &mut FliToken, now: u64) -> Option<FliEvent> {
    let (name, action) = t.should_rebalance(now).unwrap()[0].clone();
    let out = match action {
        ShouldRebalance::None => return None,
        ShouldRebalance::Rebalance => t.rebalance(KEEPER, &name, now),
        ShouldRebalance::IterateRebalance => t.iterate_rebalance(KEEPER, &name, now),
        ShouldRebalance::Ripcord => t.ripcord(KEEPER, &name, now),
    };
    Some(out.unwrap_or_else(|e| panic!("{action:?} at {now}: {e}")).event)
}

#[test]
fn engage_walk_crash_ripcord_disengage() {
    lifecycle(&eth2x(), 1.74);
}

#[test]
fn engage_walk_crash_ripcord_disengage_on_compound() {
    lifecycle(&eth2x_compound(), 1.7);
}

fn lifecycle(product: &keel_core::product::Product, band_min: f64) {
    let mut t = token_of(product, 2_000); // 100 WETH at $2000
    let mut now = T0;
    check(&t, now, "issued");
    let nav0 = t.nav(now).unwrap().per_token;

    // Engage: 1x → 2x needs as much WETH again as the token holds (100.1 with the mint fee);
    // the cap is 10 WETH a chunk: a TWAP.
    let c0 = t.market.supply_balance(t.account, t.collateral, now).unwrap();
    // Aave holds it exactly; Compound holds 8-decimal cTokens, worth up to one cToken less
    let want = wad(1001) / U256::from(10u64);
    assert!(c0 <= want && want - c0 < want / U256::from(1_000_000_000u64), "{c0}");
    let out = t.engage(OPERATOR, "uniswap-v3", now).unwrap();
    let FliEvent::Engaged(n) = out.event else { panic!() };
    assert_eq!(n.chunk, wad(10));
    assert_eq!(n.total, c0);
    assert_eq!(t.market.protocol(), product.lending.protocol);
    assert_eq!(t.fli.twap_leverage_ratio, wad(2));
    let trade = out.trade.unwrap();
    assert!(trade.pool_fee > U256::ZERO, "the chunk paid the pool fee");
    let mut chunks = 1;
    while !t.fli.twap_leverage_ratio.is_zero() {
        now += 31;
        set_price(&mut t, usd(2000), now);
        let ev = keep(&mut t, now).expect("an iterate is due after the cooldown");
        assert!(matches!(ev, FliEvent::RebalanceIterated(_)), "{ev:?}");
        check(&t, now, "engage chunk");
        chunks += 1;
        assert!(chunks < 30, "engage never finished");
    }
    let lr = keel_core::Wad(t.current_leverage_ratio(now).unwrap()).to_f64();
    assert!((lr - 2.0).abs() < 0.01, "engaged at {lr}");
    assert!(chunks >= 10, "TWAP took {chunks} chunks");
    let nav_engaged = t.nav(now).unwrap().per_token;
    assert!(nav_engaged < nav0, "fees and price impact cost something");

    // A daily walk: rebalances keep leverage inside the band.
    let walk = [3.0, -4.0, 5.0, -6.0, 2.0, 7.0, -3.0, -5.0, 4.0, 1.0];
    let mut price = 2_000.0f64;
    let mut rebalances = 0;
    for r in walk {
        price *= 1.0 + r / 100.0;
        now += 86_401;
        set_price(&mut t, (price * 1e8) as i128, now);
        while let Some(ev) = keep(&mut t, now) {
            rebalances += 1;
            check(&t, now, "walk");
            now += 31;
            set_price(&mut t, (price * 1e8) as i128, now);
            assert!(!matches!(ev, FliEvent::RipcordCalled(_)), "no ripcord in a calm walk");
        }
        let lr = keel_core::Wad(t.current_leverage_ratio(now).unwrap()).to_f64();
        assert!((band_min..=2.3).contains(&lr), "leverage {lr} outside the band after rebalancing");
    }
    assert!(rebalances >= walk.len(), "one epoch rebalance a day at least: {rebalances}");

    // A crash: −6% an hour. Ripcord must act before the health factor reaches 1.
    let mut ripcords = 0;
    let keeper_reward_before = t.fli.ether_balance;
    for _ in 0..8 {
        price *= 0.94;
        now += 3_600;
        set_price(&mut t, (price * 1e8) as i128, now);
        while let Some(ev) = keep(&mut t, now) {
            if matches!(ev, FliEvent::RipcordCalled(_)) {
                ripcords += 1;
            }
            check(&t, now, "crash");
            let hf = t.market.account_data(t.account, now).unwrap().health_factor;
            eprintln!(
                "crash: {ev:?} at ${price:.0}, LR {}, HF {}",
                keel_core::Wad(t.current_leverage_ratio(now).unwrap()),
                keel_core::Wad(hf)
            );
            now += 2;
            set_price(&mut t, (price * 1e8) as i128, now);
        }
        let liq = t.market.liquidation_call(t.collateral, t.borrow, t.account, U256::MAX, now);
        let refusal = liq.unwrap_err().to_string();
        assert!(
            refusal == "45: Health factor is not below the threshold" || refusal.starts_with("Compound error 3/3:"),
            "never liquidatable: {refusal}"
        );
    }
    assert!(ripcords > 0, "the crash called for a ripcord");
    assert!(t.fli.ether_balance < keeper_reward_before, "rewards were paid");

    // Disengage back to no debt.
    let mut steps = 0;
    loop {
        now += 31;
        set_price(&mut t, (price * 1e8) as i128, now);
        t.disengage(OPERATOR, "uniswap-v3", now).unwrap();
        steps += 1;
        check(&t, now, "disengage");
        if t.market.debt_balance(t.account, t.borrow, now).unwrap().is_zero() {
            break;
        }
        assert!(t.rebalance(KEEPER, "uniswap-v3", now + 100_000).unwrap_err().to_string() == "Strategy is disengaging");
        assert!(steps < 50);
    }
    eprintln!(
        "engage chunks {chunks}, walk rebalances {rebalances}, crash ripcords {ripcords}, disengage steps {steps}, final price {price:.0}"
    );
    assert!(!t.fli.disengaging);
    assert!(t.idle_borrow > U256::ZERO, "the last step leaves the surplus as USDC on the token");
    // A year of streaming fee dilutes the cash unit with everything else.
    now += 365 * 86_400;
    set_price(&mut t, (price * 1e8) as i128, now);
    assert!(t.accrue_streaming_fee(now).unwrap() > U256::ZERO, "the product charges a streaming fee");
    // Holders, and then the fee recipient, can still redeem everything.
    let bal = t.ledger.balance_of(HOLDER);
    let r = t.redeem(HOLDER, bal, now).unwrap();
    assert!(r.collateral_out > U256::ZERO && r.cash_out > U256::ZERO && r.borrow_in.is_zero());
    check(&t, now, "redeemed");
    let recipient = t.ledger.config.fee_recipient;
    let fees = t.ledger.balance_of(recipient);
    t.redeem(recipient, fees, now).unwrap();
    // what is left is the redeem fee on that redemption, the recipient's own
    assert_eq!(t.ledger.total_supply(), t.ledger.balance_of(recipient));
    assert!(t.ledger.total_supply() < fees / U256::from(100u8));
    check(&t, now, "all redeemed");
}
