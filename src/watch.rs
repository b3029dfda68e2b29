//! `skillmon watch`: resolve the configuration, set up logging to a file,
//! then run either the interactive dashboard ([`crate::tui`]) or a headless
//! printer ([`crate::headless`]). [`run`] is the one entry point (also used
//! by `skillmon demo` inside its own runtime).

pub mod latest;

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{ConnectOptions, Token};
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
    if headless {
        return headless::run(HeadlessOptions {
            url: cfg.url,
            subscription,
            json: args.json || !args.once,
            once: args.once,
            timeout: args.timeout.unwrap_or(DEFAULT_TIMEOUT),
            connect,
            fail_on_anomaly: args.fail_on_anomaly,
            history: args.history,
        })
        .await;
    }
    let mut app = App::new(cfg.url, subscription, chrono::Utc::now());
    app.theme = cfg.theme;
    app.no_color = cfg.no_color;
    app.keymap = keymap;
    app.attention.bell = cfg.bell;
    crate::tui::run(app, connect).await?;
    Ok(ExitCode::SUCCESS)
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
}
