//! The Redis target of a publisher or an edge (`--publish`, `--from`,
//! `--redis-password-file`): parsing, the password file, redaction. Only in
//! builds with the `team` feature (it holds the `redis` crate's types).
//! Must not log or return a password: `Debug`, [`RedisTarget::redacted`] and
//! every error show `***` instead.

use std::path::PathBuf;

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
}
