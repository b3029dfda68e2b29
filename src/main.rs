//! The `skillmon` binary: parse the command line and dispatch.

use std::process::ExitCode;

use clap::Parser;
use skillmon::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Watch(args) => watch(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skillmon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_stderr_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SKILLMON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

fn serve(args: skillmon::cli::ServeArgs) -> anyhow::Result<ExitCode> {
    init_stderr_logs();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = skillmon::server::bind(&args.host, args.port).await?;
        skillmon::server::run_until_signal(listener, args.to_config()).await
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The dashboard logs to a file (set up by `watch::run`), never to stderr.
fn watch(args: skillmon::cli::WatchArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(skillmon::watch::run(args))
}
