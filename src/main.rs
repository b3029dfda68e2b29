//! The `skillmon` binary: parse the command line ([`cli`], the only place
//! clap is used) into the library's settings and dispatch.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory as _, FromArgMatches as _};
use cli::{Cli, Command};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    let result = match cli.command {
        Command::Serve(args) => serve(&args, matches.subcommand_matches("serve")),
        Command::Demo(args) => demo(&args),
        Command::Watch(args) => match matches.subcommand_matches("watch") {
            Some(m) => watch(&args, m),
            None => Err(anyhow::anyhow!("internal error: no `watch` arguments")),
        },
        Command::Bench(args) => bench(&args),
        Command::Completions(args) => cli::install::completions(&args),
        Command::Man(args) => cli::install::man(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("skillmon: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(args: &cli::ServeArgs, matches: Option<&clap::ArgMatches>) -> anyhow::Result<ExitCode> {
    skillmon::logging::init_stderr(args.log.log_format);
    let config = args.to_config()?;
    // `--db` given on the command line (not SKILLMON_DB) contradicts `--from`.
    let db_flag =
        matches.and_then(|m| m.value_source("db")) == Some(clap::parser::ValueSource::CommandLine);
    let role = args.team.to_role(db_flag).map_err(anyhow::Error::msg)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        if args.team.no_listen {
            return skillmon::server::run_publisher_only(config, role).await;
        }
        let listener = skillmon::server::bind(&args.host, args.port).await?;
        skillmon::server::run_team_until_signal(listener, config, role).await
    })?;
    Ok(ExitCode::SUCCESS)
}

fn demo(args: &cli::DemoArgs) -> anyhow::Result<ExitCode> {
    let format = args.log.log_format;
    if args.serve_only || args.generate.is_some() {
        skillmon::logging::init_stderr(format);
    } else {
        // The dashboard owns the screen: the demo's and the server's logs go
        // to the watch log file.
        skillmon::logging::init_file(skillmon::config::default_log_path().as_deref(), format);
    }
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(skillmon::demo::run(args.to_config()))
}

/// The dashboard logs to a file (set up by `watch::run`), never to stderr.
fn watch(args: &cli::WatchArgs, matches: &clap::ArgMatches) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    let result = rt.block_on(skillmon::watch::run(args.to_options(matches)));
    // A headless write to a stalled reader may still be blocked in the
    // blocking pool after a signal: do not wait for it.
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    result
}

/// Warnings only on stderr: the table or the JSON lines are the output.
fn bench(args: &cli::BenchArgs) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(skillmon::bench::run(args.to_config()))
}
