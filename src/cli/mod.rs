//! The `decent` command line (clap).

pub mod capture;
pub mod decode;
pub mod describe;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// lisp-decent: a LISP-Decent node (RFC 9962).
#[derive(Debug, Parser)]
#[command(name = "decent", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Decode LISP packets from hex or from a pcap / pcapng capture.
    Decode(decode::DecodeArgs),
}

/// Runs the command line; exit code 1 when any input was bad.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Decode(args) => decode::run(args),
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
