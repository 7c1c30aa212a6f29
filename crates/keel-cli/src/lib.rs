//! The `keel` command line's subcommands as a library: `src/main.rs` parses the arguments and
//! calls them; the fuzz targets (`fuzz/`) reach the same file parsers.

pub mod backtest;
pub mod compare;
pub mod eval;
pub mod funding_args;
pub mod fuzzing;
pub mod product_cmd;
pub mod serve_cmd;
pub mod sweep;
