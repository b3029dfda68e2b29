//! Connection health counters: messages and their rate, round-trip times,
//! `seq` gaps and duplicates, reconnects, the last close and error, what was
//! dropped (skipped updates, rejected rows, ignored frames). Updated
//! by [`super::App`] from feed events; read by the health panel.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Window of the "messages per second" rate.
pub const RATE_WINDOW_SECS: i64 = 10;

/// Connection health counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub connected_since: Option<DateTime<Utc>>,
    pub ever_connected: bool,
    pub server: Option<String>,
    pub interval: Option<Duration>,
    pub rtt_last: Option<Duration>,
    pub rtt_sum: Duration,
    pub rtt_count: u32,
    pub messages: u64,
    pub recent: VecDeque<DateTime<Utc>>,
    pub last_seq: Option<u64>,
    pub seq_gaps: u64,
    pub seq_missed: u64,
    pub seq_duplicates: u64,
    pub reconnects: u32,
    pub last_close: Option<(Option<u16>, String)>,
    pub last_error: Option<String>,
    /// Updates dropped for a newer one because they came faster than the
    /// dashboard could take them.
    pub skipped_updates: u64,
    /// Rows of updates left out for a bad value.
    pub rejected_rows: u64,
    /// Frames that were not protocol messages, and small events dropped
    /// from a flood.
    pub ignored_frames: u64,
    /// Bytes received, and on the wire when compressed.
    pub traffic: crate::client::Traffic,
}

impl Health {
    pub fn rtt_avg(&self) -> Option<Duration> {
        (self.rtt_count > 0).then(|| self.rtt_sum / self.rtt_count)
    }

    /// Messages per second over the last [`RATE_WINDOW_SECS`].
    pub fn rate(&self, now: DateTime<Utc>) -> f64 {
        let from = now - chrono::Duration::seconds(RATE_WINDOW_SECS);
        let n = self
            .recent
            .iter()
            .filter(|t| **t > from && **t <= now)
            .count();
        n as f64 / RATE_WINDOW_SECS as f64
    }
}

impl Health {
    /// Any message from the server arrived at `at`.
    pub(super) fn message(&mut self, at: DateTime<Utc>) {
        self.messages += 1;
        push_recent(&mut self.recent, at);
    }

    /// A `connected` frame: a new connection (a reconnect after the first).
    pub(super) fn connected(
        &mut self,
        server: Option<String>,
        interval_ms: Option<u64>,
        at: DateTime<Utc>,
    ) {
        if self.ever_connected {
            self.reconnects += 1;
        }
        self.ever_connected = true;
        self.connected_since = Some(at);
        self.server = server;
        self.interval = interval_ms.filter(|ms| *ms > 0).map(Duration::from_millis);
        self.last_seq = None;
    }

    /// An update's `seq` (an extension): count gaps and duplicates.
    pub(super) fn seq(&mut self, seq: u64) {
        if let Some(last) = self.last_seq {
            if seq > last.saturating_add(1) {
                self.seq_gaps += 1;
                self.seq_missed = self.seq_missed.saturating_add(seq - last - 1);
            } else if seq <= last {
                self.seq_duplicates += 1;
            }
        }
        self.last_seq = Some(seq);
    }

    /// A measured round trip.
    pub(super) fn rtt(&mut self, rtt: Duration) {
        self.rtt_last = Some(rtt);
        self.rtt_sum = self.rtt_sum.saturating_add(rtt);
        self.rtt_count = self.rtt_count.saturating_add(1);
    }

    /// The connection ended and will be retried.
    pub(super) fn disconnected(&mut self, code: Option<u16>, reason: String) {
        self.connected_since = None;
        // A close frame is worth keeping; a failed attempt is an error.
        if code.is_some() {
            self.last_close = Some((code, reason));
        } else {
            self.last_error = Some(reason);
        }
    }
}

fn push_recent(recent: &mut VecDeque<DateTime<Utc>>, at: DateTime<Utc>) {
    recent.push_back(at);
    let from = at - chrono::Duration::seconds(RATE_WINDOW_SECS);
    while recent.front().is_some_and(|t| *t <= from) || recent.len() > 10_000 {
        recent.pop_front();
    }
}
