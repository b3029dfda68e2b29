//! How far one client is behind: the bytes written to its socket that it
//! has not taken, counting the kernel's queue (`--max-lag`).
//!
//! Owns one session's byte accounting (what it wrote, where its last reply
//! lies in that stream, a running upper bound on the kernel's queue) and
//! the one question asked of the kernel, `SIOCOUTQ` (bytes not yet
//! acknowledged by the peer). The kernel is asked only when the bound says
//! the client might be over the limit: the bound is the last answer plus
//! every byte written since, so a client that reads costs one `ioctl` per
//! `max_lag` bytes sent to it (one per ~300 frames of 3.5 KB at the 1 MiB
//! floor), not one per frame, and the limit is still exact at every update
//! (`docs/ARCHITECTURE.md`, "Latest value wins; bounded memory").
//!
//! Replies (a `history`, a pong, ...) are not lag: the client asked for
//! them, so a reply larger than the limit does not close it, nor does a
//! pong that follows it. Only the reply bytes themselves are excused (the
//! last [`MAX_REPLIES`] replies), so replies cannot hide updates.
//!
//! Must not: write, read or close the socket; decide what happens to a
//! client over the limit (the session does).

use std::collections::VecDeque;
use std::os::fd::RawFd;

/// Replies remembered as excused; an older one counts as lag. The rate
/// limit (20 messages a second) keeps a reading client far below this.
pub(crate) const MAX_REPLIES: usize = 16;

/// The default limit's floor: `--max-lag` defaults to 10 frames or this,
/// whichever is larger.
pub(crate) const DEFAULT_MIN_MAX_LAG: usize = 1 << 20;
/// How many of a client's current frames the default limit allows.
pub(crate) const DEFAULT_FRAMES: usize = 10;

/// The limit for a frame of `frame_len` bytes: `max_lag`, or by default 10
/// frames' worth or 1 MiB, whichever is larger. Never under two frames: a
/// reading client on a real network may have one frame not yet
/// acknowledged when the next is due.
pub(crate) fn limit(max_lag: Option<usize>, frame_len: usize) -> u64 {
    let two_frames = frame_len.saturating_mul(2);
    max_lag.map_or_else(
        || {
            frame_len
                .saturating_mul(DEFAULT_FRAMES)
                .max(DEFAULT_MIN_MAX_LAG)
        },
        |max| max.max(two_frames),
    ) as u64
}

/// One session's bytes out and what the kernel may still hold of them.
#[derive(Debug, Default)]
pub(super) struct Lag {
    /// Bytes of the session's frames written to the socket so far.
    out: u64,
    /// The newest replies' first byte and the byte after their last, as
    /// positions in `out`, oldest first (at most [`MAX_REPLIES`]).
    replies: VecDeque<(u64, u64)>,
    /// At least what the kernel still holds: its last answer plus every
    /// byte written since.
    bound: u64,
}

impl Lag {
    /// `n` bytes of a frame went out; `reply`: the frame answered the
    /// client (not counted as lag while among the newest replies).
    pub(super) fn wrote(&mut self, n: usize, reply: bool) {
        let n = n as u64;
        if reply {
            // Replies the kernel surely no longer holds need no place.
            let acked = self.out.saturating_sub(self.bound);
            while self.replies.front().is_some_and(|r| r.1 <= acked)
                || self.replies.len() >= MAX_REPLIES
            {
                self.replies.pop_front();
            }
            self.replies.push_back((self.out, self.out + n));
        }
        self.out += n;
        self.bound += n;
    }

    /// Of the newest `queued` bytes written, those that are not a
    /// remembered reply's. Never decreases as `queued` grows.
    fn behind(&self, queued: u64) -> u64 {
        let queued = queued.min(self.out);
        let oldest = self.out - queued;
        let excused: u64 = self
            .replies
            .iter()
            .map(|&(start, end)| end.saturating_sub(start.max(oldest)))
            .sum();
        queued - excused.min(queued)
    }

    /// How far behind the client is if that is more than `max` bytes,
    /// asking the kernel about `fd` only when the bound allows it to be.
    /// `None` also when the kernel cannot tell (then the write timeout is
    /// the only bound).
    pub(super) fn over(&mut self, fd: RawFd, max: u64) -> Option<u64> {
        if self.behind(self.bound) <= max {
            return None;
        }
        let queued = unsent(fd)?;
        self.bound = queued;
        let behind = self.behind(queued);
        (behind > max).then_some(behind)
    }
}

/// Bytes in `fd`'s send queue the peer has not acknowledged (`SIOCOUTQ`).
#[cfg(target_os = "linux")]
fn unsent(fd: RawFd) -> Option<u64> {
    let mut n: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (= TIOCOUTQ) writes one int through the pointer,
    // which points at `n`; an fd that is not a TCP socket gets an error.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut n) };
    (r == 0).then(|| u64::try_from(n).unwrap_or(0))
}

#[cfg(not(target_os = "linux"))]
fn unsent(_: RawFd) -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_not_lag_but_the_updates_around_them_are() {
        let mut lag = Lag::default();
        lag.wrote(100, false); // update
        lag.wrote(5_000, true); // history
        lag.wrote(100, false); // update
        assert_eq!(lag.behind(0), 0);
        assert_eq!(lag.behind(50), 50);
        // The newest update, then all of the reply: only the update.
        assert_eq!(lag.behind(5_100), 100);
        // And the update before it.
        assert_eq!(lag.behind(5_200), 200);
        assert_eq!(lag.behind(u64::MAX), 200);
        // A pong after it: both are replies, neither is lag (a watch
        // client pings every 5 s while a big history is still on its way).
        lag.wrote(30, true);
        assert_eq!(lag.behind(5_230), 200);
        // Only the newest MAX_REPLIES replies are excused: past that the
        // history counts, so replies cannot hide the updates between them.
        for _ in 0..MAX_REPLIES {
            lag.wrote(1, true);
        }
        assert_eq!(lag.behind(u64::MAX), 200 + 5_000 + 30);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_kernel_is_asked_only_when_the_bound_is_over_the_limit() {
        use std::os::fd::AsRawFd as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, _) = listener.accept().unwrap();
        let fd = client.as_raw_fd();
        let mut lag = Lag::default();
        // 1,000 bytes "written" (nothing really queued): under a 2,000
        // limit the bound alone answers, so the kernel is not asked.
        lag.wrote(1_000, false);
        assert_eq!(lag.over(fd, 2_000), None);
        assert_eq!(lag.bound, 1_000, "not asked");
        // Over a 500 limit by the bound: asked, and the kernel's queue is
        // empty, so the bound becomes its answer.
        assert_eq!(lag.over(fd, 500), None);
        assert_eq!(lag.bound, 0, "asked");
        // An fd the kernel refuses: no answer, the bound stays.
        lag.wrote(1_000, false);
        assert_eq!(lag.over(-1, 500), None);
        assert_eq!(lag.bound, 1_000);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_socket_whose_peer_never_reads_is_over_once_the_kernel_holds_more() {
        use std::io::Write as _;
        use std::os::fd::AsRawFd as _;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut out = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_never_read, _) = listener.accept().unwrap();
        out.set_nonblocking(true).unwrap();
        let mut lag = Lag::default();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..32 {
            match out.write(&chunk) {
                Ok(n) => lag.wrote(n, false),
                Err(_) => break,
            }
        }
        // The peer's receive buffer took some; the kernel holds the rest.
        let behind = lag.over(out.as_raw_fd(), 64 * 1024).expect("over");
        assert!(behind > 64 * 1024 && behind <= lag.out, "{behind}");
        assert_eq!(lag.bound, behind);
        assert_eq!(lag.over(out.as_raw_fd(), lag.out), None);
    }

    #[test]
    fn the_default_limit_is_ten_frames_or_1_mib() {
        assert_eq!(limit(None, 3_500), 1 << 20);
        assert_eq!(limit(None, 200_000), 2_000_000);
        assert_eq!(limit(Some(4096), 1_000), 4096);
        assert_eq!(
            limit(Some(4096), 200_000),
            400_000,
            "never under two frames"
        );
    }
}
