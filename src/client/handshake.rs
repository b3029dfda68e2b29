//! Connecting with the `skillmon.v1` subprotocol offered (`docs/PROTOCOL.md`
//! § Negotiation), without paying for it against servers that decline it.
//!
//! tungstenite's client fails a handshake whose offer the server did not
//! echo (session-buddy echoes none), although RFC 6455 lets a server pick
//! no subprotocol. So for `ws://` the upgrade request is written and its
//! response checked here (status 101, `Sec-WebSocket-Accept`, the echoed
//! protocol if any), and the socket is handed to tokio-tungstenite as an
//! established client stream: one connection whatever the server. For
//! `wss://` (TLS set up by tokio-tungstenite) the offer goes through
//! tungstenite and a declined offer costs one reconnect, once per feed.
//! Owns no state beyond the caller's "still offer" flag; never retries on
//! its own otherwise.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError, UrlError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response, StatusCode};
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::{self, Error};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::SUBPROTOCOL;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest upgrade response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Connect to `url`, offering `skillmon.v1` while `offer_ext` holds.
/// Returns the stream and whether the server took the offer (ext).
pub async fn connect(url: &str, offer_ext: &mut bool) -> Result<(Ws, bool), Error> {
    if !*offer_ext {
        return Ok((tokio_tungstenite::connect_async(url).await?.0, false));
    }
    let mut req = url.into_client_request()?;
    if req.uri().scheme_str() == Some("ws") {
        return connect_plain_offering(req).await;
    }
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, _)) => Ok((ws, true)),
        Err(Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
            SubProtocolError::NoSubProtocol,
        ))) => {
            tracing::info!(
                "the server does not speak {SUBPROTOCOL} (session-buddy?); using the plain protocol"
            );
            *offer_ext = false;
            Ok((tokio_tungstenite::connect_async(url).await?.0, false))
        }
        Err(e) => Err(e),
    }
}

/// The `ws://` upgrade with the offer, written and checked here.
async fn connect_plain_offering(
    req: tungstenite::handshake::client::Request,
) -> Result<(Ws, bool), Error> {
    let uri = req.uri().clone();
    let host = uri
        .host()
        .ok_or(Error::Url(UrlError::NoHostName))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(80);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let key = req
        .headers()
        .get("Sec-WebSocket-Key")
        .and_then(|k| k.to_str().ok())
        .ok_or(Error::Protocol(ProtocolError::MissingSecWebSocketKey))?
        .to_owned();
    let mut head = format!("GET {path} HTTP/1.1\r\n");
    for (name, value) in req.headers() {
        let value = value.to_str().map_err(|_| {
            Error::Url(UrlError::UnableToConnect("header value is not text".into()))
        })?;
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n\r\n"));

    let mut stream = TcpStream::connect((host.as_str(), port)).await?;
    let _ = stream.set_nodelay(true);
    stream.write_all(head.as_bytes()).await?;

    // Read the response head; bytes after it (the server's first frames)
    // are handed to the WebSocket reader.
    let mut buf = Vec::with_capacity(1024);
    let (status, accept, protocol, head_len) = loop {
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(Error::Protocol(ProtocolError::HandshakeIncomplete));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let get = |name: &str| {
                    resp.headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                };
                break (
                    resp.code.unwrap_or(0),
                    get("Sec-WebSocket-Accept"),
                    get("Sec-WebSocket-Protocol"),
                    len,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_RESPONSE_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(Error::Protocol(ProtocolError::HandshakeIncomplete));
            }
            Err(e) => return Err(e.into()),
        }
    };
    if status != 101 {
        // The same error tungstenite gives, so refusals are classified alike.
        let mut resp = Response::new(None);
        *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
        return Err(Error::Http(Box::new(resp)));
    }
    if accept.as_deref() != Some(derive_accept_key(key.as_bytes()).as_str()) {
        return Err(Error::Protocol(
            ProtocolError::SecWebSocketAcceptKeyMismatch,
        ));
    }
    let ext = match protocol.as_deref() {
        None => false,
        Some(SUBPROTOCOL) => true,
        Some(_) => {
            return Err(Error::Protocol(
                ProtocolError::SecWebSocketSubProtocolError(SubProtocolError::InvalidSubProtocol),
            ));
        }
    };
    let rest = buf.split_off(head_len);
    let ws = WebSocketStream::from_partially_read(
        MaybeTlsStream::Plain(stream),
        rest,
        Role::Client,
        None,
    )
    .await;
    Ok((ws, ext))
}
