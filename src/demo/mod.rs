//! `skillmon demo`: generated live data for anyone without a database yet
//! (`data`), served by a real `server` on a free loopback port and watched
//! by the real dashboard, in one process. `--keep-db` and `--generate`
//! refuse an existing path.

pub(crate) mod data;

pub use data::{Generated, Writer, create_demo_db, generate};

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;

/// `skillmon demo`'s settings (the binary builds them from its flags).
#[derive(Debug, Clone, PartialEq)]
pub struct DemoConfig {
    /// Run only the demo server (for other clients), no dashboard.
    pub serve_only: bool,
    /// Address the demo server listens on.
    pub host: String,
    /// Port of the demo server [default: 8765 with `serve_only`, else a free one].
    pub port: Option<u16>,
    /// Keep the demo database at this new path instead of a temporary one.
    pub keep_db: Option<PathBuf>,
    /// One JSON line per update instead of the dashboard.
    pub json: bool,
    /// Time between updates.
    pub interval: Duration,
    /// Write a benchmark database here and exit (see [`Generate`]).
    pub generate: Option<Generate>,
    /// Seed of the generated activity (reproducible runs); `None` = the clock.
    pub seed: Option<u64>,
}

/// What `--generate` writes: a benchmark database of `invocations` rows
/// across `skills` skills spread over `days` days.
#[derive(Debug, Clone, PartialEq)]
pub struct Generate {
    pub path: PathBuf,
    pub invocations: u64,
    pub skills: usize,
    pub days: f64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            serve_only: false,
            host: "127.0.0.1".into(),
            port: None,
            keep_db: None,
            json: false,
            interval: Duration::from_secs(1),
            generate: None,
            seed: None,
        }
    }
}

/// Run `skillmon demo` with these settings.
pub async fn run(args: DemoConfig) -> anyhow::Result<std::process::ExitCode> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    if let Some(gen_args) = &args.generate {
        let path = &gen_args.path;
        let g = tokio::task::spawn_blocking({
            let path = path.clone();
            let (n, s, d) = (gen_args.invocations, gen_args.skills, gen_args.days);
            move || generate(&path, n, s, d, seed)
        })
        .await??;
        println!(
            "generated {} invocations across {} skills in {:.1} s: {}",
            g.invocations,
            g.skills,
            g.seconds,
            path.display()
        );
        return Ok(std::process::ExitCode::SUCCESS);
    }
    // The database lives in a directory we created (removed on exit), or at
    // --keep-db, which must not exist yet: we never overwrite a user's file.
    let (tempdir, path) = if let Some(p) = &args.keep_db {
        if p.exists() {
            anyhow::bail!(
                "--keep-db {}: the file already exists; choose a new path (the demo never overwrites files)",
                p.display()
            );
        }
        (None, p.clone())
    } else {
        let dir = tempfile::Builder::new()
            .prefix("skillmon-demo-")
            .tempdir()
            .context("cannot create a temporary directory for the demo database")?;
        let path = dir.path().join("skills.db");
        (Some(dir), path)
    };
    let n = tokio::task::spawn_blocking({
        let path = path.clone();
        move || create_demo_db(&path, Utc::now(), seed)
    })
    .await??;
    tracing::info!(
        "demo database {} with {n} back-filled invocations",
        path.display()
    );
    let writer = Writer::start(path.clone(), seed)?;
    let port = args.port.unwrap_or(if args.serve_only { 8765 } else { 0 });
    let listener = crate::server::bind(&args.host, port).await?;
    let mut config = crate::server::ServeConfig::new(&path);
    config.interval = args.interval;
    // Every demo skill fits, so none hides below the top 10.
    config.top = 25;
    config.write_timeout = crate::server::default_write_timeout(args.interval);
    let server = crate::server::start(listener, config).await?;
    let url = server.url();
    tracing::info!("demo server listening on {url}");
    if !args.serve_only && args.json {
        eprintln!(
            "skillmon demo: server on {url}; database {}",
            path.display()
        );
    }
    let code = if args.serve_only {
        // The handlers are in place before anyone can read "serving".
        let signal = crate::signal::shutdown();
        eprintln!("skillmon demo: serving generated live data on {url} (Ctrl-C to stop)");
        signal.await;
        std::process::ExitCode::SUCCESS
    } else {
        dashboard(&url, &args).await?
    };
    server.stop().await?;
    let written = tokio::task::spawn_blocking(move || writer.stop()).await?;
    tracing::info!("demo writer stopped after {written} live invocations");
    match tempdir {
        Some(dir) => {
            let shown = dir.path().display().to_string();
            dir.close()
                .with_context(|| format!("cannot remove the demo directory {shown}"))?;
        }
        None => eprintln!("skillmon demo: kept the database at {}", path.display()),
    }
    Ok(code)
}

/// The dashboard (or `--json` lines) on the demo server, until the user
/// quits or a signal arrives.
async fn dashboard(url: &str, args: &DemoConfig) -> anyhow::Result<std::process::ExitCode> {
    let mut watch = crate::config::WatchOptions::for_url(url);
    watch.json = args.json;
    watch.no_token = true;
    tokio::select! {
        code = crate::watch::run(watch) => code,
        _ = crate::signal::shutdown() => Ok(std::process::ExitCode::SUCCESS),
    }
}
