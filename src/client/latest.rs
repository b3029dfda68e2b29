//! Latest update wins between the feed and its consumer (the dashboard or
//! a headless printer): a task drains [`super::Feed`]'s channel as
//! fast as frames arrive and keeps, in order, the small events plus only
//! the newest `metrics_update`. An update the consumer could not take
//! before the next one arrived is dropped and counted (`skipped`), so the
//! work per batch is bounded (one update) and so is the memory held here:
//! one update plus at most [`MAX_PENDING`] small events whose server text
//! is cut to [`MAX_TEXT`] bytes.
//!
//! Owns only the buffering; it must not interpret events (that is the
//! consumer's) nor touch the connection (that is the feed's). The consumer
//! reaches it through [`super::FeedHandle`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::FeedEvent;

/// Most events (other than the one update) waiting for the consumer; the
/// oldest goes when a new one comes.
pub const MAX_PENDING: usize = 512;
/// Longest server text (error message, close reason, server name) kept in
/// a waiting event, in bytes.
pub const MAX_TEXT: usize = 4096;

/// What the consumer takes at once.
#[derive(Debug, Default)]
pub struct Batch {
    /// In arrival order; at most one `FeedEvent::Update`.
    pub events: Vec<FeedEvent>,
    /// Updates dropped since the last batch because a newer one came first.
    pub skipped: u64,
    /// Small events dropped since the last batch (more than
    /// [`MAX_PENDING`] waiting).
    pub dropped: u64,
}

#[derive(Default)]
struct Pending {
    events: VecDeque<FeedEvent>,
    skipped: u64,
    dropped: u64,
    /// The feed's channel ended (the feed stopped).
    closed: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    notify: Notify,
}

/// The running buffer; see the module docs.
pub struct Latest {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<mpsc::Receiver<FeedEvent>>,
}

impl Latest {
    /// Start draining `rx`.
    pub fn spawn(rx: mpsc::Receiver<FeedEvent>) -> Self {
        let shared = Arc::new(Shared {
            pending: Mutex::new(Pending::default()),
            notify: Notify::new(),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(drain(rx, shared.clone(), stop.clone()));
        Latest { shared, stop, task }
    }

    /// The next batch (waits for one); `None` once the feed ended and
    /// everything was taken. Cancel-safe: nothing is taken before it returns.
    pub async fn next_batch(&self) -> Option<Batch> {
        loop {
            {
                let mut p = lock(&self.shared);
                if !p.events.is_empty() || p.skipped > 0 || p.dropped > 0 {
                    return Some(Batch {
                        events: std::mem::take(&mut p.events).into(),
                        skipped: std::mem::take(&mut p.skipped),
                        dropped: std::mem::take(&mut p.dropped),
                    });
                }
                if p.closed {
                    return None;
                }
            }
            // A push between the check and here leaves a permit: no lost wake-up.
            self.shared.notify.notified().await;
        }
    }

    /// Stop draining and give the feed's receiver back (for
    /// [`super::Feed::close`]); `None` if the task failed.
    pub async fn into_receiver(self) -> Option<mpsc::Receiver<FeedEvent>> {
        self.stop.cancel();
        self.task.await.ok()
    }
}

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Pending> {
    // A panic while holding the lock leaves plain data behind: keep using it.
    crate::sync::lock(&shared.pending)
}

async fn drain(
    mut rx: mpsc::Receiver<FeedEvent>,
    shared: Arc<Shared>,
    stop: CancellationToken,
) -> mpsc::Receiver<FeedEvent> {
    loop {
        let ev = tokio::select! {
            biased;
            () = stop.cancelled() => return rx,
            ev = rx.recv() => ev,
        };
        let Some(ev) = ev else {
            lock(&shared).closed = true;
            shared.notify.notify_one();
            // Wait to hand the receiver back.
            stop.cancelled().await;
            return rx;
        };
        push(&mut lock(&shared), ev);
        shared.notify.notify_one();
    }
}

fn push(p: &mut Pending, mut ev: FeedEvent) {
    let is_update = matches!(ev, FeedEvent::Update { .. });
    if let FeedEvent::History { history, .. } = &ev {
        // History frames are large too: the newest of each window wins.
        let window = history.window;
        let before = p.events.len();
        p.events.retain(
            |e| !matches!(e, FeedEvent::History { history, .. } if history.window == window),
        );
        p.skipped += (before - p.events.len()) as u64;
        p.events.push_back(ev);
        return;
    }
    if is_update {
        let before = p.events.len();
        p.events.retain(|e| !matches!(e, FeedEvent::Update { .. }));
        p.skipped += (before - p.events.len()) as u64;
    } else {
        cut_text(&mut ev);
        if p.events.len() >= MAX_PENDING
            && let Some(i) = p
                .events
                .iter()
                .position(|e| !matches!(e, FeedEvent::Update { .. }))
        {
            p.events.remove(i);
            p.dropped += 1;
        }
    }
    p.events.push_back(ev);
}

/// Cut the server's free text in an event to [`MAX_TEXT`] bytes.
fn cut_text(ev: &mut FeedEvent) {
    let cut = |s: &mut String| s.truncate(crate::text::truncate_bytes(s, MAX_TEXT).len());
    match ev {
        FeedEvent::Connected { info, .. } => {
            cut(&mut info.message);
            for s in [&mut info.server, &mut info.timestamp, &mut info.session_id]
                .into_iter()
                .flatten()
            {
                cut(s);
            }
        }
        FeedEvent::ServerError { error, .. } => cut(&mut error.message),
        FeedEvent::Disconnected { reason, .. }
        | FeedEvent::Failed { reason, .. }
        | FeedEvent::Ignored { reason, .. } => cut(reason),
        FeedEvent::Connecting { .. }
        | FeedEvent::Update { .. }
        | FeedEvent::History { .. }
        | FeedEvent::Subscribed { .. }
        | FeedEvent::Pong { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ErrorCode, ErrorFrame, MetricsUpdate};

    fn update(seq: u64) -> FeedEvent {
        FeedEvent::Update {
            update: MetricsUpdate {
                seq: Some(seq),
                timestamp: None,
                data: crate::protocol::MetricsData::default(),
                rows: crate::protocol::RowReport::default(),
                team: None,
            },
            raw: tokio_tungstenite::tungstenite::Utf8Bytes::default(),
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn pong() -> FeedEvent {
        FeedEvent::Pong {
            rtt: None,
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn the_newest_update_wins_and_small_events_keep_their_order() {
        let mut p = Pending::default();
        for ev in [update(1), pong(), update(2), update(3), pong()] {
            push(&mut p, ev);
        }
        assert_eq!(p.skipped, 2);
        let kinds: Vec<String> = p
            .events
            .iter()
            .map(|e| match e {
                FeedEvent::Update { update, .. } => format!("u{}", update.seq.unwrap_or(0)),
                _ => "p".into(),
            })
            .collect();
        assert_eq!(kinds, ["p", "u3", "p"]);
    }

    #[test]
    fn waiting_events_and_their_text_are_bounded() {
        let mut p = Pending::default();
        push(&mut p, update(1));
        for _ in 0..MAX_PENDING + 10 {
            push(
                &mut p,
                FeedEvent::ServerError {
                    error: ErrorFrame {
                        code: ErrorCode::Other,
                        message: "é".repeat(MAX_TEXT),
                    },
                    at: chrono::DateTime::UNIX_EPOCH,
                },
            );
        }
        assert_eq!(p.events.len(), MAX_PENDING);
        assert_eq!(p.dropped, 11);
        // The update is never the one dropped.
        assert!(matches!(p.events[0], FeedEvent::Update { .. }));
        assert!(p.events.iter().all(|e| match e {
            FeedEvent::ServerError { error, .. } => error.message.len() <= MAX_TEXT,
            _ => true,
        }));
    }

    #[tokio::test]
    async fn batches_come_in_order_and_end_with_the_feed() {
        let (tx, rx) = mpsc::channel(8);
        let latest = Latest::spawn(rx);
        tx.send(pong()).await.unwrap();
        let b = latest.next_batch().await.unwrap();
        assert_eq!(b.events, vec![pong()]);
        drop(tx);
        assert!(latest.next_batch().await.is_none());
        assert!(latest.into_receiver().await.is_some());
    }
}
