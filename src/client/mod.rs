//! The `watch` client side of the protocol: the connection supervisor
//! ([`Feed`]) that connects, subscribes, pings, and reconnects with
//! [`backoff`], and reports everything as [`FeedEvent`]s over a bounded
//! channel. It reads the clock (event timestamps, round-trip times) so that
//! the dashboard state never has to. It never touches the terminal.

pub mod backoff;
pub mod handshake;

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message, protocol::CloseFrame};

use crate::protocol::{
    ClientMessage, Connected, ErrorCode, ErrorFrame, MetricsUpdate, ServerMessage, Subscription,
};
use backoff::Backoff;

/// How often the feed pings the server to measure the round-trip time.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A ping unanswered this long means the connection is dead.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a TCP + WebSocket handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long updates are dropped while waiting for `subscription_confirmed`.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Feed events buffered before the feed waits for the consumer.
pub const CHANNEL_CAPACITY: usize = 256;

/// What the feed reports, each stamped with the wall-clock time it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// Starting connection attempt `attempt` (1 = the first ever).
    Connecting { attempt: u32, at: DateTime<Utc> },
    /// The server's `connected` frame arrived.
    Connected { info: Connected, at: DateTime<Utc> },
    /// A `metrics_update`, parsed, plus the frame text as received.
    Update {
        update: MetricsUpdate,
        /// The frame's text as received: shared bytes, not a copy.
        raw: tungstenite::Utf8Bytes,
        at: DateTime<Utc>,
    },
    /// The server confirmed a subscription.
    Subscribed { at: DateTime<Utc> },
    /// A `pong`; `rtt` when it could be matched to a ping.
    Pong {
        rtt: Option<Duration>,
        at: DateTime<Utc>,
    },
    /// An `error` frame (skillmon only; the connection stays open).
    ServerError {
        error: ErrorFrame,
        at: DateTime<Utc>,
    },
    /// The connection ended or could not be made; the feed retries after `retry_in`.
    Disconnected {
        code: Option<u16>,
        reason: String,
        retry_in: Duration,
        at: DateTime<Utc>,
    },
    /// The server refused us for good (auth, policy, bad URL): no retry.
    Failed {
        code: Option<u16>,
        reason: String,
        at: DateTime<Utc>,
    },
}

impl FeedEvent {
    pub fn at(&self) -> DateTime<Utc> {
        match self {
            FeedEvent::Connecting { at, .. }
            | FeedEvent::Connected { at, .. }
            | FeedEvent::Update { at, .. }
            | FeedEvent::Subscribed { at }
            | FeedEvent::Pong { at, .. }
            | FeedEvent::ServerError { at, .. }
            | FeedEvent::Disconnected { at, .. }
            | FeedEvent::Failed { at, .. } => *at,
        }
    }
}

/// What the dashboard asks the feed to do.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedCommand {
    /// Replace the subscription (sent now, and after every reconnect).
    Subscribe(Subscription),
}

/// Should a close with this code be retried?
pub fn close_is_retryable(code: u16) -> bool {
    !matches!(code, 1008 | 1009 | 4001 | 4401 | 4403)
}

/// How long [`Feed::close`] waits for the close frame to be sent.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// The running feed: dropping it (its command sender) or the event
/// receiver closes the connection with 1000 and ends the task.
pub struct Feed {
    pub commands: mpsc::Sender<FeedCommand>,
    pub task: tokio::task::JoinHandle<()>,
}

impl Feed {
    /// Close the connection with 1000 and wait briefly for the close frame to
    /// go out (a runtime torn down right after a drop would never send it).
    pub async fn close(self, events: mpsc::Receiver<FeedEvent>) {
        drop(self.commands);
        drop(events);
        let _ = tokio::time::timeout(CLOSE_GRACE, self.task).await;
    }

    /// Start connecting to `url` with `subscription`; events arrive on the receiver.
    pub fn spawn(url: String, subscription: Subscription) -> (Feed, mpsc::Receiver<FeedEvent>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let task = tokio::spawn(supervise(url, subscription, tx, cmd_rx));
        (
            Feed {
                commands: cmd_tx,
                task,
            },
            rx,
        )
    }
}

enum Ended {
    /// The consumer or the commander went away: stop.
    Stop,
    /// The connection ended with this code and reason.
    Closed(Option<u16>, String),
}

async fn supervise(
    url: String,
    mut subscription: Subscription,
    tx: mpsc::Sender<FeedEvent>,
    mut cmd_rx: mpsc::Receiver<FeedCommand>,
) {
    let mut backoff = Backoff::default();
    let mut attempt: u32 = 0;
    // Offer `skillmon.v1` until a server declines it (session-buddy does).
    let mut offer_ext = true;
    loop {
        attempt += 1;
        if tx
            .send(FeedEvent::Connecting {
                attempt,
                at: Utc::now(),
            })
            .await
            .is_err()
        {
            return;
        }
        tracing::info!("connecting to {url} (attempt {attempt})");
        let connected = tokio::select! {
            r = tokio::time::timeout(CONNECT_TIMEOUT, handshake::connect(&url, &mut offer_ext)) => r,
            _ = tx.closed() => return,
        };
        let (code, reason) = match connected {
            Err(_) => (
                None,
                format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            ),
            Ok(Err(e)) => {
                if let Some(reason) = fatal_connect_error(&e) {
                    tracing::warn!("giving up on {url}: {reason}");
                    let _ = tx
                        .send(FeedEvent::Failed {
                            code: None,
                            reason,
                            at: Utc::now(),
                        })
                        .await;
                    return;
                }
                (None, describe_connect_error(&e))
            }
            Ok(Ok((ws, _ext))) => {
                match run_connection(ws, &mut subscription, &tx, &mut cmd_rx, &mut backoff).await {
                    Ended::Stop => return,
                    Ended::Closed(code, reason) => (code, reason),
                }
            }
        };
        if let Some(c) = code
            && !close_is_retryable(c)
        {
            let reason = if reason.is_empty() {
                crate::text::close_code_name(c)
                    .unwrap_or_default()
                    .to_string()
            } else {
                reason
            };
            tracing::warn!("server closed with {c} ({reason}); not retrying");
            let _ = tx
                .send(FeedEvent::Failed {
                    code: Some(c),
                    reason,
                    at: Utc::now(),
                })
                .await;
            return;
        }
        let delay = backoff.next_delay();
        tracing::info!(
            "disconnected ({}{}); retrying in {delay:?}",
            code.map(|c| format!("{c} ")).unwrap_or_default(),
            reason
        );
        if tx
            .send(FeedEvent::Disconnected {
                code,
                reason,
                retry_in: delay,
                at: Utc::now(),
            })
            .await
            .is_err()
        {
            return;
        }
        // Wait out the delay, still taking subscription changes.
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(until) => break,
                _ = tx.closed() => return,
                cmd = cmd_rx.recv() => match cmd {
                    Some(FeedCommand::Subscribe(s)) => subscription = s,
                    None => return,
                },
            }
        }
    }
}

/// Errors that retrying cannot fix: a bad URL, or the server refusing us.
fn fatal_connect_error(e: &tungstenite::Error) -> Option<String> {
    match e {
        tungstenite::Error::Url(u) => Some(format!("bad URL: {u}")),
        tungstenite::Error::Http(resp) => {
            let status = resp.status();
            if matches!(status.as_u16(), 400 | 401 | 403 | 404 | 426) {
                Some(format!(
                    "server refused the WebSocket upgrade: HTTP {status}"
                ))
            } else {
                None
            }
        }
        _ => None,
    }
}

fn describe_connect_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => io.to_string(),
        tungstenite::Error::Http(resp) => format!("HTTP {}", resp.status()),
        other => other.to_string(),
    }
}

async fn run_connection<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    subscription: &mut Subscription,
    tx: &mpsc::Sender<FeedEvent>,
    cmd_rx: &mut mpsc::Receiver<FeedCommand>,
    backoff: &mut Backoff,
) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = ws.split();
    // Updates that arrive between a `subscribe` and its confirmation are for
    // the old subscription: drop them (for at most CONFIRM_TIMEOUT).
    let mut unconfirmed: u32 = 0;
    let mut subscribed_at = Instant::now();
    if *subscription != Subscription::All {
        let msg = subscribe_message(subscription);
        if let Err(e) = sink.send(Message::text(msg)).await {
            return Ended::Closed(Some(1006), format!("cannot subscribe: {e}"));
        }
        unconfirmed += 1;
    }
    let mut ping_timer = tokio::time::interval(PING_INTERVAL);
    ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_ping_id: u64 = 1;
    let mut outstanding: VecDeque<(u64, Instant)> = VecDeque::new();
    loop {
        tokio::select! {
            frame = stream.next() => {
                let msg = match frame {
                    None => return Ended::Closed(Some(1006), "connection closed without a close frame".into()),
                    Some(Err(e)) => return Ended::Closed(Some(1006), e.to_string()),
                    Some(Ok(m)) => m,
                };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(frame) => return closed_by_server(frame),
                    _ => continue,
                };
                let at = Utc::now();
                let event = match ServerMessage::parse(text.as_str()) {
                    Err(e) => {
                        tracing::warn!("ignoring an unparsable frame from the server: {e}");
                        continue;
                    }
                    Ok(ServerMessage::Connected(info)) => {
                        backoff.reset();
                        FeedEvent::Connected { info, at }
                    }
                    Ok(ServerMessage::MetricsUpdate(_))
                        if unconfirmed > 0 && subscribed_at.elapsed() < CONFIRM_TIMEOUT =>
                    {
                        tracing::debug!("dropping an update for the previous subscription");
                        continue;
                    }
                    Ok(ServerMessage::MetricsUpdate(mut update)) => {
                        // session-buddy ignores `skills: [...]` and sends
                        // everything: every consumer gets only what was asked
                        // for (`raw` stays the frame as received).
                        update.data.retain_subscribed(subscription);
                        FeedEvent::Update {
                            update,
                            raw: text.clone(),
                            at,
                        }
                    }
                    Ok(ServerMessage::SubscriptionConfirmed(_)) => {
                        unconfirmed = unconfirmed.saturating_sub(1);
                        FeedEvent::Subscribed { at }
                    }
                    Ok(ServerMessage::Pong(p)) => {
                        let now = Instant::now();
                        let id = p.id.as_ref().and_then(|v| v.as_u64());
                        let sent = match id {
                            Some(id) => {
                                let pos = outstanding.iter().position(|(i, _)| *i == id);
                                pos.map(|p| {
                                    let sent = outstanding[p].1;
                                    outstanding.drain(..=p);
                                    sent
                                })
                            }
                            // session-buddy's bare pong answers the oldest ping.
                            None => outstanding.pop_front().map(|(_, t)| t),
                        };
                        FeedEvent::Pong { rtt: sent.map(|t| now - t), at }
                    }
                    Ok(ServerMessage::Error(error)) => {
                        if matches!(error.code, ErrorCode::BadRequest | ErrorCode::UnknownSkill) {
                            // A refused subscribe will never be confirmed.
                            unconfirmed = unconfirmed.saturating_sub(1);
                        }
                        tracing::warn!("server error frame: {:?} {}", error.code, error.message);
                        FeedEvent::ServerError { error, at }
                    }
                    // Only sent in reply to `get_metrics`, which watch never sends.
                    Ok(ServerMessage::MetricsResponse(_) | ServerMessage::Unknown) => continue,
                };
                if tx.send(event).await.is_err() {
                    let _ = sink.send(Message::Close(Some(normal_close()))).await;
                    return Ended::Stop;
                }
            }
            _ = ping_timer.tick() => {
                if let Some((_, sent)) = outstanding.front()
                    && sent.elapsed() > PONG_TIMEOUT
                {
                    return Ended::Closed(Some(1006), format!("no pong within {}s", PONG_TIMEOUT.as_secs()));
                }
                let id = next_ping_id;
                next_ping_id += 1;
                let ping = ClientMessage::Ping { id: Some(serde_json::Value::from(id)) }.encode();
                if let Err(e) = sink.send(Message::text(ping)).await {
                    return Ended::Closed(Some(1006), format!("cannot send: {e}"));
                }
                outstanding.push_back((id, Instant::now()));
                while outstanding.len() > 16 {
                    outstanding.pop_front();
                }
            }
            cmd = cmd_rx.recv() => match cmd {
                None => {
                    let _ = sink.send(Message::Close(Some(normal_close()))).await;
                    return Ended::Stop;
                }
                Some(FeedCommand::Subscribe(s)) => {
                    *subscription = s;
                    let msg = subscribe_message(subscription);
                    if let Err(e) = sink.send(Message::text(msg)).await {
                        return Ended::Closed(Some(1006), format!("cannot subscribe: {e}"));
                    }
                    unconfirmed += 1;
                    subscribed_at = Instant::now();
                }
            },
            _ = tx.closed() => {
                let _ = sink.send(Message::Close(Some(normal_close()))).await;
                return Ended::Stop;
            }
        }
    }
}

fn normal_close() -> CloseFrame {
    CloseFrame {
        code: tungstenite::protocol::frame::coding::CloseCode::Normal,
        reason: "bye".into(),
    }
}

fn closed_by_server(frame: Option<CloseFrame>) -> Ended {
    match frame {
        Some(f) => Ended::Closed(Some(u16::from(f.code)), f.reason.as_str().to_owned()),
        None => Ended::Closed(Some(1005), "closed without a code".into()),
    }
}

/// The subscribe frame for `s` (`skill: null` for all).
pub fn subscribe_message(s: &Subscription) -> String {
    ClientMessage::Subscribe {
        subscription: s.clone(),
        echo: serde_json::Value::Null,
    }
    .encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_subscriptions_are_refused() {
        assert!(Subscription::All.validate().is_ok());
        assert!(Subscription::from_names(["a", "b"]).validate().is_ok());
        let many = Subscription::from_names((0..65).map(|i| i.to_string()));
        assert!(many.validate().unwrap_err().contains("at most 64"));
        let long = Subscription::from_names(["x".repeat(300)]);
        assert!(long.validate().unwrap_err().contains("longer than 256"));
    }

    #[test]
    fn close_codes_are_classified() {
        for c in [1000, 1001, 1005, 1006, 1011, 1012, 1013] {
            assert!(close_is_retryable(c), "{c}");
        }
        for c in [1008, 4001, 4401] {
            assert!(!close_is_retryable(c), "{c}");
        }
    }

    #[test]
    fn subscribe_frames() {
        let v: serde_json::Value =
            serde_json::from_str(&subscribe_message(&Subscription::from_names(["a"]))).unwrap();
        assert_eq!(v, serde_json::json!({"type": "subscribe", "skill": "a"}));
        let v: serde_json::Value =
            serde_json::from_str(&subscribe_message(&Subscription::from_names(["b", "a"])))
                .unwrap();
        assert_eq!(v["skills"], serde_json::json!(["a", "b"]));
        let v: serde_json::Value =
            serde_json::from_str(&subscribe_message(&Subscription::All)).unwrap();
        assert!(v["skill"].is_null());
    }
}
