//! The server's compression: each update compressed once per group and
//! tick for all of the group's deflate clients, still referring back to
//! the previous update.
//!
//! A `metrics_update` on the wire is `P` (`{"type":"metrics_update","seq":`,
//! the same for everyone), the client's `seq`, then `R` (`,` and the rest:
//! the same for every client of the group). With context takeover, a
//! client's inflater window is the bytes it last inflated: for every
//! client that got the group's previous update (and no other compressed
//! message since), that is the same previous update, except for its own
//! `seq` digits. So, when `seq` always takes [`SEQ_WIDTH`] bytes (digits,
//! then JSON spaces), those windows have the same length, and one
//! compressor, given the previous update as its dictionary with the `seq`
//! bytes replaced by 0xFF (a byte UTF-8 never has, so no back-reference
//! lands on it), makes bytes that inflate right for each of them:
//!
//! - [`Deflated::head`]: `P` compressed, then a sync flush whose empty
//!   stored block is cut after its 3-bit header (byte-aligned);
//! - per client, written by the session: the stored block's `LEN`,
//!   `NLEN` and the `seq` field, uncompressed ([`stored_seq`]);
//! - [`Deflated::body`]: `R` compressed by the same compressor after it
//!   was fed `SEQ_WIDTH` mask bytes (whose output is dropped: the stored
//!   block stands in for it), ending with a sync flush whose last four
//!   bytes (`00 00 ff ff`) RFC 7692 §7.2.1 strips.
//!
//! Without a dictionary ([`update`] with no previous update), `P` and `R`
//! are compressed apart, so nothing refers to bytes before `R`: valid
//! under any window and any `seq` width (newcomers, clients that skipped an
//! update or got another compressed message in between).

use std::cell::RefCell;

use flate2::{Compress, Compression, FlushCompress};

/// Bytes of a `seq` field in a compressed update: up to this many digits,
/// padded with spaces (JSON whitespace). A `seq` this long goes out at
/// its own width, and its client never gets the dictionary frame.
pub(crate) const SEQ_WIDTH: usize = 8;

/// What stands for a client's `seq` bytes in a dictionary: UTF-8 never
/// has 0xFF, so JSON text never matches it.
const MASK: [u8; SEQ_WIDTH] = [0xFF; SEQ_WIDTH];

/// zlib's default level: within a few bytes of level 9 on these frames
/// at half the CPU (measured in `docs/BENCHMARKS.md`).
const LEVEL: u32 = 6;

/// What a sync flush ends with, which RFC 7692 §7.2.1 strips.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The fixed start of every update up to its `seq` digits.
pub(crate) const SEQ_PREFIX: &str = r#"{"type":"metrics_update","seq":"#;

thread_local! {
    /// One compressor per runtime thread, reset between uses: a zlib
    /// state is ~270 KB, not to be allocated per group and tick.
    static COMPRESSOR: RefCell<Option<Compress>> = const { RefCell::new(None) };
}

/// An update compressed for every deflate client of its group, but for
/// each client's `seq` (see the module docs).
#[derive(Debug)]
pub(crate) struct Deflated {
    /// `P` compressed, ending with a stored block's header.
    pub(crate) head: Box<[u8]>,
    /// `R` compressed, the sync flush's `00 00 ff ff` stripped.
    pub(crate) body: Box<[u8]>,
    /// How far back the message refers at most (dictionary included):
    /// a client whose window is smaller gets another form.
    pub(crate) reach: usize,
}

/// The stored block's `LEN`, `NLEN` and the `seq` field: `seq`'s digits
/// padded with spaces to [`SEQ_WIDTH`] (or as long as they are).
/// Returns the bytes written to `out` and whether the field has the fixed
/// width (a client that got it so can take the next dictionary frame).
pub(crate) fn stored_seq(seq: u64, out: &mut [u8; 4 + 20]) -> (usize, bool) {
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(seq).as_bytes();
    let width = digits.len().max(SEQ_WIDTH);
    let len = width as u16;
    out[..2].copy_from_slice(&len.to_le_bytes());
    out[2..4].copy_from_slice(&(!len).to_le_bytes());
    out[4..4 + digits.len()].copy_from_slice(digits);
    out[4 + digits.len()..4 + width].fill(b' ');
    (4 + width, width == SEQ_WIDTH)
}

/// Compress an update whose text after `"seq":N,` is `rest`: against the
/// previous update of its group (`prev_rest`, its text after `seq`), or
/// on its own. `None` if zlib fails (never seen; the caller then sends
/// the update uncompressed).
pub(crate) fn update(prev_rest: Option<&str>, rest: &str) -> Option<Deflated> {
    with_compressor(|c| {
        let mut head = Vec::with_capacity(64);
        let mut body = Vec::with_capacity(rest.len() / 4 + 64);
        let message = SEQ_PREFIX.len() + SEQ_WIDTH + 1 + rest.len();
        let reach = if let Some(prev) = prev_rest {
            let mut dict = Vec::with_capacity(SEQ_PREFIX.len() + SEQ_WIDTH + 1 + prev.len());
            dict.extend_from_slice(SEQ_PREFIX.as_bytes());
            dict.extend_from_slice(&MASK);
            dict.push(b',');
            dict.extend_from_slice(prev.as_bytes());
            c.set_dictionary(&dict).ok()?;
            deflate(c, SEQ_PREFIX.as_bytes(), FlushCompress::Sync, &mut head)?;
            // The mask stands where each client's seq goes; its output is
            // replaced by each client's stored block.
            let mut dropped = Vec::with_capacity(32);
            deflate(c, &MASK, FlushCompress::Sync, &mut dropped)?;
            dict.len() + message
        } else {
            deflate(c, SEQ_PREFIX.as_bytes(), FlushCompress::Sync, &mut head)?;
            // R on its own stream: it refers to nothing before it.
            c.reset();
            message
        };
        deflate(c, b",", FlushCompress::None, &mut body)?;
        deflate(c, rest.as_bytes(), FlushCompress::Sync, &mut body)?;
        Some(Deflated {
            head: strip_sync(head)?.into_boxed_slice(),
            body: strip_sync(body)?.into_boxed_slice(),
            reach: reach.min(1 << 15),
        })
    })
}

/// A whole message compressed on its own (a `history` reply): valid
/// under any window, with the sync tail stripped.
pub(crate) fn whole(text: &str) -> Option<Vec<u8>> {
    with_compressor(|c| {
        let mut out = Vec::with_capacity(text.len() / 4 + 64);
        deflate(c, text.as_bytes(), FlushCompress::Sync, &mut out)?;
        strip_sync(out)
    })
}

/// Run `f` with this thread's compressor, freshly reset.
fn with_compressor<T>(f: impl FnOnce(&mut Compress) -> Option<T>) -> Option<T> {
    COMPRESSOR.with_borrow_mut(|slot| {
        let c = slot.get_or_insert_with(|| Compress::new(Compression::new(LEVEL), false));
        c.reset();
        f(c)
    })
}

/// Feed all of `input` to `c` with `flush`, appending to `out` until the
/// flush is complete (zlib: output space left over).
fn deflate(
    c: &mut Compress,
    mut input: &[u8],
    flush: FlushCompress,
    out: &mut Vec<u8>,
) -> Option<()> {
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        let before = c.total_in();
        c.compress_vec(input, out, flush).ok()?;
        input = &input[(c.total_in() - before) as usize..];
        if input.is_empty() && out.len() < out.capacity() {
            return Some(());
        }
    }
}

/// Cut the sync flush's `00 00 ff ff` off.
fn strip_sync(mut out: Vec<u8>) -> Option<Vec<u8>> {
    if !out.ends_with(&SYNC_TAIL) {
        return None;
    }
    out.truncate(out.len() - SYNC_TAIL.len());
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    /// A client's inflater as RFC 7692 has it, keeping its window across
    /// messages unless `reset` (server_no_context_takeover).
    pub(crate) struct Reference {
        inflater: Decompress,
        window_bits: u8,
        reset: bool,
    }

    impl Reference {
        pub(crate) fn new(window_bits: u8, reset: bool) -> Self {
            Self {
                inflater: Decompress::new_with_window_bits(false, window_bits),
                window_bits,
                reset,
            }
        }

        /// Inflate one message's payload (its tail appended).
        pub(crate) fn inflate(&mut self, payload: &[u8]) -> Result<String, String> {
            if self.reset {
                self.inflater = Decompress::new_with_window_bits(false, self.window_bits);
            }
            let mut input = payload.to_vec();
            input.extend_from_slice(&SYNC_TAIL);
            let mut out = Vec::with_capacity(1 << 16);
            let mut rest = &input[..];
            // A small output buffer: zlib then checks every distance
            // against the window (a large one would hide a reach too far).
            let mut chunk = [0u8; 64];
            loop {
                let (bi, bo) = (self.inflater.total_in(), self.inflater.total_out());
                self.inflater
                    .decompress(rest, &mut chunk, FlushDecompress::Sync)
                    .map_err(|e| e.to_string())?;
                let (used, made) = (
                    (self.inflater.total_in() - bi) as usize,
                    (self.inflater.total_out() - bo) as usize,
                );
                out.extend_from_slice(&chunk[..made]);
                rest = &rest[used..];
                if (rest.is_empty() && made < chunk.len()) || (used == 0 && made == 0) {
                    break;
                }
            }
            String::from_utf8(out).map_err(|e| e.to_string())
        }
    }

    /// A client's payload: head, its stored seq, body.
    pub(crate) fn payload(d: &Deflated, seq: u64) -> Vec<u8> {
        let mut s = [0u8; 24];
        let (n, _) = stored_seq(seq, &mut s);
        [&d.head[..], &s[..n], &d.body[..]].concat()
    }

    fn text(seq: u64, rest: &str) -> String {
        let mut digits = seq.to_string();
        while digits.len() < SEQ_WIDTH {
            digits.push(' ');
        }
        format!("{SEQ_PREFIX}{digits},{rest}")
    }

    fn rest(i: u64) -> String {
        format!(
            r#""timestamp":"2026-12-04T21:22:{:02}.{:06}+00:00","data":{{"top_skills":[{{"skill_name":"pytest-run","total_invocations":{}}}],"anomalies":[]}}}}"#,
            i % 60,
            i * 7919 % 1_000_000,
            700 + i / 3
        )
    }

    #[test]
    fn clients_with_different_seqs_inflate_the_same_shared_bytes() {
        let (r0, r1) = (rest(0), rest(1));
        let first = update(None, &r0).unwrap();
        let second = update(Some(&r0), &r1).unwrap();
        for seq in [1u64, 42, 9_999_999, 12_345_678] {
            let mut client = Reference::new(15, false);
            assert_eq!(
                client.inflate(&payload(&first, seq)).unwrap(),
                text(seq, &r0)
            );
            let got = client.inflate(&payload(&second, seq + 1)).unwrap();
            assert_eq!(got, text(seq + 1, &r1));
        }
        assert!(
            second.head.len() + second.body.len() < first.head.len() + first.body.len() / 2,
            "the dictionary frame refers back: {} vs {}",
            second.body.len(),
            first.body.len()
        );
    }

    #[test]
    fn a_seq_wider_than_the_field_goes_out_whole_in_a_frame_without_dictionary() {
        let r0 = rest(0);
        let free = update(None, &r0).unwrap();
        let seq = 123_456_789_012;
        let mut client = Reference::new(15, false);
        let got = client.inflate(&payload(&free, seq)).unwrap();
        assert_eq!(got, format!("{SEQ_PREFIX}{seq},{r0}"));
        let mut buf = [0u8; 24];
        assert_eq!(stored_seq(seq, &mut buf), (16, false));
        assert_eq!(stored_seq(7, &mut buf), (12, true));
        assert_eq!(&buf[..12], b"\x08\x00\xf7\xff7       ");
    }

    #[test]
    fn a_whole_message_inflates_under_any_window_state() {
        let mut client = Reference::new(15, false);
        let r0 = rest(0);
        client
            .inflate(&payload(&update(None, &r0).unwrap(), 1))
            .unwrap();
        let h = r#"{"type":"history","skills":[]}"#;
        assert_eq!(client.inflate(&whole(h).unwrap()).unwrap(), h);
    }
}
