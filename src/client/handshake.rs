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
//!
//! With `--compression deflate` (the default) the request also offers
//! RFC 7692 permessage-deflate ([`crate::deflate::OFFER`]); when the
//! server accepts, the socket goes to tungstenite through
//! [`Inflating`], which inflates each compressed message (keeping its
//! window across messages unless the server said
//! `server_no_context_takeover`) under the same `--max-frame` bound and
//! counts the bytes on the wire.

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

use crate::deflate::inflate::{self, Inflating};
use crate::deflate::{self, Compression};
use crate::protocol::SUBPROTOCOL;

pub(crate) type Ws = WebSocketStream<Inflating<MaybeTlsStream<TcpStream>>>;

/// What the upgrade agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Agreed {
    /// The server took `skillmon.v1`.
    pub ext: bool,
    /// The server accepted permessage-deflate.
    pub deflate: bool,
}

/// A server's `Sec-WebSocket-Extensions` answer that RFC 7692 does not
/// allow for our offer (carried inside an I/O error so that
/// [`super::connect::fatal_connect_error`] can name the fix).
#[derive(Debug)]
pub(crate) struct BadExtensions {
    /// What is wrong with the answer (server text in it: sanitize).
    pub problem: String,
    /// We offered permessage-deflate (so not offering it is the fix).
    pub offered: bool,
}

impl std::fmt::Display for BadExtensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.problem)
    }
}

impl std::error::Error for BadExtensions {}

/// Largest upgrade response head accepted.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Open `req`'s URL (TLS for `wss://` with `tls`), offer `skillmon.v1`
/// (and permessage-deflate unless `compression` is off), and upgrade.
/// Messages, inflated or not, may be up to `max_frame` bytes.
pub(super) async fn connect(
    req: Request,
    tls: Option<Arc<rustls::ClientConfig>>,
    max_frame: usize,
    compression: Compression,
) -> Result<(Ws, Agreed), Error> {
    let (host, port, secure) = endpoint(&req)?;
    let tcp = TcpStream::connect((host.as_str(), port)).await?;
    let _ = tcp.set_nodelay(true);
    let stream = if secure {
        secure_stream(tcp, &host, tls).await?
    } else {
        MaybeTlsStream::Plain(tcp)
    };
    let offer = Offer {
        ext: true,
        compression,
    };
    over(stream, &req, offer, super::connect::ws_config(max_frame)).await
}

/// `req`'s host (brackets off), port and whether it is `wss://`.
pub(crate) fn endpoint(req: &Request) -> Result<(String, u16, bool), Error> {
    let uri = req.uri();
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
    Ok((host, port, secure))
}

/// TLS over `tcp` for `host` (`wss://`), with `tls`'s trust.
pub(crate) async fn secure_stream(
    tcp: TcpStream,
    host: &str,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<MaybeTlsStream<TcpStream>, Error> {
    let tls = tls.ok_or(Error::Url(UrlError::TlsFeatureNotEnabled))?;
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|_| Error::Tls(TlsError::InvalidDnsName))?;
    let tls_stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await?;
    Ok(MaybeTlsStream::Rustls(tls_stream))
}

/// What the upgrade request offers.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Offer {
    /// The `skillmon.v1` subprotocol.
    pub ext: bool,
    /// permessage-deflate, or not.
    pub compression: Compression,
}

/// The upgrade over an open stream (TCP, or TLS for `wss://`): `req`'s
/// headers plus what `offer` says, the response checked, the socket handed
/// to tungstenite with `config` (its message limit also bounds inflating).
pub(crate) async fn over(
    mut stream: MaybeTlsStream<TcpStream>,
    req: &Request,
    offer: Offer,
    config: WebSocketConfig,
) -> Result<(Ws, Agreed), Error> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
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
    if offer.compression == Compression::Deflate {
        head.push_str(&format!("Sec-WebSocket-Extensions: {}\r\n", deflate::OFFER));
    }
    if offer.ext {
        head.push_str(&format!("Sec-WebSocket-Protocol: {SUBPROTOCOL}\r\n"));
    }
    head.push_str("\r\n");
    let (ext, extensions, rest) = upgrade(&mut stream, &head, &key).await?;
    let takeover = deflate::accepted(extensions.iter().map(String::as_str))
        .and_then(|t| match (t, offer.compression) {
            (Some(_), Compression::Off) => {
                Err("the server answered with permessage-deflate, which was not offered".into())
            }
            (t, _) => Ok(t),
        })
        .map_err(|e| {
            Error::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                BadExtensions {
                    problem: e,
                    offered: offer.compression == Compression::Deflate,
                },
            ))
        })?;
    let mut io = Inflating::new(stream);
    let ws = match takeover {
        Some(takeover) => {
            // Frames that came with the response head go through the
            // inflater too, ahead of the socket.
            let max = config.max_message_size.unwrap_or(usize::MAX);
            io.enable(inflate::Role::Client, takeover, max);
            io.preload(&rest);
            WebSocketStream::from_raw_socket(io, Role::Client, Some(config)).await
        }
        None => WebSocketStream::from_partially_read(io, rest, Role::Client, Some(config)).await,
    };
    Ok((
        ws,
        Agreed {
            ext,
            deflate: takeover.is_some(),
        },
    ))
}

/// Write the request head and read and check the response head. Returns
/// whether `skillmon.v1` was taken, the `Sec-WebSocket-Extensions` values
/// and the bytes after the head (the server's first frames).
async fn upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &str,
    key: &str,
) -> Result<(bool, Vec<String>, Vec<u8>), Error> {
    stream.write_all(head.as_bytes()).await?;
    stream.flush().await?;

    let mut buf = Vec::with_capacity(1024);
    let (status, accept, protocol, extensions, head_len) = loop {
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
                    resp.headers
                        .iter()
                        .filter(|h| h.name.eq_ignore_ascii_case("Sec-WebSocket-Extensions"))
                        .map(|h| String::from_utf8_lossy(h.value).trim().to_owned())
                        .collect::<Vec<_>>(),
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
    Ok((ext, extensions, rest))
}
