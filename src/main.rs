//! The `skillmon` binary: parse the command line and dispatch.

use std::process::ExitCode;

use clap::Parser;
use skillmon::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Demo(args) => demo(args),
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
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .try_init();
}

fn serve(args: skillmon::cli::ServeArgs) -> anyhow::Result<ExitCode> {
    init_stderr_logs();
    let config = args.to_config()?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let listener = skillmon::server::bind(&args.host, args.port).await?;
        skillmon::server::run_until_signal(listener, config).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn demo(args: skillmon::cli::DemoArgs) -> anyhow::Result<ExitCode> {
    if args.serve_only || args.generate.is_some() {
        init_stderr_logs();
    } else {
        // The dashboard owns the screen: the demo's and the server's logs go
        // to the watch log file.
        skillmon::watch::init_file_logs(skillmon::config::default_log_path().as_deref());
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(skillmon::demo::run(args))
}

/// The dashboard logs to a file (set up by `watch::run`), never to stderr.
fn watch(args: skillmon::cli::WatchArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(skillmon::watch::run(args))
}
