//! The team's state as `/healthz`, `/readyz` and `/metrics` show it: whether
//! Redis is reachable (since when, why not), what was published or which
//! sources are held. Each change is logged once, here.

use std::fmt::Write as _;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde_json::json;

use crate::protocol::team::SourceInfo;

#[derive(Debug)]
pub struct TeamStatus {
    role: &'static str,
    /// The publisher's source name.
    source: Option<String>,
    redacted_url: String,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// `None` until the first attempt.
    up: Option<bool>,
    since: DateTime<Utc>,
    reason: String,
    failures: u64,
    publishes: u64,
    received: u64,
    last_publish: Option<DateTime<Utc>>,
    sources: Vec<SourceInfo>,
}

impl TeamStatus {
    pub fn publisher(source: &str, redacted_url: &str) -> Self {
        Self::new("publisher", Some(source.to_owned()), redacted_url)
    }

    pub fn edge(redacted_url: &str) -> Self {
        Self::new("edge", None, redacted_url)
    }

    fn new(role: &'static str, source: Option<String>, redacted_url: &str) -> Self {
        Self {
            role,
            source,
            redacted_url: redacted_url.to_owned(),
            inner: Mutex::new(Inner {
                up: None,
                since: Utc::now(),
                reason: "connecting".into(),
                failures: 0,
                publishes: 0,
                received: 0,
                last_publish: None,
                sources: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        crate::sync::lock(&self.inner)
    }

    pub fn is_edge(&self) -> bool {
        self.role == "edge"
    }

    /// Redis answered. Logged when it was not reachable before.
    pub fn set_up(&self) {
        let mut g = self.lock();
        if g.up != Some(true) {
            if let Some(false) = g.up {
                tracing::info!(
                    "redis {} reachable again (after {})",
                    self.redacted_url,
                    g.reason
                );
            } else {
                tracing::info!("redis {} connected ({})", self.redacted_url, self.role);
            }
            g.up = Some(true);
            g.since = Utc::now();
            g.reason = String::new();
        }
    }

    /// Redis failed with `reason` (already scrubbed of secrets). Logged
    /// once per distinct reason.
    pub fn set_down(&self, reason: &str) {
        let mut g = self.lock();
        g.failures += 1;
        if g.up != Some(false) || g.reason != reason {
            tracing::warn!(
                "redis {} unreachable: {reason}; retrying with backoff (up to {:?}){}",
                self.redacted_url,
                super::BACKOFF_CAP,
                if self.is_edge() {
                    "; serving the last team snapshot"
                } else {
                    "; still serving this server's own clients"
                }
            );
            if g.up != Some(false) {
                g.since = Utc::now();
            }
            g.up = Some(false);
            reason.clone_into(&mut g.reason);
        }
    }

    pub fn redis_up(&self) -> bool {
        self.lock().up == Some(true)
    }

    #[cfg(feature = "team")]
    pub(crate) fn published(&self, at: DateTime<Utc>) {
        let mut g = self.lock();
        g.publishes += 1;
        g.last_publish = Some(at);
    }

    #[cfg(feature = "team")]
    pub(crate) fn received(&self) {
        self.lock().received += 1;
    }

    #[cfg(feature = "team")]
    /// The edge's sources after a merge; stale and dropped transitions are
    /// logged by the edge.
    pub(crate) fn set_sources(&self, sources: Vec<SourceInfo>) {
        self.lock().sources = sources;
    }

    fn redis_json(&self, g: &Inner) -> serde_json::Value {
        json!({
            "url": self.redacted_url,
            "state": match g.up { Some(true) => "up", Some(false) => "unreachable", None => "connecting" },
            "since": crate::protocol::format_timestamp(g.since),
            "reason": g.reason,
        })
    }

    /// The `team` object of `/healthz`.
    pub fn health_json(&self) -> serde_json::Value {
        let g = self.lock();
        let stale = g.sources.iter().filter(|s| s.stale).count();
        let mut v = json!({
            "role": self.role,
            "redis": self.redis_json(&g),
        });
        if let Some(src) = &self.source {
            v["source"] = json!(src);
            v["publishes"] = json!(g.publishes);
            v["last_publish"] = json!(g.last_publish.map(crate::protocol::format_timestamp));
        }
        if self.is_edge() {
            v["sources"] = json!(g.sources);
            v["stale_sources"] = json!(stale);
        }
        v
    }

    /// `/healthz` with the team: `db_ok` and `body` are the server's own.
    /// An edge has no database: it is healthy while Redis is reachable (or
    /// was never needed yet); a publisher's health stays its database's.
    pub fn health(&self, db_ok: bool, body: &str) -> (bool, String) {
        let mut v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| json!({}));
        let ok = if self.is_edge() {
            v["db"] = json!("none (edge)");
            v["db_detail"] = json!("an edge reads Redis, not a database");
            self.redis_up()
        } else {
            db_ok
        };
        v["status"] = json!(if ok { "ok" } else { "degraded" });
        v["team"] = self.health_json();
        (ok, v.to_string())
    }

    /// Readiness for `/readyz`: an edge is ready while Redis is reachable;
    /// the body gives the reason and since when otherwise. A publisher is
    /// always ready as far as the team is concerned (it serves its own DB).
    pub fn ready(&self) -> (bool, String) {
        let g = self.lock();
        let ok = !self.is_edge() || g.up == Some(true);
        let body = json!({
            "ready": ok,
            "redis": self.redis_json(&g),
        });
        (ok, body.to_string())
    }

    /// Prometheus text lines (format 0.0.4) for `/metrics`.
    pub fn prometheus(&self) -> String {
        let g = self.lock();
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP skillmon_{name} {help}");
            let _ = writeln!(out, "# TYPE skillmon_{name} {kind}");
            let _ = writeln!(out, "skillmon_{name} {value}");
        };
        metric(
            "team_redis_up",
            "gauge",
            "1 when Redis is reachable.",
            u8::from(g.up == Some(true)).to_string(),
        );
        metric(
            "team_redis_failures_total",
            "counter",
            "Failed Redis connections or commands.",
            g.failures.to_string(),
        );
        if self.is_edge() {
            metric(
                "team_sources",
                "gauge",
                "Sources in the team totals.",
                g.sources.len().to_string(),
            );
            metric(
                "team_sources_stale",
                "gauge",
                "Sources without news for 3 of their intervals.",
                g.sources.iter().filter(|s| s.stale).count().to_string(),
            );
            metric(
                "team_payloads_received_total",
                "counter",
                "Source payloads received from Redis.",
                g.received.to_string(),
            );
        } else {
            metric(
                "team_publishes_total",
                "counter",
                "Snapshots written to Redis.",
                g.publishes.to_string(),
            );
        }
        out
    }
}
