//! `skillmon serve`: a session-buddy-compatible metrics server.
//!
//! ```text
//! Store (blocking thread) ──Snapshot──▶ Hub ──Frame per group──▶ Session ──▶ socket
//! ```
//! This module owns the listener, the tick loop and shutdown; [`hub`] owns
//! fan-out, [`session`] one client ([`lag`]: how far behind it is,
//! `--max-lag`), [`http`] the plain-HTTP routes on the same
//! port, [`stats`] the counters behind `/metrics` and `/healthz`; [`auth`]
//! tokens, [`access`] the host and origin rules and the per-IP limit,
//! [`refusals`] the summarized log of refusals, [`tls`] `wss://`, all at
//! accept/handshake time, off the per-frame path; `conn` one connection from
//! accept until its session starts.

pub(crate) mod access;
pub mod auth;
mod conn;
pub(crate) mod http;
pub(crate) mod hub;
pub(crate) mod lag;
pub(crate) mod refusals;
pub(crate) mod session;
pub(crate) mod stats;
pub use stats::Stats;
pub mod tls;
mod write;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Snapshot, Store};
use crate::team::{TeamRole, TeamStatus};
use hub::Hub;

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
/// Refused sockets held at once while their 503 goes out; past it a refused
/// socket is closed without an answer.
pub const MAX_REFUSED_HELD: usize = 64;
/// How long a refused socket is held after its answer (to read what the
/// client sent, so the close is not a reset that could destroy the answer).
const REFUSED_LINGER: Duration = Duration::from_millis(100);
/// How long a refused socket on a TLS port has for its handshake (the 503
/// goes out over TLS).
const REFUSED_TLS_HANDSHAKE: Duration = Duration::from_secs(1);
/// Sessions get this long to send their 1001 close on shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_millis(900);

/// Why a server could not start. Each message names the flag to change.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address is taken or not ours.
    #[error(
        "cannot listen on {addr}: {error}; choose another address with --host/--port (SKILLMON_HOST/SKILLMON_PORT)"
    )]
    Bind { addr: String, error: std::io::Error },
    /// The listener has no local address (a socket that is not bound).
    #[error("the listener has no local address: {0}")]
    LocalAddr(std::io::Error),
    /// A setting that cannot be used (e.g. an `--allow-host` entry).
    #[error(transparent)]
    Setting(#[from] crate::error::InvalidValue),
    /// `--tls-cert` / `--tls-key` cannot be used.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The server's task panicked while stopping.
    #[error("the server task panicked")]
    Panicked,
}

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

/// What it takes to serve beyond a trusted loopback: tokens, origins, TLS.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub auth: auth::AuthConfig,
    /// `--allow-origin`: browser origins allowed besides loopback pages and
    /// the allowed hosts' pages (`*`: all).
    pub allow_origins: Vec<String>,
    /// `--allow-host`: host names the server answers to besides loopback
    /// names and IP addresses (`*`: any). Bound beyond loopback, an empty
    /// list turns the host rule off.
    pub allow_hosts: Vec<String>,
    /// `--tls-cert` / `--tls-key`: serve `wss://` and `https://`.
    pub tls: Option<tls::TlsFiles>,
    /// Open sockets one client IP may hold; more get 503.
    pub max_connections_per_ip: usize,
    /// `--max-lag`: bytes a client may be behind (written to its socket,
    /// not taken; the kernel's queue counted) before it is closed with
    /// 1013. `None`: 10 frames' worth or 1 MiB, whichever is larger.
    pub max_lag: Option<usize>,
    /// `--compression`: permessage-deflate with clients that offer it.
    pub compression: crate::deflate::Compression,
}

/// `--max-connections-per-ip` default.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 256;

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            auth: auth::AuthConfig::default(),
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            tls: None,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            max_lag: None,
            compression: crate::deflate::Compression::default(),
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
    /// Refused sockets still being answered (capped).
    refusing: Arc<access::Refusing>,
    /// The `Host` names this server answers to.
    hosts: access::HostRule,
    /// Refusals, logged one line per cause per 10 s.
    refusals: refusals::Refusals,
    tls: Option<tokio_rustls::TlsAcceptor>,
    /// (team) The Redis side of a publisher or an edge (`crate::team`).
    pub team: Option<Arc<TeamStatus>>,
}

/// A running server, for tests and the demo: its address, its counters,
/// hand-driven ticks and the token that stops it. Its internals stay the
/// server's own.
pub struct Handle {
    pub addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// The server's counters (what `/metrics` and `/healthz` report), readable
/// for as long as this value lives, even after the server stopped.
pub struct Counters(Arc<Shared>);

impl std::ops::Deref for Counters {
    type Target = Stats;
    fn deref(&self) -> &Stats {
        &self.0.stats
    }
}

impl Handle {
    /// The server's counters.
    pub fn stats(&self) -> Counters {
        Counters(self.shared.clone())
    }

    /// Tick by hand: make `snapshot` current and hand every group its frame
    /// now, as the tick loop would; returns the number of groups.
    pub fn publish(&self, snapshot: Arc<Snapshot>) -> usize {
        self.shared.hub.publish(snapshot)
    }

    /// Subscription groups that have a session.
    pub fn groups(&self) -> usize {
        self.shared.hub.groups()
    }

    /// Whether a token or JWT is required.
    pub fn auth_enabled(&self) -> bool {
        self.shared.verifier.is_some()
    }

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
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shared.shutdown.cancel();
        self.task.await.map_err(|_| ServeError::Panicked)
    }
}

/// Bind `host:port` and return a clear error naming the flag on failure.
pub async fn bind(host: &str, port: u16) -> Result<TcpListener, ServeError> {
    TcpListener::bind((host, port))
        .await
        .map_err(|error| ServeError::Bind {
            addr: format!("{host}:{port}"),
            error,
        })
}

/// Start serving on an already bound listener, in the background.
pub async fn start(listener: TcpListener, config: ServeConfig) -> Result<Handle, ServeError> {
    start_team(listener, config, TeamRole::None).await
}

/// [`start`] in a team role: a publisher also writes its snapshots to
/// Redis; an edge reads no database and serves the team's merged snapshot.
pub async fn start_team(
    listener: TcpListener,
    config: ServeConfig,
    role: TeamRole,
) -> Result<Handle, ServeError> {
    let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
    let hosts = access::HostRule::new(addr.ip().is_loopback(), &config.net.allow_hosts)?;
    if addr.ip().is_loopback() && !hosts.is_on() && !config.net.auth.enabled() {
        tracing::warn!(
            %addr,
            "--allow-host * turns the DNS-rebinding guard off: a web page you visit can read this server's data; use it only behind a same-origin proxy, or set a token (--token-file)"
        );
    }
    let (shared, tracker) = launch(config, role, hosts).await?;
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
async fn launch(
    config: ServeConfig,
    role: TeamRole,
    hosts: access::HostRule,
) -> Result<(Arc<Shared>, TaskTracker), ServeError> {
    let tls = config.net.tls.as_ref().map(tls::acceptor).transpose()?;
    let verifier = auth::Verifier::new(&config.net.auth);
    let shared = Arc::new(Shared {
        hub: Hub::new(config.top),
        stats: Stats::new(),
        shutdown: CancellationToken::new(),
        next_session: AtomicU64::new(1),
        verifier,
        per_ip: access::PerIp::new(config.net.max_connections_per_ip),
        refusing: access::Refusing::new(MAX_REFUSED_HELD),
        hosts,
        refusals: refusals::Refusals::default(),
        tls,
        team: role.status(),
        config,
    });
    let tracker = TaskTracker::new();
    // Sessions hear of shutdown through the hub (see Hub::close).
    let closer = shared.clone();
    tracker.spawn(async move {
        closer.shutdown.cancelled().await;
        closer.hub.close();
    });
    tracker.spawn(housekeeping(shared.clone()));
    // Every snapshot source (the store's tick loop, or a team edge) puts its
    // snapshots in one channel, newest wins; one loop builds the frames.
    let (snapshots, mut latest) = tokio::sync::watch::channel(Arc::new(Snapshot::default()));
    latest.borrow_and_update();
    match role {
        #[cfg(feature = "team")]
        TeamRole::Edge(edge) => spawn_edge(edge, &shared, &tracker, snapshots).await,
        role => {
            let store = Arc::new(Mutex::new(Store::with_options(
                shared.config.db.clone(),
                shared.config.store,
            )));
            refresh(&store, &shared, &snapshots).await;
            spawn_publisher(role, &shared, &tracker, &snapshots);
            tracker.spawn(tick_loop(shared.clone(), store, snapshots));
        }
    }
    // The first picture is read before the first client is accepted (and,
    // for a publisher, before its first write: never an empty one).
    deliver(&shared, &mut latest).await;
    tracker.spawn(deliver_loop(shared.clone(), latest));
    Ok((shared, tracker))
}

/// An edge's snapshot source: the team's merged snapshots from Redis.
#[cfg(feature = "team")]
async fn spawn_edge(
    edge: crate::team::EdgeConfig,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    snapshots: Snapshots,
) {
    let Some(status) = shared.team.clone() else {
        return;
    };
    let edge = crate::team::edge::Edge::new(edge, status);
    let (interval, shutdown) = (shared.config.interval, shared.shutdown.clone());
    tracker.spawn(edge.start(snapshots, interval, shutdown).await);
}

/// Once a second: log the refusals counted in windows that ended, and
/// after a burst of sockets (a flood) hand the memory it took back to the
/// operating system.
async fn housekeeping(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut peak = 0;
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => break,
            _ = every.tick() => {}
        }
        shared.refusals.flush();
        let open = shared.stats.sockets() as usize + shared.refusing.held();
        peak = peak.max(open);
        if peak >= open + TRIM_AFTER_SOCKETS {
            peak = open;
            release_free_memory();
        }
    }
    shared.refusals.flush_all();
}

/// How many sockets must have closed since the peak before freed memory
/// is handed back (each held a connection task of a few KiB).
const TRIM_AFTER_SOCKETS: usize = 64;

/// Return the allocator's free memory to the operating system: glibc keeps
/// what a burst of connection tasks freed in its arenas (RSS stayed ~20 %
/// up after a flood without this). Costs well under a millisecond on a
/// small heap; runs at most once a second, only after sockets closed.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A publisher's writer (`--publish`), fed by the same snapshot channel as
/// the hub; nothing for a single server.
#[cfg(feature = "team")]
fn spawn_publisher(
    role: TeamRole,
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    snapshots: &Snapshots,
) {
    if let (TeamRole::Publish(p), Some(status)) = (role, shared.team.clone()) {
        tracker.spawn(crate::team::publisher::run(
            p,
            status,
            snapshots.subscribe(),
            shared.shutdown.clone(),
        ));
    }
}

/// Without the `team` feature there is no publisher.
#[cfg(not(feature = "team"))]
fn spawn_publisher(role: TeamRole, _: &Arc<Shared>, _: &TaskTracker, _: &Snapshots) {
    let TeamRole::None = role;
}

/// Where a snapshot source puts its snapshots (see [`deliver_loop`]).
pub(crate) type Snapshots = tokio::sync::watch::Sender<Arc<Snapshot>>;

/// Build every group's frame from the newest snapshot on a blocking thread
/// (JSON is CPU work), then hand the frames out from this task: from a
/// runtime worker, the sessions it wakes go to that worker's own run queue
/// (see `hub::Prepared::send`).
async fn deliver(shared: &Arc<Shared>, latest: &mut tokio::sync::watch::Receiver<Arc<Snapshot>>) {
    let snapshot = latest.borrow_and_update().clone();
    let blocking_shared = shared.clone();
    let built = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let prepared = blocking_shared.hub.prepare(snapshot);
        (prepared, t.elapsed())
    })
    .await;
    if let Ok((prepared, built)) = built {
        let t = Instant::now();
        let groups = prepared.send();
        shared.stats.published(groups, built + t.elapsed());
    } else {
        tracing::error!("building the frames panicked; keeping the last ones");
    }
}

/// Deliver each new snapshot until shutdown (or every source is gone).
async fn deliver_loop(
    shared: Arc<Shared>,
    mut latest: tokio::sync::watch::Receiver<Arc<Snapshot>>,
) {
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            changed = latest.changed() => match changed {
                Ok(()) => deliver(&shared, &mut latest).await,
                Err(_) => return,
            },
        }
    }
}

/// A publisher without WebSocket clients (`serve --publish … --no-listen`):
/// the store's tick loop and the publisher until SIGINT/SIGTERM.
pub async fn run_publisher_only(config: ServeConfig, role: TeamRole) -> Result<(), ServeError> {
    let signal = crate::signal::shutdown();
    let (shared, tracker) = launch(config, role, access::HostRule::default()).await?;
    tracing::info!("skillmon serve: publishing only (--no-listen)");
    signal.await;
    shared.shutdown.cancel();
    tracker.close();
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait()).await;
    Ok(())
}

/// Serve until SIGINT/SIGTERM, then close every client with 1001.
pub async fn run_until_signal(
    listener: TcpListener,
    config: ServeConfig,
) -> Result<(), ServeError> {
    run_team_until_signal(listener, config, TeamRole::None).await
}

/// [`run_until_signal`] in a team role (publisher or edge).
pub async fn run_team_until_signal(
    listener: TcpListener,
    config: ServeConfig,
    role: TeamRole,
) -> Result<(), ServeError> {
    // Every socket is a descriptor: the configured maximum, the sockets
    // allowed past it, the refused ones held while answered, and a few of
    // our own. Short of that, accept fails for everyone once it is reached.
    // Best effort for the slack; a warning only when even the configured
    // connections cannot all be held.
    let needed = (config.max_connections + SOCKET_SLACK + MAX_REFUSED_HELD + 64) as u64;
    let (limit, _) = crate::rlimit::raise_nofile(needed, "");
    if limit < config.max_connections as u64 {
        tracing::warn!(
            limit,
            max_connections = config.max_connections,
            "the open-file limit holds about {} connections, fewer than --max-connections: past that, connections are refused; raise the limit (ulimit -n, LimitNOFILE=) or lower --max-connections",
            limit.saturating_sub(64)
        );
    }
    let handle = start_team(listener, config, role).await?;
    // The SIGTERM handler is in place before anyone can read "listening".
    let signal = crate::signal::shutdown();
    tracing::info!(
        "skillmon serve: listening on {} (health: {base}/healthz, readiness: {base}/readyz, metrics: {base}/metrics; authentication {}; host check {})",
        handle.url(),
        on_off(handle.shared.verifier.is_some()),
        on_off(handle.shared.hosts.is_on()),
        base = handle.http_base(),
    );
    signal.await;
    tracing::info!("shutting down: closing every client with 1001");
    handle.stop().await
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// One tick of the store: refresh it on a blocking thread (SQLite is
/// blocking work) and put the snapshot in `snapshots`. The database
/// counters are recorded before the snapshot goes on, so a client that sees
/// new data also sees the query that read it in `/metrics`.
async fn refresh(store: &Arc<Mutex<Store>>, shared: &Arc<Shared>, snapshots: &Snapshots) {
    let store = store.clone();
    let snapshots = snapshots.clone();
    let blocking_shared = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let (refresh, status) = {
            let mut s = crate::sync::lock(&store);
            let r = s.refresh();
            (r, s.status())
        };
        let queried = refresh.queried.then(|| started.elapsed());
        blocking_shared.stats.db_refreshed(queried, status);
        snapshots.send_replace(refresh.snapshot);
    })
    .await;
    if done.is_err() {
        tracing::error!("database refresh panicked; keeping the last snapshot");
    }
}

async fn tick_loop(shared: Arc<Shared>, store: Arc<Mutex<Store>>, snapshots: Snapshots) {
    let period = shared.config.interval;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shared.shutdown.cancelled() => return,
            _ = ticker.tick() => refresh(&store, &shared, &snapshots).await,
        }
    }
}

/// Answer a refused socket (503) in a task of its own, held at most
/// [`MAX_REFUSED_HELD`] at once; past that it is closed without an answer.
fn refuse(
    shared: &Arc<Shared>,
    tracker: &TaskTracker,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    resp: http::Response,
) {
    let Some(held) = shared.refusing.hold() else {
        shared.stats.refused_dropped();
        shared
            .refusals
            .refused(refusals::Cause::Dropped, Some(peer), String::new);
        return;
    };
    let tls = shared.tls.clone();
    tracker.spawn(async move {
        conn::refuse(stream, resp, tls).await;
        drop(held);
    });
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, tracker: TaskTracker) {
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
                        shared.refusals.refused(refusals::Cause::Busy, Some(peer), String::new);
                        let resp = conn::busy_response(shared.config.max_connections);
                        refuse(&shared, &tracker, stream, peer, resp);
                        continue;
                    }
                    let Some(slot) = shared.per_ip.acquire(peer.ip()) else {
                        shared.stats.socket_closed();
                        shared.stats.per_ip_refused();
                        shared.refusals.refused(refusals::Cause::PerIp, Some(peer), String::new);
                        let resp = conn::per_ip_response(shared.config.net.max_connections_per_ip);
                        refuse(&shared, &tracker, stream, peer, resp);
                        continue;
                    };
                    let shared = shared.clone();
                    // Two task shapes: a plain connection's task must not
                    // carry the (much larger) TLS state in its future.
                    if let Some(acceptor) = shared.tls.clone() {
                        tracker.spawn(async move {
                            // Boxed: the TLS handshake's state is large, and
                            // a task's future is allocated whole.
                            Box::pin(conn::tls_connection(acceptor, stream, peer, shared.clone()))
                                .await;
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
                    shared.refusals.refused(refusals::Cause::Accept, None, || e.to_string());
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
    // Sessions count refusals (bad first frames, slow closes) until they
    // end: what they counted after housekeeping's last flush is logged here.
    shared.refusals.flush_all();
}
