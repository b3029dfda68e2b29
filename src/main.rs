//! The `skillmon` binary: parse the command line and dispatch.

use clap::Parser;
use skillmon::cli::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Watch(args) => return watch(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("skillmon: {e:#}");
            std::process::ExitCode::FAILURE
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

fn serve(args: skillmon::cli::ServeArgs) -> anyhow::Result<()> {
    init_stderr_logs();
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = skillmon::server::bind(&args.host, args.port).await?;
        skillmon::server::run_until_signal(listener, args.to_config()).await
    })
}

fn watch(args: skillmon::cli::WatchArgs) -> std::process::ExitCode {
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("skillmon: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(skillmon::watch::run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skillmon watch: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
