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
        let head = if start.is_empty() {
            Head::text(b"", rest.len())
        } else {
            Head::update(start, self.seq, rest.len())
        }
        .map_err(|_| End::Gone)?;
        // Behind by more than --max-lag: closed before this frame starts.
        // (Asks the kernel only when the running bound says it may be.)
        let max = lag::limit(
            self.shared.config.net.max_lag,
            head.as_bytes().len() + rest.len(),
        );
        if let Some(behind) = self.lag.over(self.ws.get_ref().as_raw_fd(), max) {
            return Err(End::Lagging { behind, max });
        }
        self.send_frame(&head, rest.as_bytes(), false).await
    }

    /// Send a frame that answers the client (or greets it): not lag while
    /// it is the last one (a `history` larger than --max-lag is no reason
    /// to close).
    pub(super) async fn send_text(&mut self, text: &str) -> Result<(), End> {
        let head = Head::text(b"", text.len()).map_err(|_| End::Gone)?;
        self.send_frame(&head, text.as_bytes(), true).await
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
}
