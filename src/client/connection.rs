//! One connection of the feed, from the upgrade to its end: the token as
//! the first frame, the subscription, pings and their round-trip times,
//! liveness (no pong in [`PONG_TIMEOUT`] or a write stuck for
//! [`SEND_TIMEOUT`] means dead), the 1009 close over `--max-frame`, and
//! what the connection achieved ([`Track`]) for the backoff. Reconnecting
//! is the supervisor's ([`super`]); this module never sleeps between
//! connections.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message, protocol::CloseFrame};

use super::handshake::Agreed;
use super::{
    CONFIRM_TIMEOUT, ConnectOptions, FeedCommand, FeedEvent, PING_INTERVAL, PONG_TIMEOUT,
    SEND_TIMEOUT, TrafficCounters, stable_after, subscribe_message,
};
use crate::protocol::{ClientMessage, ErrorCode, ServerMessage, Subscription};

pub(super) enum Ended {
    /// The consumer or the commander went away: stop.
    Stop,
    /// The connection ended with this code and reason.
    Closed(Option<u16>, String),
    /// We closed it for a reason retrying cannot fix (e.g. 1009).
    Fatal(Option<u16>, String),
}

/// What one connection agreed, what it achieved (for the backoff) and
/// where it counts what it received.
pub(super) struct Track {
    since: Instant,
    got_update: bool,
    interval: Duration,
    agreed: Agreed,
    traffic: Arc<TrafficCounters>,
}

impl Track {
    pub(super) fn new(agreed: Agreed, traffic: Arc<TrafficCounters>) -> Self {
        Track {
            since: Instant::now(),
            got_update: false,
            interval: Duration::from_secs(1),
            agreed,
            traffic,
        }
    }

    pub(super) fn stable(&self) -> bool {
        self.got_update && self.since.elapsed() >= stable_after(self.interval)
    }
}

/// Send one message, bounded by [`SEND_TIMEOUT`]: a write that cannot go
/// out (the server stopped reading, the write buffer is full) is an error.
async fn send_bounded<K>(sink: &mut K, msg: Message) -> Result<(), String>
where
    K: futures_util::Sink<Message, Error = tungstenite::Error> + Unpin,
{
    match tokio::time::timeout(SEND_TIMEOUT, sink.send(msg)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(tungstenite::Error::WriteBufferFull(_))) => {
            Err("the server stopped reading (write buffer full)".into())
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "the server stopped reading (nothing sent for {}s)",
            SEND_TIMEOUT.as_secs()
        )),
    }
}

pub(super) async fn run_connection<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    opts: &ConnectOptions,
    subscription: &mut Subscription,
    tx: &mpsc::Sender<FeedEvent>,
    cmd_rx: &mut mpsc::Receiver<FeedCommand>,
    track: &mut Track,
) -> Ended
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (ext, deflate) = (track.agreed.ext, track.agreed.deflate);
    let (mut sink, mut stream) = ws.split();
    // session-buddy's auth: the token is the first frame, before anything
    // else (skillmon serve also took it from the upgrade's header).
    if let Some(token) = &opts.token
        && let Err(e) = send_bounded(&mut sink, Message::text(token.first_frame())).await
    {
        return Ended::Closed(Some(1006), format!("cannot send the token: {e}"));
    }
    // Updates that arrive between a `subscribe` and its confirmation are for
    // the old subscription: drop them (for at most CONFIRM_TIMEOUT).
    let mut unconfirmed: u32 = 0;
    let mut subscribed_at = Instant::now();
    if *subscription != Subscription::All {
        let msg = subscribe_message(subscription);
        if let Err(e) = send_bounded(&mut sink, Message::text(msg)).await {
            return Ended::Closed(Some(1006), format!("cannot subscribe: {e}"));
        }
        unconfirmed += 1;
    }
    let mut ping_timer = tokio::time::interval(PING_INTERVAL);
    ping_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_ping_id: u64 = 1;
    let mut outstanding: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut seen_connected = false;
    loop {
        tokio::select! {
            frame = stream.next() => {
                let msg = match frame {
                    None => return Ended::Closed(Some(1006), "connection closed without a close frame".into()),
                    Some(Err(tungstenite::Error::Capacity(
                        tungstenite::error::CapacityError::MessageTooLong { size, max_size },
                    ))) => {
                        let close = CloseFrame {
                            code: tungstenite::protocol::frame::coding::CloseCode::Size,
                            reason: "message too big".into(),
                        };
                        let _ = send_bounded(&mut sink, Message::Close(Some(close))).await;
                        return Ended::Fatal(
                            Some(1009),
                            format!(
                                "the server sent a message of {}, over the {} limit; closed with 1009 (raise --max-frame if this server's messages are really that large)",
                                crate::size::human(size),
                                crate::size::human(max_size)
                            ),
                        );
                    }
                    Some(Err(e)) => return Ended::Closed(Some(1006), e.to_string()),
                    Some(Ok(m)) => m,
                };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Close(frame) => return closed_by_server(frame),
                    // Pings are answered by tungstenite (one pending pong at
                    // most); control frames alone never prove the server is
                    // alive: only a `pong` to our own pings does.
                    _ => continue,
                };
                track.traffic.message(text.len(), deflate);
                let at = Utc::now();
                let event = match ServerMessage::parse(text.as_str()) {
                    Err(e) => {
                        tracing::warn!("ignoring an unparsable frame from the server: {e}");
                        FeedEvent::Ignored { reason: e.to_string(), at }
                    }
                    Ok(ServerMessage::Connected(_)) if seen_connected => {
                        tracing::debug!("ignoring a second `connected` on one connection");
                        continue;
                    }
                    Ok(ServerMessage::Connected(info)) => {
                        seen_connected = true;
                        if let Some(ms) = info.interval_ms.filter(|ms| *ms > 0) {
                            track.interval = Duration::from_millis(ms);
                        }
                        FeedEvent::Connected { info, ext, at }
                    }
                    Ok(ServerMessage::MetricsUpdate(_))
                        if unconfirmed > 0 && subscribed_at.elapsed() < CONFIRM_TIMEOUT =>
                    {
                        tracing::debug!("dropping an update for the previous subscription");
                        continue;
                    }
                    Ok(ServerMessage::MetricsUpdate(mut update)) => {
                        track.got_update = true;
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
                        let id = p.id.as_ref().and_then(serde_json::Value::as_u64);
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
                    Ok(ServerMessage::History(history)) => FeedEvent::History {
                        history,
                        raw: text.clone(),
                        at,
                    },
                    // Only sent in reply to `get_metrics`, which watch never sends.
                    Ok(ServerMessage::MetricsResponse(_) | ServerMessage::Unknown) => continue,
                };
                if tx.send(event).await.is_err() {
                    let _ = send_bounded(&mut sink, Message::Close(Some(normal_close()))).await;
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
                if let Err(e) = send_bounded(&mut sink, Message::text(ping)).await {
                    return Ended::Closed(Some(1006), format!("cannot send: {e}"));
                }
                outstanding.push_back((id, Instant::now()));
                while outstanding.len() > 16 {
                    outstanding.pop_front();
                }
            }
            cmd = cmd_rx.recv() => match cmd {
                None => {
                    let _ = send_bounded(&mut sink, Message::Close(Some(normal_close()))).await;
                    return Ended::Stop;
                }
                Some(FeedCommand::Subscribe(s)) => {
                    *subscription = s;
                    let msg = subscribe_message(subscription);
                    if let Err(e) = send_bounded(&mut sink, Message::text(msg)).await {
                        return Ended::Closed(Some(1006), format!("cannot subscribe: {e}"));
                    }
                    unconfirmed += 1;
                    subscribed_at = Instant::now();
                }
                // History is an extension: a server that did not take
                // `skillmon.v1` (session-buddy) never gets the message.
                Some(FeedCommand::History { .. }) if !ext => {
                    tracing::debug!("not asking for history: the server does not offer it");
                }
                Some(FeedCommand::History { skills, window }) => {
                    let msg = ClientMessage::History { skills, window }.encode();
                    if let Err(e) = send_bounded(&mut sink, Message::text(msg)).await {
                        return Ended::Closed(Some(1006), format!("cannot ask for history: {e}"));
                    }
                }
            },
            () = tx.closed() => {
                let _ = send_bounded(&mut sink, Message::Close(Some(normal_close()))).await;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::STABLE_MIN;

    #[test]
    fn stable_means_data_and_time() {
        assert_eq!(stable_after(Duration::from_secs(1)), STABLE_MIN);
        assert_eq!(
            stable_after(Duration::from_secs(5)),
            Duration::from_secs(15)
        );
        let agreed = Agreed {
            ext: false,
            deflate: false,
        };
        let mut t = Track::new(agreed, Arc::default());
        t.interval = Duration::ZERO;
        t.since = Instant::now() - Duration::from_secs(11);
        assert!(!t.stable(), "no update yet");
        t.got_update = true;
        assert!(t.stable());
        t.interval = Duration::from_secs(5);
        assert!(!t.stable(), "3 intervals are 15 s");
    }
}
