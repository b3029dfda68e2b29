//! The command line (clap derive), a module of the binary alone: the library
//! never sees clap. Every setting that configures a deployment (database,
//! address, interval, URL, skills, theme, log file, …) also has a
//! `SKILLMON_*` env var; per-run switches (`--json`, `--once`,
//! `--print-config`, the demo's options) do not. Precedence is
//! flag > env > config file > default.
//!
//! Owns the flags, their help and their conversion into the library's plain
//! settings ([`ServeConfig`], [`DemoConfig`], [`WatchOptions`]); values are
//! parsed by the library's own parsers (`FromStr` of the domain enums,
//! [`skillmon::duration`]), so a flag, its env var and the config file
//! accept the same words. Must not hold behaviour.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser as _};
use clap::parser::ValueSource;
use clap::{ArgMatches, Args, Parser, Subcommand};
use skillmon::client::{TokenSource, connect};
use skillmon::config::{Source, WatchOptions};
use skillmon::demo::{DemoConfig, Generate};
use skillmon::logging::LogFormat;
use skillmon::server::ServeConfig;
use skillmon::store::AnomalySource;
use skillmon::tui::theme::ThemeName;
use strum::{EnumMessage, IntoEnumIterator};

pub mod install;
mod net;
mod team;
pub use net::NetArgs;
pub use team::TeamArgs;

#[derive(Debug, Parser)]
#[command(
    name = "skillmon",
    // The package version, and the git commit when built from a checkout (build.rs).
    version = env!("SKILLMON_VERSION"),
    about = "Watch how AI-assistant skills are used, live",
    long_about = "Watch how AI-assistant skills are used, live.\n\n\
        `skillmon serve` reads a session-buddy skills database (read-only) and broadcasts \
        metrics over WebSocket; `skillmon watch` is the live terminal dashboard; \
        `skillmon demo` runs both on generated data."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a session-buddy skills database over WebSocket (read-only).
    // Boxed: the largest by far (every network flag), parsed once.
    Serve(Box<ServeArgs>),
    /// Generated live data, a server and the dashboard in one command.
    Demo(DemoArgs),
    /// The live terminal dashboard (or --json / --once for scripts).
    Watch(WatchArgs),
    /// Load-test a server (yours, session-buddy, or one it spawns), or two side by side.
    Bench(BenchArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish).
    Completions(install::CompletionsArgs),
    /// Write the man pages: skillmon.1 and one per subcommand.
    Man(install::ManArgs),
}

/// `--log-format` of `serve`, `watch` (its log file) and `demo`.
#[derive(Debug, Args, Clone)]
pub struct LogArgs {
    /// Log lines as text, or as one JSON object per line (with the session's
    /// fields) for log shippers.
    #[arg(long, value_name = "FORMAT", env = skillmon::logging::FORMAT_ENV, ignore_case = true, default_value_t = LogFormat::Text, value_parser = names::<LogFormat>())]
    pub log_format: LogFormat,
}

#[derive(Debug, Args, Clone)]
pub struct DemoArgs {
    /// Run only the demo server (for other clients), no dashboard.
    #[arg(long)]
    pub serve_only: bool,
    /// Address the demo server listens on.
    #[arg(long, env = "SKILLMON_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port of the demo server [default: 8765 with --serve-only, else a free one].
    #[arg(long)]
    pub port: Option<u16>,
    /// Keep the demo database at this new path instead of a temporary one.
    #[arg(long, value_name = "PATH")]
    pub keep_db: Option<PathBuf>,
    /// Print one JSON line per update instead of the dashboard.
    #[arg(long)]
    pub json: bool,
    /// Time between updates.
    #[arg(long, default_value = "1s", value_parser = skillmon::duration::parse_interval)]
    pub interval: Duration,
    /// Write a benchmark database at PATH and exit (see --invocations, --skills, --days).
    #[arg(long, value_name = "PATH")]
    pub generate: Option<PathBuf>,
    /// With --generate: invocations to write.
    #[arg(long, default_value_t = 1_000_000, requires = "generate", value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub invocations: u64,
    /// With --generate: distinct skills.
    #[arg(long, default_value_t = 500, requires = "generate", value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..=100_000), |v| v as usize))]
    pub skills: usize,
    /// With --generate: days of history the invocations spread over.
    #[arg(long, default_value_t = 30.0, requires = "generate", value_parser = parse_days)]
    pub days: f64,
    /// Seed of the generated activity (reproducible runs).
    #[arg(long, hide = true)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The session-buddy skills database (opened read-only, never written).
    #[arg(long, env = "SKILLMON_DB", default_value = ".session-buddy/skills.db")]
    pub db: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "SKILLMON_HOST", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "SKILLMON_PORT", default_value_t = 8765)]
    pub port: u16,
    /// Time between updates, e.g. 500ms, 1s, 2.5s.
    #[arg(long, env = "SKILLMON_INTERVAL", default_value = "1s", value_parser = skillmon::duration::parse_interval)]
    pub interval: Duration,
    /// Skills (and anomalies) per update.
    #[arg(long, env = "SKILLMON_TOP", default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub top: u16,
    /// Close a client that cannot take a frame within this time [default: max(2 × interval, 5s)].
    #[arg(long, env = "SKILLMON_WRITE_TIMEOUT", value_parser = skillmon::duration::parse_interval)]
    pub write_timeout: Option<Duration>,
    /// Most simultaneous WebSocket clients; more get HTTP 503.
    #[arg(long, env = "SKILLMON_MAX_CONNECTIONS", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Anomalies to serve: rows of skill_anomalies (table), computed live from
    /// skill_invocation (live), both, or none.
    #[arg(long, env = "SKILLMON_ANOMALIES", value_parser = names::<AnomalySource>(), default_value_t = AnomalySource::Both)]
    pub anomalies: AnomalySource,
    /// |z-score| at which a live anomaly is reported.
    #[arg(long, env = "SKILLMON_ANOMALY_THRESHOLD", default_value_t = skillmon::store::anomaly::DEFAULT_THRESHOLD, value_parser = parse_threshold)]
    pub anomaly_threshold: f64,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub net: NetArgs,
    #[command(flatten)]
    pub team: TeamArgs,
}

fn parse_days(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 3650.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a number of days between 0 and 3650 (e.g. 30)"
        )),
    }
}

fn parse_threshold(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number (e.g. 2.0)")),
    }
}

/// A value parser over a domain enum's own names: clap lists the canonical
/// names (with each variant's doc line as help, as `ValueEnum` did) and
/// accepts the aliases, and the enum's `FromStr` makes the value.
fn names<E>() -> impl clap::builder::TypedValueParser<Value = E>
where
    E: IntoEnumIterator + EnumMessage + Into<&'static str> + std::str::FromStr + Clone,
    E: Send + Sync + 'static,
    E::Err: std::fmt::Display,
{
    let values = E::iter().map(|v| {
        let name: &'static str = v.clone().into();
        let aliases = v.get_serializations().iter().filter(|a| **a != name);
        let value = PossibleValue::new(name).aliases(aliases);
        match v.get_documentation() {
            Some(doc) => value.help(doc.trim().trim_end_matches('.').to_string()),
            None => value,
        }
    });
    PossibleValuesParser::new(values).try_map(|s: String| s.parse::<E>().map_err(|e| e.to_string()))
}

impl ServeArgs {
    pub fn to_config(&self) -> anyhow::Result<ServeConfig> {
        Ok(ServeConfig {
            db: self.db.clone(),
            interval: self.interval,
            top: usize::from(self.top),
            write_timeout: self
                .write_timeout
                .unwrap_or_else(|| skillmon::server::default_write_timeout(self.interval)),
            max_connections: self.max_connections as usize,
            store: skillmon::store::StoreOptions {
                anomalies: self.anomalies,
                threshold: self.anomaly_threshold,
            },
            net: self.net.to_config()?,
        })
    }
}

impl DemoArgs {
    pub fn to_config(&self) -> DemoConfig {
        DemoConfig {
            serve_only: self.serve_only,
            host: self.host.clone(),
            port: self.port,
            keep_db: self.keep_db.clone(),
            json: self.json,
            interval: self.interval,
            generate: self.generate.clone().map(|path| Generate {
                path,
                invocations: self.invocations,
                skills: self.skills,
                days: self.days,
            }),
            seed: self.seed,
        }
    }
}

/// `skillmon watch`: the live dashboard, or a headless printer.
#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Server URL [config `url`; default ws://127.0.0.1:8765].
    #[arg(env = "SKILLMON_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Only these skills; repeat for several (or comma-separate in SKILLMON_SKILLS).
    #[arg(
        long = "skill",
        value_name = "NAME",
        env = "SKILLMON_SKILLS",
        value_delimiter = ','
    )]
    pub skill: Vec<String>,
    /// Colour theme [config `theme`; default dark].
    #[arg(long, env = "SKILLMON_THEME", ignore_case = true, value_parser = names::<ThemeName>())]
    pub theme: Option<ThemeName>,
    /// No colours (also when the NO_COLOR environment variable is set and non-empty).
    #[arg(long)]
    pub no_color: bool,
    /// Print one JSON line per metrics_update instead of the dashboard
    /// (automatic when stdout is not a terminal).
    #[arg(long)]
    pub json: bool,
    /// Print one snapshot (a table, or one JSON object with --json) and exit.
    #[arg(long)]
    pub once: bool,
    /// With --once: give up when no snapshot came within this time [default: 5s].
    #[arg(long, value_name = "DURATION", value_parser = skillmon::duration::parse_interval)]
    pub timeout: Option<Duration>,
    /// Config file [default: config.toml in the platform config dir].
    #[arg(long, value_name = "PATH", env = "SKILLMON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log file [default: skillmon-watch.log in the platform data dir].
    #[arg(long, value_name = "PATH", env = "SKILLMON_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    #[command(flatten)]
    pub log: LogArgs,
    /// Print the effective configuration and the config file path, then exit.
    #[arg(long)]
    pub print_config: bool,
    /// Ring the terminal bell when a new anomaly appears [config `bell`; default off].
    #[arg(long)]
    pub bell: bool,
    /// With --once: exit 3 when the snapshot holds any anomaly (0 = none, 1 = no snapshot).
    #[arg(long, requires = "once")]
    pub fail_on_anomaly: bool,
    /// With --once --json: also ask for the history of the snapshot's skills
    /// (1h = 60 one-minute buckets, 24h = 96 of 15 min) and print it as the
    /// object's "history" (null from a server without history).
    #[arg(long, value_name = "WINDOW", requires_all = ["once", "json"], value_parser = names::<skillmon::protocol::HistoryWindow>())]
    pub history: Option<skillmon::protocol::HistoryWindow>,
    // -- over a network: token, TLS trust, message limit (client::connect) --
    /// File holding the token the server requires (sent as a Bearer header
    /// and as session-buddy's first frame) [or SKILLMON_TOKEN; config `token_file`].
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Also trust this CA certificate (PEM) for wss:// [config `ca_cert`].
    #[arg(long, value_name = "FILE", env = "SKILLMON_CA_CERT")]
    pub ca_cert: Option<PathBuf>,
    /// Largest message accepted from the server, e.g. 4MiB; over it the
    /// connection is closed with 1009 [config `max_frame`; default 4MiB].
    #[arg(long, value_name = "SIZE", env = "SKILLMON_MAX_FRAME", value_parser = skillmon::client::connect::parse_byte_size)]
    pub max_frame: Option<usize>,
    /// Offer permessage-deflate (RFC 7692) so the server can send compressed
    /// frames, or not [config `compression`; default deflate].
    #[arg(long, value_name = "MODE", env = "SKILLMON_COMPRESSION", ignore_case = true, value_parser = names::<skillmon::deflate::Compression>())]
    pub compression: Option<skillmon::deflate::Compression>,
}

impl WatchArgs {
    /// The library's options, each flag/env value tagged with where clap
    /// found it (`matches` are the `watch` subcommand's).
    pub fn to_options(&self, matches: &ArgMatches) -> WatchOptions {
        let source = |id: &str| match matches.value_source(id) {
            Some(ValueSource::EnvVariable) => Source::Env,
            Some(ValueSource::DefaultValue) => Source::Default,
            _ => Source::Flag,
        };
        WatchOptions {
            url: self.url.clone().map(|u| (u, source("url"))),
            skills: (!self.skill.is_empty()).then(|| (self.skill.clone(), source("skill"))),
            theme: self.theme.map(|t| (t, source("theme"))),
            no_color: self.no_color,
            json: self.json,
            once: self.once,
            timeout: self.timeout,
            config: self.config.clone(),
            log_file: self.log_file.clone(),
            log_format: self.log.log_format,
            print_config: self.print_config,
            bell: self.bell,
            fail_on_anomaly: self.fail_on_anomaly,
            history: self.history,
            // The token's source only: its value is read by the library
            // (`client::Token::load`) and never passes through clap.
            token: match &self.token_file {
                Some(p) => Some((TokenSource::File(p.clone()), Source::Flag)),
                None => std::env::var_os(connect::TOKEN_ENV)
                    .is_some_and(|v| !v.is_empty())
                    .then_some((TokenSource::Env, Source::Env)),
            },
            ca_cert: self.ca_cert.clone().map(|p| (p, source("ca_cert"))),
            max_frame: self.max_frame.map(|n| (n, source("max_frame"))),
            compression: self.compression.map(|c| (c, source("compression"))),
            no_token: false,
        }
    }
}

/// `skillmon bench`: paced clients, a warm-up, a measured window and a grace
/// period, then every client closes with 1000.
#[derive(Debug, Args)]
#[command(
    long_about = "Load-test a skills WebSocket server (skillmon serve, session-buddy, or anything \
        speaking the compat protocol).\n\n\
        Opens --clients paced connections (--connect-rate) plus --stalled ones that never read, \
        waits --warmup, measures for --duration, keeps a --grace period for late receipts, then \
        closes every client with 1000. Reports connect time, welcome → first metrics_update, \
        broadcast latency (receipt − frame timestamp), per-tick spread, tick period, frames \
        delivered / expected, their mean size (so a comparison shows whether both servers wrote \
        the same bytes), gaps (by seq, or by timestamps when the server sends none), close \
        codes and errors, connect failures and retries, and its own CPU. With --server-pid (or \
        --spawn) also the server's memory per connection and CPU per delivered frame (/proc). \
        --compare runs the same load against a second server, alternating for --rounds, and \
        prints both side by side with ratios (A / B: URL over URL2)."
)]
pub struct BenchArgs {
    /// The server to load, e.g. ws://127.0.0.1:8765/ws (not with --spawn).
    #[arg(value_name = "URL", required_unless_present = "spawn")]
    pub url: Option<String>,
    /// A second server: run the same load on both, alternating, side by side.
    #[arg(long, value_name = "URL2")]
    pub compare: Option<String>,
    /// With --compare: rounds per server (fresh connections every round; figures are medians,
    /// memory is round 1's: a server that has served a load keeps its heap).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub rounds: u32,
    /// Healthy clients (the open-file limit is raised to fit; up to 20,000).
    #[arg(long, default_value_t = 100, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(1..=skillmon::bench::MAX_CLIENTS as i64), |v| v as usize))]
    pub clients: usize,
    /// Connections opened per second.
    #[arg(long, default_value_t = 500.0, value_parser = parse_rate)]
    pub connect_rate: f64,
    /// What clients subscribe to: all, one:NAME, or mix:A,B,all (clients take turns).
    #[arg(long, default_value = "all", value_parser = |s: &str| s.parse::<skillmon::bench::SubscribeMix>())]
    pub subscribe: skillmon::bench::SubscribeMix,
    /// Extra clients that connect and never read (slow consumers).
    #[arg(long, value_name = "K", default_value_t = 0, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u32).range(0..=10_000), |v| v as usize))]
    pub stalled: usize,
    /// Time after every client connected before measuring.
    #[arg(long, default_value = "2s", value_parser = skillmon::duration::parse)]
    pub warmup: Duration,
    /// The measured window: frames stamped in it count.
    #[arg(long, default_value = "10s", value_parser = skillmon::duration::parse_interval)]
    pub duration: Duration,
    /// After the window, how long late receipts of in-window frames still count.
    #[arg(long, default_value = "1s", value_parser = skillmon::duration::parse)]
    pub grace: Duration,
    /// Retries per client when connecting fails.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=10))]
    pub retries: u32,
    /// The server's process id: read its memory and CPU from /proc.
    #[arg(long, value_name = "PID")]
    pub server_pid: Option<u32>,
    /// With --compare: the second server's process id.
    #[arg(long, value_name = "PID", requires = "compare")]
    pub compare_pid: Option<u32>,
    /// Start `skillmon serve` on a free loopback port and load it (its pid is measured).
    #[arg(long, conflicts_with = "url")]
    pub spawn: bool,
    /// With --spawn: the database to serve [default: a generated one].
    #[arg(long, value_name = "PATH", requires = "spawn")]
    pub db: Option<PathBuf>,
    /// With --spawn: the server's time between updates.
    #[arg(long, default_value = "1s", value_parser = skillmon::duration::parse_interval)]
    pub interval: Duration,
    /// compat offers no subprotocol (like session-buddy clients); ext offers skillmon.v1.
    #[arg(long, default_value_t = skillmon::bench::Protocol::Compat, value_parser = names::<skillmon::bench::Protocol>())]
    pub protocol: skillmon::bench::Protocol,
    /// Offer permessage-deflate (RFC 7692), as browsers and Python/Node clients do, or not.
    #[arg(long, value_name = "MODE", ignore_case = true, default_value_t = skillmon::deflate::Compression::Deflate, value_parser = names::<skillmon::deflate::Compression>())]
    pub compression: skillmon::deflate::Compression,
    /// File holding the server's token (sent as Authorization: Bearer and as the first frame).
    #[arg(long, value_name = "PATH", env = "SKILLMON_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// One JSON object per run on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= 1_000_000.0 => Ok(v),
        _ => Err(format!(
            "{s:?} is not a positive number of connections per second (e.g. 500)"
        )),
    }
}

impl BenchArgs {
    pub fn to_config(&self) -> skillmon::bench::BenchConfig {
        skillmon::bench::BenchConfig {
            url: self.url.clone(),
            compare: self.compare.clone(),
            rounds: self.rounds,
            clients: self.clients,
            connect_rate: self.connect_rate,
            subscribe: self.subscribe.clone(),
            stalled: self.stalled,
            warmup: self.warmup,
            duration: self.duration,
            grace: self.grace,
            retries: self.retries,
            server_pid: self.server_pid,
            compare_pid: self.compare_pid,
            spawn: self.spawn,
            db: self.db.clone(),
            interval: self.interval,
            protocol: self.protocol,
            compression: self.compression,
            token_file: self.token_file.clone(),
            json: self.json,
        }
    }
}
