//! `skillmon watch`: resolve the configuration, set up logging to a file,
//! start the feed ([`crate::client::FeedHandle`]) and the signal → stop
//! task, then run either the interactive dashboard ([`crate::tui`]) or a
//! headless printer ([`crate::headless`]) on that one feed, and close it
//! when the mode returns. [`run`] is the one entry point (also used by
//! `skillmon demo` inside its own runtime).
//!
//! Owns the feed's and the signal's lifetime; it must not interpret feed
//! events (the modes do), and the modes never reach back up into it.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::client::{ConnectOptions, FeedHandle, Token};
use crate::config::{self, WatchOptions};
use crate::headless::{self, HeadlessOptions};
use crate::protocol::Subscription;
use crate::tui::app::App;
use crate::tui::keymap::Keymap;

/// `--timeout` when not given.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Run `skillmon watch` with these options; must be called inside a
/// multi-thread tokio runtime.
pub async fn run(args: WatchOptions) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&args)?;
    let keymap = Keymap::with_overrides(&cfg.keys).map_err(|e| match &cfg.file {
        Some(p) => anyhow::anyhow!("config file {}: {e}", p.display()),
        None => anyhow::anyhow!("{e}"),
    })?;
    if args.print_config {
        print!("{}", cfg.to_display(&keymap));
        return Ok(ExitCode::SUCCESS);
    }
    let tls_wanted = check_url(&cfg.url)?;
    let subscription = Subscription::from_names(cfg.skills.iter().map(|s| s.trim().to_string()));
    subscription
        .validate()
        .map_err(|e| anyhow::anyhow!("--skill / SKILLMON_SKILLS / config `skills`: {e}"))?;
    let headless = args.json || args.once || !std::io::stdout().is_terminal();
    crate::logging::init_file(cfg.log_file.as_deref(), args.log_format);
    let connect = connect_options(&cfg.net, tls_wanted)?;
    if connect.token.is_some() && !tls_wanted && !crate::client::connect::is_loopback(&cfg.url) {
        let warning = format!(
            "sending a token over unencrypted ws:// to {}: anyone on the network path can read it; use wss://",
            crate::client::connect::host_of(&cfg.url)
        );
        tracing::warn!("{warning}");
        if headless {
            eprintln!("skillmon watch: warning: {warning}");
        }
    }
    tracing::info!(
        "skillmon watch {} ({}), subscription {:?}",
        cfg.url,
        if headless { "headless" } else { "dashboard" },
        subscription
    );
    // The first SIGINT/SIGTERM (handlers installed now, before the feed
    // starts) is caught by its own task into `stop`, so it is never lost
    // while a mode is busy; each mode checks it first.
    let stop = CancellationToken::new();
    let signal_task = tokio::spawn({
        let (stop, signal) = (stop.clone(), crate::signal::shutdown());
        async move {
            if signal.await == crate::signal::Shutdown::Terminate {
                tracing::info!("SIGTERM: quitting");
            }
            stop.cancel();
        }
    });
    let feed = FeedHandle::start(cfg.url.clone(), subscription.clone(), connect, stop);
    let result = if headless {
        let opts = HeadlessOptions {
            url: cfg.url,
            subscription,
            json: args.json || !args.once,
            once: args.once,
            timeout: args.timeout.unwrap_or(DEFAULT_TIMEOUT),
            fail_on_anomaly: args.fail_on_anomaly,
            history: args.history,
        };
        headless::run(opts, &feed).await
    } else {
        let mut app = App::new(cfg.url, subscription, chrono::Utc::now());
        app.theme = cfg.theme;
        app.no_color = cfg.no_color;
        app.keymap = keymap;
        app.attention.bell = cfg.bell;
        crate::tui::run(app, &feed)
            .await
            .map(|()| ExitCode::SUCCESS)
    };
    signal_task.abort();
    feed.close().await;
    result
}

/// Is `url` a WebSocket URL, and does it need TLS (`wss://`)?
fn check_url(url: &str) -> anyhow::Result<bool> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("ws://") {
        Ok(false)
    } else if lower.starts_with("wss://") {
        Ok(true)
    } else {
        anyhow::bail!(
            "{url:?} is not a WebSocket URL; use e.g. ws://127.0.0.1:8765 (argument URL, SKILLMON_URL or `url` in the config file)"
        )
    }
}

/// Read the token (if any) and build the TLS trust (only for `wss://`: the
/// platform's store is not read for plain connections).
fn connect_options(net: &config::NetConfig, tls: bool) -> anyhow::Result<ConnectOptions> {
    let token = net.token.as_ref().map(Token::load).transpose()?;
    if let Some(t) = &token {
        tracing::info!("sending a token (from {})", t.source());
    }
    let tls = if tls {
        Some(crate::client::connect::tls_config(net.ca_cert.as_deref())?)
    } else {
        if let Some(p) = &net.ca_cert {
            tracing::info!("--ca-cert {} unused: the URL is not wss://", p.display());
        }
        None
    };
    Ok(ConnectOptions {
        token,
        tls,
        max_frame: net.max_frame,
        compression: net.compression,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("ws://127.0.0.1:8765").is_ok());
        assert!(check_url("WS://h/ws").is_ok());
        assert_eq!(check_url("wss://h").ok(), Some(true));
        assert_eq!(check_url("ws://h").ok(), Some(false));
        assert!(check_url("http://h").is_err());
        assert!(check_url("localhost:8765").is_err());
    }

    /// The modes take the feed `run` hands them: no arrow from `tui` or
    /// `headless` back up to `watch`.
    #[test]
    fn the_modes_do_not_import_watch() {
        fn rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        rust_files(&src.join("tui"), &mut files);
        rust_files(&src.join("headless"), &mut files);
        assert!(files.len() > 10, "{files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for needle in ["crate::watch", "super::watch"] {
                assert!(!text.contains(needle), "{} uses {needle}", f.display());
            }
        }
    }
}
