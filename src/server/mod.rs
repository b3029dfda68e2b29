//! `skillmon serve`: a session-buddy-compatible metrics server.
//!
//! ```text
//! Store (blocking thread) ──Snapshot──▶ Hub ──Frame per group──▶ Session ──▶ socket
//! ```
//! This module owns the listener, the tick loop and shutdown; [`hub`] owns
//! fan-out, [`session`] one client, [`http`] the plain-HTTP routes on the same
//! port, [`stats`] the counters behind `/metrics` and `/healthz`; [`auth`]
//! tokens, [`access`] the origin check and per-IP limit, [`tls`] `wss://`,
//! all at accept/handshake time, off the per-frame path; `conn` one
//! connection from accept until its session starts.

pub(crate) mod access;
pub mod auth;
mod conn;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod lag;
pub(crate) mod session;
pub(crate) mod stats;
pub mod tls;
mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Snapshot, Store};
use crate::team::{TeamRole, TeamStatus};
use hub::Hub;
use stats::Stats;

/// Largest message a client may send.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// tungstenite's read buffer per connection (its 128 KiB default would cost
/// ~135 KB per idle connection).
pub const READ_BUFFER_BYTES: usize = 2 * 1024;
/// Bytes a session may have queued in tungstenite beyond one frame.
pub const MAX_WRITE_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// How long a client has to send its request head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Sockets allowed beyond `max_connections` (health checks, handshakes in
/// flight); past that a connection gets 503 before its request is read.
const SOCKET_SLACK: usize = 128;
/// Sessions get this long to send their 1001 close on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(900);

/// Everything `serve` needs to run.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub db: PathBuf,
    pub interval: Duration,
    pub top: usize,
    pub write_timeout: Duration,
    pub max_connections: usize,
    /// Which anomalies to serve and the live rule's threshold.
    pub store: crate::store::StoreOptions,
    /// Tokens, origins, TLS and the per-IP limit (all off / open by default
    /// except the per-IP limit).
    pub net: NetConfig,
}

/// What it takes to serve beyond a trusted loopback (issue 12).
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub auth: auth::AuthConfig,
    /// `--allow-origin`: browser origins allowed besides loopback pages and
    /// the server's own host (`*`: all).
    pub allow_origins: Vec<String>,
    /// `--tls-cert` / `--tls-key`: serve `wss://` and `https://`.
    pub tls: Option<tls::TlsFiles>,
    /// Open sockets one client IP may hold; more get 503.
    pub max_connections_per_ip: usize,
    /// `--max-lag`: bytes a client may be behind (written to its socket,
    /// not taken; the kernel's queue counted) before it is closed with
    /// 1013. `None`: 10 frames' worth or 1 MiB, whichever is larger.
    pub max_lag: Option<usize>,
}

/// `--max-connections-per-ip` default.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            auth: auth::AuthConfig::default(),
            allow_origins: Vec::new(),
            tls: None,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_lag: None,
        }
    }
}

impl ServeConfig {
    /// The defaults of `skillmon serve` for `db`.
    pub fn new(db: impl Into<PathBuf>) -> Self {
        let interval = Duration::from_secs(1);
        Self {
            db: db.into(),
            interval,
            top: 10,
            write_timeout: default_write_timeout(interval),
            max_connections: 20_000,
            store: crate::store::StoreOptions::default(),
            net: NetConfig::default(),
        }
    }
}

/// max(2 × interval, 5 s).
pub fn default_write_timeout(interval: Duration) -> Duration {
    (interval * 2).max(Duration::from_secs(5))
}

/// State every connection shares.
pub struct Shared {
    pub config: ServeConfig,
    pub hub: Hub,
    pub stats: Stats,
    pub shutdown: CancellationToken,
    next_session: AtomicU64,
    /// `None`: authentication is off.
    pub verifier: Option<auth::Verifier>,
    per_ip: Arc<access::PerIp>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// (team) The Redis side of a publisher or an edge (`crate::team`).
    pub team: Option<Arc<TeamStatus>>,
}

/// A running server, for tests and the demo: its address, its counters and
/// the token that stops it.
pub struct Handle {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Handle {
    /// `ws://ADDR/ws`, or `wss://` with TLS.
    pub fn url(&self) -> String {
        let s = if self.shared.tls.is_some() { "s" } else { "" };
        format!("ws{s}://{}/ws", self.addr)
    }

    /// `http://ADDR`, or `https://` with TLS.
    pub fn http_base(&self) -> String {
        let s = if self.shared.tls.is_some() { "s" } else { "" };
        format!("http{s}://{}", self.addr)
    }

    /// Stop: every client is closed with 1001; resolves when all are done.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shared.shutdown.cancel();
        self.task.await.context("server task panicked")?
    }
}

/// Bind `host:port` and return a clear error naming the flag on failure.
pub async fn bind(host: &str, port: u16) -> anyhow::Result<TcpListener> {
    TcpListener::bind((host, port)).await.with_context(|| {
        format!("cannot listen on {host}:{port}; choose another address with --host/--port (SKILLMON_HOST/SKILLMON_PORT)")
    })
}

/// Start serving on an already bound listener, in the background.
pub async fn start(listener: TcpListener, config: ServeConfig) -> anyhow::Result<Handle> {
    start_team(listener, config, TeamRole::None).await
}

/// [`start`] in a team role: a publisher also writes its snapshots to
/// Redis; an edge reads no database and serves the team's merged snapshot.
pub async fn start_team(
    listener: TcpListener,
    config: ServeConfig,
    role: TeamRole,
) -> anyhow::Result<Handle> {
    let addr = listener.local_addr()?;
    let (shared, tracker) = launch(config, role).await?;
    if shared.verifier.is_none() && !addr.ip().is_loopback() {
        tracing::warn!(
            %addr,
            "listening beyond loopback without a token: anyone who can reach this port can read your skill data (set --token-file or SKILLMON_TOKEN, or SESSION_BUDDY_JWT_SECRET)"
        );
    }
    let task = tokio::spawn(accept_loop(listener, shared.clone(), tracker));
    Ok(Handle { addr, shared, task })
}

/// The shared state and the snapshot source (the store's tick loop, plus a
/// publisher; or an edge), with the first picture already in the hub.
async fn launch(config: ServeConfig, role: TeamRole) -> anyhow::Result<(Arc<Shared>, TaskTracker)> {
    let tls = config.net.tls.as_ref().map(tls::acceptor).transpose()?;
    let verifier = auth::Verifier::new(&config.net.auth);
    let team = role.status();
    let shared = Arc::new(Shared {
        hub: Hub::new(config.top),
        stats: Stats::new(),
        shutdown: CancellationToken::new(),
        next_session: AtomicU64::new(1),
        verifier,
        per_ip: access::PerIp::new(config.net.max_connections_per_ip),
        tls,
        team: team.clone(),
        config,
    });
    let tracker = TaskTracker::new();
    // Sessions hear of shutdown through the hub (see Hub::close).
    let closer = shared.clone();
    tracker.spawn(async move {
        closer.shutdown.cancelled().await;
        closer.hub.close();
    });
    match (role, team) {
        (TeamRole::Edge(edge_config), Some(status)) => {
            let sink_shared = shared.clone();
            let sink: crate::team::edge::Sink = Arc::new(move |snapshot: Arc<Snapshot>| {
                let t = Instant::now();
                let prepared = sink_shared.hub.prepare(snapshot);
                let built = t.elapsed();
                let shared = sink_shared.clone();
                Box::new(move || hand_out(&shared, prepared, built))
            });
            let edge = crate::team::edge::Edge::new(edge_config, status);
            let (interval, shutdown) = (shared.config.interval, shared.shutdown.clone());
            tracker.spawn(edge.start(sink, interval, shutdown).await);
        }
        (role, status) => {
            let store = Arc::new(Mutex::new(Store::with_options(
                shared.config.db.clone(),
                shared.config.store,
            )));
            // The first picture is read before the first client is accepted
            // (and before a publisher's first write: never an empty one).
            refresh_and_publish(&store, &shared, None).await;
            let out = match (role, status) {
                (TeamRole::Publish(p), Some(status)) => {
                    let (tx, rx) = tokio::sync::watch::channel(store_snapshot(&store));
                    tracker.spawn(crate::team::publisher::run(
                        p,
                        status,
                        rx,
                        shared.shutdown.clone(),
                    ));
                    Some(tx)
                }
                _ => None,
            };
            tracker.spawn(tick_loop(shared.clone(), store, out));
        }
    }
    Ok((shared, tracker))
}

fn store_snapshot(store: &Arc<Mutex<Store>>) -> Arc<Snapshot> {
    store
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .snapshot()
}

/// Hand a tick's frames, built in `built`, to the sessions, counting the
/// tick. Called on a runtime worker (see `hub::Prepared::send`).
fn hand_out(shared: &Shared, prepared: hub::Prepared, built: Duration) {
    let t = Instant::now();
    let groups = prepared.send();
    shared.stats.published(groups, built + t.elapsed());
}

/// A publisher without WebSocket clients (`serve --publish … --no-listen`):
/// the store's tick loop and the publisher until SIGINT/SIGTERM.
pub async fn run_publisher_only(config: ServeConfig, role: TeamRole) -> anyhow::Result<()> {
    let signal = crate::signal::shutdown();
    let (shared, tracker) = launch(config, role).await?;
    tracing::info!("skillmon serve: publishing only (--no-listen)");
    signal.await;
    shared.shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
    Ok(())
}

/// Serve until SIGINT/SIGTERM, then close every client with 1001.
pub async fn run_until_signal(listener: TcpListener, config: ServeConfig) -> anyhow::Result<()> {
    run_team_until_signal(listener, config, TeamRole::None).await
}

/// [`run_until_signal`] in a team role (publisher or edge).
pub async fn run_team_until_signal(
    listener: TcpListener,
    config: ServeConfig,
    role: TeamRole,
) -> anyhow::Result<()> {
    let handle = start_team(listener, config, role).await?;
    // The SIGTERM handler is in place before anyone can read "listening".
    let signal = crate::signal::shutdown();
    tracing::info!(
        "skillmon serve: listening on {} (health: {base}/healthz, readiness: {base}/readyz, metrics: {base}/metrics; authentication {})",
        handle.url(),
        if handle.shared.verifier.is_some() {
            "on"
        } else {
            "off"
        },
        base = handle.http_base(),
    );
    signal.await;
    tracing::info!("shutting down: closing every client with 1001");
    handle.stop().await
}

/// One tick: refresh the store and build every group's frame, both on a
/// blocking thread (SQLite and JSON are CPU work), then hand the frames out
/// from here. The database counters are recorded before the frames go out,
/// so a client that sees new data also sees the query that read it in
/// `/metrics`.
async fn refresh_and_publish(
    store: &Arc<Mutex<Store>>,
    shared: &Arc<Shared>,
    out: Option<&tokio::sync::watch::Sender<Arc<Snapshot>>>,
) {
    let store = store.clone();
    let out = out.cloned();
    let blocking_shared = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        let shared = blocking_shared;
        let stats = &shared.stats;
        let started = Instant::now();
        let (refresh, status) = {
            let mut s = store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let r = s.refresh();
            (r, s.status())
        };
        stats.db_refreshed(refresh.queried.then(|| started.elapsed()), status);
        if let Some(out) = &out {
            out.send_replace(refresh.snapshot.clone());
        }
        let t = Instant::now();
        let prepared = shared.hub.prepare(refresh.snapshot);
        (prepared, t.elapsed())
    })
    .await;
    // The frames are handed out from this task, on a runtime worker (see
    // hub::Prepared::send).
    if let Ok((prepared, built)) = done {
        hand_out(shared, prepared, built);
    } else {
        tracing::error!("database refresh panicked; keeping the last snapshot");
    }
}

async fn tick_loop(
    shared: Arc<Shared>,
    store: Arc<Mutex<Store>>,
    out: Option<tokio::sync::watch::Sender<Arc<Snapshot>>>,
) {
    let period = shared.config.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => refresh_and_publish(&store, &shared, out.as_ref()).await,
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    tracker: TaskTracker,
) -> anyhow::Result<()> {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Every socket counts, upgraded or not, so clients that
                    // never finish a request head cannot exhaust memory.
                    let open = shared.stats.socket_opened() as usize;
                    if open >= shared.config.max_connections + SOCKET_SLACK {
                        shared.stats.socket_closed();
                        shared.stats.connection_limit_refused();
                        tracker.spawn(conn::refuse_busy(stream, shared.config.max_connections));
                        continue;
                    }
                    let Some(slot) = shared.per_ip.acquire(peer.ip()) else {
                        shared.stats.socket_closed();
                        shared.stats.per_ip_refused();
                        tracing::warn!(%peer, limit = shared.config.net.max_connections_per_ip, "refused: too many connections from this address");
                        tracker.spawn(conn::refuse_per_ip(stream, shared.config.net.max_connections_per_ip));
                        continue;
                    };
                    let shared = shared.clone();
                    // Two task shapes: a plain connection's task must not
                    // carry the (much larger) TLS state in its future.
                    if let Some(acceptor) = shared.tls.clone() {
                        tracker.spawn(async move {
                            conn::tls_connection(acceptor, stream, peer, shared.clone()).await;
                            drop(slot);
                            shared.stats.socket_closed();
                        });
                    } else {
                        tracker.spawn(async move {
                            conn::connection(stream, peer, shared.clone()).await;
                            drop(slot);
                            shared.stats.socket_closed();
                        });
                    }
                }
                Err(e) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
    drop(listener);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not close in time");
    }
    Ok(())
}
