//! How `watch` reaches a server: the token (sent as `Authorization: Bearer`
//! on the upgrade and as session-buddy's first frame, never shown), TLS for
//! `wss://` (rustls with the ring provider, the platform's roots plus an
//! optional private CA; no way to switch verification off), the client's
//! WebSocket limits, and the wording of connection failures that retrying
//! cannot fix (certificates, 401/403, auth close codes).
//!
//! Owns no connection state: the supervisor in [`crate::client`] calls
//! [`connect`] and the `fatal_*` classifiers. Must not print or log a token.

use crate::deflate::Compression;
use crate::error::InvalidValue;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri, header::AUTHORIZATION};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, error::TlsError};

/// The environment variable holding a token (a value, not a path).
pub const TOKEN_ENV: &str = "SKILLMON_TOKEN";
/// The fix shown when a server wants a token and none was given.
pub const TOKEN_FIX: &str = "the server requires a token: pass --token-file or set SKILLMON_TOKEN";
/// `--max-frame` when not given: the largest message `watch` accepts.
pub const DEFAULT_MAX_FRAME: usize = 4 << 20;
/// The range `--max-frame` accepts.
pub const MAX_FRAME_RANGE: std::ops::RangeInclusive<usize> = (16 << 10)..=(64 << 20);
/// The most the client's WebSocket buffers for writing (pings, subscribes,
/// automatic pong replies); over it a write fails and the connection is
/// declared dead instead of growing.
pub const MAX_WRITE_BUFFER: usize = 64 << 10;
/// The read buffer of the client's WebSocket.
const READ_BUFFER: usize = 64 << 10;

/// Where a token came from (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    /// `--token-file PATH` or `token_file` in config.toml.
    File(PathBuf),
    /// The `SKILLMON_TOKEN` environment variable.
    Env,
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::File(p) => write!(f, "file {}", p.display()),
            TokenSource::Env => write!(f, "env {TOKEN_ENV}"),
        }
    }
}

/// A bearer token. `Debug` never shows the value.
#[derive(Clone)]
pub struct Token {
    value: Arc<str>,
    source: TokenSource,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(from {}, value hidden)", self.source)
    }
}

/// A token that cannot be used; the message names the source, never the value.
#[derive(Debug, thiserror::Error)]
#[error("token ({source_name}): {problem}")]
pub struct TokenError {
    source_name: String,
    problem: String,
}

impl Token {
    /// Read the token from its source: a file's first line-trimmed content,
    /// or the environment variable.
    pub fn load(source: &TokenSource) -> Result<Token, TokenError> {
        let err = |problem: String| TokenError {
            source_name: source.to_string(),
            problem,
        };
        let raw = match source {
            TokenSource::File(path) => crate::secret_file::read(path).map_err(|e| match e {
                crate::secret_file::ReadError::Io(_) => {
                    err(format!("{e} (--token-file / token_file)"))
                }
                crate::secret_file::ReadError::TooLarge => err(e.to_string()),
            })?,
            TokenSource::Env => {
                std::env::var(TOKEN_ENV).map_err(|_| err("not set or not valid UTF-8".into()))?
            }
        };
        Token::new(raw.trim(), source.clone()).map_err(err)
    }

    fn new(value: &str, source: TokenSource) -> Result<Token, String> {
        if value.is_empty() {
            return Err("it is empty".into());
        }
        if !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(
                "a token must be printable ASCII without spaces or line breaks (a JWT or a random string)"
                    .into(),
            );
        }
        Ok(Token {
            value: value.into(),
            source,
        })
    }

    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// The `Authorization` header value, marked sensitive.
    pub(crate) fn header(&self) -> Result<HeaderValue, tungstenite::Error> {
        let mut v = HeaderValue::from_str(&format!("Bearer {}", self.value)).map_err(|_| {
            tungstenite::Error::Url(tungstenite::error::UrlError::UnableToConnect(
                "the token cannot go in an HTTP header".into(),
            ))
        })?;
        v.set_sensitive(true);
        Ok(v)
    }

    /// session-buddy's first frame, `{"token": "..."}`.
    pub(crate) fn first_frame(&self) -> String {
        crate::protocol::ClientMessage::Auth {
            token: self.value.to_string(),
        }
        .encode()
    }
}

/// How the feed connects: token, TLS trust and limits.
#[derive(Clone)]
pub struct ConnectOptions {
    pub token: Option<Token>,
    /// Trust for `wss://` ([`tls_config`]); `None` refuses `wss://` URLs.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// The largest message accepted (after inflating); over it the feed
    /// closes with 1009.
    pub max_frame: usize,
    /// Offer permessage-deflate (`--compression`).
    pub compression: Compression,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self {
            token: None,
            tls: None,
            max_frame: DEFAULT_MAX_FRAME,
            compression: Compression::default(),
        }
    }
}

impl fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("token", &self.token)
            .field("tls", &self.tls.is_some())
            .field("max_frame", &self.max_frame)
            .field("compression", &self.compression)
            .finish()
    }
}

/// A CA file or trust store that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("--ca-cert {path}: {problem}")]
    CaFile { path: PathBuf, problem: String },
    #[error("TLS set-up failed: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls client configuration for `wss://`: the platform's trusted
/// roots (rustls-native-certs) plus every certificate in `ca_cert` (PEM).
pub fn tls_config(ca_cert: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!("platform trust store: {e}");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::info!("platform trust store: {added} roots ({ignored} unusable)");
    if let Some(path) = ca_cert {
        for cert in load_ca_file(path)? {
            roots.add(cert).map_err(|e| TlsSetupError::CaFile {
                path: path.to_path_buf(),
                problem: format!("not a usable CA certificate: {e}"),
            })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

fn load_ca_file(
    path: &Path,
) -> Result<Vec<rustls_pki_types::CertificateDer<'static>>, TlsSetupError> {
    use rustls_pki_types::pem::PemObject as _;
    let err = |problem: String| TlsSetupError::CaFile {
        path: path.to_path_buf(),
        problem,
    };
    let bytes = std::fs::read(path).map_err(|e| err(format!("cannot read it: {e}")))?;
    let certs = rustls_pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(err(
            "no certificate in it (expected PEM with -----BEGIN CERTIFICATE-----)".into(),
        ));
    }
    Ok(certs)
}

/// The client's WebSocket limits: messages up to `max_frame`, eager writes,
/// a bounded write buffer.
pub fn ws_config(max_frame: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_WRITE_BUFFER)
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
}

/// The upgrade request for `url`, with the token as a Bearer header.
fn request(url: &str, token: Option<&Token>) -> Result<Request, tungstenite::Error> {
    let mut req = url.into_client_request()?;
    if let Some(t) = token {
        req.headers_mut().insert(AUTHORIZATION, t.header()?);
    }
    Ok(req)
}

/// TCP, TLS for `wss://`, and the WebSocket upgrade offering `skillmon.v1`
/// and permessage-deflate ([`super::handshake`]). Returns the stream and
/// what the server took.
pub(crate) async fn connect(
    url: &str,
    opts: &ConnectOptions,
) -> Result<(super::handshake::Ws, super::handshake::Agreed), tungstenite::Error> {
    let req = request(url, opts.token.as_ref())?;
    super::handshake::connect(req, opts.tls.clone(), opts.max_frame, opts.compression).await
}

/// The host part of `url`, for messages.
pub fn host_of(url: &str) -> String {
    url.parse::<Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_owned))
        .unwrap_or_else(|| url.to_string())
}

/// Is `url`'s host this machine (`localhost`, 127.0.0.0/8, `::1`)?
pub fn is_loopback(url: &str) -> bool {
    let host = host_of(url);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// What to do about an authentication refusal, given whether we sent a token.
pub fn auth_fix(token: Option<&Token>) -> String {
    match token {
        None => TOKEN_FIX.to_string(),
        Some(t) => format!(
            "the server refused the token from {}: check that it is the one this server expects and has not expired",
            t.source()
        ),
    }
}

/// Connection errors that retrying cannot fix: a bad URL, a certificate
/// that is not trusted, or the server refusing the upgrade.
pub fn fatal_connect_error(
    e: &tungstenite::Error,
    url: &str,
    token: Option<&Token>,
) -> Option<String> {
    match e {
        tungstenite::Error::Url(tungstenite::error::UrlError::TlsFeatureNotEnabled) => {
            Some("wss:// needs TLS settings that were not given".into())
        }
        tungstenite::Error::Url(u) => Some(format!("bad URL: {u}")),
        tungstenite::Error::Tls(TlsError::InvalidDnsName) => {
            Some(format!("{} is not a valid TLS server name", host_of(url)))
        }
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            // The server's own reason, if it gave one (sanitized).
            let why = resp
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .and_then(|t| t.lines().next().map(|l| crate::text::sanitize_line(l, 200)))
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!(" ({l})"))
                .unwrap_or_default();
            match status.as_u16() {
                401 => Some(format!("HTTP {status}: {}", auth_fix(token))),
                403 => Some(format!(
                    "HTTP {status}: the server refused this client (host name, origin, address or permission){why}; {}",
                    auth_fix(token)
                )),
                400 | 404 | 426 => Some(format!(
                    "server refused the WebSocket upgrade: HTTP {status}{why}"
                )),
                _ => None,
            }
        }
        tungstenite::Error::Io(io) => {
            if let Some(bad) = io
                .get_ref()
                .and_then(|e| e.downcast_ref::<super::handshake::BadExtensions>())
            {
                let fix = if bad.offered {
                    "; --compression off connects without offering compression"
                } else {
                    ""
                };
                return Some(format!(
                    "{}: the upgrade broke RFC 7692{fix}",
                    crate::text::sanitize_line(&bad.problem, 200)
                ));
            }
            tls_error(io).map(|t| describe_tls_error(t, url))
        }
        _ => None,
    }
}

/// The rustls error inside an I/O error from the TLS handshake, if any.
fn tls_error(io: &std::io::Error) -> Option<&rustls::Error> {
    io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
}

/// "TLS certificate of HOST not accepted: REASON (FIX)".
fn describe_tls_error(e: &rustls::Error, url: &str) -> String {
    use rustls::CertificateError as C;
    let host = host_of(url);
    let private_ca = "if the server uses a private CA, pass its certificate with --ca-cert FILE";
    let cert = |reason: String, fix: &str| {
        format!("TLS certificate of {host} not accepted: {reason}; {fix}")
    };
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => cert("unknown issuer".into(), private_ca),
            C::BadSignature => cert("bad signature".into(), private_ca),
            C::NotValidForName | C::NotValidForNameContext { .. } => cert(
                format!("not valid for the name {host} ({c})"),
                "connect with a name the certificate lists",
            ),
            C::Expired | C::ExpiredContext { .. } => cert(
                format!("expired ({c})"),
                "the server's certificate must be renewed",
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                cert(format!("not valid yet ({c})"), "check this machine's clock")
            }
            // webpki refuses a self-signed certificate made with the
            // default CA:TRUE (e.g. a bare `openssl req -x509`) as the server's own.
            other if format!("{other:?}").contains("CaUsedAsEndEntity") => cert(
                "it is a CA certificate (basicConstraints CA:TRUE) used as the server's own".into(),
                "make the server's certificate with -addext basicConstraints=critical,CA:FALSE, or sign it with a separate CA (README, \"On a network\")",
            ),
            other => cert(other.to_string(), private_ca),
        },
        other => format!("TLS handshake with {host} failed: {other} (is it a wss:// server?)"),
    }
}

/// Parse `--max-frame`'s size ([`crate::size::parse`]) and keep it within
/// [`MAX_FRAME_RANGE`].
pub fn parse_byte_size(s: &str) -> Result<usize, InvalidValue> {
    crate::size::parse_within(s, MAX_FRAME_RANGE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_are_bounded() {
        assert_eq!(parse_byte_size("4MiB"), Ok(4 << 20));
        assert_eq!(parse_byte_size("512 KiB"), Ok(512 << 10));
        assert_eq!(parse_byte_size("65536"), Ok(65536));
        assert_eq!(parse_byte_size("1.5m"), Ok(3 << 19));
        assert!(parse_byte_size("1").unwrap_err().contains("outside"));
        assert!(parse_byte_size("1GiB").unwrap_err().contains("unit"));
        assert!(parse_byte_size("lots").is_err());
        assert!(parse_byte_size("1e400").is_err());
    }

    #[test]
    fn tokens_are_checked_and_never_shown() {
        let t = Token::new("abc.def-ghi", TokenSource::Env).unwrap();
        assert!(!format!("{t:?}").contains("abc"));
        assert!(
            !format!(
                "{:?}",
                ConnectOptions {
                    token: Some(t.clone()),
                    ..Default::default()
                }
            )
            .contains("abc")
        );
        assert!(Token::new("", TokenSource::Env).is_err());
        let e = Token::new("has space", TokenSource::Env).unwrap_err();
        assert!(!e.contains("has space"), "{e}");
        let req = request("ws://h:1/ws", Some(&t)).unwrap();
        let h = req.headers().get(AUTHORIZATION).unwrap();
        assert!(h.is_sensitive());
        assert_eq!(h.to_str().unwrap(), "Bearer abc.def-ghi");
        let v: serde_json::Value = serde_json::from_str(&t.first_frame()).unwrap();
        assert_eq!(v, serde_json::json!({"token": "abc.def-ghi"}));
    }

    #[test]
    fn token_file_errors_name_the_file_not_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tok");
        std::fs::write(&p, "s3cret with space\n").unwrap();
        let e = Token::load(&TokenSource::File(p.clone()))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(!e.contains("s3cret"), "{e}");
        std::fs::write(&p, "  s3cret\n").unwrap();
        let t = Token::load(&TokenSource::File(p.clone())).unwrap();
        assert_eq!(&*t.value, "s3cret");
        let missing = dir.path().join("nope");
        let e = Token::load(&TokenSource::File(missing))
            .unwrap_err()
            .to_string();
        assert!(e.contains("nope") && e.contains("cannot read"), "{e}");
    }

    #[test]
    fn ca_file_problems_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        std::fs::write(&p, "not a certificate\n").unwrap();
        let e = tls_config(Some(&p)).unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("no certificate"), "{e}");
        let e = tls_config(Some(&dir.path().join("missing.pem")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("missing.pem") && e.contains("cannot read"),
            "{e}"
        );
    }

    #[test]
    fn refusals_say_how_to_fix_them() {
        let resp = |code: u16| {
            tungstenite::Error::Http(Box::new(
                tungstenite::http::Response::builder()
                    .status(code)
                    .body(None)
                    .unwrap(),
            ))
        };
        let m = fatal_connect_error(&resp(401), "ws://h:1", None).unwrap();
        assert!(m.contains(TOKEN_FIX), "{m}");
        let t = Token::new("x", TokenSource::Env).unwrap();
        let m = fatal_connect_error(&resp(401), "ws://h:1", Some(&t)).unwrap();
        assert!(
            m.contains("refused the token from env SKILLMON_TOKEN"),
            "{m}"
        );
        assert!(fatal_connect_error(&resp(403), "ws://h:1", None).is_some());
        assert!(fatal_connect_error(&resp(503), "ws://h:1", None).is_none());
        assert_eq!(host_of("wss://example.org:8765/ws"), "example.org");
        assert!(is_loopback("ws://127.0.0.1:8765"));
        assert!(is_loopback("ws://[::1]:8765/ws"));
        assert!(is_loopback("ws://LOCALHOST:1"));
        assert!(!is_loopback("ws://10.0.0.5:8765"));
        assert!(!is_loopback("ws://example.org"));
    }
}
