//! The `watch` client side of the protocol: the connection supervisor
//! ([`Feed`]) that connects (token, TLS and limits in [`connect`]),
//! subscribes, pings, declares dead connections dead, and reconnects with
//! [`backoff`], and reports everything as [`FeedEvent`]s over a bounded
//! channel; [`FeedHandle`] is that feed as a consumer (the dashboard or a
//! headless printer) takes it: batches in which the newest update wins
//! ([`latest`]), its commands and the token a signal cancels. It reads the
//! clock (event timestamps, round-trip times) so that the dashboard state
//! never has to. It never touches the terminal nor installs signal handlers
//! (`watch` does, and cancels the token).

pub mod connect;
mod connection;
pub(crate) mod handshake;
pub(crate) mod latest;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::protocol::{
    ClientMessage, Connected, ErrorFrame, History, HistoryWindow, MetricsUpdate, Subscription,
};
pub use connect::{ConnectOptions, Token, TokenSource};
use connection::{Ended, Track, run_connection};
pub use latest::Batch;
use latest::Latest;

/// How often the feed pings the server to measure the round-trip time.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);
/// A ping unanswered this long means the connection is dead.
pub const PONG_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a TCP + WebSocket handshake may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A write (ping, subscribe, token) that cannot go out within this time
/// means the server stopped reading: the connection is dead.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection counts as stable (and resets the backoff) only once a
/// `metrics_update` arrived and it stayed up at least this long, or three
/// update intervals if that is longer.
pub const STABLE_MIN: Duration = Duration::from_secs(10);

/// How long a connection must stay up to reset the backoff.
pub fn stable_after(interval: Duration) -> Duration {
    STABLE_MIN.max(interval.saturating_mul(3))
}
/// How long updates are dropped while waiting for `subscription_confirmed`.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);
/// Feed events buffered before the feed waits for the consumer. Small:
/// [`latest`] drains it continuously, and each event may hold a whole
/// frame, so this times the maximum frame bounds the memory held here.
pub const CHANNEL_CAPACITY: usize = 8;

/// What the feed reports, each stamped with the wall-clock time it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedEvent {
    /// Starting connection attempt `attempt` (1 = the first ever).
    Connecting { attempt: u32, at: DateTime<Utc> },
    /// The server's `connected` frame arrived; `ext` = it took the
    /// `skillmon.v1` subprotocol (history and the other extensions).
    Connected {
        info: Connected,
        ext: bool,
        at: DateTime<Utc>,
    },
    /// A `metrics_update`, parsed, plus the frame text as received.
    Update {
        update: MetricsUpdate,
        /// The frame's text as received: shared bytes, not a copy.
        raw: tungstenite::Utf8Bytes,
        at: DateTime<Utc>,
    },
    /// (ext) A `history` frame, the reply to [`FeedCommand::History`],
    /// plus the frame text as received.
    History {
        history: History,
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
    /// A text frame that is not a protocol message (not JSON, not an
    /// object, no string `type`) was skipped; `reason` says why (raw server
    /// text may be in it: sanitize before printing).
    Ignored { reason: String, at: DateTime<Utc> },
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
            | FeedEvent::History { at, .. }
            | FeedEvent::Subscribed { at }
            | FeedEvent::Pong { at, .. }
            | FeedEvent::ServerError { at, .. }
            | FeedEvent::Disconnected { at, .. }
            | FeedEvent::Failed { at, .. }
            | FeedEvent::Ignored { at, .. } => *at,
        }
    }
}

/// What the feed received, over all its connections: the connection
/// panel's bytes line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Bytes of the messages received (after inflating).
    pub received: u64,
    /// Of those, the bytes that came over connections that agreed
    /// permessage-deflate...
    pub inflated: u64,
    /// ...and what those connections read from the socket (frame heads
    /// included): bytes on the wire.
    pub wire: u64,
    /// The current (or last) connection agreed permessage-deflate.
    pub deflate: bool,
}

impl Traffic {
    /// Bytes on the wire per byte received, over the compressed
    /// connections (`None` before any compressed message).
    pub fn ratio(&self) -> Option<f64> {
        (self.inflated > 0).then(|| self.wire as f64 / self.inflated as f64)
    }
}

/// The counters behind [`Traffic`], written by the feed's task and read
/// by the consumer's.
#[derive(Debug, Default)]
pub struct TrafficCounters {
    received: AtomicU64,
    inflated: AtomicU64,
    /// Handed to each compressed connection's reader, which adds to it.
    wire: Arc<AtomicU64>,
    deflate: AtomicBool,
}

impl TrafficCounters {
    pub fn snapshot(&self) -> Traffic {
        Traffic {
            received: self.received.load(Relaxed),
            inflated: self.inflated.load(Relaxed),
            wire: self.wire.load(Relaxed),
            deflate: self.deflate.load(Relaxed),
        }
    }

    /// A message of `len` bytes arrived, over a compressed connection or not.
    fn message(&self, len: usize, deflate: bool) {
        self.received.fetch_add(len as u64, Relaxed);
        if deflate {
            self.inflated.fetch_add(len as u64, Relaxed);
        }
    }
}

/// What the dashboard asks the feed to do.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedCommand {
    /// Replace the subscription (sent now, and after every reconnect).
    Subscribe(Subscription),
    /// (ext) Ask for a `history` (`skills: None` = the subscription's
    /// visible skills). Sent only when the server took `skillmon.v1`;
    /// dropped otherwise and while disconnected (ask again on `Connected`).
    History {
        skills: Option<Vec<String>>,
        window: HistoryWindow,
    },
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
    /// Bytes received, inflated and on the wire.
    pub traffic: Arc<TrafficCounters>,
}

impl Feed {
    /// Close the connection with 1000 and wait briefly for the close frame to
    /// go out (a runtime torn down right after a drop would never send it).
    pub async fn close(self, events: mpsc::Receiver<FeedEvent>) {
        drop(self.commands);
        drop(events);
        let _ = tokio::time::timeout(CLOSE_GRACE, self.task).await;
    }

    /// Start connecting to `url` with `subscription` (no token, no TLS,
    /// default limits); events arrive on the receiver.
    pub fn spawn(url: String, subscription: Subscription) -> (Feed, mpsc::Receiver<FeedEvent>) {
        Self::spawn_with(url, subscription, ConnectOptions::default())
    }

    /// [`Feed::spawn`] with a token, TLS trust and limits.
    pub fn spawn_with(
        url: String,
        subscription: Subscription,
        opts: ConnectOptions,
    ) -> (Feed, mpsc::Receiver<FeedEvent>) {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (cmd_tx, cmd_rx) = mpsc::channel(16);
        let traffic = Arc::new(TrafficCounters::default());
        let task = tokio::spawn(supervise(
            url,
            opts,
            subscription,
            tx,
            cmd_rx,
            traffic.clone(),
        ));
        (
            Feed {
                commands: cmd_tx,
                task,
                traffic,
            },
            rx,
        )
    }
}

/// A running feed as its consumer takes it: what `watch::run` starts once
/// and hands, by reference, to the mode it runs (the dashboard or a
/// headless printer), then closes. The consumer reads batches, sends
/// commands and checks [`FeedHandle::stop`]; it never starts or ends the
/// connection itself.
pub struct FeedHandle {
    feed: Feed,
    latest: Latest,
    stop: CancellationToken,
}

impl FeedHandle {
    /// Start the feed ([`Feed::spawn_with`]) and its latest-wins buffer;
    /// `stop` is the token the caller cancels on a signal.
    pub fn start(
        url: String,
        subscription: Subscription,
        opts: ConnectOptions,
        stop: CancellationToken,
    ) -> Self {
        let (feed, rx) = Feed::spawn_with(url, subscription, opts);
        // Latest update wins: a burst of frames costs one update's work.
        let latest = Latest::spawn(rx);
        FeedHandle { feed, latest, stop }
    }

    /// The next batch (waits for one): small events in order and at most
    /// one update; `None` once the feed ended (after a final failure) and
    /// everything was taken. Cancel-safe.
    pub async fn next_batch(&self) -> Option<Batch> {
        self.latest.next_batch().await
    }

    /// Where the consumer's commands (subscribe, history) go.
    pub fn commands(&self) -> &mpsc::Sender<FeedCommand> {
        &self.feed.commands
    }

    /// Bytes received so far, and on the wire when compressed.
    pub fn traffic(&self) -> Traffic {
        self.feed.traffic.snapshot()
    }

    /// Cancelled when the consumer must stop (SIGINT / SIGTERM).
    pub fn stop(&self) -> &CancellationToken {
        &self.stop
    }

    /// Close the connection with 1000 ([`Feed::close`]), or end its task
    /// if the buffer's task failed.
    pub async fn close(self) {
        match self.latest.into_receiver().await {
            Some(rx) => self.feed.close(rx).await,
            None => self.feed.task.abort(),
        }
    }
}

async fn supervise(
    url: String,
    opts: ConnectOptions,
    mut subscription: Subscription,
    tx: mpsc::Sender<FeedEvent>,
    mut cmd_rx: mpsc::Receiver<FeedCommand>,
    traffic: Arc<TrafficCounters>,
) {
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
    let mut attempt: u32 = 0;
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
            r = tokio::time::timeout(CONNECT_TIMEOUT, connect::connect(&url, &opts)) => r,
            () = tx.closed() => return,
        };
        let (code, reason) = match connected {
            Err(_) => (
                None,
                format!("no answer within {}s", CONNECT_TIMEOUT.as_secs()),
            ),
            Ok(Err(e)) => {
                if let Some(reason) = connect::fatal_connect_error(&e, &url, opts.token.as_ref()) {
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
            Ok(Ok((mut ws, agreed))) => {
                traffic.deflate.store(agreed.deflate, Relaxed);
                ws.get_mut().count_into(traffic.wire.clone());
                let mut track = Track::new(agreed, traffic.clone());
                let ended =
                    run_connection(ws, &opts, &mut subscription, &tx, &mut cmd_rx, &mut track)
                        .await;
                // Only a connection that delivered data for a while resets
                // the backoff: accept-then-close servers get the full delays.
                if track.stable() {
                    backoff.reset();
                }
                match ended {
                    Ended::Stop => return,
                    Ended::Closed(code, reason) => (code, reason),
                    Ended::Fatal(code, reason) => {
                        tracing::warn!("closed the connection to {url}: {reason}");
                        let _ = tx
                            .send(FeedEvent::Failed {
                                code,
                                reason,
                                at: Utc::now(),
                            })
                            .await;
                        return;
                    }
                }
            }
        };
        if let Some(c) = code
            && !close_is_retryable(c)
        {
            let mut reason = if reason.is_empty() {
                crate::text::close_code_name(c)
                    .unwrap_or_default()
                    .to_string()
            } else {
                reason
            };
            if matches!(c, 1008 | 4001 | 4401) {
                reason = format!("{reason}; {}", connect::auth_fix(opts.token.as_ref()));
            }
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
                () = tokio::time::sleep_until(until) => break,
                () = tx.closed() => return,
                cmd = cmd_rx.recv() => match cmd {
                    Some(FeedCommand::Subscribe(s)) => subscription = s,
                    Some(FeedCommand::History { .. }) => {}
                    None => return,
                },
            }
        }
    }
}

fn describe_connect_error(e: &tungstenite::Error) -> String {
    match e {
        tungstenite::Error::Io(io) => io.to_string(),
        tungstenite::Error::Http(resp) => format!("HTTP {}", resp.status()),
        other => other.to_string(),
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
