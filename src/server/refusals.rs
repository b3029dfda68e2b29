//! The log lines of refusals at the door: per cause, the first refusal is
//! logged at once (with its peer and what was refused), the rest of the
//! next 10 s are counted and summarized in one line, so a flood of refused
//! sockets costs a few lines, not one per socket.
//!
//! Owns the summary's state and wording. Must not: decide a refusal (that
//! is `conn` and [`super::access`]) or count metrics (that is
//! [`super::stats`]); log anything a client sent unescaped.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// At most one line per cause per window (plus the summary of the window
/// before).
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// Why a connection was refused at the door.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, strum::EnumCount, strum::EnumIter, strum::IntoStaticStr,
)]
#[strum(serialize_all = "snake_case")]
pub enum Cause {
    /// 403: a `Host` the server does not answer to.
    Host,
    /// 400: HTTP/1.1 without a (single, well-formed) `Host`.
    BadHost,
    /// 403: a browser `Origin` not allowed.
    Origin,
    /// 503: over `--max-connections-per-ip`.
    PerIp,
    /// 503: over `--max-connections`.
    Busy,
    /// Closed without an answer: too many refused sockets held already.
    Dropped,
    /// 401 / 403: a bad Bearer token on the upgrade or a plain route.
    Token,
    /// `accept` failed (e.g. out of file descriptors).
    Accept,
    /// 1013 (or dropped): a client that did not read its frames.
    Slow,
}

impl Cause {
    /// What happened and how to lift it (one line, no client data).
    fn what(self) -> &'static str {
        match self {
            Cause::Host => {
                "refused (403) a request for a host this server does not answer to (DNS rebinding guard); allow a name with --allow-host"
            }
            Cause::BadHost => "refused (400) an HTTP/1.1 request without a valid Host header",
            Cause::Origin => {
                "refused (403) a WebSocket from a foreign origin; allow it with --allow-origin"
            }
            Cause::PerIp => {
                "refused (503) a connection: too many from one address; raise --max-connections-per-ip"
            }
            Cause::Busy => "refused (503) a connection: at --max-connections",
            Cause::Dropped => {
                "closed a connection without an answer: too many refused connections still being answered"
            }
            Cause::Token => {
                "refused a bad token (Bearer header 401/403, or first frame: close 4001)"
            }
            Cause::Accept => "accept failed (out of file descriptors?); raise the open-file limit",
            Cause::Slow => {
                "closed (1013) a client that did not read its frames (over --max-lag, or not within the write timeout)"
            }
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// One line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Line {
    pub cause: Cause,
    /// Refusals the line stands for.
    pub count: u64,
    /// The first refusal's peer (if known) and detail (the first line of a
    /// window).
    pub first: Option<(Option<SocketAddr>, String)>,
}

impl Line {
    fn log(&self) {
        let cause: &'static str = self.cause.into();
        let what = self.cause.what();
        let count = self.count;
        match (&self.first, self.cause) {
            (Some((None, detail)), _) => tracing::warn!(cause, count, "{what}: {detail}"),
            (Some((Some(peer), detail)), Cause::Token) => {
                tracing::info!(cause, count, %peer, reason = %detail, "{what}");
            }
            (Some((Some(peer), detail)), _) if detail.is_empty() => {
                tracing::warn!(cause, count, %peer, "{what}");
            }
            (Some((Some(peer), detail)), _) => {
                tracing::warn!(cause, count, %peer, detail = %detail, "{what}");
            }
            (None, Cause::Token) => {
                tracing::info!(cause, count, "{count} more since the previous line: {what}");
            }
            (None, _) => {
                tracing::warn!(cause, count, "{count} more since the previous line: {what}");
            }
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    /// When the last line of this cause was logged.
    last_line: Option<Instant>,
    /// Refusals since then, not yet in a line.
    pending: u64,
}

/// Per cause: when its last line went out and what is counted since.
#[derive(Debug, Default)]
pub(crate) struct Refusals {
    slots: Mutex<[Slot; <Cause as strum::EnumCount>::COUNT]>,
}

impl Refusals {
    /// A refusal now: logged at once when its cause had no line in the last
    /// [`WINDOW`], else counted. `detail` (what was refused, escaped by the
    /// caller) is built only when it is logged.
    pub(crate) fn refused(
        &self,
        cause: Cause,
        peer: Option<SocketAddr>,
        detail: impl FnOnce() -> String,
    ) {
        if let Some(line) = self.refused_at(cause, peer, Instant::now(), detail) {
            line.log();
        }
    }

    /// Log the counts of windows that ended; call every second or so.
    pub(crate) fn flush(&self) {
        for line in self.flush_at(Instant::now()) {
            line.log();
        }
    }

    /// Log every count still pending (at shutdown).
    pub(crate) fn flush_all(&self) {
        for line in self.flush_at_or_all(Instant::now(), true) {
            line.log();
        }
    }

    fn refused_at(
        &self,
        cause: Cause,
        peer: Option<SocketAddr>,
        now: Instant,
        detail: impl FnOnce() -> String,
    ) -> Option<Line> {
        let mut slots = crate::sync::lock(&self.slots);
        let slot = &mut slots[cause.index()];
        if slot
            .last_line
            .is_some_and(|t| now.saturating_duration_since(t) < WINDOW)
        {
            slot.pending += 1;
            return None;
        }
        let count = slot.pending + 1;
        *slot = Slot {
            last_line: Some(now),
            pending: 0,
        };
        Some(Line {
            cause,
            count,
            first: Some((peer, detail())),
        })
    }

    fn flush_at(&self, now: Instant) -> Vec<Line> {
        self.flush_at_or_all(now, false)
    }

    fn flush_at_or_all(&self, now: Instant, all: bool) -> Vec<Line> {
        let mut slots = crate::sync::lock(&self.slots);
        let mut lines = Vec::new();
        for cause in <Cause as strum::IntoEnumIterator>::iter() {
            let slot = &mut slots[cause.index()];
            let due = all
                || slot
                    .last_line
                    .is_none_or(|t| now.saturating_duration_since(t) >= WINDOW);
            if slot.pending > 0 && due {
                lines.push(Line {
                    cause,
                    count: slot.pending,
                    first: None,
                });
                *slot = Slot {
                    last_line: Some(now),
                    pending: 0,
                };
            }
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_refusals_is_one_line_per_cause_per_window() {
        let r = Refusals::default();
        let peer: Option<SocketAddr> = "127.0.0.1:5000".parse().ok();
        let t0 = Instant::now();
        let first = r.refused_at(Cause::PerIp, peer, t0, || "d".into());
        assert_eq!(
            first,
            Some(Line {
                cause: Cause::PerIp,
                count: 1,
                first: Some((peer, "d".into()))
            })
        );
        for i in 1..1000 {
            let at = t0 + Duration::from_millis(i * 5);
            assert_eq!(
                r.refused_at(Cause::PerIp, peer, at, || unreachable!()),
                None
            );
        }
        // Another cause has its own window.
        assert!(r.refused_at(Cause::Host, peer, t0, String::new).is_some());
        assert!(r.flush_at(t0 + Duration::from_secs(9)).is_empty());
        let lines = r.flush_at(t0 + WINDOW);
        assert_eq!(
            lines,
            vec![Line {
                cause: Cause::PerIp,
                count: 999,
                first: None
            }]
        );
        assert!(r.flush_at(t0 + WINDOW * 3).is_empty(), "nothing pending");
        // The next refusal after a quiet window is logged at once again.
        assert!(
            r.refused_at(Cause::PerIp, peer, t0 + WINDOW * 3, String::new)
                .is_some()
        );
        assert!(
            <Cause as strum::IntoEnumIterator>::iter()
                .enumerate()
                .all(|(i, c)| c.index() == i)
        );
    }
}
