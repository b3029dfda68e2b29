//! The team view: many databases in, many `serve` nodes out,
//! through Redis.
//!
//! ```text
//! serve --db A --publish redis://… --source a ──SET skillmon:source:a + PUBLISH skillmon:updates──▶ Redis
//! Redis ──SUBSCRIBE skillmon:updates (+ SCAN/GET at (re)connect)──▶ serve --from redis://… (edge)
//! edge: latest payload per source ──merge──▶ Snapshot (+ TeamExt) ──▶ the same Hub, sessions, limits
//! ```
//! Owns the Redis target (URL, password file, redaction), the key and
//! channel names, the Redis status shown on `/healthz` and `/metrics`
//! ([`TeamStatus`]), and the three parts: [`payload`] (what a publisher
//! writes), [`merge`] (pure: payloads → one team snapshot), [`publisher`]
//! and [`edge`] (the Redis I/O). Must not touch the store, sessions or the
//! hub's internals: an edge is one more source of `Snapshot`s for the hub.

pub mod edge;
pub mod merge;
pub mod payload;
pub mod publisher;
mod status;

use crate::error::InvalidValue;
use std::path::PathBuf;
use std::time::Duration;

pub use status::TeamStatus;

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
    Publish(PublishConfig),
    /// No DB: serves the merged snapshots of the publishers.
    Edge(EdgeConfig),
}

impl TeamRole {
    /// The status `/healthz` and `/metrics` show for this role.
    pub fn status(&self) -> Option<std::sync::Arc<TeamStatus>> {
        let status = match self {
            TeamRole::None => return None,
            TeamRole::Publish(p) => TeamStatus::publisher(&p.source, p.redis.redacted()),
            TeamRole::Edge(e) => TeamStatus::edge(e.redis.redacted()),
        };
        Some(std::sync::Arc::new(status))
    }
}

#[derive(Debug, Clone)]
pub struct PublishConfig {
    pub redis: RedisTarget,
    pub source: String,
    /// Write at least this often (also each source's staleness unit).
    pub every: Duration,
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub redis: RedisTarget,
    /// `None`: every source.
    pub sources: Option<Vec<String>>,
    pub source_ttl: Duration,
}

impl EdgeConfig {
    pub fn wants(&self, source: &str) -> bool {
        self.sources
            .as_ref()
            .is_none_or(|l| l.iter().any(|s| s == source))
    }
}

/// Where Redis is, with its credentials. `Debug` and [`Self::redacted`]
/// never show the password.
#[derive(Clone)]
pub struct RedisTarget {
    info: redis::ConnectionInfo,
    redacted: String,
    secret: Option<String>,
}

impl std::fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisTarget({})", self.redacted)
    }
}

/// A bad `--publish` / `--from` / `--redis-password-file` value.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "{url} is not a Redis URL ({reason}); use redis://[user:password@]HOST:PORT or rediss://… for TLS"
    )]
    Url { url: String, reason: String },
    #[error("cannot read the Redis password file {path}: {reason}")]
    PasswordFile { path: PathBuf, reason: String },
    #[error("the Redis password file {0} is empty")]
    EmptyPassword(PathBuf),
}

impl RedisTarget {
    /// Parse `redis://` / `rediss://` and, if given, read the password from
    /// `password_file` (first line; it wins over one in the URL).
    pub fn parse(url: &str, password_file: Option<&std::path::Path>) -> Result<Self, TargetError> {
        let redacted = redact_url(url);
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(TargetError::Url {
                url: redacted,
                reason: "the scheme must be redis:// or rediss://".into(),
            });
        }
        let mut info: redis::ConnectionInfo = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|e| TargetError::Url {
                url: redacted.clone(),
                reason: scrub(&e.to_string(), url_password(url).as_deref()),
            })?;
        let mut secret = info.redis_settings().password().map(str::to_owned);
        if let Some(path) = password_file {
            let text = std::fs::read_to_string(path).map_err(|e| TargetError::PasswordFile {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;
            let pass = text.lines().next().unwrap_or("").trim().to_owned();
            if pass.is_empty() {
                return Err(TargetError::EmptyPassword(path.to_owned()));
            }
            info = info
                .clone()
                .set_redis_settings(info.redis_settings().clone().set_password(&pass));
            secret = Some(pass);
        }
        Ok(Self {
            info,
            redacted,
            secret,
        })
    }

    /// The URL with any password replaced by `***`, for logs and errors.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub(crate) fn client(&self) -> Result<redis::Client, String> {
        redis::Client::open(self.info.clone()).map_err(|e| self.scrub(&e))
    }

    /// An error's text, safe to log: the password (if any) never appears.
    pub(crate) fn scrub(&self, e: &dyn std::fmt::Display) -> String {
        scrub(&e.to_string(), self.secret.as_deref())
    }
}

fn scrub(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_owned(),
    }
}

fn url_password(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.rsplit_once('@')?.0;
    Some(userinfo.split_once(':')?.1.to_owned())
}

/// `redis://user:secret@host:6379/0` → `redis://user:***@host:6379/0`.
/// The user info runs to the last `@` (not to the first `/`), so a
/// password holding an unescaped `/`, `?` or `#` is hidden too.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(unparsable URL)".into();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host_and_path)) => {
            let user = match userinfo.split_once(':') {
                Some((u, _)) => format!("{u}:***"),
                None => "***".to_owned(),
            };
            format!("{scheme}://{user}@{host_and_path}")
        }
        None => url.to_owned(),
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
pub(crate) fn backoff() -> crate::backoff::Backoff {
    crate::backoff::Backoff::new(Duration::from_millis(250), BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            redact_url("redis://alice:s3cret@h:6379/0"),
            "redis://alice:***@h:6379/0"
        );
        assert_eq!(redact_url("rediss://:s3cret@h"), "rediss://:***@h");
        assert_eq!(redact_url("redis://h:1"), "redis://h:1");
        // A password with an unescaped '/' is still a password.
        assert_eq!(redact_url("redis://:pa/ss@h:1"), "redis://:***@h:1");
        assert_eq!(redact_url("redis://u:a/b@c@h/0"), "redis://u:***@h/0");
        let e = RedisTarget::parse("redis://:pa/ss@127.0.0.1:1", None);
        if let Err(e) = e {
            assert!(!e.to_string().contains("pa/ss"), "{e}");
        }
        let t = RedisTarget::parse("redis://alice:s3cret@127.0.0.1:1", None).unwrap();
        assert!(!format!("{t:?}").contains("s3cret"));
        assert_eq!(t.scrub(&"auth s3cret failed"), "auth *** failed");
        // rediss:// (TLS through rustls) is understood.
        let tls = RedisTarget::parse("rediss://:s3cret@redis.internal:6380", None).unwrap();
        assert!(tls.client().is_ok());
        assert_eq!(tls.redacted(), "rediss://:***@redis.internal:6380");
        let e = RedisTarget::parse("http://u:s3cret@h", None).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pw");
        std::fs::write(&f, "fromfile\n").unwrap();
        let t = RedisTarget::parse("redis://127.0.0.1:1", Some(&f)).unwrap();
        assert_eq!(t.info.redis_settings().password(), Some("fromfile"));
        std::fs::write(&f, "\n").unwrap();
        assert!(matches!(
            RedisTarget::parse("redis://127.0.0.1:1", Some(&f)),
            Err(TargetError::EmptyPassword(_))
        ));
    }

    #[test]
    fn source_names() {
        assert!(validate_source("alice-laptop.local").is_ok());
        assert!(validate_source("").is_err());
        assert!(validate_source("a b").is_err());
        assert!(validate_source(&"x".repeat(65)).is_err());
    }

    #[test]
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
