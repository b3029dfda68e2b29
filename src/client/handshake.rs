//! The WebSocket upgrade of `watch`, written and checked here so that the
//! `skillmon.v1` subprotocol can be offered (`docs/PROTOCOL.md`,
//! Negotiation) without paying for it against servers that decline it.
//!
//! tungstenite's client fails a handshake whose offer the server did not
//! echo (session-buddy echoes none), although RFC 6455 lets a server pick
//! no subprotocol. So the upgrade request (with its `Authorization` header,
//! when there is a token) is written over TCP, or over rustls for `wss://`,
//! and the response is checked here: status 101, `Sec-WebSocket-Accept`,
//! the echoed protocol if any. The socket is then handed to
//! tokio-tungstenite as an established client stream: one connection
//! whatever the server. Failures use tungstenite's error values, so
//! [`super::connect::fatal_connect_error`] classifies them as before.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError, UrlError};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::http::{Response, StatusCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error, error::TlsError};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::protocol::SUBPROTOCOL;

pub(super) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Largest upgrade response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Open `req`'s URL (TLS for `wss://` with `tls`), offer `skillmon.v1`,
/// and upgrade. Returns the stream and whether the server took the offer.
pub(super) async fn connect(
    req: Request,
    tls: Option<Arc<rustls::ClientConfig>>,
    config: WebSocketConfig,
) -> Result<(Ws, bool), Error> {
    let uri = req.uri().clone();
    // Schemes are case-insensitive (RFC 3986), and `watch` accepts `WS://`.
    let scheme = uri.scheme_str().map(str::to_ascii_lowercase);
    let secure = match scheme.as_deref() {
        Some("ws") => false,
        Some("wss") => true,
        _ => return Err(Error::Url(UrlError::UnsupportedUrlScheme)),
    };
    let host = uri
        .host()
        .ok_or(Error::Url(UrlError::NoHostName))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri.port_u16().unwrap_or(if secure { 443 } else { 80 });
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

    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    let mut stream = if secure {
        let tls = tls.ok_or(Error::Url(UrlError::TlsFeatureNotEnabled))?;
        let name = rustls::pki_types::ServerName::try_from(host)
            .map_err(|_| Error::Tls(TlsError::InvalidDnsName))?;
        let tls_stream = tokio_rustls::TlsConnector::from(tls)
            .connect(name, tcp)
            .await?;
        MaybeTlsStream::Rustls(tls_stream)
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    let (ext, rest) = upgrade(&mut stream, &head, &key).await?;
    let ws = WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await;
    Ok((ws, ext))
}

/// Write the request head and read and check the response head. Returns
/// whether `skillmon.v1` was taken and the bytes after the head (the
/// server's first frames).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &str,
    key: &str,
) -> Result<(bool, Vec<u8>), Error> {
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;

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
        // The same error tungstenite gives, so refusals are classified alike;
        // the part of the body already read rides along (the caller shows
        // its first line, sanitized: e.g. "this port speaks TLS").
        let body = buf.get(head_len..).map(|b| b[..b.len().min(512)].to_vec());
        let mut resp = Response::new(body.filter(|b| !b.is_empty()));
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
    Ok((ext, rest))
}
