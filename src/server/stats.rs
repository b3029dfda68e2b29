//! Server-wide counters for `/metrics` and `/healthz`. Lock-free atomics,
//! cheap to bump from any session; the database state is behind a mutex
//! touched once per tick.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crate::store::{DbState, DbStatus};

#[derive(Debug)]
pub struct Stats {
    started: Instant,
    pub connections: AtomicU64,
    /// Open TCP sockets, upgraded or not.
    pub sockets: AtomicU64,
    pub connections_total: AtomicU64,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub updates_skipped: AtomicU64,
    pub slow_closes: AtomicU64,
    pub error_frames: AtomicU64,
    pub http_requests: AtomicU64,
    pub ticks: AtomicU64,
    pub db_queries: AtomicU64,
    pub groups: AtomicU64,
    /// Last snapshot refresh duration, microseconds.
    pub refresh_micros: AtomicU64,
    /// Last tick's fan-out build duration (all groups), microseconds.
    pub publish_micros: AtomicU64,
    db: Mutex<DbStatus>,
}

impl Default for Stats {
    fn default() -> Self {
        Self::new()
    }
}

impl Stats {
    pub fn new() -> Self {
        Self {
            started: Instant::now(),
            connections: AtomicU64::new(0),
            sockets: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            frames_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            updates_skipped: AtomicU64::new(0),
            slow_closes: AtomicU64::new(0),
            error_frames: AtomicU64::new(0),
            http_requests: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            db_queries: AtomicU64::new(0),
            groups: AtomicU64::new(0),
            refresh_micros: AtomicU64::new(0),
            publish_micros: AtomicU64::new(0),
            db: Mutex::new(DbStatus {
                state: DbState::Starting,
                has_data: false,
                detail: String::new(),
            }),
        }
    }

    pub fn set_db(&self, status: DbStatus) {
        if let Ok(mut g) = self.db.lock() {
            *g = status;
        }
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

    /// `/healthz` body and whether the server is healthy (database readable).
    pub fn health_json(&self) -> (bool, String) {
        let db = self.db();
        let healthy = db.healthy();
        let body = serde_json::json!({
            "status": if healthy { "ok" } else { "degraded" },
            "server": crate::SERVER_NAME,
            "db": db.state.name(),
            "db_detail": db.detail,
            "connections": self.connections.load(Relaxed),
            "uptime_seconds": (self.uptime_secs() * 10.0).round() / 10.0,
        });
        (healthy, body.to_string())
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn prometheus(&self) -> String {
        let mut out = String::with_capacity(2048);
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP skillmon_{name} {help}");
            let _ = writeln!(out, "# TYPE skillmon_{name} {kind}");
            let _ = writeln!(out, "skillmon_{name} {value}");
        };
        let g = |a: &AtomicU64| a.load(Relaxed).to_string();
        metric(
            "connections",
            "gauge",
            "Open WebSocket connections.",
            g(&self.connections),
        );
        metric(
            "connections_total",
            "counter",
            "WebSocket connections accepted.",
            g(&self.connections_total),
        );
        metric(
            "frames_sent_total",
            "counter",
            "Frames written to clients.",
            g(&self.frames_sent),
        );
        metric(
            "bytes_sent_total",
            "counter",
            "Payload bytes written to clients.",
            g(&self.bytes_sent),
        );
        metric(
            "updates_skipped_total",
            "counter",
            "Updates a slow client skipped (latest value wins).",
            g(&self.updates_skipped),
        );
        metric(
            "slow_client_closes_total",
            "counter",
            "Clients closed with 1013 for not taking a frame within the write timeout.",
            g(&self.slow_closes),
        );
        metric(
            "error_frames_total",
            "counter",
            "error frames sent for bad client input.",
            g(&self.error_frames),
        );
        metric(
            "http_requests_total",
            "counter",
            "Plain HTTP requests (healthz, metrics, 426).",
            g(&self.http_requests),
        );
        metric("ticks_total", "counter", "Broadcast ticks.", g(&self.ticks));
        metric(
            "db_queries_total",
            "counter",
            "Snapshot rebuilds that queried the database (unchanged ticks cost none).",
            g(&self.db_queries),
        );
        metric(
            "subscription_groups",
            "gauge",
            "Distinct subscriptions, each serialized once per tick.",
            g(&self.groups),
        );
        metric(
            "refresh_seconds",
            "gauge",
            "Duration of the last database refresh.",
            format!("{:.6}", self.refresh_micros.load(Relaxed) as f64 / 1e6),
        );
        metric(
            "publish_seconds",
            "gauge",
            "Duration of the last tick's frame building for all groups.",
            format!("{:.6}", self.publish_micros.load(Relaxed) as f64 / 1e6),
        );
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            format!("{:.1}", self.uptime_secs()),
        );
        let state = self.db().state;
        let _ = writeln!(
            out,
            "# HELP skillmon_db_state Database state (1 for the current one)."
        );
        let _ = writeln!(out, "# TYPE skillmon_db_state gauge");
        for s in ["starting", "ok", "missing", "no_tables", "locked", "error"] {
            let v = u8::from(s == state.name());
            let _ = writeln!(out, "skillmon_db_state{{state=\"{s}\"}} {v}");
        }
        out
    }
}
