//! What a session does with each client message: subscriptions,
//! `get_metrics`, `ping`, `history`, the rate limit (20 a second, bursts of
//! 40, `rate_limited` at most once a second) and the close codes for
//! frames it refuses (1009, 1007, 1002). Must not write a frame itself:
//! every reply goes through the session's `send_text`.

use std::time::Duration;

use futures_util::SinkExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{CLOSE_TIMEOUT, End, Next, Session};
use crate::protocol::{
    ClientError, ClientMessage, ErrorCode, MetricsResponse, Pong, ServerMessage, SkillMetrics,
    Subscription, SubscriptionConfirmed, now_timestamp,
};

/// Burst of client messages allowed before `rate_limited`.
const RATE_BURST: f64 = 40.0;
/// Sustained client messages per second.
const RATE_PER_SEC: f64 = 20.0;

/// A token bucket: [`RATE_BURST`] tokens, refilled at [`RATE_PER_SEC`].
#[derive(Debug)]
pub(super) struct RateLimit {
    tokens: f64,
    refilled: Instant,
}

impl RateLimit {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            tokens: RATE_BURST,
            refilled: now,
        }
    }

    /// Take a token for one message at `now`; false when there is none.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.refilled = now;
        self.tokens = (self.tokens + dt * RATE_PER_SEC).min(RATE_BURST);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + std::os::fd::AsRawFd,
{
    /// Handle one message (or read error) from the client.
    pub(super) async fn on_message(&mut self, msg: Result<Message, WsError>) -> Result<Next, End> {
        match msg {
            Ok(Message::Text(text)) => Ok(match self.on_text(&text).await? {
                Some(sub) => Next::Join(sub),
                None => Next::Continue,
            }),
            Ok(Message::Binary(_)) => {
                // Binary frames count against the rate limit like text
                // ones, or a flood of them would get one error frame each.
                if !self.over_rate_limit().await? {
                    self.send_error(ClientError {
                        code: ErrorCode::BadRequest,
                        message: "binary frames are not supported; send JSON text frames".into(),
                    })
                    .await?;
                }
                Ok(Next::Continue)
            }
            // tungstenite queued the close reply: send it (within the close
            // timeout) and end the session, so nothing follows it.
            Ok(Message::Close(_)) => {
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
                    let _ = self.ws.flush().await;
                    // tungstenite does not flush the socket after a close
                    // reply: a TLS stream would keep it.
                    tokio::io::AsyncWriteExt::flush(self.ws.get_mut()).await
                })
                .await;
                Ok(Next::Stop)
            }
            // Ping/pong frames are answered by tungstenite.
            Ok(_) => Ok(Next::Continue),
            Err(WsError::Capacity(e)) => {
                self.close(CloseCode::Size, &format!("message too big: {e}"))
                    .await;
                Ok(Next::Stop)
            }
            // tungstenite reports these without closing; RFC 6455 wants
            // 1007 / 1002, not a silent drop.
            Err(WsError::Utf8(_)) => {
                self.close(CloseCode::Invalid, "text frame is not valid UTF-8")
                    .await;
                Ok(Next::Stop)
            }
            Err(WsError::Protocol(e))
                if !matches!(e, ProtocolError::ResetWithoutClosingHandshake) =>
            {
                self.close(CloseCode::Protocol, &format!("protocol error: {e}"))
                    .await;
                Ok(Next::Stop)
            }
            Err(e) => {
                tracing::debug!("client read error: {e}");
                Err(End::Gone)
            }
        }
    }

    /// Handle one text message; returns a new subscription to switch to.
    pub(super) async fn on_text(&mut self, text: &str) -> Result<Option<Subscription>, End> {
        if self.over_rate_limit().await? {
            return Ok(None);
        }
        match ClientMessage::parse(text) {
            Ok(ClientMessage::Subscribe { subscription, echo }) => {
                tracing::debug!(skills = ?subscription.skills(), "subscribe");
                let confirm = ServerMessage::SubscriptionConfirmed(SubscriptionConfirmed::new(
                    echo,
                    &subscription,
                    now_timestamp(),
                ));
                self.send_text(&confirm.encode()).await?;
                self.confirmed_once = true;
                Ok(Some(subscription))
            }
            Ok(ClientMessage::GetMetrics { skill }) => {
                match self.shared.hub.skill(&skill) {
                    Some(stat) => {
                        let resp = ServerMessage::MetricsResponse(MetricsResponse {
                            data: SkillMetrics::from_stat(&stat),
                            timestamp: Some(now_timestamp()),
                        });
                        self.send_text(&resp.encode()).await?;
                    }
                    None => {
                        self.send_error(ClientError {
                            code: ErrorCode::UnknownSkill,
                            message: format!(
                                "Invalid skill name: {:?} has no invocations in skill_metrics; check the name",
                                skill.chars().take(64).collect::<String>()
                            ),
                        })
                        .await?;
                    }
                }
                Ok(None)
            }
            Ok(ClientMessage::Unsubscribe) => {
                // No reply (compat), so no picture at once either: a compat
                // client's next frame stays the reply to its next request.
                self.confirmed_once = false;
                Ok(Some(Subscription::All))
            }
            Ok(ClientMessage::Ping { id }) => {
                let pong = ServerMessage::Pong(Pong {
                    id: id.filter(|v| !v.is_null()),
                });
                self.send_text(&pong.encode()).await?;
                Ok(None)
            }
            Ok(ClientMessage::History { skills, window }) => {
                // (ext) Only ever sent in reply; shared by every session
                // asking the same in this tick.
                let skills =
                    skills.unwrap_or_else(|| self.shared.hub.visible_skills(&self.subscription));
                tracing::debug!(skills = skills.len(), %window, "history");
                let text = self.shared.hub.history(skills, window).await;
                self.send_large(&text).await?;
                Ok(None)
            }
            Ok(ClientMessage::Auth { .. }) => {
                // Authentication is off or already done (a Bearer header):
                // accept and ignore, as session-buddy does.
                tracing::debug!("token frame ignored: not expected at this point");
                Ok(None)
            }
            Err(e) => {
                self.send_error(e).await?;
                Ok(None)
            }
        }
    }

    /// Take a token for one client message; when there is none, the message
    /// is to be dropped (returns true) and the client hears `rate_limited`
    /// at most once a second.
    pub(super) async fn over_rate_limit(&mut self) -> Result<bool, End> {
        if self.rate.take(Instant::now()) {
            return Ok(false);
        }
        let now = Instant::now();
        if self
            .last_rate_error
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.last_rate_error = Some(now);
            self.send_error(ClientError {
                code: ErrorCode::RateLimited,
                message: format!(
                    "more than {RATE_PER_SEC} messages per second; messages are being dropped"
                ),
            })
            .await?;
        }
        Ok(true)
    }

    pub(super) async fn send_error(&mut self, e: ClientError) -> Result<(), End> {
        self.shared.stats.error_frame();
        tracing::debug!(code = ?e.code, "error frame: {}", e.message);
        self.send_text(&e.to_frame().encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_40_then_20_a_second() {
        let t0 = Instant::now();
        let mut r = RateLimit::new(t0);
        assert!((0..40).all(|_| r.take(t0)), "the burst");
        assert!(!r.take(t0), "then nothing at the same instant");
        // A second later, 20 more, not 21.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..25).filter(|_| r.take(t1)).count(), 20);
        // Never more than the burst, however long the pause.
        let t2 = t1 + Duration::from_secs(3600);
        assert_eq!((0..100).filter(|_| r.take(t2)).count(), 40);
    }
}
