//! What a request can fail with, and the HTTP status each failure maps to.
//!
//! Every refusal changes nothing: the engine validates before it mutates, the core's entry
//! points are all-or-nothing, and a refused request is never written to the log.

use thiserror::Error;

/// A refused or failed API request.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ApiError {
    /// The request is malformed: bad JSON, a missing field, a value that breaks a rule.
    #[error("{field}: {reason}")]
    BadRequest {
        /// The field (or `body` for the whole request).
        field: String,
        /// The rule it breaks, in words a user can act on.
        reason: String,
    },
    /// No key, or a key the server does not know.
    #[error("{0}")]
    Unauthorized(String),
    /// The key's role may not make this call.
    #[error("{0}")]
    Forbidden(String),
    /// Unknown product, exchange or event.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with what exists: a product id taken, an idempotency key reused
    /// with a different request.
    #[error("{0}")]
    Conflict(String),
    /// The core refused the operation (balance, supply cap, cooldown, stale price, ...).
    #[error("{0}")]
    Rejected(String),
    /// The service cannot take the request now (shutting down, store failing).
    #[error("{0}")]
    Unavailable(String),
}

/// A value as an error message quotes it: at most 64 characters.
pub fn excerpt(s: &str) -> String {
    if s.chars().count() <= 64 {
        s.to_string()
    } else {
        format!("{}… ({} characters)", s.chars().take(64).collect::<String>(), s.chars().count())
    }
}

impl ApiError {
    /// No product `id` (quoted as an excerpt).
    pub fn no_product(id: &str) -> Self {
        ApiError::NotFound(format!("no product '{}'", excerpt(id)))
    }

    /// A `BadRequest` for `field`.
    pub fn bad(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::BadRequest { field: field.into(), reason: reason.into() }
    }

    /// The HTTP status code.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::BadRequest { .. } => 400,
            ApiError::Unauthorized(_) => 401,
            ApiError::Forbidden(_) => 403,
            ApiError::NotFound(_) => 404,
            ApiError::Conflict(_) => 409,
            ApiError::Rejected(_) => 422,
            ApiError::Unavailable(_) => 503,
        }
    }

    /// A short machine-readable name for the kind of error.
    pub fn kind(&self) -> &'static str {
        match self {
            ApiError::BadRequest { .. } => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Rejected(_) => "rejected",
            ApiError::Unavailable(_) => "unavailable",
        }
    }

    /// The JSON body: `{"error": kind, "message": ..., "field"?: ...}`.
    pub fn body(&self) -> serde_json::Value {
        let mut v = serde_json::json!({ "error": self.kind(), "message": self.to_string() });
        if let ApiError::BadRequest { field, .. } = self {
            v["field"] = serde_json::Value::String(field.clone());
        }
        v
    }

    /// Map a core error: permission reverts become 403, an exchange that is not enabled 404,
    /// everything else the core refuses 422.
    pub fn from_core(e: keel_core::Error) -> Self {
        use keel_core::error::FliError;
        let msg = e.to_string();
        match e {
            keel_core::Error::Fli(FliError::Revert("Must be operator" | "Address not permitted to call")) => {
                ApiError::Forbidden(msg)
            }
            keel_core::Error::Fli(FliError::Revert("Exchange not enabled" | "Must be valid exchange"))
            | keel_core::Error::Fli(FliError::UnknownExchange(_)) => ApiError::NotFound(msg),
            _ => ApiError::Rejected(msg),
        }
    }
}

/// A store failure. The writer treats any of these during an append as unrecoverable: the
/// process stops rather than acknowledge a request that may not be durable.
#[derive(Debug, Error)]
pub enum StoreError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// PostgreSQL failed.
    #[error("postgres: {0}")]
    Postgres(#[from] postgres::Error),
    /// A stored row could not be decoded.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The `--db` URL is not one keel understands.
    #[error("{0}")]
    Url(String),
    /// There is no keel log where one was expected (start with `--init` to create one).
    #[error("{0}")]
    Missing(String),
    /// `--init` was given but a keel log is already there.
    #[error("{0}")]
    Exists(String),
    /// The database holds a log of another format.
    #[error("{0}")]
    Format(String),
    /// The log fails its checks: a hole, an edited row, a snapshot from another log, a
    /// rollback below what was acknowledged.
    #[error("the event log is broken at event {seq}: {detail}")]
    Broken {
        /// The first event that fails.
        seq: u64,
        /// What is wrong.
        detail: String,
    },
    /// The database file was removed or replaced under the running service.
    #[error("{0}")]
    Replaced(String),
    /// Replaying the log gave a different result than the one recorded.
    #[error("replay diverged at event {seq}: {detail}")]
    Diverged {
        /// The event.
        seq: u64,
        /// What differed.
        detail: String,
    },
}

impl StoreError {
    /// A lost connection to the database server (PostgreSQL restarting, the network): the
    /// writer reconnects and carries on. Everything else stops the service.
    pub fn is_connection(&self) -> bool {
        match self {
            StoreError::Postgres(e) => {
                if e.is_closed() {
                    return true;
                }
                match e.code() {
                    // no SQLSTATE: the connection itself failed (I/O, refused, reset)
                    None => true,
                    Some(c) => {
                        let c = c.code();
                        c.starts_with("08") || c == "57P01" || c == "57P02" || c == "57P03"
                    }
                }
            }
            _ => false,
        }
    }
}
