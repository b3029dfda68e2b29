//! The plain-HTTP side of the WebSocket port: reads the request head once,
//! routes `GET /healthz`, `GET /readyz` and `GET /metrics` (ext), refuses other plain
//! requests with `426 Upgrade Required` (compat), answers malformed upgrade
//! requests with a status that names the problem, and hands real upgrades
//! (with the bytes already read) to tungstenite.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Longest request head accepted.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// What the request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// A well-formed WebSocket upgrade.
    Upgrade,
    Health,
    /// `/readyz`: 200 only when the database was read recently.
    Ready,
    Metrics,
    /// Any other plain request: 426.
    NotWebSocket,
    /// An upgrade request with a problem; answer with this response.
    Reject(Response),
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: &'static str,
    pub content_type: &'static str,
    pub extra_headers: Vec<(&'static str, String)>,
    pub body: String,
}

impl Response {
    pub fn text(status: u16, reason: &'static str, body: impl Into<String>) -> Self {
        Self {
            status,
            reason,
            content_type: "text/plain; charset=utf-8",
            extra_headers: Vec::new(),
            body: body.into(),
        }
    }

    #[must_use]
    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.extra_headers.push((name, value.into()));
        self
    }

    pub fn to_bytes(&self, head_only: bool) -> Vec<u8> {
        let mut s = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
            self.status,
            self.reason,
            self.content_type,
            self.body.len()
        );
        for (k, v) in &self.extra_headers {
            s.push_str(k);
            s.push_str(": ");
            s.push_str(v);
            s.push_str("\r\n");
        }
        s.push_str("\r\n");
        if !head_only {
            s.push_str(&self.body);
        }
        s.into_bytes()
    }
}

/// The 426 every plain request to the WebSocket endpoint gets.
pub fn upgrade_required() -> Response {
    Response::text(
        426,
        "Upgrade Required",
        "This is the skillmon WebSocket endpoint for live skill metrics.\n\
         Connect with a WebSocket client, e.g. `skillmon watch ws://HOST:PORT/ws`.\n\
         Plain HTTP: GET /healthz (liveness, JSON), GET /readyz (readiness), GET /metrics (Prometheus).\n",
    )
    .with_header("Upgrade", "websocket")
    .with_header("Sec-WebSocket-Version", "13")
}

/// Read the request head (up to the blank line) into `buf`. `Ok(None)` when
/// the peer closed first. Anything read past the head stays in `buf` too.
pub async fn read_head<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<usize>> {
    loop {
        if let Some(pos) = find_head_end(buf) {
            return Ok(Some(pos));
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "request head too large",
            ));
        }
        let mut chunk = [0u8; 1024];
        let n = rd.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Decide what a request head asks for.
pub fn route(head: &[u8]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => {
            return Route::Reject(Response::text(
                400,
                "Bad Request",
                "incomplete request head\n",
            ));
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Route::Reject(Response::text(
                431,
                "Request Header Fields Too Large",
                format!("more than {MAX_HEADERS} headers\n"),
            ));
        }
        Err(e) => {
            return Route::Reject(Response::text(
                400,
                "Bad Request",
                format!("malformed HTTP request: {e}\n"),
            ));
        }
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let method = req.method.unwrap_or("");
    let path = req.path.unwrap_or("/");
    let path_only = path.split('?').next().unwrap_or("/");
    let wants_ws = header("upgrade").is_some_and(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("websocket"))
    });
    if wants_ws {
        if method != "GET" {
            return Route::Reject(
                Response::text(
                    405,
                    "Method Not Allowed",
                    "a WebSocket upgrade must use GET\n",
                )
                .with_header("Allow", "GET"),
            );
        }
        if req.version != Some(1) {
            // tungstenite would drop an HTTP/1.0 upgrade without a word.
            return Route::Reject(Response::text(
                400,
                "Bad Request",
                "a WebSocket upgrade needs HTTP/1.1\n",
            ));
        }
        if header("sec-websocket-key").is_none_or(|k| k.trim().is_empty()) {
            return Route::Reject(Response::text(
                400,
                "Bad Request",
                "WebSocket upgrade without a Sec-WebSocket-Key header\n",
            ));
        }
        if header("sec-websocket-version")
            .map(|v| v.trim().to_owned())
            .as_deref()
            != Some("13")
        {
            return Route::Reject(
                Response::text(
                    426,
                    "Upgrade Required",
                    "unsupported Sec-WebSocket-Version; this server speaks 13\n",
                )
                .with_header("Sec-WebSocket-Version", "13"),
            );
        }
        let conn_upgrade = header("connection").is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
        if !conn_upgrade {
            return Route::Reject(Response::text(
                400,
                "Bad Request",
                "WebSocket upgrade without \"Connection: Upgrade\"\n",
            ));
        }
        return Route::Upgrade;
    }
    match (method, path_only) {
        ("GET" | "HEAD", "/healthz" | "/health") => Route::Health,
        ("GET" | "HEAD", "/readyz") => Route::Ready,
        ("GET" | "HEAD", "/metrics") => Route::Metrics,
        _ => Route::NotWebSocket,
    }
}

/// The headers the access checks read, from a request head already routed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// The raw `Authorization` header (never logged).
    pub authorization: Option<String>,
    pub origin: Option<String>,
    /// Every `Host` header sent (one, in a valid HTTP/1.1 request).
    pub hosts: Vec<String>,
    /// The request is HTTP/1.1 (where `Host` is required).
    pub http11: bool,
    /// The head parsed (else the route already answers 400).
    pub parsed: bool,
    /// The URL carries a `token` query parameter.
    pub token_in_query: bool,
}

impl RequestInfo {
    /// The (first) `Host` header.
    pub fn host(&self) -> Option<&str> {
        self.hosts.first().map(String::as_str)
    }
}

/// Read the headers [`RequestInfo`] names (the head parsed again: cheap,
/// once per connection).
pub fn request_info(head: &[u8]) -> RequestInfo {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if req.parse(head).is_err() {
        return RequestInfo::default();
    }
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
    };
    let token_in_query = req
        .path
        .and_then(|p| p.split_once('?'))
        .is_some_and(|(_, q)| {
            q.split('&').any(|kv| {
                kv.split('=')
                    .next()
                    .is_some_and(|k| k.eq_ignore_ascii_case("token"))
            })
        });
    RequestInfo {
        authorization: header("authorization"),
        origin: header("origin"),
        hosts: req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| String::from_utf8_lossy(h.value).into_owned())
            .collect(),
        http11: req.version == Some(1),
        parsed: true,
        token_in_query,
    }
}

/// 401 with `WWW-Authenticate: Bearer` (RFC 6750), before any upgrade.
pub fn unauthorized(why: &str) -> Response {
    Response::text(
        401,
        "Unauthorized",
        format!(
            "{why}; send the token as an \"Authorization: Bearer <token>\" header \
             (or, for WebSockets, as the first frame {{\"token\": \"...\"}})\n"
        ),
    )
    .with_header("WWW-Authenticate", "Bearer realm=\"skillmon\"")
}

/// Whether the request was a HEAD (respond without a body).
pub fn is_head(head: &[u8]) -> bool {
    head.starts_with(b"HEAD ")
}

/// Write a response and close the write side, bounded in time.
pub async fn respond<W: AsyncWrite + Unpin>(w: &mut W, resp: &Response, head_only: bool) {
    let bytes = resp.to_bytes(head_only);
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        w.write_all(&bytes).await?;
        w.shutdown().await
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> Route {
        route(s.replace('\n', "\r\n").as_bytes())
    }

    #[test]
    fn routes() {
        let ws = "GET /ws HTTP/1.1\nHost: x\nUpgrade: websocket\nConnection: Upgrade\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\nSec-WebSocket-Version: 13\n\n";
        assert_eq!(req(ws), Route::Upgrade);
        assert_eq!(
            req(&ws.replace("/ws", "/anything")),
            Route::Upgrade,
            "any path (compat)"
        );
        assert_eq!(req("GET /healthz HTTP/1.1\nHost: x\n\n"), Route::Health);
        assert_eq!(req("GET /metrics HTTP/1.1\n\n"), Route::Metrics);
        assert_eq!(req("GET / HTTP/1.1\nHost: x\n\n"), Route::NotWebSocket);
        assert_eq!(req("POST /metrics HTTP/1.1\n\n"), Route::NotWebSocket);
        let Route::Reject(r) = req(&ws.replace("Version: 13", "Version: 8")) else {
            panic!()
        };
        assert_eq!(r.status, 426);
        let Route::Reject(r) = req(&ws.replace("GET", "POST")) else {
            panic!()
        };
        assert_eq!(r.status, 405);
        let Route::Reject(r) =
            req(&ws.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\n", ""))
        else {
            panic!()
        };
        assert_eq!(r.status, 400);
        let Route::Reject(r) = req(&ws.replace("HTTP/1.1", "HTTP/1.0")) else {
            panic!()
        };
        assert_eq!(r.status, 400);
        let Route::Reject(r) = req("\x01\x02 garbage\n\n") else {
            panic!()
        };
        assert_eq!(r.status, 400);
    }

    #[test]
    fn response_bytes() {
        let r = upgrade_required().to_bytes(false);
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(s.contains("Upgrade: websocket\r\n"));
        assert!(s.contains("\r\n\r\nThis is the skillmon"));
    }
}
