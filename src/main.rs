use std::process::ExitCode;

use clap::Parser;
use mcp_vpce_proxy::cmd::cli::{Cli, Command};
use mcp_vpce_proxy::cmd::{app, check, demo, doctor, healthcheck};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        None => app::run(cli.run),
        Some(Command::Run(args)) => app::run(args),
        Some(Command::Check(args)) => check::run(args),
        Some(Command::Demo(args)) => demo::run(args),
        Some(Command::Doctor(args)) => doctor::run(args),
        Some(Command::Healthcheck(args)) => healthcheck::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mcp-vpce-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}
