//! Log set-up for every command: the `SKILLMON_LOG` filter (default `info`)
//! and the two destinations, stderr (`serve`, `demo --serve-only`) and a
//! file (the dashboard, which owns the screen).
//!
//! Owns only the global tracing subscriber; what is logged is each module's.

use std::path::Path;

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The env var holding the log filter (`tracing_subscriber` directives).
pub const LOG_ENV: &str = "SKILLMON_LOG";

/// The filter from `SKILLMON_LOG`, else `info`.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Logs to stderr, coloured only on a terminal without `NO_COLOR`. A global
/// subscriber already set is kept.
pub fn init_stderr() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .finish()
        .with(filter_fn(no_wire_dumps))
        .try_init();
}

/// Logs go to a file, never to the screen. A log file that cannot be opened
/// only costs the logs. A global subscriber already set is kept, so a caller
/// running a server in the same process (`demo`) should call this first
/// (with [`crate::config::default_log_path`]) rather than log to stderr.
pub fn init_file(path: Option<&Path>) {
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(env_filter())
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .finish()
        .with(filter_fn(no_wire_dumps))
        .try_init();
}

/// tungstenite's trace level dumps upgrade requests and every frame, which
/// carry tokens (`Authorization`, `{"token"}`): never logged, whatever
/// `SKILLMON_LOG` says.
fn no_wire_dumps(meta: &tracing::Metadata<'_>) -> bool {
    !(meta.target().contains("tungstenite") && *meta.level() == tracing::Level::TRACE)
}
