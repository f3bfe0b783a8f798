//! The `decent` command line (clap).

pub mod decode;
pub mod lig;
pub mod run;
pub mod show;

use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// lisp-decent: a LISP-Decent node (RFC 9962).
#[derive(Debug, Parser)]
#[command(name = "decent", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter (tracing syntax: info, debug, lisp_decent=debug ...); RUST_LOG also works.
    #[arg(long, global = true)]
    pub log: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node: Map-Server, Map-Resolver and ETR in its peer group.
    Run(run::RunArgs),
    /// Validate a configuration file and print every error with its field path.
    CheckConfig(run::CheckArgs),
    /// Look up an EID with an ECM Map-Request (LISP Internet Groper, RFC 6835).
    Lig(lig::LigArgs),
    /// Decode LISP packets from hex or from a pcap / pcapng capture.
    Decode(decode::DecodeArgs),
    /// Show a running node's state (through its HTTP API) as a table.
    Show(show::ShowArgs),
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = cli.log.as_deref().map(EnvFilter::new).unwrap_or_else(|| {
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
    });
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match cli.log_format {
        LogFormat::Text => b.try_init(),
        LogFormat::Json => b.json().try_init(),
    };
}

/// Runs the command line; exit code 1 when any input was bad or a command failed.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let result = match &cli.command {
        Command::Run(a) => run::run(a),
        Command::CheckConfig(a) => run::check(a),
        Command::Lig(a) => lig::run(a),
        Command::Decode(args) => decode::run(args),
        Command::Show(args) => show::run(args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("decent: {e:#}");
            ExitCode::from(1)
        }
    }
}
