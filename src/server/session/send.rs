//! A session's writes: each update (its `seq`, ticks skipped, the
//! `--max-lag` check before a frame starts), replies, and close frames,
//! every write bounded by the write timeout and never cut by a close frame
//! (`End`). Must not read from the client.

use std::future::Future as _;
use std::os::fd::AsRawFd;
use std::task::Poll;

use futures_util::SinkExt as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tracing::Instrument as _;

use super::{CLOSE_TIMEOUT, End, Session, Wait};
use crate::deflate::Agreed;
use crate::deflate::compress::{self, Deflated};
use crate::server::hub::Frame;
use crate::server::lag;
use crate::server::write::{self, Head};

/// Updates a session missed between the tick it last got (`last`) and
/// `tick`: `seq` advances by one per update plus one per update skipped,
/// so a client can tell "nothing missed" from "the server dropped N".
fn skipped(last: Option<u64>, tick: u64) -> u64 {
    match last {
        Some(t) if tick > t + 1 => tick - t - 1,
        _ => 0,
    }
}

/// The compressed form of `frame` for a client that agreed `agreed` and
/// is in step with frame `in_step` (0: none): see `Session::compressed`.
/// The second value says which: `true` for the form against the previous
/// update. `fixed`: this client's seq fits the fixed width the shared
/// bytes were made for (else only the form alone, which does not refer
/// back across it, is valid).
fn choose(agreed: Agreed, in_step: u64, fixed: bool, frame: &Frame) -> Option<(&Deflated, bool)> {
    let packed = &frame.packed;
    let in_step =
        fixed && !agreed.no_context_takeover && in_step != 0 && packed.prev_id() == Some(in_step);
    in_step
        .then(|| packed.dict(&frame.update))
        .flatten()
        .filter(|d| agreed.fits(d.reach))
        .map(|d| (d, true))
        .or_else(|| {
            packed
                .free(&frame.update)
                .filter(|d| agreed.fits(d.reach))
                .map(|d| (d, false))
        })
}

impl<S> Session<S>
where
    S: AsyncRead + AsyncWrite + Unpin + AsRawFd,
{
    pub(super) async fn send_update(&mut self, frame: &Frame) -> Result<(), End> {
        // seq advances by one per update plus one per update skipped, so a
        // client can tell "nothing missed" from "the server dropped N for me".
        let skipped = skipped(self.last_tick, frame.tick);
        if skipped > 0 {
            self.shared.stats.updates_skipped(skipped);
        }
        self.seq += 1 + skipped;
        self.last_tick = Some(frame.tick);
        let (start, rest) = frame.update.seq_parts();
        // This client's seq as a stored DEFLATE block, for the compressed forms.
        let mut stored = [0u8; 24];
        let (stored_len, fixed) = compress::stored_seq(self.seq, &mut stored);
        let compressed = if start.is_empty() {
            None
        } else {
            self.compressed(frame, fixed).filter(|(d, _)| {
                // Uncompressed when deflate would not shrink it (RFC 7692
                // allows it per message; the window stays as it was).
                d.head.len() + stored_len + d.body.len()
                    < start.len() + compress::SEQ_WIDTH + rest.len()
            })
        };
        let (head, body) = match compressed {
            Some((d, _)) => {
                // The shared start, this client's seq as a stored block,
                // the shared rest (`crate::deflate::compress`).
                let head = Head::deflated(&[&d.head, &stored[..stored_len]], d.body.len());
                (head, &d.body[..])
            }
            None if start.is_empty() => (Head::text(b"", rest.len()), rest.as_bytes()),
            None => (Head::update(start, self.seq, rest.len()), rest.as_bytes()),
        };
        let head = head.map_err(|_| End::Gone)?;
        // Behind by more than --max-lag: closed before this frame starts.
        // (Asks the kernel only when the running bound says it may be.)
        let max = lag::limit(
            self.shared.config.net.max_lag,
            head.as_bytes().len() + body.len(),
        );
        if let Some(behind) = self.lag.over(self.ws.get_ref().as_raw_fd(), max) {
            return Err(End::Lagging { behind, max });
        }
        self.send_frame(&head, body, false).await?;
        if let Some((_, against_previous)) = compressed {
            self.shared.stats.update_compressed(against_previous);
            // The client's window now ends with this update (at the fixed
            // seq width, or it cannot take the next dictionary frame).
            self.in_step = if fixed { frame.packed.id } else { 0 };
        }
        Ok(())
    }

    /// The compressed form of `frame` this client can take, if it
    /// negotiated deflate: the one against the group's previous update
    /// when the client is in step with it (got it last, compressed, at the
    /// fixed seq width), keeps its window and the window reaches that far;
    /// else the one on its own, when the window allows; else none (the
    /// update goes uncompressed, which RFC 7692 allows per message).
    fn compressed<'f>(&self, frame: &'f Frame, fixed: bool) -> Option<(&'f Deflated, bool)> {
        choose(self.deflate?, self.in_step, fixed, frame)
    }

    /// Send a frame that answers the client (or greets it): not lag while
    /// it is the last one (a `history` larger than --max-lag is no reason
    /// to close). Sent uncompressed: it leaves a deflate client's window
    /// as it was, so the client stays in step.
    pub(super) async fn send_text(&mut self, text: &str) -> Result<(), End> {
        let head = Head::text(b"", text.len()).map_err(|_| End::Gone)?;
        self.send_frame(&head, text.as_bytes(), true).await
    }

    /// [`Self::send_text`] for a large reply (a `history`, `connected`):
    /// compressed on its own for a deflate client whose window takes it,
    /// when that makes it smaller (which puts the client out of step: its
    /// window now ends with this reply).
    pub(super) async fn send_large(&mut self, text: &str) -> Result<(), End> {
        let packed = self
            .deflate
            .filter(|a| a.fits(text.len().min(1 << 15)))
            .and_then(|_| compress::whole(text))
            .filter(|c| c.len() < text.len());
        let Some(body) = packed else {
            return self.send_text(text).await;
        };
        let head = Head::deflated(&[], body.len()).map_err(|_| End::Gone)?;
        self.in_step = 0;
        self.send_frame(&head, &body, true).await
    }

    /// Write one text frame (`head`, then `body`), bounded by the write
    /// timeout. Most writes complete at once and take that path alone: no
    /// timer is set and the shutdown token is not polled. A write that has
    /// started is never abandoned halfway for a close frame (see [`End`]).
    pub(super) async fn send_frame(
        &mut self,
        head: &Head,
        body: &[u8],
        reply: bool,
    ) -> Result<(), End> {
        let payload_len = head.payload_len();
        let frame_len = head.as_bytes().len() + body.len();
        let Self {
            ws, shared, lag, ..
        } = self;
        // Bytes of this frame on the socket so far.
        let written = std::sync::atomic::AtomicUsize::new(0);
        let send = async {
            // Whatever tungstenite holds (a pong) goes first.
            ws.flush().await.map_err(|_| ())?;
            write::frame(ws.get_mut(), head.as_bytes(), body, &written)
                .await
                .map_err(|_| ())
        };
        tokio::pin!(send);
        let sent = match std::future::poll_fn(|cx| Poll::Ready(send.as_mut().poll(cx))).await {
            Poll::Ready(r) => r,
            Poll::Pending => {
                let wait = tokio::select! {
                    biased;
                    r = &mut send => Wait::Done(r),
                    () = tokio::time::sleep(shared.config.write_timeout) => Wait::Late,
                    () = shared.shutdown.cancelled() => Wait::Stopping,
                };
                if let Wait::Done(r) = wait {
                    r
                } else {
                    // Too slow, or stopping. With nothing of the frame out
                    // yet a close frame can go at once; else the frame gets
                    // the close timeout to finish (one deadline for both:
                    // the close gets what is left of it).
                    let deadline = Instant::now() + CLOSE_TIMEOUT;
                    if written.load(std::sync::atomic::Ordering::Relaxed) > 0 {
                        match tokio::time::timeout_at(deadline, &mut send).await {
                            Ok(Ok(())) => {
                                shared.stats.frame_sent(payload_len);
                                lag.wrote(frame_len, reply);
                            }
                            Ok(Err(())) => return Err(End::Gone),
                            Err(_) if matches!(wait, Wait::Stopping) => return Err(End::Gone),
                            Err(_) => {
                                return Err(End::Slow {
                                    cut: true,
                                    deadline,
                                });
                            }
                        }
                    }
                    return Err(match wait {
                        Wait::Stopping => End::Shutdown { deadline },
                        _ => End::Slow {
                            cut: false,
                            deadline,
                        },
                    });
                }
            }
        };
        match sent {
            Ok(()) => {
                shared.stats.frame_sent(payload_len);
                lag.wrote(frame_len, reply);
                Ok(())
            }
            Err(()) => Err(End::Gone),
        }
    }

    pub(super) async fn close(&mut self, code: CloseCode, reason: &str) {
        self.close_by(code, reason, Instant::now() + CLOSE_TIMEOUT)
            .await;
    }

    /// [`Self::close`], the close frame given until `deadline` to go out.
    /// A 1013 is counted once its fate is known: sent, or (the peer took
    /// nothing more in time) dropped without it; other codes when decided.
    pub(super) async fn close_by(&mut self, code: CloseCode, reason: &str, deadline: Instant) {
        let slow = code == CloseCode::Again;
        if !slow {
            self.shared.stats.closed(code.into());
        }
        let frame = CloseFrame {
            code,
            // A close reason must fit a control frame (123 bytes).
            reason: crate::text::truncate_bytes(reason, 120).into(),
        };
        let span = self.span.clone();
        let sent = tokio::time::timeout_at(deadline, self.ws.close(Some(frame)))
            .instrument(span)
            .await;
        if slow {
            self.shared.stats.slow_closed(matches!(sent, Ok(Ok(()))));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_ticks_are_the_gap_between_the_last_and_this_one() {
        assert_eq!(skipped(None, 7), 0, "the first update skips nothing");
        assert_eq!(skipped(Some(6), 7), 0);
        assert_eq!(skipped(Some(3), 7), 3);
        assert_eq!(skipped(Some(7), 7), 0, "a repeat (a rejoin) is no gap");
    }

    use crate::deflate::compress::tests::Reference;
    use crate::deflate::compress::{SEQ_PREFIX, SEQ_WIDTH, stored_seq};
    use crate::protocol::{SkillStat, Subscription};
    use crate::server::hub::Hub;
    use crate::store::Snapshot;
    use std::sync::Arc;

    /// Tick `i`'s data: counts that move, a row that comes and goes.
    fn snapshot(i: u64) -> Arc<Snapshot> {
        let stat = |name: &str, n: u64| SkillStat {
            skill_name: name.into(),
            total_invocations: n,
            completion_rate: 50.0 + (n % 50) as f64,
            avg_duration_seconds: Some(n as f64 / 7.0),
            invocations_1h: Some(n % 13),
            invocations_24h: Some(n % 101),
            last_invoked_at: None,
        };
        let mut rows = vec![
            stat("pytest-run", 700 + i / 3),
            stat("ruff-check", 400 + i / 7),
        ];
        if i % 5 == 0 {
            rows.push(stat("mypy", i));
        }
        Arc::new(Snapshot::new(rows, vec![]))
    }

    /// What a client must inflate for `frame` at `seq`: `seq` padded to the
    /// fixed width, as the compressed form carries it.
    fn expected(frame: &Frame, seq: u64) -> String {
        let mut digits = seq.to_string();
        while digits.len() < SEQ_WIDTH {
            digits.push(' ');
        }
        format!("{SEQ_PREFIX}{digits},{}", frame.update.seq_parts().1)
    }

    /// A simulated deflate client of one group, over `ticks` ticks: it
    /// misses some updates, gets uncompressed pongs (nothing for its
    /// inflater) and compressed history replies at random points, and
    /// every compressed update must inflate to exactly the frame.
    /// Returns (dictionary frames, frames on their own, uncompressed).
    fn run_client(agreed: Agreed, ticks: u64, seed: u64) -> (u64, u64, u64) {
        run_client_from(agreed, ticks, seed, 0)
    }

    /// [`run_client`] whose seq starts after `first_seq`.
    fn run_client_from(agreed: Agreed, ticks: u64, seed: u64, first_seq: u64) -> (u64, u64, u64) {
        let hub = Hub::new(10);
        let mut rx = hub.subscribe(&Subscription::All);
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut client = Reference::new(agreed.window_bits, agreed.no_context_takeover);
        let (mut in_step, mut seq) = (0u64, first_seq);
        let (mut dict, mut free, mut plain) = (0, 0, 0);
        for i in 0..ticks {
            hub.publish(snapshot(i));
            match rng.u8(..20) {
                // The session was busy: this update is skipped.
                0 | 1 => continue,
                // A pong: uncompressed, the window stays as it was.
                2 => {}
                // A history reply: compressed on its own.
                3 => {
                    let h = format!(r#"{{"type":"history","n":{i},"skills":[]}}"#);
                    let packed = compress::whole(&h).unwrap();
                    assert_eq!(client.inflate(&packed).unwrap(), h);
                    in_step = 0;
                }
                _ => {}
            }
            let frame = rx.borrow_and_update().clone();
            seq += 1;
            let mut stored = [0u8; 24];
            let (n, fixed) = stored_seq(seq, &mut stored);
            let Some((d, against_previous)) = choose(agreed, in_step, fixed, &frame) else {
                plain += 1;
                continue;
            };
            if against_previous {
                dict += 1;
            } else {
                free += 1;
            }
            let payload = [&d.head[..], &stored[..n], &d.body[..]].concat();
            let got = client
                .inflate(&payload)
                .unwrap_or_else(|e| panic!("tick {i}: {e}"));
            assert_eq!(got, expected(&frame, seq), "tick {i}");
            in_step = if fixed { frame.packed.id } else { 0 };
        }
        (dict, free, plain)
    }

    #[test]
    fn a_thousand_updates_with_skips_pongs_and_histories_all_inflate_exactly() {
        for seed in [1, 2, 3] {
            let agreed = Agreed {
                no_context_takeover: false,
                window_bits: 15,
                window_offered: false,
            };
            let (dict, free, plain) = run_client(agreed, 1000, seed);
            assert_eq!(plain, 0);
            assert!(dict > 600 && free > 50, "dict {dict}, free {free}");
        }
    }

    /// The update whose seq grows past the fixed width (10^8) cannot use
    /// the form against the previous update, in step or not: it goes out
    /// alone, and inflates exactly.
    #[test]
    fn the_update_whose_seq_outgrows_the_fixed_width_goes_out_alone() {
        let agreed = Agreed {
            no_context_takeover: false,
            window_bits: 15,
            window_offered: false,
        };
        for seed in [4, 5, 6] {
            let (dict, free, plain) = run_client_from(agreed, 40, seed, 99_999_980);
            assert_eq!(plain, 0);
            assert!(dict > 5 && free > 5, "dict {dict}, free {free}");
        }
    }

    #[test]
    fn without_context_takeover_or_with_a_small_window_frames_stand_alone() {
        let no_takeover = Agreed {
            no_context_takeover: true,
            window_bits: 15,
            window_offered: false,
        };
        let (dict, free, _) = run_client(no_takeover, 300, 4);
        assert_eq!(dict, 0);
        assert!(free > 200);
        // 512 bytes: smaller than these frames, which then go uncompressed.
        let small = Agreed {
            no_context_takeover: false,
            window_bits: 9,
            window_offered: false,
        };
        let (_, free, plain) = run_client(small, 300, 5);
        assert_eq!(free, 0);
        assert!(plain > 200);
        // 2 KiB: a frame alone always fits, a frame and its dictionary
        // only when both are small.
        let mid = Agreed {
            no_context_takeover: false,
            window_bits: 11,
            window_offered: false,
        };
        let (dict, free, plain) = run_client(mid, 300, 6);
        assert!(free > 20 && dict > 20, "dict {dict}, free {free}");
        assert_eq!(plain, 0);
    }
}
