//! A session's WebSocket handshake: the subprotocol negotiation that
//! decides its frame order ([`Mode`], `docs/PROTOCOL.md` § Negotiation).
//! Owns nothing past the upgrade; must not send a frame.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::deflate::{Agreed, Compression};
use crate::protocol::{SUBPROTOCOL, offers_subprotocol};

/// Which frame order a client gets, decided once at the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Mode {
    /// No `skillmon.v1` offered: session-buddy's order. After `connected`
    /// the first frame is the reply to the client's first request, or the
    /// first tick's `metrics_update` when it asks nothing.
    Compat,
    /// `skillmon.v1` offered and echoed: the first picture right after
    /// `connected`.
    Ext,
}

impl Mode {
    /// `compat` or `ext`, as the log says it.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What the handshake settled for a session.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Agreement {
    pub(crate) mode: Mode,
    /// permessage-deflate, when the client offered it (and `--compression`
    /// is `deflate`).
    pub(crate) deflate: Option<Agreed>,
}

/// Run the server side of the WebSocket handshake on `io`, echoing
/// [`SUBPROTOCOL`] when (and only when) the client offers it. A client
/// offering only other subprotocols gets none echoed and is compat. With
/// `compression` on, the first permessage-deflate offer the server can
/// honour is accepted (`crate::deflate::negotiate`); others are declined.
pub(crate) async fn handshake<S>(
    io: S,
    config: WebSocketConfig,
    compression: Compression,
) -> Result<(WebSocketStream<S>, Agreement), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut mode = Mode::Compat;
    let mut deflate = None;
    // The callback type is tungstenite's; its error type is not ours to shrink.
    #[allow(clippy::result_large_err)]
    let negotiate = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let offers = req
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok());
        if mode_for(offers) == Mode::Ext {
            resp.headers_mut().insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(SUBPROTOCOL),
            );
            mode = Mode::Ext;
        }
        if compression == Compression::Deflate {
            let offers = req
                .headers()
                .get_all("Sec-WebSocket-Extensions")
                .iter()
                .filter_map(|v| v.to_str().ok());
            if let Some(agreed) = crate::deflate::negotiate(offers) {
                if let Ok(value) = HeaderValue::from_str(&agreed.response()) {
                    resp.headers_mut().insert("Sec-WebSocket-Extensions", value);
                    deflate = Some(agreed);
                }
            }
        }
        Ok(resp)
    };
    let ws = tokio_tungstenite::accept_hdr_async_with_config(io, negotiate, Some(config)).await?;
    Ok((ws, Agreement { mode, deflate }))
}

/// The frame order for a client whose `Sec-WebSocket-Protocol` headers
/// carry `offers`: ext when any of them offers [`SUBPROTOCOL`].
fn mode_for<'a>(mut offers: impl Iterator<Item = &'a str>) -> Mode {
    if offers.any(offers_subprotocol) {
        Mode::Ext
    } else {
        Mode::Compat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_offer_of_the_subprotocol_makes_a_session_ext() {
        assert_eq!(mode_for(std::iter::empty()), Mode::Compat);
        assert_eq!(mode_for(["chat, superchat"].into_iter()), Mode::Compat);
        assert_eq!(mode_for(["chat", SUBPROTOCOL].into_iter()), Mode::Ext);
        assert_eq!(
            mode_for([format!("chat, {SUBPROTOCOL}").as_str()].into_iter()),
            Mode::Ext
        );
        assert_eq!(Mode::Ext.as_str(), "ext");
        assert_eq!(Mode::Compat.as_str(), "compat");
    }
}
