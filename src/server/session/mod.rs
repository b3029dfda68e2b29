//! One client connection: its handshake's subprotocol negotiation
//! (`handshake`) and the session after it: this module's loop and its
//! first-frame authentication, what it does with each client message
//! (`messages`), and its writes (`send`).
//!
//! Owns that client's subscription, its `seq` counter, its rate limit and
//! its frame order (compat or ext, `docs/PROTOCOL.md` § Negotiation). It
//! waits on two things at once: its group's newest frame (the channel
//! closes when the server stops, `Hub::close`) and the client's next
//! message; it never touches another session, and the hub never waits for
//! it. A client is closed with 1013 when it is more than `--max-lag`
//! bytes behind before an update (the kernel's queue counted, [`lag`]) or
//! cannot take a frame within the write timeout, so a stuck peer costs at
//! most `--max-lag` and one frame of memory. A frame is never cut by
//! another: a write that started is finished (within the close timeout)
//! before a close frame goes out, or the connection is dropped without one
//! (counted as dropped, not as a 1013 it never got).

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument as _;

mod handshake;
mod messages;
mod send;

pub(crate) use handshake::{Agreement, Mode, handshake};

use super::Shared;
use super::hub::Frame;
use super::lag::Lag;
use super::refusals::Cause;
use crate::deflate::Agreed;
use crate::protocol::{Connected, PROTOCOL_VERSION, ServerMessage, Subscription, now_timestamp};

/// How long a close frame may take to go out.
const CLOSE_TIMEOUT: Duration = Duration::from_millis(500);

/// What the loop does after a client's message.
enum Next {
    Continue,
    /// Switch to this subscription's group.
    Join(Subscription),
    /// The session closed the connection.
    Stop,
}

/// How a write that did not complete at once ended.
enum Wait {
    Done(Result<(), ()>),
    /// The write timeout passed.
    Late,
    /// The server is stopping.
    Stopping,
}

/// Why a session ended early.
enum End {
    /// The peer is gone or the socket failed (or a frame could not be
    /// finished); nothing more to send.
    Gone,
    /// The peer did not take a frame within the write timeout; `cut`: part
    /// of that frame went out, so no close frame may follow. The close
    /// frame gets until `deadline`.
    Slow { cut: bool, deadline: Instant },
    /// The server is stopping and the write that was blocked finished:
    /// close with 1001 by `deadline`.
    Shutdown { deadline: Instant },
    /// Before an update, the client was `behind` bytes behind, more than
    /// `max` (`--max-lag`); nothing of a frame is out unfinished.
    Lagging { behind: u64, max: u64 },
}

struct Session<S> {
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    mode: Mode,
    /// permessage-deflate, when agreed at the handshake.
    deflate: Option<Agreed>,
    /// The id of the update this client got last as a compressed message
    /// at the fixed `seq` width, with no compressed message since (0:
    /// none): the client's inflater window then ends with that update,
    /// and it can take the group's next frame compressed against it
    /// (`crate::deflate::compress`).
    in_step: u64,
    /// A compat session gets a picture at once only right after a
    /// `subscription_confirmed` (otherwise at the next tick); cleared by
    /// `unsubscribe`, which has no reply.
    confirmed_once: bool,
    /// What the client is subscribed to now (the default of `history`).
    subscription: Subscription,
    seq: u64,
    last_tick: Option<u64>,
    rate: messages::RateLimit,
    last_rate_error: Option<Instant>,
    /// Bytes out and how many the client has not taken (`--max-lag`).
    lag: Lag,
    /// The session's log span (its id and peer). Entered around what may
    /// log (a client's message, a close), not around every tick's write:
    /// entering it on each poll showed up in the fan-out's CPU profile
    /// (`docs/BENCHMARKS.md`).
    /// (tungstenite's own debug lines while reading, such as "Received
    /// close frame", come without it.)
    span: tracing::Span,
}

/// Where a session stands with authentication when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// Authentication is off (`connected.authenticated: false`).
    Off,
    /// The upgrade carried a valid Bearer token.
    Done,
    /// session-buddy's first frame `{"token": ...}` must come before anything
    /// is sent; on failure, close 4001 "Authentication failed".
    FirstFrame,
}

/// Serve one upgraded connection until it closes or the server stops.
pub(crate) async fn run<S>(
    ws: WebSocketStream<S>,
    shared: Arc<Shared>,
    session_id: String,
    agreement: Agreement,
    auth: Auth,
    peer: std::net::SocketAddr,
    span: tracing::Span,
) where
    S: AsyncRead + AsyncWrite + Unpin + AsRawFd,
{
    let mut s = Session {
        ws,
        shared,
        mode: agreement.mode,
        deflate: agreement.deflate,
        in_step: 0,
        confirmed_once: false,
        subscription: Subscription::All,
        seq: 0,
        last_tick: None,
        rate: messages::RateLimit::new(Instant::now()),
        last_rate_error: None,
        lag: Lag::default(),
        span,
    };
    let authenticated = match auth {
        Auth::Off => false,
        Auth::Done => true,
        Auth::FirstFrame => {
            let Some(verifier) = s.shared.verifier.as_ref() else {
                return;
            };
            let timeout = s.shared.config.net.auth.first_frame_timeout;
            let checked = tokio::select! {
                () = s.shared.shutdown.cancelled() => return,
                // Boxed: its state is not kept in every session's future.
                r = Box::pin(super::auth::first_frame(&mut s.ws, verifier, timeout).instrument(s.span.clone())) => r,
            };
            match checked {
                Ok(who) => {
                    s.span.in_scope(
                        || tracing::debug!(user = ?who.user, "authenticated by first frame"),
                    );
                    true
                }
                Err(failure) => {
                    s.shared.stats.auth_failed(failure);
                    // Summarized with the other refusals: a peer sending bad
                    // first frames is one line per 10 s, not one per socket.
                    s.shared.refusals.refused(Cause::Token, Some(peer), || {
                        format!("first frame: {failure}")
                    });
                    s.close(
                        CloseCode::from(super::auth::CLOSE_AUTH_FAILED),
                        super::auth::CLOSE_AUTH_FAILED_REASON,
                    )
                    .await;
                    return;
                }
            }
        }
    };
    match s.serve(session_id, authenticated).await {
        Ok(()) | Err(End::Gone) => {}
        Err(End::Shutdown { deadline }) => {
            s.close_by(CloseCode::Away, "server shutting down", deadline)
                .await;
        }
        Err(End::Slow { cut, deadline }) => {
            s.shared.refusals.refused(Cause::Slow, Some(peer), || {
                format!("no frame taken within the write timeout (cut mid-frame: {cut})")
            });
            if cut {
                // Half a frame is out: a close frame now would land inside
                // it. The connection is dropped without one, and counted
                // so: the client never gets a 1013.
                s.shared.stats.slow_closed(false);
            } else {
                s.close_by(
                    CloseCode::Again,
                    "too slow: frames not read within the write timeout",
                    deadline,
                )
                .await;
            }
        }
        Err(End::Lagging { behind, max }) => {
            s.shared.refusals.refused(Cause::Slow, Some(peer), || {
                format!("{behind} bytes unread, over --max-lag {max}")
            });
            let reason = format!(
                "too slow: more than {} unread (--max-lag)",
                crate::size::human(usize::try_from(max).unwrap_or(usize::MAX))
            );
            s.close(CloseCode::Again, &reason).await;
        }
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + AsRawFd,
{
    async fn serve(&mut self, session_id: String, authenticated: bool) -> Result<(), End> {
        let hello = ServerMessage::Connected(Connected {
            message: "Connected to skillmon real-time skill metrics".into(),
            authenticated,
            timestamp: Some(now_timestamp()),
            server: Some(crate::SERVER_NAME.into()),
            protocol: Some(PROTOCOL_VERSION),
            interval_ms: Some(self.shared.config.interval.as_millis() as u64),
            session_id: Some(session_id),
        });
        // Join the hub before `connected` goes out, so a tick that follows
        // the client seeing `connected` always reaches it.
        let mut rx = self.join(&Subscription::All);
        // Compressed for a deflate client: nothing is in its window yet.
        self.send_large(&hello.encode()).await?;
        // Shutdown reaches a session through its group's channel: the hub
        // drops every sender when the server stops (`Hub::close`), so the
        // loop waits on two things, as the bare fan-out does, and no poll
        // takes the shutdown token's lock.
        loop {
            tokio::select! {
                biased;
                changed = rx.changed() => {
                    if changed.is_err() {
                        // The hub is closed: the server is stopping.
                        self.close(CloseCode::Away, "server shutting down").await;
                        return Ok(());
                    }
                    let frame = rx.borrow_and_update().clone();
                    self.send_update(&frame).await?;
                }
                msg = self.ws.next() => {
                    let Some(msg) = msg else { return Ok(()) };
                    let span = self.span.clone();
                    match self.on_message(msg).instrument(span).await? {
                        Next::Continue => {}
                        Next::Join(sub) => {
                            rx = self.join(&sub);
                            self.subscription = sub;
                        }
                        Next::Stop => return Ok(()),
                    }
                }
            }
        }
    }

    /// Join `sub`'s hub group. An ext session, or a compat one that has had
    /// a `subscription_confirmed`, gets the group's latest frame at once;
    /// a compat session before that waits for the next tick, so nothing
    /// comes between `connected` and the reply to its first request.
    fn join(&self, sub: &Subscription) -> tokio::sync::watch::Receiver<Frame> {
        if self.mode == Mode::Ext || self.confirmed_once {
            self.shared.hub.subscribe(sub)
        } else {
            self.shared.hub.subscribe_quiet(sub)
        }
    }
}
