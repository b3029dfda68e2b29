//! The team view: many databases in, many `serve` nodes out,
//! through Redis.
//!
//! ```text
//! serve --db A --publish redis://… --source a ──SET skillmon:source:a + PUBLISH skillmon:updates──▶ Redis
//! Redis ──SUBSCRIBE skillmon:updates (+ SCAN/GET at (re)connect)──▶ serve --from redis://… (edge)
//! edge: latest payload per source ──merge──▶ Snapshot (+ TeamExt) ──▶ the same Hub, sessions, limits
//! ```
//! Owns the Redis target (`target`: URL, password file, redaction), the key
//! and channel names, the Redis status shown on `/healthz` and `/metrics`
//! ([`TeamStatus`]), and the three parts: `payload` (what a publisher
//! writes), `merge` (pure: payloads → one team snapshot), `publisher` and
//! `edge` (the Redis I/O). Must not touch the store, sessions or the hub's
//! internals: an edge is one more source of `Snapshot`s for the hub.
//!
//! Everything Redis (the target, the payload, the merge, the publisher and
//! the edge) is built only with the `team` cargo feature, on by default;
//! without it ([`TeamRole::None`] alone, and the status type the server's
//! routes read) the `redis` crate is not in the build.

#[cfg(feature = "team")]
pub mod edge;
#[cfg(feature = "team")]
pub mod merge;
#[cfg(feature = "team")]
pub mod payload;
#[cfg(feature = "team")]
pub mod publisher;
mod status;
#[cfg(feature = "team")]
mod target;

use crate::error::InvalidValue;
use std::time::Duration;

pub use status::TeamStatus;
#[cfg(feature = "team")]
pub use target::{RedisTarget, TargetError, redact_url};

/// Key holding a source's latest payload: `skillmon:source:{name}`.
pub const KEY_PREFIX: &str = "skillmon:source:";
/// Channel every payload is also published on.
pub const CHANNEL: &str = "skillmon:updates";
/// A publisher writes at least this often, changed or not.
pub const DEFAULT_PUBLISH_EVERY: Duration = Duration::from_secs(10);
/// A source without a payload for this long leaves the team totals.
pub const DEFAULT_SOURCE_TTL: Duration = Duration::from_secs(600);
/// A source is stale after this many of its own intervals without news.
pub const STALE_INTERVALS: u32 = 3;
/// Longest wait between two attempts to reach Redis.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Redis keys expire after a day without a write (hygiene; edges drop a
/// source after their own `--source-ttl` anyway).
#[cfg(feature = "team")]
const KEY_EXPIRY_SECS: u64 = 24 * 3600;
/// Longest source name.
pub const MAX_SOURCE_LEN: usize = 64;

/// The role a `serve` process plays in a team, if any.
#[derive(Debug, Clone, Default)]
pub enum TeamRole {
    /// A single server: nothing changes.
    #[default]
    None,
    /// Reads its DB and also writes each snapshot to Redis.
    #[cfg(feature = "team")]
    Publish(PublishConfig),
    /// No DB: serves the merged snapshots of the publishers.
    #[cfg(feature = "team")]
    Edge(EdgeConfig),
}

impl TeamRole {
    /// The status `/healthz` and `/metrics` show for this role.
    pub fn status(&self) -> Option<std::sync::Arc<TeamStatus>> {
        match self {
            TeamRole::None => None,
            #[cfg(feature = "team")]
            TeamRole::Publish(p) => Some(std::sync::Arc::new(TeamStatus::publisher(
                &p.source,
                p.redis.redacted(),
            ))),
            #[cfg(feature = "team")]
            TeamRole::Edge(e) => Some(std::sync::Arc::new(TeamStatus::edge(e.redis.redacted()))),
        }
    }
}

#[cfg(feature = "team")]
#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub redis: RedisTarget,
    pub source: String,
    /// Write at least this often (also each source's staleness unit).
    pub every: Duration,
}

#[cfg(feature = "team")]
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub redis: RedisTarget,
    /// `None`: every source.
    pub sources: Option<Vec<String>>,
    pub source_ttl: Duration,
}

#[cfg(feature = "team")]
impl EdgeConfig {
    pub fn wants(&self, source: &str) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == source))
    }
}

/// A source name: 1–64 of `A-Z a-z 0-9 . _ -`.
pub fn validate_source(name: &str) -> Result<(), InvalidValue> {
    if name.is_empty() || name.len() > MAX_SOURCE_LEN {
        return Err(InvalidValue(format!(
            "source name {name:?} must be 1 to {MAX_SOURCE_LEN} characters"
        )));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(InvalidValue(format!(
            "source name {name:?} may hold only letters, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// The default `--source`: this machine's host name.
pub fn default_source() -> Option<String> {
    let from_env = std::env::var("HOSTNAME").ok();
    let from_file = || {
        ["/proc/sys/kernel/hostname", "/etc/hostname"]
            .iter()
            .find_map(|p| std::fs::read_to_string(p).ok())
    };
    let name = from_env.or_else(from_file)?;
    let name: String = name
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_SOURCE_LEN)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// The team's reconnect delays: 250 ms doubling to [`BACKOFF_CAP`].
#[cfg(feature = "team")]
pub(crate) fn backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(Duration::from_millis(250), BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_names() {
        assert!(validate_source("alice-laptop.local").is_ok());
        assert!(validate_source("").is_err());
        assert!(validate_source("a b").is_err());
        assert!(validate_source(&"x".repeat(65)).is_err());
    }

    #[test]
    #[cfg(feature = "team")]
    fn backoff_doubles_to_the_cap() {
        let mut b = backoff();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(125) && first <= Duration::from_millis(250));
        for _ in 0..20 {
            assert!(b.next_delay() <= BACKOFF_CAP);
        }
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(250));
    }
}
