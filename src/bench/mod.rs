//! `skillmon bench`: the load test a user points at their own server (or at
//! two, side by side). Opens N paced clients (plus stalled ones), waits out a
//! warm-up, records a window and a grace period, closes every client with
//! 1000, and reports latency, spread, tick period, delivery, gaps, errors,
//! and (with a server pid) the server's memory and CPU per frame.
//!
//! Owns the run's phases and its output; [`client`] owns one connection,
//! [`report`] the arithmetic and the text, [`sys`] /proc and rlimits,
//! [`spawn`] starting a `serve` of its own. Speaks only the compat protocol
//! (plus an optional `skillmon.v1` offer), so it works against session-buddy.
//! Must not depend on the server module: it measures servers from outside.

pub(crate) mod client;
pub(crate) mod print;
pub(crate) mod report;
pub(crate) mod spawn;
pub(crate) mod sys;

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::client::connect::{Token, TokenSource};
use crate::deflate::Compression;
use client::{Endpoint, Shared};
use report::{Report, RunMeta, ServerReport};

/// Most healthy clients one run may open.
pub const MAX_CLIENTS: usize = 20_000;

/// Which protocol flavour the clients speak.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Default,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::EnumMessage,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Protocol {
    /// Offer no subprotocol (what session-buddy's clients do).
    #[default]
    Compat,
    /// Offer `skillmon.v1` in Sec-WebSocket-Protocol.
    Ext,
}

/// What each client subscribes to: `all`, `one:NAME`, or `mix:A,B,all`
/// (clients take the items in turn).
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeMix {
    /// `None` = every skill (no `subscribe` message is sent).
    pub items: Vec<Option<String>>,
}

impl Default for SubscribeMix {
    fn default() -> Self {
        Self { items: vec![None] }
    }
}

impl std::str::FromStr for SubscribeMix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let item = |name: &str| -> Result<Option<String>, String> {
            let name = name.trim();
            match name {
                "" => Err(format!("{s:?}: a skill name is empty")),
                "all" | "*" => Ok(None),
                n if n.chars().count() > 256 => {
                    Err(format!("{s:?}: a skill name is longer than 256 characters"))
                }
                n => Ok(Some(n.to_string())),
            }
        };
        if s == "all" {
            Ok(Self::default())
        } else if let Some(name) = s.strip_prefix("one:") {
            match item(name)? {
                None => Ok(Self::default()),
                some => Ok(Self { items: vec![some] }),
            }
        } else if let Some(list) = s.strip_prefix("mix:") {
            let items = list.split(',').map(item).collect::<Result<Vec<_>, _>>()?;
            Ok(Self { items })
        } else {
            Err(format!(
                "{s:?} is not a subscription: use all, one:NAME or mix:A,B,all"
            ))
        }
    }
}

impl std::fmt::Display for SubscribeMix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = |i: &Option<String>| i.clone().unwrap_or_else(|| "all".into());
        match self.items.as_slice() {
            [None] => f.write_str("all"),
            [one] => write!(f, "one:{}", name(one)),
            many => write!(
                f,
                "mix:{}",
                many.iter().map(name).collect::<Vec<_>>().join(",")
            ),
        }
    }
}

/// Everything one `skillmon bench` invocation needs (built by the binary
/// from its flags).
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The server to load; `None` with `spawn`.
    pub url: Option<String>,
    /// A second server, run alternately with the first.
    pub compare: Option<String>,
    pub rounds: u32,
    pub clients: usize,
    /// Connections opened per second.
    pub connect_rate: f64,
    pub subscribe: SubscribeMix,
    /// Clients that connect and never read.
    pub stalled: usize,
    pub warmup: Duration,
    pub duration: Duration,
    pub grace: Duration,
    /// Retries per client when connecting fails.
    pub retries: u32,
    pub server_pid: Option<u32>,
    pub compare_pid: Option<u32>,
    /// Start `skillmon serve` on a free loopback port and load it.
    pub spawn: bool,
    /// With `spawn`: the database to serve (default: a generated one).
    pub db: Option<PathBuf>,
    /// With `spawn`: its `--interval`.
    pub interval: Duration,
    pub protocol: Protocol,
    /// Offer permessage-deflate, or not.
    pub compression: Compression,
    /// A file holding the token (sent as `Authorization: Bearer` and as the
    /// first frame).
    pub token_file: Option<PathBuf>,
    /// One JSON object per run on stdout instead of the table.
    pub json: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            url: None,
            compare: None,
            rounds: 1,
            clients: 100,
            connect_rate: 500.0,
            subscribe: SubscribeMix::default(),
            stalled: 0,
            warmup: Duration::from_secs(2),
            duration: Duration::from_secs(10),
            grace: Duration::from_secs(1),
            retries: 2,
            server_pid: None,
            compare_pid: None,
            spawn: false,
            db: None,
            interval: Duration::from_secs(1),
            protocol: Protocol::Compat,
            compression: Compression::Deflate,
            token_file: None,
            json: false,
        }
    }
}

/// Run the benchmark as configured; prints the table or JSON lines.
pub async fn run(cfg: BenchConfig) -> anyhow::Result<ExitCode> {
    if cfg.clients == 0 || cfg.clients > MAX_CLIENTS {
        anyhow::bail!("--clients must be between 1 and {MAX_CLIENTS}");
    }
    if !(cfg.connect_rate > 0.0 && cfg.connect_rate.is_finite()) {
        anyhow::bail!("--connect-rate must be a positive number of connections per second");
    }
    if cfg.subscribe.items.is_empty() {
        anyhow::bail!("--subscribe needs at least one item");
    }
    // Every client is a socket, plus a few files of our own; a spawned
    // server (one socket per client too) inherits the raised limit.
    let needed = (cfg.clients + cfg.stalled) as u64 + 64;
    let (nofile, warning) = crate::rlimit::raise_nofile(needed, "use fewer --clients");
    if let Some(w) = warning {
        eprintln!("skillmon bench: warning: {w}");
    }
    // The same reader as `watch`: capped (16 KiB), trimmed, never echoed.
    let token = cfg
        .token_file
        .as_ref()
        .map(|p| Token::load(&TokenSource::File(p.clone())))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--token-file: {e}"))?;
    let offer = crate::client::handshake::Offer {
        ext: cfg.protocol == Protocol::Ext,
        compression: cfg.compression,
    };

    let mut spawned = None;
    let url_a = match (&cfg.url, cfg.spawn) {
        (Some(_), true) => anyhow::bail!("give either a URL or --spawn, not both"),
        (Some(u), false) => u.clone(),
        (None, true) => {
            let s = spawn::Spawned::start(cfg.db.as_deref(), cfg.interval).await?;
            let url = s.url.clone();
            spawned = Some(s);
            url
        }
        (None, false) => {
            anyhow::bail!("give the server's URL (e.g. ws://127.0.0.1:8765/ws), or --spawn")
        }
    };
    let pid_a = cfg.server_pid.or(spawned.as_ref().map(|s| s.pid));
    let progress = !cfg.json && std::io::stderr().is_terminal();
    let mut runs_a: Vec<Report> = Vec::new();
    let mut runs_b: Vec<Report> = Vec::new();
    let rounds = if cfg.compare.is_some() {
        cfg.rounds.max(1)
    } else {
        1
    };
    // Everything that can fail once a server was spawned runs in here, so
    // the spawned server is always stopped (an early `?` would orphan it).
    let result: anyhow::Result<()> = async {
        let wanted = cfg.clients + cfg.stalled;
        let a = Arc::new(Endpoint::resolve(&url_a, token.clone(), offer, wanted).await?);
        let b = match &cfg.compare {
            Some(u) => Some(Arc::new(Endpoint::resolve(u, token, offer, wanted).await?)),
            None => None,
        };
        for round in 1..=rounds {
            let ra = run_once(&cfg, &a, "A", round, pid_a, nofile, progress).await?;
            emit(&cfg, &ra);
            runs_a.push(ra);
            if let Some(b) = &b {
                let rb = run_once(&cfg, b, "B", round, cfg.compare_pid, nofile, progress).await?;
                emit(&cfg, &rb);
                runs_b.push(rb);
            }
        }
        Ok(())
    }
    .await;
    if let Some(s) = spawned {
        s.stop().await;
    }
    result?;
    if !cfg.json {
        if cfg.compare.is_some() {
            println!("{}", report::compare_table(&runs_a, &runs_b));
        } else if let Some(r) = runs_a.first() {
            println!("{}", report::table(r));
        }
    }
    let all = runs_a.iter().chain(&runs_b);
    if all.clone().any(|r| r.connect.ok == 0) {
        eprintln!("skillmon bench: no client could connect; see the connect errors above");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn emit(cfg: &BenchConfig, r: &Report) {
    if cfg.json {
        match serde_json::to_string(r) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("skillmon bench: cannot encode the report: {e}"),
        }
    } else if cfg.compare.is_some() {
        // Side by side comes at the end; say which run finished.
        eprintln!(
            "skillmon bench: round {} {} done: delivery {:.4}, p99 {} ms",
            r.round,
            r.label,
            r.delivery,
            r.latency.map_or("—".into(), |d| format!("{:.2}", d.p99_ms))
        );
    }
}

/// A progress line on stderr (TTY only): phase, a bar, and a count.
struct Progress {
    on: bool,
    label: String,
}

impl Progress {
    fn show(&self, phase: &str, done: f64, detail: &str) {
        if !self.on {
            return;
        }
        let width = 30;
        let filled = ((done.clamp(0.0, 1.0)) * width as f64).round() as usize;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} {:<9} [{}{}] {}",
            self.label,
            phase,
            "#".repeat(filled),
            "-".repeat(width - filled),
            detail
        );
        let _ = err.flush();
    }

    fn clear(&self) {
        if self.on {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }

    /// Show a timed phase until it ends.
    async fn wait(&self, phase: &str, length: Duration) {
        let start = Instant::now();
        // One reading of the clock per turn: reading it twice could find
        // the phase over between the check and the subtraction.
        loop {
            let elapsed = start.elapsed();
            let Some(left) = length.checked_sub(elapsed).filter(|l| !l.is_zero()) else {
                break;
            };
            self.show(
                phase,
                elapsed.as_secs_f64() / length.as_secs_f64().max(1e-9),
                &format!("{:.0}s left", left.as_secs_f64().ceil()),
            );
            tokio::time::sleep(left.min(Duration::from_millis(200))).await;
        }
    }
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// One run against one server: fresh connections, every phase, one report.
async fn run_once(
    cfg: &BenchConfig,
    ep: &Arc<Endpoint>,
    label: &str,
    round: u32,
    pid: Option<u32>,
    nofile: u64,
    progress: bool,
) -> anyhow::Result<Report> {
    let progress = Progress {
        on: progress,
        label: format!("{label}#{round}"),
    };
    let sh = Arc::new(Shared::default());
    let rss_before = pid.and_then(sys::rss_kb);

    // Stalled clients first, so they are stuck for the whole run.
    let mut stalled = Vec::with_capacity(cfg.stalled);
    for _ in 0..cfg.stalled {
        stalled.push(tokio::spawn(client::stalled(
            ep.clone(),
            sh.clone(),
            cfg.retries,
        )));
    }
    // Healthy clients, paced.
    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / cfg.connect_rate);
    let mut pace = tokio::time::interval(period);
    pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = Vec::with_capacity(cfg.clients);
    let groups = &cfg.subscribe.items;
    for i in 0..cfg.clients {
        pace.tick().await;
        let g = i % groups.len();
        tasks.push(tokio::spawn(client::healthy(
            ep.clone(),
            sh.clone(),
            g,
            groups[g].clone(),
            cfg.retries,
        )));
        if i % 64 == 0 {
            progress.show(
                "connect",
                i as f64 / cfg.clients as f64,
                &format!("{}/{} connected", sh.connected.load(Relaxed), cfg.clients),
            );
        }
    }
    // Every client connected (or gave up) and got its first update; a
    // filtered session-buddy client may never get one, so this is bounded.
    let bound = Instant::now() + Duration::from_secs(30);
    while sh.ready.load(Relaxed) < cfg.clients && Instant::now() < bound {
        progress.show(
            "connect",
            sh.ready.load(Relaxed) as f64 / cfg.clients as f64,
            &format!("{}/{} connected", sh.connected.load(Relaxed), cfg.clients),
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect_seconds = started.elapsed().as_secs_f64();

    progress.wait("warm-up", cfg.warmup).await;
    let rss_after = pid.and_then(sys::rss_kb);
    // Recording starts before the window's first timestamp is taken, so no
    // frame stamped inside the window can be received unrecorded.
    sh.recording.store(true, Relaxed);
    let window_start = now_us();
    let cpu_server0 = pid.and_then(sys::cpu_us);
    let cpu_self0 = sys::self_cpu_us();
    progress.wait("window", cfg.duration).await;
    let window_end = now_us();
    let cpu_self1 = sys::self_cpu_us();
    let cpu_server1 = pid.and_then(sys::cpu_us);
    progress.wait("grace", cfg.grace).await;
    sh.recording.store(false, Relaxed);
    sh.stop.cancel();
    progress.show("closing", 1.0, "");
    let mut results = Vec::with_capacity(tasks.len());
    for t in tasks {
        results.push(t.await.context("a bench client panicked")?);
    }
    let mut stalled_results = Vec::with_capacity(stalled.len());
    for t in stalled {
        stalled_results.push(t.await.context("a stalled bench client panicked")?);
    }
    progress.clear();

    let conns = (cfg.clients + cfg.stalled) as f64;
    let server = pid.map(|pid| ServerReport {
        pid,
        rss_before_kb: rss_before,
        rss_after_kb: rss_after,
        kb_per_connection: rss_before
            .zip(rss_after)
            .map(|(b, a)| (a as f64 - b as f64) / conns),
        cpu_ms: cpu_server0
            .zip(cpu_server1)
            .map(|(a, b)| b.saturating_sub(a) as f64 / 1000.0),
        cpu_us_per_frame: None,
    });
    let meta = RunMeta {
        label: label.to_string(),
        url: ep.url.clone(),
        round,
        protocol: cfg.protocol.to_string(),
        compression: cfg.compression.to_string(),
        subscribe: cfg.subscribe.to_string(),
        warmup_s: cfg.warmup.as_secs_f64(),
        duration_s: cfg.duration.as_secs_f64(),
        grace_s: cfg.grace.as_secs_f64(),
        connect_seconds,
        window: (window_start, window_end),
        server,
        client_cpu_us: cpu_self1.saturating_sub(cpu_self0),
        nofile_limit: nofile,
    };
    // Merging 10,000 clients' records is CPU work: off the runtime.
    tokio::task::spawn_blocking(move || report::build(meta, &results, &stalled_results))
        .await
        .context("building the report failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_words() {
        assert_eq!("all".parse::<SubscribeMix>(), Ok(SubscribeMix::default()));
        let one: SubscribeMix = "one:pytest-run".parse().unwrap();
        assert_eq!(one.items, vec![Some("pytest-run".to_string())]);
        assert_eq!(one.to_string(), "one:pytest-run");
        let mix: SubscribeMix = "mix:a,b,all".parse().unwrap();
        assert_eq!(mix.items, vec![Some("a".into()), Some("b".into()), None]);
        assert_eq!(mix.to_string(), "mix:a,b,all");
        assert!(
            "some"
                .parse::<SubscribeMix>()
                .unwrap_err()
                .contains("one:NAME")
        );
        assert!("mix:a,,b".parse::<SubscribeMix>().is_err());
        assert_eq!("ext".parse::<Protocol>(), Ok(Protocol::Ext));
    }

    #[tokio::test]
    async fn a_phase_ending_between_two_clock_readings_is_no_panic() {
        let quiet = Progress {
            on: false,
            label: String::new(),
        };
        // Lengths around the cost of reading the clock: the phase often ends
        // between the loop's check and the time-left computation.
        for ns in 1..=1500 {
            quiet.wait("t", Duration::from_nanos(ns)).await;
        }
    }
}
