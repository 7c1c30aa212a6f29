//! A PerpV2 FLI token running on its venue (`perp.md` A7–A9): the strategy's entry points
//! (`engage`, `rebalance`, `iterate_rebalance`, `ripcord`) with the reference's checks, each
//! chunk traded through a virtual AMM (a Uniswap v3 vETH/vUSD pool from `venue::amm`) with the
//! TWAP-derived opposite bound, and settled on a Perp-v2-style account (`venue::perp_v2`).
//! Every entry point is atomic: on error nothing changes.

use super::ShouldRebalance;
use super::perp::{PerpFli, PerpSnapshot};
use crate::error::FliError;
use crate::math::{I256, MathError, U256, WAD, pdiv, pmul, pmul_i};
use crate::venue::amm::Pool;
use crate::venue::perp_v2::{MarketFees, MarketTwaps, PerpV2Error, PerpV2Market, vamm_swap};
use serde::{Deserialize, Serialize};

fn i(x: U256) -> Result<I256, FliError> {
    I256::try_from(x).map_err(|_| FliError::Math(MathError::Overflow("int256")))
}

/// What a trade through the vAMM cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpTrade {
    /// Base traded (signed: positive bought).
    pub base: I256,
    /// Quote paid (buy) or received (sell), fee included.
    pub quote: U256,
    /// The exchange fee, in quote (`venue::perp_v2::vamm_swap`).
    pub fee: U256,
}

/// Seconds between snapshots of the vAMM's tick for the tick guard (`_PRICE_LIMIT_INTERVAL`).
pub const PRICE_LIMIT_INTERVAL: u64 = 15;

/// Perp v2's price guards on a swap through the vAMM (`Exchange._swap` and `Exchange.swap`,
/// `perp.md` B1): a swap may not leave the market–index spread beyond `max_price_spread` unless
/// it already was and the swap does not widen it (`EX_OPB`), and may not end more than
/// `max_tick_crossed` ticks from the tick recorded at the start of the current 15-second window
/// (`EX_OPLAS`). Both apply to every swap the token makes: rebalances, ripcords, and the
/// trades of issues and redeems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PriceGuards {
    /// `maxTickCrossedWithinBlock` (0: no limit; tokens saved before the guards existed).
    pub max_tick_crossed: u32,
    /// `maxPriceSpreadRatio` in the contract's 1e6 units (100 000 = 10%; 0: no limit).
    pub max_price_spread: u32,
    /// `_lastUpdatedTickMap`: the vAMM's tick at the first price of the current window.
    pub last_tick: i32,
    /// `_lastTickUpdatedTimestampMap`.
    pub last_tick_time: u64,
}

impl PriceGuards {
    /// Record the vAMM's tick when a new 15-second window starts.
    pub fn observe(&mut self, now: u64, tick: i32) {
        if self.last_tick_time == 0 || now >= self.last_tick_time.saturating_add(PRICE_LIMIT_INTERVAL) {
            self.last_tick = tick;
            self.last_tick_time = now;
        }
    }

    /// `_getPriceSpreadRatio(baseToken, 0)`: `(market − index) · 1e6 / index`, truncated toward
    /// zero, with the market price read from the vAMM's sqrt price as the contract formats it.
    pub fn spread(pool: &Pool, index: U256) -> Result<i128, FliError> {
        if index.is_zero() {
            return Err(FliError::Revert("the index price is 0"));
        }
        let market = crate::venue::perp_v2::market_price(pool.sqrt_price_x96())?;
        let million = U256::from(1_000_000u64);
        let (diff, negative) = if market > index { (market - index, false) } else { (index - market, true) };
        let r = crate::math::mul_div_down(diff, million, index, "price spread")?;
        let r = i128::try_from(r).unwrap_or(i128::MAX);
        Ok(if negative { -r } else { r })
    }

    /// Check a swap: `before` the spread before it, `pool` the vAMM after it.
    pub fn check(&self, before: i128, pool: &Pool, index: U256) -> Result<(), FliError> {
        if self.max_price_spread != 0 {
            let after = Self::spread(pool, index)?;
            let max = self.max_price_spread as i128;
            if !(before.min(-max) <= after && after <= before.max(max)) {
                return Err(FliError::Revert(
                    "EX_OPB: the trade would take the vAMM price out of its band around the index",
                ));
            }
        }
        if self.max_tick_crossed != 0 && self.last_tick_time != 0 {
            let max = self.max_tick_crossed as i64;
            let (tick, last) = (pool.tick() as i64, self.last_tick as i64);
            if tick < last - max || tick > last + max {
                return Err(FliError::Revert(
                    "EX_OPLAS: the trade would move the vAMM more ticks than the market allows in 15 seconds",
                ));
            }
        }
        Ok(())
    }
}

/// The token, its strategy, its venue account and the venue's pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerpFliToken {
    /// The strategy (settings, TWAP state, timestamps, ether balance).
    pub fli: PerpFli,
    /// The venue account.
    pub market: PerpV2Market,
    /// The vAMM: token0 = virtual base, token1 = virtual quote, both 18 decimals.
    pub pool: Pool,
    /// Token supply (wad).
    pub supply: U256,
    /// Index (oracle TWAP) price of the base, USD wad: trade bounds and valuation.
    pub index_price: U256,
    /// Holders' balances (wad). Tokens made by [`PerpFliToken::new`] are held by no one until
    /// [`PerpFliToken::with_holder`] assigns them.
    #[serde(default)]
    pub holders: std::collections::BTreeMap<alloy_primitives::Address, U256>,
    /// Ticker.
    #[serde(default)]
    pub symbol: String,
    /// Receives the streaming fee.
    #[serde(default)]
    pub fee_recipient: alloy_primitives::Address,
    /// Yearly streaming fee (wad), accrued by inflating supply to the fee recipient.
    #[serde(default)]
    pub streaming_fee: U256,
    /// When the streaming fee was last accrued.
    #[serde(default)]
    pub last_fee_accrual: u64,
    /// Maximum supply (wad; 0: none).
    #[serde(default)]
    pub supply_cap: U256,
    /// Fee on issue, as a fraction of the tokens issued, minted on top to the fee recipient and
    /// paid for by the issuer (`DebtIssuanceModuleV2`).
    #[serde(default)]
    pub mint_fee: U256,
    /// Fee on redeem, as a fraction of the tokens redeemed, kept as the fee recipient's.
    #[serde(default)]
    pub redeem_fee: U256,
    /// USD per token at the first issue (wad).
    #[serde(default)]
    pub initial_nav: U256,
    /// Index price the vAMM's liquidity was placed around (re-centred after a 20% move).
    #[serde(default)]
    pub pool_center: U256,
    /// USD of liquidity the vAMM is re-centred with.
    #[serde(default)]
    pub pool_tvl: U256,
    /// The venue's price guards on the token's swaps.
    #[serde(default)]
    pub guards: PriceGuards,
    /// The market's exchange fee and insurance share (`None`: a new market's, see
    /// [`PerpFliToken::fees`]).
    #[serde(default)]
    pub fees: Option<MarketFees>,
    /// The clearing house's mark price when it is not the index (`perp.md` B3): the margin
    /// checks of the token's trades and withdrawals use it. `None` (the simulator, which pins
    /// the vAMM to the index every block): the index. [`PerpFliToken::mark`] reads it.
    #[serde(default)]
    pub venue_mark: Option<U256>,
    /// The insurance fund's share of the exchange fees the token's swaps paid, to date (Curie
    /// books it on the fund's account; wad).
    #[serde(default)]
    pub insurance_fund_fees: U256,
}

impl PerpFliToken {
    /// A token with `supply` tokens backed by `collateral` USD on `market`, trading through `pool`.
    pub fn new(
        fli: PerpFli,
        mut market: PerpV2Market,
        pool: Pool,
        collateral: U256,
        supply: U256,
        index_price: U256,
    ) -> Result<Self, FliError> {
        market.deposit(collateral).map_err(|e| FliError::Revert(venue_reason(&e)))?;
        Ok(Self {
            fli,
            market,
            pool,
            supply,
            index_price,
            holders: Default::default(),
            symbol: String::new(),
            fee_recipient: alloy_primitives::Address::ZERO,
            streaming_fee: U256::ZERO,
            last_fee_accrual: 0,
            supply_cap: U256::ZERO,
            mint_fee: U256::ZERO,
            redeem_fee: U256::ZERO,
            initial_nav: U256::from(100u64) * WAD,
            pool_center: index_price,
            pool_tvl: U256::ZERO,
            guards: PriceGuards::default(),
            fees: None,
            venue_mark: None,
            insurance_fund_fees: U256::ZERO,
        })
    }

    /// Issue rules: a supply `cap` (0: none), mint and redeem fees (fractions of the tokens, to
    /// the fee recipient) and the USD price of a token at the first issue.
    pub fn with_ledger(mut self, cap: U256, mint_fee: U256, redeem_fee: U256, initial_nav: U256) -> Self {
        (self.supply_cap, self.mint_fee, self.redeem_fee, self.initial_nav) = (cap, mint_fee, redeem_fee, initial_nav);
        self
    }

    /// How many tokens `value` USD buys at `nav` a token (the NAV, or the initial NAV of an
    /// empty token). With a position open the issuer also pays the cost of trading the tokens'
    /// base on the vAMM (`perp.md` A8a), so the tokens are sized, on a copy, until what
    /// [`PerpFliToken::issue_tokens`] would take, with the manager's fee of `fee_rate` a token
    /// on top (`DebtIssuanceModuleV2.calculateTotalFees`), is within `value`. Returns the
    /// tokens the issuer receives.
    pub fn issue_size(&self, value: U256, nav: U256, fee_rate: U256) -> Result<U256, FliError> {
        if value.is_zero() {
            return Err(FliError::Revert("Amount is 0"));
        }
        if nav.is_zero() {
            return Err(FliError::Revert("NAV is 0: the token cannot be issued"));
        }
        let mut tokens = pdiv(value, nav)?;
        // each step scales by value / paid; a smaller trade costs no more per token, so this
        // converges from above in a step or two (the cap only guards a pathological pool)
        for _ in 0..8 {
            if tokens.is_zero() {
                return Ok(tokens);
            }
            let fee = pmul(tokens, fee_rate)?;
            let paid = self.clone().issue_tokens(tokens, fee, U256::MAX)?;
            if paid <= value {
                return Ok(tokens);
            }
            let scaled = crate::math::mul_div_down(tokens, value, paid, "issue size")?;
            tokens = if scaled < tokens { scaled } else { tokens - U256::from(1u8) };
        }
        Err(FliError::Revert("the issue could not be sized within the value offered"))
    }

    /// One settlement unit (1e12 for USDC's 6 decimals) in wad.
    fn settlement_unit(&self) -> U256 {
        crate::math::pow10(u32::from(18u8.saturating_sub(self.market.params.settlement_decimals)))
    }

    /// A new block at `now` with the index at `index`, as the clearing house meets it before
    /// any trade or settlement (`Exchange.settleFunding`): funding accrues from the market and
    /// index TWAPs ([`MarketTwaps::funding_twap_x96`]; the index is its own TWAP here), the
    /// price guard's 15-second window starts at the pool's tick, and the token takes the index
    /// and the mark price (`perp.md` B3, B6). Nothing changes on an error.
    pub fn settle_block(&mut self, twaps: &MarketTwaps, now: u64, index: U256) -> Result<(), PerpV2Error> {
        let twap = twaps.funding_twap_x96(&self.pool, now)?;
        let mark = twaps.mark(&self.pool, now, index)?;
        let mut market = self.market.clone();
        market.accrue_funding_x96(now, twap, index)?;
        self.market = market;
        self.guards.observe(now, self.pool.tick());
        self.index_price = index;
        self.venue_mark = Some(mark);
        Ok(())
    }

    /// The clearing house's price for the account's margin checks (`settle_trade`, `withdraw`):
    /// the mark when one is set ([`PerpFliToken::venue_mark`]), else the index.
    pub fn mark(&self) -> U256 {
        self.venue_mark.unwrap_or(self.index_price)
    }

    /// Issue `tokens` to the issuer and `fee` more to the fee recipient as Set's
    /// `DebtIssuanceModuleV2` with `PerpV2LeverageModuleV2` does (`perp.md` A8a), paying at most
    /// `max_paid` USD: the module's issue hook trades the issued tokens' share of the base on
    /// the vAMM against the account as it stands (the fee's share is not traded) and sets a
    /// USDC unit from the account's value without the position plus the quote the trade cost;
    /// the issuer pays `⌈unit × (tokens + fee)⌉` USDC, deposited. An empty token takes
    /// `initial_nav` a token. Returns what was paid (wad, whole settlement units). Nothing
    /// changes on refusal.
    pub fn issue_tokens(&mut self, tokens: U256, fee: U256, max_paid: U256) -> Result<U256, FliError> {
        if tokens.is_zero() {
            return Err(FliError::Revert("Issue quantity must be > 0"));
        }
        let unit = self.settlement_unit();
        let gross = crate::math::add(tokens, fee, "issue")?;
        self.atomically(|t| {
            let paid = if t.supply.is_zero() {
                crate::math::mul(
                    crate::math::mul_div_up(gross, t.initial_nav, WAD, "issue")?.div_ceil(unit),
                    unit,
                    "issue",
                )?
            } else {
                let per = t.flow_unit(tokens, true)?;
                if per.is_zero() {
                    return Err(FliError::Revert("the token's account value is zero or less: it cannot be issued"));
                }
                // `preciseMulCeil` of the unit (settlement units) by the tokens with fees
                crate::math::mul(crate::math::mul_div_up(per, gross, WAD, "issue")?, unit, "issue")?
            };
            if paid > max_paid {
                return Err(FliError::Revert("the issue's trade costs more than the value offered"));
            }
            t.market.deposit(paid).map_err(|e| FliError::Revert(venue_reason(&e)))?;
            t.supply = crate::math::add(t.supply, gross, "supply")?;
            Ok(paid)
        })
    }

    /// `PerpV2LeverageModuleV2._executePositionTrades` for `tokens` of the supply (not a
    /// simulation): the account value without the position per token (`collateral + owed PnL −
    /// pending funding + open notional`, over the supply, truncated) times the tokens; then the
    /// tokens' share of the base, `⌊⌊base/S⌋ × tokens⌋` (bought on an issue of a long, sold on a
    /// redeem), traded on the vAMM with no quote bound, its quote added for a long (subtracted
    /// for a short); the result per token in whole settlement units, rounded away from zero on
    /// an issue and toward zero on a redeem; 0 for an account worth nothing. A position under
    /// a wei a token is not the module's (`_hasBaseBalance`): neither traded nor counted.
    fn flow_unit(&mut self, tokens: U256, issue: bool) -> Result<U256, FliError> {
        let (s, q) = (i(self.supply)?, i(tokens)?);
        let a = self.market.account.clone();
        let pending = self.market.pending_funding().map_err(|e| FliError::Revert(venue_reason(&e)))?;
        let base_unit = crate::math::pdiv_i(a.base, s)?;
        let counted = base_unit.unsigned_abs() > U256::from(1u8);
        let quote = if counted { a.quote } else { I256::ZERO };
        let partial = crate::math::pdiv_i(a.collateral + a.owed_realized_pnl - pending + quote, s)?;
        let mut value = pmul_i(partial, q)?;
        if counted {
            let share = pmul_i(base_unit, q)?;
            let traded = self.swap_and_settle(if issue { share } else { -share }, None)?;
            let quote = i(traded.quote)?;
            value = if share.is_negative() { value - quote } else { value + quote };
        }
        if !value.is_positive() {
            return Ok(U256::ZERO);
        }
        let v = value.unsigned_abs();
        let per = if issue { crate::math::mul_div_up(v, WAD, tokens, "flow unit")? } else { pdiv(v, tokens)? };
        Ok(per / self.settlement_unit())
    }

    /// The token's ticker.
    pub fn named(mut self, symbol: &str) -> Self {
        self.symbol = symbol.to_string();
        self
    }

    /// The initial supply belongs to `holder`.
    pub fn with_holder(mut self, holder: alloy_primitives::Address) -> Self {
        self.holders.insert(holder, self.supply);
        self
    }

    /// A yearly streaming `fee` (wad) to `recipient`, accruing from `now`.
    pub fn with_streaming_fee(mut self, fee: U256, recipient: alloy_primitives::Address, now: u64) -> Self {
        (self.streaming_fee, self.fee_recipient, self.last_fee_accrual) = (fee, recipient, now);
        self
    }

    /// What the strategy reads (`_createActionInfo`).
    pub fn snapshot(&self, now: u64) -> Result<PerpSnapshot, FliError> {
        let a = &self.market.account;
        let pending = self.market.pending_funding().map_err(|e| FliError::Revert(venue_reason(&e)))?;
        Ok(PerpSnapshot {
            now,
            total_supply: self.supply,
            collateral: a.collateral,
            base_balance: a.base,
            quote_balance: a.quote,
            owed_realized_pnl: a.owed_realized_pnl,
            pending_funding: -pending,
            base_price: i(self.index_price)?,
        })
    }

    /// Signed leverage ratio now.
    pub fn leverage_ratio(&self, now: u64) -> Result<I256, FliError> {
        Ok(PerpFli::leverage(&self.snapshot(now)?)?.1)
    }

    /// NAV per token (USD wad): account value at the index over supply.
    pub fn nav_per_token(&self) -> Result<U256, FliError> {
        let av = self.market.account_value(self.index_price).map_err(|e| FliError::Revert(venue_reason(&e)))?;
        if av.is_negative() || self.supply.is_zero() {
            return Ok(U256::ZERO);
        }
        Ok(pdiv(av.unsigned_abs(), self.supply)?)
    }

    /// Issue tokens for at most `usd` at NAV plus the cost of trading their base (`issue_size`,
    /// `issue_tokens`). Returns the tokens issued.
    pub fn issue(&mut self, usd: U256) -> Result<U256, FliError> {
        let nav = self.nav_per_token()?;
        let tokens = self.issue_size(usd, nav, U256::ZERO)?;
        self.issue_tokens(tokens, U256::ZERO, usd)?;
        Ok(tokens)
    }

    /// Redeem `tokens`, `fee` of them kept as the fee recipient's, as Set's
    /// `DebtIssuanceModuleV2` with `PerpV2LeverageModuleV2` does (`perp.md` A8a): the module's
    /// redeem hook sells the share of the position of all `tokens` on the vAMM and sets a USDC
    /// unit from the account's value without the position plus the quote the sale brought;
    /// `⌊unit × (tokens − fee)⌋` USDC is withdrawn from the venue (its free-collateral rule,
    /// `V_NEFC`) and paid — nothing for an account worth nothing — and the supply falls by
    /// `tokens − fee`. Returns the USD paid (wad, whole settlement units). Nothing changes on
    /// refusal.
    pub fn redeem(&mut self, tokens: U256, fee: U256) -> Result<U256, FliError> {
        if tokens.is_zero() || tokens > self.supply {
            return Err(FliError::Revert("Redeem amount must be > 0 and at most the supply"));
        }
        if fee > tokens {
            return Err(FliError::Revert("the redeem fee exceeds the tokens redeemed"));
        }
        let unit = self.settlement_unit();
        self.atomically(|t| {
            let per = t.flow_unit(tokens, false)?;
            let paid = crate::math::mul(pmul(per, tokens - fee)?, unit, "redeem")?;
            if !paid.is_zero() {
                let mark = t.mark();
                t.market.withdraw(paid, mark).map_err(|e| FliError::Revert(venue_reason(&e)))?;
            }
            t.supply -= tokens - fee;
            Ok(paid)
        })
    }

    /// `shouldRebalance()`.
    pub fn should_rebalance(&self, now: u64) -> Result<ShouldRebalance, FliError> {
        let lr = self.leverage_ratio(now)?;
        let m = &self.fli.methodology;
        self.fli.should_rebalance_at(lr, m.min_leverage_ratio, m.max_leverage_ratio, now)
    }

    /// §A7: trade a chunk through the vAMM with the TWAP bound, then settle it on the account.
    fn trade(&mut self, chunk: I256, slippage: U256) -> Result<PerpTrade, FliError> {
        let (units, bound) = PerpFli::trade_units(chunk, self.supply, i(self.index_price)?, slippage)?;
        self.trade_units(units, bound)
    }

    /// `PerpV2LeverageModuleV2.trade`: `units` of base a token (positive buys) for at most (a
    /// buy) or at least (a sale) `bound_units` of quote a token (0: no bound). Units of exactly
    /// minus the position a token (`⌊base/S⌋`) close the whole position; any other units trade
    /// `⌊units × S⌋`. Nothing changes on refusal.
    pub fn trade_units(&mut self, units: I256, bound_units: U256) -> Result<PerpTrade, FliError> {
        if units.is_zero() {
            return Err(FliError::Revert("Amount is 0"));
        }
        let s = i(self.supply)?;
        let position = self.market.account.base;
        // a notional that rounds to 0 goes to the clearing house as the module sends it (`AS`)
        let base = if units == -crate::math::pdiv_i(position, s)? { -position } else { pmul_i(units, s)? };
        let bound = pmul(bound_units, self.supply)?;
        self.atomically(|t| t.swap_and_settle(base, (!bound.is_zero()).then_some(bound)))
    }

    /// The venue fees the token trades at: the product's, or a new market's (the pool's fee
    /// tier, no insurance share) for tokens saved before they were set.
    pub fn fees(&self) -> MarketFees {
        self.fees.unwrap_or_else(|| MarketFees::of_pool(&self.pool))
    }

    /// One `ClearingHouse.openPosition` as Set's `PerpV2LeverageModuleV2` sends it: buying
    /// `base > 0` is an exact output of base, selling an exact input, through the vAMM with the
    /// exchange fee (`venue::perp_v2::vamm_swap`), held to the price guards and to `bound` on
    /// the quote after the fee (`CH_TMRL` on what a buy pays, `CH_TLRS` on what a sale
    /// receives), booked on the account with the margin check at [`PerpFliToken::mark`] first,
    /// as the clearing house orders them. The caller keeps it atomic (a refusal leaves the pool
    /// and account moved).
    fn swap_and_settle(&mut self, base: I256, bound: Option<U256>) -> Result<PerpTrade, FliError> {
        let sell = base.is_negative();
        let spread = self.spread_before()?;
        let fees = self.fees();
        let swap = vamm_swap(&mut self.pool, fees, sell, sell, base.unsigned_abs(), None).map_err(|e| match e {
            PerpV2Error::Vamm(m) => FliError::Venue(m),
            e => FliError::Revert(venue_reason(&e)),
        })?;
        self.guards.check(spread, &self.pool, self.index_price)?;
        let quote = swap.quote();
        // `_openPositionFor`: the margin check inside `_openPosition` comes before `_checkSlippage`
        self.market
            .settle_trade(swap.exchanged_position_size, quote, self.mark())
            .map_err(|e| FliError::Revert(venue_reason(&e)))?;
        match bound {
            Some(b) if sell && quote.unsigned_abs() < b => {
                return Err(FliError::Revert("CH_TLRS: the sale would receive less quote than the slippage bound"));
            }
            Some(b) if !sell && quote.unsigned_abs() > b => {
                return Err(FliError::Revert("CH_TMRL: the purchase would pay more quote than the slippage bound"));
            }
            _ => {}
        }
        self.insurance_fund_fees = crate::math::add(self.insurance_fund_fees, swap.insurance_fund_fee, "fees")?;
        Ok(PerpTrade { base: swap.exchanged_position_size, quote: quote.unsigned_abs(), fee: swap.fee })
    }

    /// The market–index spread before a swap (0 when the spread guard is off).
    fn spread_before(&self) -> Result<i128, FliError> {
        if self.guards.max_price_spread == 0 { Ok(0) } else { PriceGuards::spread(&self.pool, self.index_price) }
    }

    fn preamble(&self, now: u64) -> Result<(PerpSnapshot, I256), FliError> {
        let s = self.snapshot(now)?;
        if self.supply.is_zero() {
            return Err(FliError::Revert("SetToken must have > 0 supply"));
        }
        let lr = PerpFli::leverage(&s)?.1;
        if lr.is_zero() {
            return Err(FliError::Revert("Current leverage ratio must NOT be 0"));
        }
        Ok((s, lr))
    }

    fn atomically<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, FliError>) -> Result<T, FliError> {
        let mut next = self.clone();
        let out = f(&mut next)?;
        *self = next;
        Ok(out)
    }

    /// `engage()`: open toward the target, as a TWAP when the first chunk is capped.
    pub fn engage(&mut self, now: u64) -> Result<PerpTrade, FliError> {
        self.atomically(|t| {
            let s = t.snapshot(now)?;
            if s.collateral <= I256::ZERO {
                return Err(FliError::Revert("Collateral balance must be > 0"));
            }
            if t.supply.is_zero() {
                return Err(FliError::Revert("SetToken must have > 0 supply"));
            }
            if !crate::math::pdiv_i(s.base_balance, i(t.supply)?)?.is_zero() {
                return Err(FliError::Revert("Base position must NOT exist"));
            }
            let (chunk, total) = t.fli.engage_size(&s)?;
            let slip = t.fli.execution.slippage_tolerance;
            let trade = t.trade(chunk, slip)?;
            t.fli.last_trade_timestamp = now;
            if chunk.unsigned_abs() < total.unsigned_abs() {
                t.fli.twap_leverage_ratio = t.fli.methodology.target_leverage_ratio;
            }
            Ok(trade)
        })
    }

    fn check_rebalance(&self, lr: I256, now: u64, cooldown: u64) -> Result<(), FliError> {
        let m = &self.fli.methodology;
        if lr.unsigned_abs() >= self.fli.incentive.incentivized_leverage_ratio.unsigned_abs() {
            return Err(FliError::Revert("Must be below incentivized leverage ratio"));
        }
        let elapsed = now.saturating_sub(self.fli.last_trade_timestamp) > cooldown;
        if !(elapsed
            || lr.unsigned_abs() > m.max_leverage_ratio.unsigned_abs()
            || lr.unsigned_abs() < m.min_leverage_ratio.unsigned_abs())
        {
            return Err(FliError::Revert("Cooldown not elapsed or not valid leverage ratio"));
        }
        Ok(())
    }

    /// `rebalance()`: recenter toward the target.
    pub fn rebalance(&mut self, now: u64) -> Result<PerpTrade, FliError> {
        self.atomically(|t| {
            let (_, lr) = t.preamble(now)?;
            t.check_rebalance(lr, now, t.fli.methodology.rebalance_interval)?;
            if !t.fli.twap_leverage_ratio.is_zero() {
                return Err(FliError::Revert("Must call iterate"));
            }
            let new_lr = t.fli.recenter(lr)?;
            let (chunk, total) = PerpFli::size(lr, new_lr, t.market.account.base, t.fli.exchange.twap_max_trade_size)?;
            let trade = t.trade(chunk, t.fli.execution.slippage_tolerance)?;
            t.fli.last_trade_timestamp = now;
            if chunk.unsigned_abs() < total.unsigned_abs() {
                t.fli.twap_leverage_ratio = new_lr;
            }
            Ok(trade)
        })
    }

    /// `iterateRebalance()`: the next TWAP chunk (or the advantageous skip).
    pub fn iterate_rebalance(&mut self, now: u64) -> Result<Option<PerpTrade>, FliError> {
        self.atomically(|t| {
            let (_, lr) = t.preamble(now)?;
            t.check_rebalance(lr, now, t.fli.execution.twap_cooldown_period)?;
            let twap = t.fli.twap_leverage_ratio;
            if twap.is_zero() {
                return Err(FliError::Revert("Not in TWAP state"));
            }
            let target = t.fli.methodology.target_leverage_ratio;
            let (a, tw, tl) = (lr.unsigned_abs(), twap.unsigned_abs(), target.unsigned_abs());
            let advantageous = (tw < tl && a >= tw) || (tw > tl && a <= tw);
            let (chunk, total, trade) = if advantageous {
                (I256::ZERO, I256::ZERO, None)
            } else {
                let (c, tot) = PerpFli::size(lr, twap, t.market.account.base, t.fli.exchange.twap_max_trade_size)?;
                let tr = t.trade(c, t.fli.execution.slippage_tolerance)?;
                (c, tot, Some(tr))
            };
            t.fli.last_trade_timestamp = now;
            if chunk == total {
                t.fli.twap_leverage_ratio = I256::ZERO;
            }
            Ok(trade)
        })
    }

    /// `ripcord()`: anyone; back to the max ratio in incentivized chunks; pays the reward.
    /// Returns the trade and the ether paid.
    pub fn ripcord(&mut self, now: u64) -> Result<(PerpTrade, U256), FliError> {
        self.atomically(|t| {
            let (_, lr) = t.preamble(now)?;
            let i_lr = t.fli.incentive.incentivized_leverage_ratio;
            if lr.unsigned_abs() < i_lr.unsigned_abs() {
                return Err(FliError::Revert("Must be above incentivized leverage ratio"));
            }
            if t.fli.last_trade_timestamp + t.fli.incentive.incentivized_twap_cooldown_period >= now {
                return Err(FliError::Revert("TWAP cooldown must have elapsed"));
            }
            let max = t.fli.methodology.max_leverage_ratio;
            let (chunk, _) =
                PerpFli::size(lr, max, t.market.account.base, t.fli.exchange.incentivized_twap_max_trade_size)?;
            let trade = t.trade(chunk, t.fli.incentive.incentivized_slippage_tolerance)?;
            t.fli.last_trade_timestamp = now;
            t.fli.twap_leverage_ratio = I256::ZERO;
            let paid = t.fli.incentive.ether_reward.min(t.fli.ether_balance);
            t.fli.ether_balance -= paid;
            Ok((trade, paid))
        })
    }
}

pub(crate) fn venue_reason(e: &crate::venue::perp_v2::PerpV2Error) -> &'static str {
    use crate::venue::perp_v2::PerpV2Error as E;
    match e {
        E::NotEnoughFreeCollateralIm => "CH_NEFCI",
        E::NotEnoughFreeCollateralMm => "CH_NEFCM",
        E::NotEnoughFreeCollateral { .. } => "V_NEFC",
        E::EnoughAccountValue => "CH_EAV",
        E::ZeroAmount => "AS: the trade's base rounds to 0; the vAMM refuses a swap of nothing",
        E::Invalid(_) => "invalid trade",
        E::Vamm(_) => "the vAMM cannot fill the trade",
        E::TickMismatch { .. } => "EX_TKMM",
        E::UnmatchedOutput => "UB_UOA: the vAMM holds less than the base the trade buys",
        E::Math(_) => "arithmetic",
    }
}

/// A vETH/vUSD vAMM at `price` with `tvl_usd` of liquidity in bands around it and `fee_pips`.
pub fn vamm(price: U256, tvl_usd: U256, fee_pips: u32) -> Result<Pool, crate::error::AmmError> {
    use crate::venue::amm::PoolToken;
    let share = |pct: u64| tvl_usd * U256::from(pct) / U256::from(100u64);
    let bands = [(50u32, share(15)), (200, share(25)), (1_000, share(30)), (5_000, share(20)), (30_000, share(10))];
    Pool::from_profile(
        "vAMM vETH/vUSD",
        PoolToken { symbol: "vETH".into(), decimals: 18 },
        PoolToken { symbol: "vUSD".into(), decimals: 18 },
        fee_pips,
        price,
        WAD,
        &bands,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::PerpProduct;
    use crate::venue::perp_v2::PerpV2Params;

    fn w(s: &str) -> U256 {
        crate::math::Wad::parse(s).unwrap().0
    }

    fn token() -> PerpFliToken {
        let p = PerpProduct::from_toml(include_str!("../../../../../products/eth2x-perp.toml")).unwrap();
        let mut fli = p.strategy().unwrap();
        fli.ether_balance = w("10");
        let pool = vamm(w("2000"), w("500000000"), 500).unwrap();
        PerpFliToken::new(fli, PerpV2Market::new(PerpV2Params::default(), 0), pool, w("100000"), w("1000"), w("2000"))
            .unwrap()
    }

    #[test]
    fn engage_twaps_to_target_then_rebalances_back() {
        let mut t = token();
        // 2x of $100k at $2000 is 100 vETH; chunks of 10: a TWAP.
        let tr = t.engage(100).unwrap();
        assert_eq!(tr.base, crate::math::SignedWad::parse("10").unwrap().0);
        assert!(!t.fli.twap_leverage_ratio.is_zero(), "TWAP started");
        assert_eq!(t.engage(101).unwrap_err(), FliError::Revert("Base position must NOT exist"));
        let mut now = 100;
        let mut n = 0;
        // While LR is still under the 1.7 min the cooldown does not gate (the reference's
        // "or not valid leverage ratio"): the first chunks may follow at once.
        now += 1;
        t.iterate_rebalance(now).unwrap();
        while !t.fli.twap_leverage_ratio.is_zero() {
            let lr = t.leverage_ratio(now + 1).unwrap();
            if lr.unsigned_abs() >= w("1.7") {
                assert_eq!(
                    t.iterate_rebalance(now + 1).unwrap_err(),
                    FliError::Revert("Cooldown not elapsed or not valid leverage ratio"),
                    "inside the band, the 30 s cooldown applies"
                );
            }
            now += 31;
            t.iterate_rebalance(now).unwrap();
            n += 1;
            assert!(n < 20);
        }
        let lr = t.leverage_ratio(now).unwrap();
        assert!(lr > w("1.98").try_into().unwrap() && lr < w("2.02").try_into().unwrap(), "engaged at 2x: {lr}");
        assert_eq!(t.should_rebalance(now + 1).unwrap(), ShouldRebalance::None);
        // ETH −10%: 2x → 2.25, inside the 2.3 max; a day later the epoch rebalance recenters.
        t.index_price = w("1800");
        let sqrt = crate::venue::amm::sqrt_price_x96_from_ratio(w("1800"), WAD).unwrap();
        t.pool.move_price_to(sqrt).unwrap();
        assert_eq!(t.should_rebalance(now + 10).unwrap(), ShouldRebalance::None);
        let day = now + 86_401;
        assert_eq!(t.should_rebalance(day).unwrap(), ShouldRebalance::Rebalance);
        let before = t.leverage_ratio(day).unwrap();
        let tr = t.rebalance(day).unwrap();
        assert!(tr.base.is_negative(), "a long delevers by selling base");
        assert!(t.leverage_ratio(day).unwrap() < before);
    }

    #[test]
    fn ripcord_above_the_incentivized_ratio_pays_the_reward() {
        let mut t = token();
        t.engage(100).unwrap();
        let mut now = 100;
        while !t.fli.twap_leverage_ratio.is_zero() {
            now += 31;
            t.iterate_rebalance(now).unwrap();
        }
        // ETH −22%: 2x → 2.79 ≥ 2.7.
        t.index_price = w("1560");
        let sqrt = crate::venue::amm::sqrt_price_x96_from_ratio(w("1560"), WAD).unwrap();
        t.pool.move_price_to(sqrt).unwrap();
        assert_eq!(t.should_rebalance(now + 5).unwrap(), ShouldRebalance::Ripcord);
        assert_eq!(t.rebalance(now + 5).unwrap_err(), FliError::Revert("Must be below incentivized leverage ratio"));
        let before = t.clone();
        let (tr, paid) = t.ripcord(now + 5).unwrap();
        assert!(tr.base.is_negative());
        assert_eq!(paid, w("1"));
        assert!(t.leverage_ratio(now + 5).unwrap() < before.leverage_ratio(now + 5).unwrap());
        // One 20 vETH chunk brought LR back under 2.7: a second ripcord is refused, nothing changes.
        let snap = t.fli.clone();
        assert_eq!(t.ripcord(now + 6).unwrap_err(), FliError::Revert("Must be above incentivized leverage ratio"));
        assert_eq!(t.fli, snap);
        // Deeper: −30% takes it over 2.7 again, but within the 1 s cooldown of the last ripcord.
        t.index_price = w("1400");
        let sqrt = crate::venue::amm::sqrt_price_x96_from_ratio(w("1400"), WAD).unwrap();
        t.pool.move_price_to(sqrt).unwrap();
        assert_eq!(t.ripcord(now + 6).unwrap_err(), FliError::Revert("TWAP cooldown must have elapsed"));
        assert_eq!(t.fli, snap);
        assert!(t.ripcord(now + 7).is_ok());
    }

    /// Set's `PerpV2LeverageModuleV2`: issue and redeem trade the tokens' share of the position
    /// on the vAMM, so leverage and the other holders' NAV do not move; the issuer and the
    /// redeemer pay the trade's cost, and a redeem of the whole supply closes the position.
    #[test]
    fn issue_and_redeem_trade_the_position_and_keep_leverage() {
        let mut t = token();
        t.engage(100).unwrap();
        let mut now = 100;
        while !t.fli.twap_leverage_ratio.is_zero() {
            now += 31;
            t.iterate_rebalance(now).unwrap();
        }
        let close = |a: I256, b: I256, tol: &str| (a - b).unsigned_abs() <= w(tol);
        let nav = t.nav_per_token().unwrap();
        let lr = t.leverage_ratio(now).unwrap();
        let base = t.market.account.base;
        // $100k more doubles the token; the leverage stays where it was.
        let supply = t.supply;
        let tokens = t.issue(w("100000")).unwrap();
        let after = t.nav_per_token().unwrap();
        // the module's USDC unit is cut to whole micro-dollars after rounding up: the issuer may
        // pay up to $0.000001 a token less than the value, which the holders share
        assert!(
            after + w("0.000001") >= nav && after < nav + w("0.000001"),
            "other holders keep their NAV: {nav} → {after}"
        );
        assert!(tokens > w("990") && tokens < w("1000"), "the issuer paid the trade's cost: {tokens} tokens for $100k");
        assert!(close(t.leverage_ratio(now).unwrap(), lr, "0.00001"), "leverage kept");
        let per_token = crate::math::pdiv_i(base, i(supply).unwrap()).unwrap();
        assert!(close(
            crate::math::pdiv_i(t.market.account.base, i(t.supply).unwrap()).unwrap(),
            per_token,
            "0.000000001"
        ));
        assert_eq!(t.should_rebalance(now + 1).unwrap(), ShouldRebalance::None, "nothing for the keeper to do");
        // A redemption is paid NAV less its trade's cost; leverage and NAV stay.
        let nav = t.nav_per_token().unwrap();
        let paid = t.redeem(w("10"), U256::ZERO).unwrap();
        let at_nav = pmul(w("10"), nav).unwrap();
        assert!(paid < at_nav && at_nav - paid < w("5"), "paid {paid} for tokens worth {at_nav}");
        assert!(t.nav_per_token().unwrap() >= nav);
        assert!(close(t.leverage_ratio(now).unwrap(), lr, "0.00001"), "leverage kept");
        assert_eq!(paid % w("0.000001"), U256::ZERO, "paid in whole USDC");
        // The whole supply can leave: the position closes with it, but for what `⌊base/S⌋ × S`
        // leaves (at most a wei a token), as the module's trade does.
        let all = t.supply;
        let base = t.market.account.base;
        t.redeem(all, U256::ZERO).unwrap();
        assert_eq!(t.supply, U256::ZERO);
        let left = t.market.account.base;
        assert!(
            left.unsigned_abs() <= all / WAD + U256::from(1u8) && left.is_negative() == base.is_negative()
                || left.is_zero(),
            "{left}"
        );
        // An issue of nothing, or at a zero NAV, is refused and changes nothing.
        let before = t.clone();
        assert_eq!(t.issue_size(U256::ZERO, nav, U256::ZERO).unwrap_err(), FliError::Revert("Amount is 0"));
        assert_eq!(t, before);
    }

    /// `PerpV2LeverageModuleV2.trade`: units of exactly minus the position a token close all of
    /// it; the same units times the supply would leave dust. Zero units are `Amount is 0`; a
    /// notional that truncates to 0 goes to the pool, which refuses it (`AS`).
    #[test]
    fn trade_units_close_the_whole_position_at_minus_its_unit() {
        let mut t = token();
        t.supply = w("3");
        t.trade_units(crate::math::SignedWad::parse("10").unwrap().0, U256::ZERO).unwrap();
        t.supply = w("7"); // 30 vETH over 7 tokens does not divide evenly
        let base = t.market.account.base;
        let unit = crate::math::pdiv_i(base, i(t.supply).unwrap()).unwrap();
        assert_ne!(pmul_i(unit, i(t.supply).unwrap()).unwrap(), base, "truncation would leave dust");
        t.trade_units(-unit, U256::ZERO).unwrap();
        assert_eq!(t.market.account.base, I256::ZERO, "closed exactly");
        assert_eq!(t.trade_units(I256::ZERO, U256::ZERO).unwrap_err(), FliError::Revert("Amount is 0"));
        t.supply = w("0.5"); // a wei of base a token is half a wei in all: 0
        let before = t.clone();
        let err = t.trade_units(I256::ONE, U256::ZERO).unwrap_err();
        assert!(matches!(err, FliError::Revert(r) if r.starts_with("AS")), "{err:?}");
        assert_eq!(t, before);
    }

    /// `DebtIssuanceModuleV2`'s manager fee comes on top: the issuer pays the unit for the
    /// tokens and the fee's tokens, the hook trades only the issued tokens' base; a redeem trades
    /// the base of all the tokens and pays for those net of the fee.
    #[test]
    fn fees_come_on_top_and_their_tokens_keep_no_base() {
        let mut t = token();
        t.engage(100).unwrap();
        let (q, fee) = (w("10"), w("0.01"));
        let mut plain = t.clone();
        let paid_plain = plain.issue_tokens(q, U256::ZERO, U256::MAX).unwrap();
        let paid = t.issue_tokens(q, fee, U256::MAX).unwrap();
        assert_eq!(plain.market.account.base, t.market.account.base, "the fee's tokens are not traded");
        assert_eq!(t.supply, plain.supply + fee);
        let unit = w("0.000001");
        assert!(paid > paid_plain && paid - paid_plain <= pmul(fee, w("101")).unwrap() + unit, "{paid_plain} {paid}");
        assert_eq!(paid % unit, U256::ZERO, "whole USDC");
        let (base, supply) = (t.market.account.base, t.supply);
        let redeemed = t.redeem(q, fee).unwrap();
        let share = pmul_i(crate::math::pdiv_i(base, i(supply).unwrap()).unwrap(), i(q).unwrap()).unwrap();
        assert_eq!(t.market.account.base, base - share, "the base of all ten tokens was sold");
        assert_eq!(t.supply, supply - (q - fee), "the fee's tokens stay");
        assert!(redeemed < paid_plain);
        assert_eq!(
            t.redeem(q, q + U256::from(1u8)).unwrap_err(),
            FliError::Revert("the redeem fee exceeds the tokens redeemed")
        );
    }

    /// A token on a thin vAMM, guards as `perp.md` B1 with `max_tick` ticks a window.
    fn thin(max_tick: u32, tvl: &str) -> PerpFliToken {
        let mut t = token();
        t.pool = vamm(w("2000"), w(tvl), 500).unwrap();
        t.guards = PriceGuards { max_tick_crossed: max_tick, max_price_spread: 100_000, ..PriceGuards::default() };
        t.guards.observe(100, t.pool.tick());
        t
    }

    #[test]
    fn table_price_guards_refuse_what_the_exchange_refuses() {
        // (case, max ticks, vAMM TVL, engage chunk in vETH, refusal)
        let cases: [(&str, u32, &str, &str, Option<&str>); 4] = [
            ("a small chunk passes both", 1_000, "2000000", "10", None),
            ("a tight tick limit stops it", 1, "2000000", "10", Some("EX_OPLAS")),
            ("a chunk that moves the vAMM past 10% of the index", 1_000_000, "200000", "40", Some("EX_OPB")),
            ("guards off: the same chunk fills", 0, "200000", "40", None),
        ];
        for (case, max_tick, tvl, chunk, refusal) in cases {
            let mut t = thin(max_tick, tvl);
            if max_tick == 0 {
                t.guards = PriceGuards::default();
            }
            t.fli.exchange.twap_max_trade_size = w(chunk);
            t.fli.execution.slippage_tolerance = w("0.5"); // so the guard, not the TWAP bound, decides
            let before = t.clone();
            match (t.engage(101), refusal) {
                (Ok(_), None) => {}
                (Err(FliError::Revert(m)), Some(code)) => {
                    assert!(m.starts_with(code), "{case}: {m}");
                    assert_eq!(t, before, "{case}: a refused trade changes nothing");
                }
                (other, _) => panic!("{case}: {other:?}"),
            }
        }
    }

    #[test]
    fn the_tick_window_moves_every_15_seconds() {
        let mut g = PriceGuards { max_tick_crossed: 10, ..PriceGuards::default() };
        g.observe(100, 5);
        g.observe(114, 50);
        assert_eq!((g.last_tick, g.last_tick_time), (5, 100), "inside the window: kept");
        g.observe(115, 50);
        assert_eq!((g.last_tick, g.last_tick_time), (50, 115), "15 s later: the new tick");
    }

    #[test]
    fn a_spread_already_outside_the_band_may_narrow_but_not_widen() {
        let t = thin(1_000_000, "2000000");
        // the index 15% below the vAMM: +15% spread
        let index = w("1739.130434782608695652");
        let s = PriceGuards::spread(&t.pool, index).unwrap();
        assert!((149_000..151_000).contains(&s), "{s}");
        assert!(t.guards.check(s, &t.pool, index).is_ok(), "unchanged: allowed");
        assert!(t.guards.check(s - 1, &t.pool, index).is_err(), "wider than before and than 10%: refused");
    }
}
