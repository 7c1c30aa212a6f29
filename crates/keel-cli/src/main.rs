//! `keel`: the command line over keel's libraries. Each subcommand is a thin shell over a
//! library call; errors are printed with their context and exit non-zero.

use keel_cli::{backtest, compare, eval, product_cmd, serve_cmd, sweep};

use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// keel — leveraged tokens: backtest products on real and synthetic markets, check product
/// files, evaluate the methodology on a position.
#[derive(Parser)]
#[command(name = "keel", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate and inspect product files.
    Product {
        #[command(subcommand)]
        command: ProductCommand,
    },
    /// Run a product through a market block by block and report what happened. With no
    /// arguments: products/eth2x-fli.toml on the `default` scenario into ./keel-out/.
    Backtest(Box<backtest::Args>),
    /// Monte Carlo and parameter sweeps: a grid of settings × N paths (the same paths for every
    /// point), run in parallel; a table sorted by --objective and results.csv.
    Sweep(Box<sweep::Args>),
    /// Run several products on the same market (same path, same starting TVL, no holder
    /// flows) and compare returns against their ideal tokens, rebalances, stress and costs.
    Compare(Box<compare::Args>),
    /// Run products for real: an HTTP API (mint and redeem at NAV, keeper and operator calls),
    /// an event-sourced store on SQLite or PostgreSQL, a keeper loop, metrics and a dashboard.
    Serve(Box<serve_cmd::ServeArgs>),
    /// Keep products: a keel server's over its HTTP API (--server, the same code as
    /// `keel serve --keeper`), or deployed FLI / PerpV2 strategy contracts over Ethereum
    /// JSON-RPC (--rpc --config keeper.toml): rebalance, iterate and ripcord as they ask.
    Keeper(Box<serve_cmd::KeeperArgs>),
    /// Evaluate a methodology on a position snapshot.
    Strategy {
        #[command(subcommand)]
        command: StrategyCommand,
    },
    /// Print a shell completion script: `keel completions bash > ~/.local/share/bash-completion/completions/keel`
    /// (zsh: into a directory on $fpath as `_keel`; fish: `~/.config/fish/completions/keel.fish`).
    Completions {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print keel's manual page (roff): `keel man > keel.1 && man ./keel.1`, or into a
    /// directory on $MANPATH as man1/keel.1.
    Man,
}

#[derive(Subcommand)]
enum ProductCommand {
    /// Check a product file against every rule of the reference contracts and keel's own.
    /// Valid: prints a one-line summary and exits 0. Invalid: prints every violated rule and
    /// exits 1.
    Check {
        /// The product TOML file (e.g. products/eth2x-fli.toml).
        file: PathBuf,
    },
    /// Print the settings as the reference contract's setters take them: arrays of
    /// 1e18-scaled integers as quoted strings, ready to paste into a block explorer.
    Calldata {
        /// The product TOML file.
        file: PathBuf,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum StrategyCommand {
    /// What the methodology would do on a position snapshot: leverage ratio,
    /// shouldRebalance per exchange, the next target and the chunk sizes
    /// (getChunkRebalanceNotional), and the ripcord incentive.
    ///
    /// The state file is JSON: now, total_supply, collateral_balance, borrow_balance (base
    /// units as decimal strings), collateral_price and borrow_price (USD per whole unit, at
    /// most 8 decimals), twap_leverage_ratio (1e18 units), global_last_trade_timestamp,
    /// exchanges.NAME.last_trade_timestamp, ether_balance (wei). See examples/state.json.
    /// For a perp product (a `[perp]` section): collateral_balance, base_balance,
    /// quote_balance, owed_realized_pnl, pending_funding (signed, 1e18 units) and base_price
    /// instead of the lending fields; see examples/perp-state.json. Sizes are then signed base
    /// units (positive buys base).
    Eval {
        /// The product TOML file.
        #[arg(long)]
        product: PathBuf,
        /// The position snapshot (JSON).
        #[arg(long)]
        state: PathBuf,
        /// Custom lower bound for shouldRebalanceWithBounds: a ratio such as 1.6 (-1.6 for a
        /// short perp token), or a whole number in 1e18 units such as 1600000000000000000.
        /// Must not exceed the product's min in magnitude.
        #[arg(long, requires = "max", allow_hyphen_values = true)]
        min: Option<String>,
        /// Custom upper bound (same forms as --min). Must not be below the product's max in
        /// magnitude.
        #[arg(long, requires = "min", allow_hyphen_values = true)]
        max: Option<String>,
        /// Print one JSON object, every integer as a decimal string.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(shell, &mut Cli::command(), "keel", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    if let Command::Man = cli.command {
        return match clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot write the manual page: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli.command {
        Command::Product { command: ProductCommand::Check { file } } => product_cmd::check(&file),
        Command::Product { command: ProductCommand::Calldata { file, json } } => product_cmd::calldata(&file, json),
        Command::Backtest(args) => backtest::run(*args),
        Command::Sweep(args) => sweep::run(*args),
        Command::Compare(args) => compare::run(*args),
        Command::Serve(args) => serve_cmd::serve(*args),
        Command::Keeper(args) => serve_cmd::keeper(*args),
        Command::Strategy { command: StrategyCommand::Eval { product, state, min, max, json } } => {
            eval::run(&product, &state, min.as_deref(), max.as_deref(), json)
        }
        Command::Completions { .. } | Command::Man => Ok(ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
