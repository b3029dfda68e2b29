//! RFC 7692 `permessage-deflate`, on both sides: the negotiation
//! ([`negotiate`] on the server, [`OFFER`] and [`accepted`] on the client),
//! the server's shared compression of each update ([`compress`]), and the
//! inflating read adapter both sides put under tungstenite ([`inflate`]),
//! which has no permessage-deflate of its own.
//!
//! The scheme (`docs/ARCHITECTURE.md` § Compression): each group's update
//! is compressed at most twice per tick (once with the previous update as
//! the dictionary, once without), and the same compressed bytes go to
//! every deflate client of the group; a client's own `seq` goes between
//! them as a stored block of a fixed width ([`SEQ_WIDTH`]). No compressor
//! lives per connection; the server asks every client for
//! `client_no_context_takeover`, so no inflater lives per connection
//! either.

pub(crate) mod compress;
pub(crate) mod inflate;

/// `--compression`: offer or accept permessage-deflate, or not.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::EnumMessage,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Compression {
    /// RFC 7692 permessage-deflate (serve: agreed with any client that offers it; watch, bench: offered).
    #[default]
    Deflate,
    /// No compression: every frame as it is.
    Off,
}

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// What `watch` and `bench` offer: permessage-deflate with the server's
/// context kept across messages (so the server can refer back to the
/// previous update). They never compress what they send.
pub const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// What the server agreed with one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Agreed {
    /// `server_no_context_takeover`: the client resets its inflater after
    /// each message, so no frame may refer back to an earlier one.
    pub no_context_takeover: bool,
    /// `server_max_window_bits`: no back-reference may reach further than
    /// `1 << window_bits` bytes (15: 32 KiB, the default).
    pub window_bits: u8,
    /// The offer named `server_max_window_bits`: the answer must name it
    /// too (RFC 7692 §7.1.2.1), even at 15.
    pub window_offered: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` value the server answers with. It
    /// always asks for `client_no_context_takeover` (RFC 7692 §7.1.1.2
    /// lets a server ask it unasked), so each client message inflates on
    /// its own and the server keeps no inflater between messages.
    pub fn response(&self) -> String {
        let mut s = format!("{EXTENSION}; client_no_context_takeover");
        if self.no_context_takeover {
            s.push_str("; server_no_context_takeover");
        }
        if self.window_bits < 15 || self.window_offered {
            s.push_str(&format!("; server_max_window_bits={}", self.window_bits));
        }
        s
    }

    /// Whether a message whose back-references reach at most `reach`
    /// bytes back (into the dictionary before it included) is valid for
    /// this client's window.
    pub fn fits(&self, reach: usize) -> bool {
        reach <= 1usize << self.window_bits
    }
}

/// The server's answer to a client's `Sec-WebSocket-Extensions` headers:
/// the first permessage-deflate offer it can honour (RFC 7692 §5, §7),
/// `None` to decline (no offer, or none valid). An offer with an unknown,
/// repeated or invalid parameter is declined, never a failed handshake.
pub fn negotiate<'a>(headers: impl IntoIterator<Item = &'a str>) -> Option<Agreed> {
    headers
        .into_iter()
        .flat_map(|h| h.split(','))
        .find_map(offer)
}

/// One offer (`permessage-deflate; a; b=1`), if it is permessage-deflate
/// and every parameter is known, once, with a valid value.
fn offer(text: &str) -> Option<Agreed> {
    let mut parts = text.split(';').map(str::trim);
    if !parts.next()?.eq_ignore_ascii_case(EXTENSION) {
        return None;
    }
    let mut agreed = Agreed {
        no_context_takeover: false,
        window_bits: 15,
        window_offered: false,
    };
    let mut seen = [false; 4];
    for part in parts {
        let (name, value) = match part.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (part, None),
        };
        let slot = match name.to_ascii_lowercase().as_str() {
            "server_no_context_takeover" if value.is_none() => {
                agreed.no_context_takeover = true;
                0
            }
            "client_no_context_takeover" if value.is_none() => 1,
            "server_max_window_bits" => {
                agreed.window_bits = window_bits(value?)?;
                agreed.window_offered = true;
                2
            }
            "client_max_window_bits" => {
                if let Some(v) = value {
                    window_bits(v)?;
                }
                3
            }
            _ => return None,
        };
        if std::mem::replace(&mut seen[slot], true) {
            return None;
        }
    }
    Some(agreed)
}

/// A window size parameter: 8 to 15, digits only.
fn window_bits(v: &str) -> Option<u8> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok().filter(|b| (8..=15).contains(b))
}

/// The client's reading of the server's `Sec-WebSocket-Extensions`
/// answer to [`OFFER`]: `Ok(None)` when it declined, `Ok(Some(context
/// takeover))` when it accepted, an error naming the problem when the
/// answer is not one RFC 7692 allows for that offer.
pub fn accepted<'a>(headers: impl IntoIterator<Item = &'a str>) -> Result<Option<bool>, String> {
    let mut found = None;
    for ext in headers.into_iter().flat_map(|h| h.split(',')) {
        let ext = ext.trim();
        if ext.is_empty() {
            continue;
        }
        let mut parts = ext.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        if !name.eq_ignore_ascii_case(EXTENSION) {
            return Err(format!(
                "the server answered with extension {name:?}, which was not offered"
            ));
        }
        if found.is_some() {
            return Err("the server accepted permessage-deflate twice".into());
        }
        let mut takeover = true;
        let mut seen: Vec<String> = Vec::new();
        for part in parts {
            let (pname, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
                None => (part, None),
            };
            let pname = pname.to_ascii_lowercase();
            if seen.contains(&pname) {
                return Err(format!(
                    "the server's permessage-deflate answer repeats {:?}",
                    crate::text::sanitize_line(&pname, 40)
                ));
            }
            seen.push(pname.clone());
            match (pname.as_str(), value) {
                ("server_no_context_takeover", None) => takeover = false,
                ("client_no_context_takeover", None) => {}
                ("server_max_window_bits" | "client_max_window_bits", Some(v))
                    if window_bits(v).is_some() => {}
                _ => {
                    return Err(format!(
                        "the server's permessage-deflate answer has an invalid parameter {part:?}"
                    ));
                }
            }
        }
        found = Some(takeover);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::unnecessary_wraps)]
    fn agreed(no_context_takeover: bool, window_bits: u8) -> Option<Agreed> {
        Some(Agreed {
            no_context_takeover,
            window_bits,
            window_offered: window_bits < 15,
        })
    }

    #[test]
    fn offers_browsers_and_python_send_are_accepted() {
        // Chromium, Firefox
        assert_eq!(
            negotiate(["permessage-deflate; client_max_window_bits"]),
            agreed(false, 15)
        );
        // Python websockets
        assert_eq!(
            negotiate(["permessage-deflate; client_max_window_bits=12"]),
            agreed(false, 15)
        );
        assert_eq!(negotiate(["permessage-deflate"]), agreed(false, 15));
        assert_eq!(negotiate(["x-webkit-deflate-frame"]), None);
        assert_eq!(negotiate(std::iter::empty()), None);
    }

    #[test]
    fn server_parameters_are_honoured() {
        assert_eq!(
            negotiate(["permessage-deflate; server_no_context_takeover"]),
            agreed(true, 15)
        );
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=9"]),
            agreed(false, 9)
        );
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=\"10\""]),
            agreed(false, 10)
        );
        let a =
            negotiate(["permessage-deflate; server_max_window_bits=9; server_no_context_takeover"])
                .unwrap();
        assert_eq!(
            a.response(),
            "permessage-deflate; client_no_context_takeover; server_no_context_takeover; server_max_window_bits=9"
        );
        assert_eq!(
            negotiate(["permessage-deflate"]).unwrap().response(),
            "permessage-deflate; client_no_context_takeover"
        );
        // Offered at 15: still named in the answer (RFC 7692 §7.1.2.1;
        // Python websockets fails the handshake otherwise).
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=15"])
                .unwrap()
                .response(),
            "permessage-deflate; client_no_context_takeover; server_max_window_bits=15"
        );
    }

    #[test]
    fn an_offer_that_cannot_be_honoured_is_declined_and_the_next_one_taken() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; client_max_window_bits=99",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; mystery",
        ] {
            assert_eq!(negotiate([bad]), None, "{bad}");
        }
        assert_eq!(
            negotiate([
                "permessage-deflate; mystery, permessage-deflate; server_max_window_bits=12"
            ]),
            agreed(false, 12)
        );
        assert_eq!(
            negotiate(["foo", "permessage-deflate; server_no_context_takeover"]),
            agreed(true, 15)
        );
    }

    #[test]
    fn the_client_reads_the_answer() {
        assert_eq!(accepted(std::iter::empty()), Ok(None));
        assert_eq!(
            accepted(["permessage-deflate; client_no_context_takeover"]),
            Ok(Some(true))
        );
        assert_eq!(
            accepted(["permessage-deflate; server_no_context_takeover; server_max_window_bits=10"]),
            Ok(Some(false))
        );
        assert!(accepted(["permessage-deflate; zzz"]).is_err());
        assert!(accepted(["other"]).is_err());
        assert!(accepted(["permessage-deflate, permessage-deflate"]).is_err());
        assert!(
            accepted([
                "permessage-deflate; server_no_context_takeover; Server_No_Context_Takeover"
            ])
            .unwrap_err()
            .contains("repeats")
        );
    }
}
