//! `skillmon serve`: a session-buddy-compatible metrics server.
//!
//! ```text
//! Store (blocking thread) ──Snapshot──▶ Hub ──Frame per group──▶ Session ──▶ socket
//! ```
//! This module owns the listener, the tick loop and shutdown; [`hub`] owns
//! fan-out, [`session`] one client, [`http`] the plain-HTTP routes on the same
//! port, [`stats`] the counters behind `/metrics` and `/healthz`.

pub mod http;
pub mod hub;
pub mod session;
pub mod stats;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

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
    /// (team) The Redis side of a publisher or an edge (`crate::team`).
    pub team: Option<Arc<TeamStatus>>,
    next_session: AtomicU64,
}

/// A running server, for tests and the demo: its address, its counters and
/// the token that stops it.
pub struct Handle {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Handle {
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
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
    let (shared, tracker) = launch(config, role).await;
    let task = tokio::spawn(accept_loop(listener, shared.clone(), tracker));
    Ok(Handle { addr, shared, task })
}

/// The shared state and the snapshot source (the store's tick loop, plus a
/// publisher; or an edge), with the first picture already in the hub.
async fn launch(config: ServeConfig, role: TeamRole) -> (Arc<Shared>, TaskTracker) {
    let team = role.status();
    let shared = Arc::new(Shared {
        hub: Hub::new(config.top),
        stats: Stats::new(),
        shutdown: CancellationToken::new(),
        team: team.clone(),
        next_session: AtomicU64::new(1),
        config,
    });
    let tracker = TaskTracker::new();
    match (role, team) {
        (TeamRole::Edge(edge_config), Some(status)) => {
            let sink_shared = shared.clone();
            let sink: crate::team::edge::Sink = Arc::new(move |snapshot: Arc<Snapshot>| {
                publish_snapshot(&sink_shared, snapshot);
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
    (shared, tracker)
}

fn store_snapshot(store: &Arc<Mutex<Store>>) -> Arc<Snapshot> {
    store.lock().unwrap_or_else(|p| p.into_inner()).snapshot()
}

/// Hand `snapshot` to the hub (every group's frame), counting the tick.
fn publish_snapshot(shared: &Shared, snapshot: Arc<Snapshot>) {
    let stats = &shared.stats;
    stats.ticks.fetch_add(1, Relaxed);
    let t = Instant::now();
    let groups = shared.hub.publish(snapshot);
    stats
        .publish_micros
        .store(t.elapsed().as_micros() as u64, Relaxed);
    stats.groups.store(groups as u64, Relaxed);
}

/// A publisher without WebSocket clients (`serve --publish … --no-listen`):
/// the store's tick loop and the publisher until SIGINT/SIGTERM.
pub async fn run_publisher_only(config: ServeConfig, role: TeamRole) -> anyhow::Result<()> {
    let (shared, tracker) = launch(config, role).await;
    tracing::info!("skillmon serve: publishing only (--no-listen)");
    crate::signal::shutdown().await;
    shared.shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
    Ok(())
}

/// Serve in a team role until SIGINT/SIGTERM.
pub async fn run_team_until_signal(
    listener: TcpListener,
    config: ServeConfig,
    role: TeamRole,
) -> anyhow::Result<()> {
    let handle = start_team(listener, config, role).await?;
    tracing::info!(
        "skillmon serve: listening on {} (health: http://{}/healthz, metrics: http://{}/metrics)",
        handle.url(),
        handle.addr,
        handle.addr
    );
    crate::signal::shutdown().await;
    tracing::info!("shutting down: closing every client with 1001");
    handle.stop().await
}

/// Serve until SIGINT/SIGTERM, then close every client with 1001.
pub async fn run_until_signal(listener: TcpListener, config: ServeConfig) -> anyhow::Result<()> {
    run_team_until_signal(listener, config, TeamRole::None).await
}

/// One tick: refresh the store and build every group's frame, both on a
/// blocking thread (SQLite and JSON are CPU work). The database counters are
/// recorded before the frames go out, so a client that sees new data also
/// sees the query that read it in `/metrics`.
async fn refresh_and_publish(
    store: &Arc<Mutex<Store>>,
    shared: &Arc<Shared>,
    out: Option<&tokio::sync::watch::Sender<Arc<Snapshot>>>,
) {
    let store = store.clone();
    let shared = shared.clone();
    let out = out.cloned();
    let done = tokio::task::spawn_blocking(move || {
        let stats = &shared.stats;
        let started = Instant::now();
        let (refresh, status) = {
            let mut s = store.lock().unwrap_or_else(|p| p.into_inner());
            let r = s.refresh();
            (r, s.status())
        };
        if refresh.queried {
            stats.db_queries.fetch_add(1, Relaxed);
            stats
                .refresh_micros
                .store(started.elapsed().as_micros() as u64, Relaxed);
        }
        stats.set_db(status);
        if let Some(out) = &out {
            out.send_replace(refresh.snapshot.clone());
        }
        publish_snapshot(&shared, refresh.snapshot);
    })
    .await;
    if done.is_err() {
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
            _ = shared.shutdown.cancelled() => return,
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
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    // Every socket counts, upgraded or not, so clients that
                    // never finish a request head cannot exhaust memory.
                    let open = shared.stats.sockets.fetch_add(1, Relaxed) as usize;
                    if open >= shared.config.max_connections + SOCKET_SLACK {
                        shared.stats.sockets.fetch_sub(1, Relaxed);
                        tracker.spawn(refuse_busy(stream, shared.config.max_connections));
                        continue;
                    }
                    let shared = shared.clone();
                    tracker.spawn(async move {
                        connection(stream, peer, shared.clone()).await;
                        shared.stats.sockets.fetch_sub(1, Relaxed);
                    });
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

/// Answer 503 at once, without reading the request, and close.
async fn refuse_busy(mut stream: TcpStream, limit: usize) {
    let resp = busy_response(limit);
    http::respond(&mut stream, &resp, false).await;
}

fn busy_response(limit: usize) -> http::Response {
    http::Response::text(
        503,
        "Service Unavailable",
        format!("connection limit ({limit}) reached; retry later\n"),
    )
    .with_header("Retry-After", "5")
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER_BYTES)
        .max_message_size(Some(MAX_MESSAGE_BYTES))
        .max_frame_size(Some(MAX_MESSAGE_BYTES))
}

/// One TCP connection: route the request head, then either answer plain
/// HTTP or run a WebSocket session.
async fn connection(stream: TcpStream, peer: SocketAddr, shared: Arc<Shared>) {
    let (mut rd, mut wr) = stream.into_split();
    let mut head = Vec::with_capacity(1024);
    let read = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, http::read_head(&mut rd, &mut head)) => r,
    };
    let head_end = match read {
        Ok(Ok(Some(n))) => n,
        Ok(Ok(None)) => return,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
            let resp = http::Response::text(
                431,
                "Request Header Fields Too Large",
                format!("request head over {} bytes\n", http::MAX_HEAD_BYTES),
            );
            http::respond(&mut wr, &resp, false).await;
            return;
        }
        Ok(Err(_)) => return,
        Err(_) => {
            let resp =
                http::Response::text(408, "Request Timeout", "no request head within 10 s\n");
            http::respond(&mut wr, &resp, false).await;
            return;
        }
    };
    let route = http::route(&head[..head_end]);
    let head_only = http::is_head(&head);
    let stats = &shared.stats;
    match route {
        http::Route::Upgrade => {}
        other => {
            stats.http_requests.fetch_add(1, Relaxed);
            let resp = match other {
                http::Route::Health => {
                    let (mut ok, mut body) = stats.health_json();
                    if let Some(team) = &shared.team {
                        (ok, body) = team.health(ok, &body);
                    }
                    let mut r = if ok {
                        http::Response::text(200, "OK", body)
                    } else {
                        http::Response::text(503, "Service Unavailable", body)
                    };
                    r.content_type = "application/json";
                    r
                }
                http::Route::Metrics => {
                    let mut text = stats.prometheus();
                    if let Some(team) = &shared.team {
                        text.push_str(&team.prometheus());
                    }
                    let mut r = http::Response::text(200, "OK", text);
                    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
                    r
                }
                http::Route::Reject(r) => r,
                _ => http::upgrade_required(),
            };
            http::respond(&mut wr, &resp, head_only).await;
            return;
        }
    }
    let open = stats.connections.fetch_add(1, Relaxed);
    let _guard = Decrement(&stats.connections);
    if open as usize >= shared.config.max_connections {
        http::respond(
            &mut wr,
            &busy_response(shared.config.max_connections),
            false,
        )
        .await;
        return;
    }
    // Replay the bytes already read, then the socket, to tungstenite. The
    // request head goes in its own reader: tungstenite refuses a handshake
    // whose read buffer holds bytes past the request ("junk after request"),
    // so frames a client sent right behind its request are replayed only
    // after the handshake, as the start of the WebSocket stream.
    let tail = head.split_off(head_end);
    head.shrink_to_fit();
    let replay = AsyncReadExt::chain(std::io::Cursor::new(tail), rd);
    let io = tokio::io::join(AsyncReadExt::chain(std::io::Cursor::new(head), replay), wr);
    let ws = tokio::select! {
        _ = shared.shutdown.cancelled() => return,
        r = tokio::time::timeout(HANDSHAKE_TIMEOUT, session::handshake(io, ws_config())) => r,
    };
    let (ws, mode) = match ws {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            tracing::debug!(peer = %peer, "handshake failed: {e}");
            return;
        }
        Err(_) => return,
    };
    stats.connections_total.fetch_add(1, Relaxed);
    let id = format!(
        "{}-{}",
        std::process::id(),
        shared.next_session.fetch_add(1, Relaxed)
    );
    // Every line a session logs carries its id and peer (filter on either).
    let span = tracing::info_span!("session", session = %id, peer = %peer);
    async {
        tracing::info!(peer = %peer, session = %id, mode = mode.name(), "connected");
        session::run(ws, shared.clone(), id.clone(), mode).await;
        tracing::info!(peer = %peer, session = %id, "disconnected");
    }
    .instrument(span)
    .await;
}

/// Decrements a gauge when dropped.
struct Decrement<'a>(&'a AtomicU64);

impl Drop for Decrement<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}
