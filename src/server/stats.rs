//! Server-wide counters behind `/metrics`, `/healthz` and `/readyz`.
//!
//! Owns every metric of the server: each is a `prometheus-client` metric
//! registered once in [`Stats::new`], and code elsewhere reports *events*
//! (`stats.frame_sent(bytes)`, `stats.auth_failed(reason)`, …) instead of
//! bumping counters itself, so adding a metric touches this file only.
//! Lock-free atomics, cheap to bump from any session; the database state is
//! behind a mutex touched once per tick. Must not: hold a secret (labels are
//! fixed words, never client input).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::store::{DbState, DbStatus};

/// One label, a fixed word chosen by the server.
type Label = [(&'static str, &'static str); 1];
type F64Gauge = Gauge<f64, AtomicU64>;

/// The `Content-Type` of `/metrics` (Prometheus text format 0.0.4).
pub(crate) const METRICS_CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    registry: Registry,
    /// Open TCP sockets, upgraded or not (not exported; the accept limit).
    sockets: AtomicU64,
    connections: Gauge,
    connections_total: Counter,
    frames_sent: Counter,
    bytes_sent: Counter,
    /// Sessions that agreed permessage-deflate.
    deflate_sessions: Counter,
    /// Updates sent compressed, against the previous update / alone (the
    /// family's two counters, taken out once: no lookup per frame).
    deflated_dict: Counter,
    deflated_alone: Counter,
    updates_skipped: Counter,
    slow_closes: Counter,
    slow_drops: Counter,
    closes: Family<Label, Counter>,
    error_frames: Counter,
    http_requests: Counter,
    ticks: Counter,
    db_queries: Counter,
    groups: Gauge,
    refresh_seconds: F64Gauge,
    publish_seconds: F64Gauge,
    uptime_seconds: F64Gauge,
    db_state: Family<Label, Gauge>,
    auth_failures: Family<Label, Counter>,
    origin_rejections: Counter,
    host_rejections: Family<Label, Counter>,
    per_ip_rejections: Counter,
    refused_dropped: Counter,
    connection_limit_rejections: Counter,
    tls_handshake_failures: Counter,
    db: Mutex<DbStatus>,
    /// When the database was last read successfully (for `/readyz`).
    last_good_read: Mutex<Option<Instant>>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("skillmon");
        // `register` takes a handle; every metric type is an `Arc` inside.
        fn reg<M: prometheus_client::registry::Metric + Clone>(
            r: &mut Registry,
            name: &str,
            help: &str,
            m: M,
        ) -> M {
            r.register(name, help, m.clone());
            m
        }
        let deflated: Family<Label, Counter> = reg(
            &mut r,
            "updates_compressed",
            "Updates sent compressed (permessage-deflate), by form: against the previous update (a client in step) or alone",
            Family::default(),
        );
        // One statement each: `get_or_create` hands out a read guard, and
        // a second call in the same statement would wait on it for ever.
        let deflated_dict = deflated.get_or_create(&[("form", "previous")]).clone();
        let deflated_alone = deflated.get_or_create(&[("form", "alone")]).clone();
        let s = Self {
            deflated_dict,
            deflated_alone,
            deflate_sessions: reg(
                &mut r,
                "deflate_sessions",
                "WebSocket sessions that agreed permessage-deflate",
                Counter::default(),
            ),
            started: Instant::now(),
            sockets: AtomicU64::new(0),
            connections: reg(
                &mut r,
                "connections",
                "Open WebSocket connections",
                Gauge::default(),
            ),
            connections_total: reg(
                &mut r,
                "connections",
                "WebSocket connections accepted",
                Counter::default(),
            ),
            frames_sent: reg(
                &mut r,
                "frames_sent",
                "Frames written to clients",
                Counter::default(),
            ),
            bytes_sent: reg(
                &mut r,
                "bytes_sent",
                "Payload bytes written to clients",
                Counter::default(),
            ),
            updates_skipped: reg(
                &mut r,
                "updates_skipped",
                "Updates a slow client skipped (latest value wins)",
                Counter::default(),
            ),
            slow_closes: reg(
                &mut r,
                "slow_client_closes",
                "Slow clients closed with a 1013 close frame: more than --max-lag bytes behind, or a frame not taken within the write timeout",
                Counter::default(),
            ),
            slow_drops: reg(
                &mut r,
                "slow_client_drops",
                "Slow clients dropped without a close frame: a frame cut short by the write timeout, or the 1013 itself not taken within the close timeout",
                Counter::default(),
            ),
            closes: reg(
                &mut r,
                "closes",
                "Sessions the server closed, by close code",
                Family::default(),
            ),
            error_frames: reg(
                &mut r,
                "error_frames",
                "error frames sent for bad client input",
                Counter::default(),
            ),
            http_requests: reg(
                &mut r,
                "http_requests",
                "Plain HTTP requests (healthz, readyz, metrics, 426)",
                Counter::default(),
            ),
            ticks: reg(&mut r, "ticks", "Broadcast ticks", Counter::default()),
            db_queries: reg(
                &mut r,
                "db_queries",
                "Snapshot rebuilds that queried the database (unchanged ticks cost none)",
                Counter::default(),
            ),
            groups: reg(
                &mut r,
                "subscription_groups",
                "Distinct subscriptions, each serialized once per tick",
                Gauge::default(),
            ),
            refresh_seconds: reg(
                &mut r,
                "refresh_seconds",
                "Duration of the last database refresh",
                F64Gauge::default(),
            ),
            publish_seconds: reg(
                &mut r,
                "publish_seconds",
                "Duration of the last tick's frame building for all groups",
                F64Gauge::default(),
            ),
            uptime_seconds: reg(
                &mut r,
                "uptime_seconds",
                "Seconds since the server started",
                F64Gauge::default(),
            ),
            db_state: reg(
                &mut r,
                "db_state",
                "Database state (1 for the current one)",
                Family::default(),
            ),
            auth_failures: reg(
                &mut r,
                "auth_failures",
                "Refused authentication attempts, by reason",
                Family::default(),
            ),
            origin_rejections: reg(
                &mut r,
                "origin_rejections",
                "Upgrades refused with 403 for their Origin",
                Counter::default(),
            ),
            host_rejections: reg(
                &mut r,
                "host_rejections",
                "Requests refused for their Host header (DNS-rebinding guard): status 403 (a name not allowed, --allow-host) or 400 (missing or malformed)",
                Family::default(),
            ),
            refused_dropped: reg(
                &mut r,
                "refused_dropped",
                "Refused connections closed without an answer: too many refused sockets were being answered already",
                Counter::default(),
            ),
            per_ip_rejections: reg(
                &mut r,
                "per_ip_rejections",
                "Connections refused with 503 over --max-connections-per-ip",
                Counter::default(),
            ),
            connection_limit_rejections: reg(
                &mut r,
                "connection_limit_rejections",
                "Connections refused with 503 over --max-connections",
                Counter::default(),
            ),
            tls_handshake_failures: reg(
                &mut r,
                "tls_handshake_failures",
                "TLS handshakes that failed (plain clients on a TLS port, bad certificates)",
                Counter::default(),
            ),
            registry: r,
            db: Mutex::new(DbStatus {
                state: DbState::Starting,
                has_data: false,
                detail: String::new(),
            }),
            last_good_read: Mutex::new(None),
        };
        // Every state is listed, 0 or 1, from the start.
        s.set_db_state("starting");
        s
    }

    // ---- events -------------------------------------------------------

    /// A TCP socket was accepted; returns how many were open before it.
    pub fn socket_opened(&self) -> u64 {
        self.sockets.fetch_add(1, Relaxed)
    }

    pub fn socket_closed(&self) {
        self.sockets.fetch_sub(1, Relaxed);
    }

    /// TCP sockets open now (refused ones not counted).
    pub fn sockets(&self) -> u64 {
        self.sockets.load(Relaxed)
    }

    /// An upgrade request takes a connection slot; returns how many were
    /// taken before it. Pair with [`Stats::connection_released`].
    pub fn connection_opened(&self) -> u64 {
        u64::try_from(self.connections.inc()).unwrap_or(0)
    }

    pub fn connection_released(&self) {
        self.connections.dec();
    }

    /// A WebSocket handshake completed.
    pub fn session_started(&self) {
        self.connections_total.inc();
    }

    pub fn frame_sent(&self, bytes: usize) {
        self.frames_sent.inc();
        self.bytes_sent.inc_by(bytes as u64);
    }

    /// A session agreed permessage-deflate at its handshake.
    pub fn deflate_session(&self) {
        self.deflate_sessions.inc();
    }

    /// An update went out compressed: against the previous one (`dict`)
    /// or alone.
    pub fn update_compressed(&self, dict: bool) {
        if dict {
            self.deflated_dict.inc();
        } else {
            self.deflated_alone.inc();
        }
    }

    /// (updates sent compressed against the previous one, alone).
    pub fn compressed(&self) -> (u64, u64) {
        (self.deflated_dict.get(), self.deflated_alone.get())
    }

    pub fn updates_skipped(&self, n: u64) {
        self.updates_skipped.inc_by(n);
    }

    /// The server closed a slow client (`--max-lag`, write timeout):
    /// `delivered`, with its 1013 close frame written; else dropped
    /// without one.
    pub fn slow_closed(&self, delivered: bool) {
        if delivered {
            self.slow_closes.inc();
            self.closed(1013);
        } else {
            self.slow_drops.inc();
        }
    }

    /// The server closed a session with `code` (a slow client: see
    /// [`Stats::slow_closed`]).
    pub fn closed(&self, code: u16) {
        self.closes
            .get_or_create(&[("code", close_code_label(code))])
            .inc();
    }

    pub fn error_frame(&self) {
        self.error_frames.inc();
    }

    pub fn http_request(&self) {
        self.http_requests.inc();
    }

    /// A tick read the database (`queried`: how long its queries took, when
    /// any ran) and left it in `status`.
    pub fn db_refreshed(&self, queried: Option<Duration>, status: DbStatus) {
        if let Some(took) = queried {
            self.db_queries.inc();
            self.refresh_seconds.set(took.as_secs_f64());
        }
        self.ticks.inc();
        if status.state == DbState::Ok
            && let Ok(mut t) = self.last_good_read.lock()
        {
            *t = Some(Instant::now());
        }
        self.set_db_state(status.state.as_str());
        if let Ok(mut g) = self.db.lock() {
            *g = status;
        }
    }

    /// A tick's frames went out to `groups` groups, built in `took`.
    pub fn published(&self, groups: usize, took: Duration) {
        self.publish_seconds.set(took.as_secs_f64());
        self.groups.set(i64::try_from(groups).unwrap_or(i64::MAX));
    }

    pub fn auth_failed(&self, reason: super::auth::Failure) {
        self.auth_failures
            .get_or_create(&[("reason", reason.as_str())])
            .inc();
    }

    pub fn origin_refused(&self) {
        self.origin_rejections.inc();
    }

    /// A request refused for its `Host` with `status` (403 or 400).
    pub fn host_refused(&self, status: u16) {
        let status = if status == 403 { "403" } else { "400" };
        self.host_rejections
            .get_or_create(&[("status", status)])
            .inc();
    }

    pub fn refused_dropped(&self) {
        self.refused_dropped.inc();
    }

    pub fn per_ip_refused(&self) {
        self.per_ip_rejections.inc();
    }

    pub fn connection_limit_refused(&self) {
        self.connection_limit_rejections.inc();
    }

    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.inc();
    }

    fn set_db_state(&self, current: &str) {
        for &s in <DbState as strum::VariantNames>::VARIANTS {
            self.db_state
                .get_or_create(&[("state", s)])
                .set(i64::from(s == current));
        }
    }

    // ---- reads ----------------------------------------------------------

    /// Open WebSocket connections (upgrade requests holding a slot).
    pub fn connections(&self) -> u64 {
        u64::try_from(self.connections.get()).unwrap_or(0)
    }

    /// WebSocket handshakes completed since start.
    pub fn sessions_started(&self) -> u64 {
        self.connections_total.get()
    }

    pub fn frames_sent(&self) -> u64 {
        self.frames_sent.get()
    }

    pub fn skipped(&self) -> u64 {
        self.updates_skipped.get()
    }

    /// Slow clients closed with a 1013 close frame.
    pub fn slow_closes(&self) -> u64 {
        self.slow_closes.get()
    }

    /// Slow clients dropped without a close frame.
    pub fn slow_drops(&self) -> u64 {
        self.slow_drops.get()
    }

    /// Slow clients ended either way.
    pub fn slow_clients(&self) -> u64 {
        self.slow_closes() + self.slow_drops()
    }

    pub fn ticks(&self) -> u64 {
        self.ticks.get()
    }

    pub fn db_queries(&self) -> u64 {
        self.db_queries.get()
    }

    /// Refused authentication attempts for `reason`.
    pub fn auth_failures(&self, reason: super::auth::Failure) -> u64 {
        self.auth_failures
            .get(&[("reason", reason.as_str())])
            .map_or(0, |c| c.get())
    }

    pub fn db(&self) -> DbStatus {
        self.db.lock().map_or(
            DbStatus {
                state: DbState::Error("poisoned".into()),
                has_data: false,
                detail: String::new(),
            },
            |g| g.clone(),
        )
    }

    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Time since the last successful database read, if there was one.
    pub fn since_good_read(&self) -> Option<Duration> {
        self.last_good_read
            .lock()
            .ok()
            .and_then(|t| t.map(|t| t.elapsed()))
    }

    /// `/healthz` body and whether the database is healthy.
    pub fn health_json(&self) -> (bool, String) {
        let db = self.db();
        let healthy = db.healthy();
        let body = serde_json::json!({
            "status": if healthy { "ok" } else { "degraded" },
            "server": crate::SERVER_NAME,
            "db": db.state.as_str(),
            "db_detail": db.detail,
            "connections": self.connections(),
            "uptime_seconds": (self.uptime_secs() * 10.0).round() / 10.0,
        });
        (healthy, body.to_string())
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self) -> String {
        self.uptime_seconds
            .set((self.uptime_secs() * 10.0).round() / 10.0);
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// Close codes as fixed label values (never anything a client chose).
fn close_code_label(code: u16) -> &'static str {
    match code {
        1000 => "1000",
        1001 => "1001",
        1002 => "1002",
        1007 => "1007",
        1008 => "1008",
        1009 => "1009",
        1011 => "1011",
        1013 => "1013",
        4001 => "4001",
        _ => "other",
    }
}
