//! Who may connect: the shared static token and session-buddy's HS256 JWT.
//!
//! Owns token checking, at the handshake only (never per frame): an
//! `Authorization: Bearer` header on the upgrade request or on a plain route,
//! or session-buddy's first frame `{"token": "..."}` within
//! [`AuthConfig::first_frame_timeout`] of the upgrade (docs/PROTOCOL.md,
//! "Authentication"). Must not: log, echo or label anything with a token
//! (a [`Secret`] prints as `<redacted>`; failures are reported as a
//! [`Failure`], a fixed word).
//!
//! JWTs: HS256 only; `exp` is required and enforced with [`JWT_LEEWAY`] of
//! clock skew; `alg: none`, any other algorithm, a bad signature or a
//! missing `exp` are refused. With `require_permission`, the `permissions`
//! claim (a list of strings) must contain it.

use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

use crate::protocol::ClientMessage;

/// A secret file larger than this is not a secret (nothing more is read).
const MAX_SECRET_FILE: u64 = 16 << 10;
/// Clock skew allowed past a JWT's `exp`.
pub const JWT_LEEWAY: Duration = Duration::from_secs(30);
/// session-buddy's window for the first frame `{"token": ...}`.
pub const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(5);
/// The close code and reason of every failed first-frame authentication
/// (session-buddy's, exactly).
pub const CLOSE_AUTH_FAILED: u16 = 4001;
pub const CLOSE_AUTH_FAILED_REASON: &str = "Authentication failed";

/// A token or key. Never printed: `Debug` shows `<redacted>`; never
/// compared with `==` (no `PartialEq`: tokens are compared in constant time).
#[derive(Clone)]
pub struct Secret(Vec<u8>);

/// A secret file that cannot be used: the flag, the file and the problem,
/// never the content.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SecretFileError(String);

impl Secret {
    /// A secret from text (an environment variable); surrounding whitespace
    /// is trimmed. `None` when nothing is left.
    pub fn new(text: &str) -> Option<Self> {
        let t = text.trim();
        (!t.is_empty()).then(|| Self(t.as_bytes().to_vec()))
    }

    /// A secret from a file (its content, trimmed), or an error
    /// naming the file and the problem (never its content).
    pub fn from_file(path: &Path, flag: &str) -> Result<Self, SecretFileError> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_SECRET_FILE + 1).read_to_string(&mut text))
            .map_err(|e| {
                SecretFileError(format!("{flag} {}: cannot read it: {e}", path.display()))
            })?;
        if text.len() as u64 > MAX_SECRET_FILE {
            return Err(SecretFileError(format!(
                "{flag} {}: larger than {}; the file holds only the secret",
                path.display(),
                crate::size::human(MAX_SECRET_FILE as usize)
            )));
        }
        Self::new(&text).ok_or_else(|| {
            SecretFileError(format!(
                "{flag} {}: the file is empty; put the secret in it",
                path.display()
            ))
        })
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Authentication settings; everything off by default (loopback use).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// The static shared token (`--token-file`, `SKILLMON_TOKEN`).
    pub token: Option<Secret>,
    /// The HS256 secret (`--jwt-secret-file`, `SESSION_BUDDY_JWT_SECRET`).
    pub jwt_secret: Option<Secret>,
    /// A permission a JWT must carry in its `permissions` claim.
    pub require_permission: Option<String>,
    /// How long a client without a Bearer header has to send its token frame.
    pub first_frame_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            token: None,
            jwt_secret: None,
            require_permission: None,
            first_frame_timeout: FIRST_FRAME_TIMEOUT,
        }
    }
}

impl AuthConfig {
    pub fn enabled(&self) -> bool {
        self.token.is_some() || self.jwt_secret.is_some()
    }
}

/// Why a token was refused: a fixed word, used in logs and as the
/// `reason` label of `skillmon_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "snake_case")]
pub enum Failure {
    /// No token at all (no header, or a first frame without one).
    Missing,
    /// Not the static token, and not a JWT with a valid signature.
    Invalid,
    Expired,
    /// A JWT signed with anything but HS256 (including `none`).
    Algorithm,
    /// A JWT without `exp`.
    NoExpiry,
    /// A valid JWT without the required permission.
    Permission,
    /// Not a JWT, or unreadable claims.
    Malformed,
    /// No token frame within the first-frame timeout.
    Timeout,
    /// A `?token=` in the URL.
    TokenInUrl,
}

impl Failure {
    /// The fixed word (`missing`, `no_expiry`, `token_in_url`, …).
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a token says the client is (a JWT's `user_id`; never the token).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    pub user: Option<String>,
}

#[derive(serde::Deserialize)]
struct Claims {
    #[serde(default)]
    user_id: Option<serde_json::Value>,
    #[serde(default)]
    permissions: Vec<String>,
}

/// Checks tokens; built once at start.
pub struct Verifier {
    token: Option<Secret>,
    jwt: Option<(DecodingKey, Validation)>,
    permission: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("static_token", &self.token.is_some())
            .field("jwt", &self.jwt.is_some())
            .field("permission", &self.permission)
            .finish()
    }
}

impl Verifier {
    /// `None` when authentication is off.
    pub fn new(config: &AuthConfig) -> Option<Self> {
        if !config.enabled() {
            return None;
        }
        let jwt = config.jwt_secret.as_ref().map(|s| {
            let mut v = Validation::new(Algorithm::HS256);
            v.leeway = JWT_LEEWAY.as_secs();
            v.validate_exp = true;
            v.validate_aud = false;
            v.set_required_spec_claims(&["exp"]);
            (DecodingKey::from_secret(s.bytes()), v)
        });
        Some(Self {
            token: config.token.clone(),
            jwt,
            permission: config.require_permission.clone(),
        })
    }

    /// Check one token: the static token first (constant time), then the JWT.
    pub fn check(&self, token: &str) -> Result<Identity, Failure> {
        let token = token.trim();
        if token.is_empty() {
            return Err(Failure::Missing);
        }
        if let Some(expected) = &self.token
            && constant_time_eq(token.as_bytes(), expected.bytes())
        {
            return Ok(Identity::default());
        }
        let Some((key, validation)) = &self.jwt else {
            return Err(Failure::Invalid);
        };
        let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
            match e.kind() {
                ErrorKind::ExpiredSignature => Failure::Expired,
                ErrorKind::InvalidSignature => Failure::Invalid,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => Failure::Algorithm,
                ErrorKind::MissingRequiredClaim(_) => Failure::NoExpiry,
                // `alg: none` and friends fail while parsing the header.
                ErrorKind::Json(_) if header_alg(token).is_some_and(|a| a != "HS256") => {
                    Failure::Algorithm
                }
                _ if self.token.is_some() && token.matches('.').count() != 2 => Failure::Invalid,
                _ => Failure::Malformed,
            }
        })?;
        if let Some(p) = &self.permission
            && !data.claims.permissions.iter().any(|have| have == p)
        {
            return Err(Failure::Permission);
        }
        let user = data.claims.user_id.map(|v| match v {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        });
        Ok(Identity { user })
    }
}

/// The `alg` a JWT header names, when the header is readable JSON (to
/// tell `alg: none` from a malformed token in the failure reason).
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine as _;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("alg")?.as_str().map(str::to_owned)
}

/// Compare in time that depends only on the expected token's length.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut same = subtle::Choice::from(u8::from(given.len() == expected.len()));
    for (i, e) in expected.iter().enumerate() {
        same &= given.get(i).unwrap_or(&0).ct_eq(e);
    }
    same.into()
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| rest.trim())
        .filter(|t| !t.is_empty())
}

/// session-buddy's first-frame authentication: the next text frame must be
/// `{"token": "..."}` and arrive within `timeout`.
pub async fn first_frame<S>(
    ws: &mut WebSocketStream<S>,
    verifier: &Verifier,
    timeout: Duration,
) -> Result<Identity, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let msg = match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => return Err(Failure::Timeout),
            Ok(None | Some(Err(_))) => return Err(Failure::Missing),
            Ok(Some(Ok(m))) => m,
        };
        match msg {
            Message::Text(text) => {
                return match ClientMessage::parse(&text) {
                    Ok(ClientMessage::Auth { token }) => verifier.check(&token),
                    _ => Err(Failure::Missing),
                };
            }
            // Control frames are answered by tungstenite; keep waiting.
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            Message::Binary(_) | Message::Close(_) => return Err(Failure::Missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_read_up_to_16_kib() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        std::fs::write(&big, "a".repeat(1 << 20)).unwrap();
        let e = Secret::from_file(&big, "--token-file")
            .unwrap_err()
            .to_string();
        assert!(e.contains("--token-file") && e.contains("16 KiB"), "{e}");
        assert!(!e.contains("aaaa"), "{e}");
        let ok = dir.path().join("ok");
        std::fs::write(&ok, format!("{}\n", "b".repeat(1000))).unwrap();
        assert!(Secret::from_file(&ok, "--token-file").is_ok());
    }

    #[test]
    fn bearer_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
    }

    #[test]
    fn static_token_compare() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret1", b"secret"));
        assert!(!constant_time_eq(b"secre", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new(" hunter2\n").unwrap();
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert!(Secret::new("  \n").is_none());
        let cfg = AuthConfig {
            token: Some(s),
            ..AuthConfig::default()
        };
        assert!(!format!("{cfg:?}").contains("hunter2"));
    }

    #[test]
    fn header_alg_reads_none() {
        // {"alg":"none","typ":"JWT"}
        let t = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.e30.";
        assert_eq!(header_alg(t).as_deref(), Some("none"));
    }
}
