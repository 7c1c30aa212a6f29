//! One error enum per area. Each message is a sentence a user can act on; where the reference
//! contracts have a revert string, the message starts with it verbatim.

use crate::math::{DecimalError, MathError};
use thiserror::Error;

/// Errors from price feeds (`venues.md` §4.2). A price is never clamped or defaulted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum OracleError {
    /// The feed's answer is zero or negative.
    #[error("Oracle {feed}: answer is not positive")]
    NotPositive {
        /// Feed name.
        feed: String,
    },
    /// The answer's timestamp is after `now`.
    #[error("Oracle {feed}: answer is from the future")]
    FromFuture {
        /// Feed name.
        feed: String,
    },
    /// The answer is older than the feed's staleness limit.
    #[error("Oracle {feed}: answer is stale (updated {age} s ago, limit {limit} s)")]
    Stale {
        /// Feed name.
        feed: String,
        /// Seconds since the answer was posted.
        age: u64,
        /// The staleness limit in seconds.
        limit: u64,
    },
    /// The L2 sequencer is down or inside its grace period.
    #[error("Oracle {feed}: sequencer down or in grace period")]
    Sequencer {
        /// Feed name.
        feed: String,
    },
    /// The feed has never been posted to.
    #[error("Oracle {feed}: no answer has been posted yet")]
    NoAnswer {
        /// Feed name.
        feed: String,
    },
}

/// Errors from the Aave-v3-style lending market; messages are `<aave code>: <meaning>`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum LendingError {
    /// Amount is zero (Aave 26).
    #[error("26: Amount must be greater than 0")]
    InvalidAmount,
    /// Reserve inactive (27).
    #[error("27: Action requires an active reserve")]
    ReserveInactive,
    /// Reserve frozen (28).
    #[error("28: Action cannot be performed because the reserve is frozen")]
    ReserveFrozen,
    /// Reserve paused (29).
    #[error("29: Action cannot be performed because the reserve is paused")]
    ReservePaused,
    /// Borrowing disabled (30).
    #[error("30: Borrowing is not enabled")]
    BorrowingNotEnabled,
    /// Withdrawal above balance (32).
    #[error("32: User cannot withdraw more than the available balance")]
    NotEnoughUserBalance,
    /// No collateral (34).
    #[error("34: The collateral balance is 0")]
    CollateralBalanceZero,
    /// Health factor too low for the action (35).
    #[error("35: Health factor is lesser than the liquidation threshold")]
    HealthFactorTooLow,
    /// Borrow not covered by collateral (36).
    #[error("36: There is not enough collateral to cover a new borrow")]
    CollateralCannotCoverBorrow,
    /// Repay with no debt (39).
    #[error("39: To repay on behalf of a user an explicit amount to repay is needed (no debt of this type)")]
    NoDebt,
    /// Liquidation of a healthy account (45).
    #[error("45: Health factor is not below the threshold")]
    HealthFactorNotBelowThreshold,
    /// Collateral cannot be liquidated (46).
    #[error("46: The collateral chosen cannot be liquidated")]
    CollateralCannotBeLiquidated,
    /// Debt asset not borrowed (47).
    #[error("47: User did not borrow the specified currency")]
    CurrencyNotBorrowed,
    /// Borrow cap (50).
    #[error("50: Borrow cap is exceeded")]
    BorrowCapExceeded,
    /// Supply cap (51).
    #[error("51: Supply cap is exceeded")]
    SupplyCapExceeded,
    /// LTV zero (57).
    #[error("57: Ltv validation failed")]
    LtvValidationFailed,
    /// eMode mismatch (58).
    #[error("58: Inconsistent eMode category")]
    InconsistentEmodeCategory,
    /// Sentinel (59).
    #[error("59: Price oracle sentinel validation failed")]
    SentinelCheckFailed,
    /// Scaled amount rounds to zero (24/25).
    #[error("24: Invalid amount to mint or burn (rounds to zero scaled units)")]
    InvalidScaledAmount,
    /// Not enough underlying in the reserve.
    #[error("Not enough available liquidity in the {asset} reserve: {available} available, {requested} requested")]
    NotEnoughLiquidity {
        /// Reserve symbol.
        asset: String,
        /// Underlying available.
        available: String,
        /// Amount asked for.
        requested: String,
    },
    /// A Compound v2 failure: the cToken's error code and, when the comptroller rejected the
    /// call, the comptroller's code as `detail` (`venue::compound`).
    #[error("Compound error {code}/{detail}: {message}")]
    Compound {
        /// cToken error code (`TokenErrorReporter.Error`).
        code: u32,
        /// Comptroller error code when `code` is 3 (rejection) or 4, else 0.
        detail: u32,
        /// What failed and why.
        message: String,
    },
    /// The market refuses the call outright (a `require` in the protocol's contract, or an
    /// action the protocol does not have), with the reason.
    #[error("reverted: {0}")]
    Reverted(String),
    /// Unknown reserve or eMode category.
    #[error("Unknown {0}")]
    Unknown(String),
    /// Invalid reserve configuration.
    #[error("Invalid reserve configuration: {0}")]
    InvalidConfig(String),
    /// A price could not be read.
    #[error(transparent)]
    Oracle(#[from] OracleError),
    /// Arithmetic failure.
    #[error(transparent)]
    Math(#[from] MathError),
}

/// Errors from the Uniswap-v3-style pool.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AmmError {
    /// Zero swap amount.
    #[error("Swap amount must be greater than 0")]
    ZeroAmount,
    /// The pool ran out of liquidity before the amount was filled.
    #[error("Insufficient liquidity in pool {pool}: only {filled} of {requested} could be swapped")]
    InsufficientLiquidity {
        /// Pool name.
        pool: String,
        /// Input that could be used.
        filled: String,
        /// Input requested.
        requested: String,
    },
    /// The output was below the caller's minimum.
    #[error("Slippage too high: received {received}, minimum {minimum}")]
    SlippageTooHigh {
        /// Amount received.
        received: String,
        /// Minimum required.
        minimum: String,
    },
    /// A price limit on the wrong side of the current price.
    #[error("Invalid price limit: {0}")]
    InvalidPriceLimit(String),
    /// Bad pool construction input.
    #[error("Invalid pool: {0}")]
    InvalidPool(String),
    /// Tick math failed (from the uniswap-v3-sdk crate).
    #[error("Tick math: {0}")]
    TickMath(String),
    /// Arithmetic failure.
    #[error(transparent)]
    Math(#[from] MathError),
}

/// Errors from the token ledger (balances, issue, redeem, fees).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TokenError {
    /// Zero quantity.
    #[error("{what} quantity must be greater than 0")]
    ZeroAmount {
        /// The operation.
        what: &'static str,
    },
    /// Balance too low.
    #[error("Insufficient balance: {holder} holds {balance}, {requested} requested")]
    InsufficientBalance {
        /// The holder.
        holder: String,
        /// The balance.
        balance: String,
        /// The amount requested.
        requested: String,
    },
    /// Supply cap reached.
    #[error("Supply cap exceeded: supply would be {would_be}, cap is {cap}")]
    SupplyCapExceeded {
        /// Supply after the issue.
        would_be: String,
        /// The cap.
        cap: String,
    },
    /// Issue on an empty token cannot be priced by units.
    #[error("Cannot issue by units: the token has no supply; seed it with an initial issue first")]
    NoSupply,
    /// Fee out of range.
    #[error("{0}")]
    InvalidFee(String),
    /// The payment offered does not cover what the issue requires.
    #[error("Payment too small: {0}")]
    PaymentTooSmall(String),
    /// Arithmetic failure.
    #[error(transparent)]
    Math(#[from] MathError),
}

/// One violated settings rule: the reference's revert string plus keel's context.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{message}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
pub struct RuleViolation {
    /// The reference contract's revert string, verbatim.
    pub message: &'static str,
    /// keel's context: the fields and values involved.
    pub detail: String,
}

/// Errors from the FLI strategy. Messages are the reference revert strings where one exists.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FliError {
    /// A require() of the reference failed; the string is its revert message.
    #[error("{0}")]
    Revert(&'static str),
    /// A settings rule failed.
    #[error(transparent)]
    Invalid(#[from] RuleViolation),
    /// `bV ≥ cV`.
    #[error("Position is insolvent: borrow value is not below collateral value")]
    Insolvent,
    /// Delever limit saturated (keel §17.3).
    #[error(
        "Cannot delever: health factor below 1 (borrow value {borrow_value} exceeds liquidation-threshold value {limit}); repay debt first"
    )]
    CannotDelever {
        /// Borrow value, wad USD.
        borrow_value: String,
        /// Liquidation-threshold value, wad USD.
        limit: String,
    },
    /// Lever limit saturated (keel §17.3).
    #[error("No borrow capacity: borrow value {borrow_value} exceeds the LTV limit {limit}")]
    NoBorrowCapacity {
        /// Borrow value, wad USD.
        borrow_value: String,
        /// The LTV limit, wad USD.
        limit: String,
    },
    /// Unknown exchange name.
    #[error("Must be valid exchange: no exchange named '{0}'")]
    UnknownExchange(String),
    /// The venue (vAMM swap) refused the trade: slippage bound, liquidity.
    #[error("venue: {0}")]
    Venue(String),
    /// Arithmetic failure.
    #[error(transparent)]
    Math(#[from] MathError),
}

/// Errors from loading a product file.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ProductError {
    /// TOML syntax error.
    #[error("product file is not valid TOML: {0}")]
    Syntax(String),
    /// A field is missing.
    #[error("missing field `{0}`")]
    Missing(String),
    /// A field has a value that cannot be used.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The TOML path, e.g. `methodology.max_leverage_ratio`.
        field: String,
        /// What is wrong and what is expected.
        reason: String,
    },
    /// An unknown key (usually a typo).
    #[error("unknown field `{0}` (check the spelling; see products/eth2x-fli.toml for the keys)")]
    Unknown(String),
    /// One or more settings rules are violated; every violation is listed.
    #[error("{}", .0.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleViolation>),
}

impl ProductError {
    /// A field error from a decimal parse failure.
    pub fn decimal(field: &str, e: DecimalError) -> Self {
        ProductError::Field { field: field.to_string(), reason: e.to_string() }
    }
}

/// Any error a composite operation on a token and its venues can return.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// From a price feed.
    #[error(transparent)]
    Oracle(#[from] OracleError),
    /// From the lending market.
    #[error(transparent)]
    Lending(#[from] LendingError),
    /// From the pool.
    #[error(transparent)]
    Amm(#[from] AmmError),
    /// From the token ledger.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// From the FLI strategy.
    #[error(transparent)]
    Fli(#[from] FliError),
    /// From a product file.
    #[error(transparent)]
    Product(#[from] ProductError),
    /// Arithmetic failure.
    #[error(transparent)]
    Math(#[from] MathError),
    /// From a threshold, daily or continuous token.
    #[error(transparent)]
    Threshold(#[from] crate::strategy::threshold::ThresholdError),
}

impl Error {
    /// The reference revert string, when the error is one.
    pub fn revert_reason(&self) -> Option<&'static str> {
        match self {
            Error::Fli(FliError::Revert(s)) => Some(s),
            Error::Fli(FliError::Invalid(v)) => Some(v.message),
            _ => None,
        }
    }
}
