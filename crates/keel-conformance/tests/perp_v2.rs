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

mod common;

use alloy_primitives::{Address, I256, U256};
use alloy_sol_types::SolCall;
use common::curie::{
    E18, IAccountBalance, IExchangeView, IFeed, ILiquidate, IVault, MarketSpec, OpenMarket, USDC_TO_WAD, code, float,
    ok, open_call, open_market, place_maker_orders, to_usdc,
};
use keel_conformance::for_each_sequence;
use keel_core::strategy::fli::perp_token::PriceGuards;
use keel_core::venue::amm::Pool;
use keel_core::venue::oracle::Oracle;
use keel_core::venue::perp_v2::{
    MarketFees, PerpV2Error, PerpV2Market, PerpV2Params, TwapConfig, funding_market_twap_x96, mark_price, market_price,
    vamm_swap,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

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
    let spec = MarketSpec {
        prices: 0.0..4.5, // $1 to ~$30 000 a base
        exchange_fees: &[0, 100, 500, 1000, 2500, 10000],
        insurance_shares: &[0, 100_000, 250_000, 1_000_000],
        max_ticks: &[1000, 1000, 250, 50],
    };
    let OpenMarket { mut cu, fee, price, tick0, sqrt0, index0, fees, max_tick, opened, ctx } =
        open_market(&mut rng, seed, &spec);

    // the maker: a full-range order and 0–6 narrow or wide ones of $10k to $100M of quote
    let book = place_maker_orders(&mut cu, &mut rng, fee, sqrt0, tick0, price, 6, 4.0..8.0, opened, &ctx);
    t.makers += book.orders;
    let (pool, oracle, depth) = (book.pool, book.oracle, book.depth);
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
