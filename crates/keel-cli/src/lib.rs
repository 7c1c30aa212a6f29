//! The `keel` command line's subcommands as a library: `src/main.rs` parses the arguments and
//! calls them; the fuzz targets (`fuzz/`) reach the same file parsers, and the Python package
//! (`python/`) the same requests (without the `service` feature: no HTTP, SQL or RPC crates).

pub mod backtest;
pub mod compare;
pub mod eval;
pub mod funding_args;
#[cfg(feature = "service")]
pub mod fuzzing;
pub mod json_out;
pub mod out_dir;
pub mod product_cmd;
pub mod provenance;
#[cfg(feature = "service")]
pub mod serve_cmd;
pub mod sweep;
