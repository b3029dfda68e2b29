//! Log set-up for every command: the `SKILLMON_LOG` filter (default `info`),
//! the two destinations, stderr (`serve`, `demo --serve-only`) and a file
//! (the dashboard, which owns the screen), and the two formats
//! ([`LogFormat`]: text for people, one JSON object per line for log
//! shippers).
//!
//! Owns only the global tracing subscriber; what is logged is each module's.

use std::path::Path;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The env var holding the log filter (`tracing_subscriber` directives).
pub const LOG_ENV: &str = "SKILLMON_LOG";

/// The filter from `SKILLMON_LOG`, else `info`.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// The env var choosing the log format (`--log-format`).
pub const FORMAT_ENV: &str = "SKILLMON_LOG_FORMAT";

/// How each log line is written (`--log-format`, `SKILLMON_LOG_FORMAT`).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::EnumMessage,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum LogFormat {
    /// Lines for people: time, level, span fields and message.
    #[default]
    Text,
    /// One JSON object per line (time, level, fields, the current span and
    /// every span it is in, with their fields), for log shippers.
    Json,
}

/// Logs to stderr, coloured (text only) on a terminal without `NO_COLOR`. A
/// global subscriber already set is kept.
pub fn init_stderr(format: LogFormat) {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    init(format, std::io::stderr, ansi, false);
}

/// The global subscriber: the filters, then one formatting layer writing to
/// `writer`. `target`: text lines name the module that logged.
fn init<W>(format: LogFormat, writer: W, ansi: bool, target: bool)
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let _ = tracing_subscriber::registry()
        .with(env_filter())
        .with(filter_fn(no_wire_dumps))
        .with(layer(format, writer, ansi, target))
        .try_init();
}

fn layer<S, W>(
    format: LogFormat,
    writer: W,
    ansi: bool,
    target: bool,
) -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => fmt.with_target(target).with_ansi(ansi).boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .boxed(),
    }
}

/// Logs go to a file, never to the screen. A log file that cannot be opened
/// only costs the logs. A global subscriber already set is kept, so a caller
/// running a server in the same process (`demo`) should call this first
/// (with [`crate::config::default_log_path`]) rather than log to stderr.
pub fn init_file(path: Option<&Path>, format: LogFormat) {
    let Some(path) = path else { return };
    let file = (|| -> anyhow::Result<std::fs::File> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))
    })();
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            eprintln!("skillmon watch: no log file: {e:#}");
            return;
        }
    };
    init(format, std::sync::Mutex::new(file), false, true);
}

/// tungstenite's trace level dumps upgrade requests and every frame, which
/// carry tokens (`Authorization`, `{"token"}`): never logged, whatever
/// `SKILLMON_LOG` says.
fn no_wire_dumps(meta: &tracing::Metadata<'_>) -> bool {
    !(meta.target().contains("tungstenite") && *meta.level() == tracing::Level::TRACE)
}
