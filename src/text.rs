//! Text helpers shared by every printed or drawn output (the dashboard in
//! [`crate::tui`] and the headless printers in [`crate::headless`]):
//! control-character sanitizing, truncation by display width, close-code
//! wording, the subscription label and the "no value" placeholders.
//!
//! Owns only pure string functions; it must not know about the terminal,
//! ratatui or the dashboard state.

use std::borrow::Cow;
use std::fmt::Display;

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use crate::protocol::{SkillStat, Subscription};

/// The "no value" placeholder on the interactive dashboard.
pub const PLACEHOLDER_SCREEN: &str = "—";
/// The "no value" placeholder in plain-text output (`watch --once`), ASCII
/// so that it survives any pipe or locale.
pub const PLACEHOLDER_PLAIN: &str = "-";

/// Is `c` unsafe to draw or print as it is? Control characters (C0, DEL,
/// C1: they move the cursor or change the terminal state, ESC starts every
/// escape sequence), bidirectional overrides and isolates (they reorder what
/// follows) and the other invisible format characters (soft hyphen,
/// zero-width space/joiners, word joiner, BOM, interlinear annotation, tag
/// characters…): terminals disagree with `unicode-width` about how many
/// columns those take (U+00AD is width 0 for `unicode-width` 0.2, yet
/// xterm and VTE draw it as a one-column `-`), which shifts every border
/// drawn after them.
pub fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'
                | '\u{034F}'
                | '\u{061C}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{3164}'
                | '\u{FEFF}'
                | '\u{FFA0}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{0600}'..='\u{0605}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
        )
}

/// The one sanitizer for every string that came from the network, in every
/// mode (dashboard, `--once` table, stderr messages, health panel): each
/// [unsafe character](is_unsafe_char) becomes U+FFFD `�` (one column
/// everywhere), so nothing a server sends can reach the terminal as a
/// control sequence and the width `unicode-width` computes is the width
/// drawn. Borrowed when there is nothing to replace.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if s.chars().any(is_unsafe_char) {
        Cow::Owned(
            s.chars()
                .map(|c| if is_unsafe_char(c) { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// [`sanitize`], then cut to at most `max_chars` characters (`…` marks the
/// cut): for messages a server chose the length of (error frames, close
/// reasons, refused-connection bodies) on one stderr line.
pub fn sanitize_line(s: &str, max_chars: usize) -> String {
    let s = sanitize(s);
    let kept = truncate_chars(&s, max_chars);
    if kept.len() < s.len() {
        format!("{kept}…")
    } else {
        s.into_owned()
    }
}

/// The longest prefix of `s` with at most `max_chars` characters (no mark):
/// for names echoed back in an `error` frame.
pub fn truncate_chars(s: &str, max_chars: usize) -> &str {
    match s.char_indices().nth(max_chars) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a
/// character boundary (no mark): for text that must fit a byte budget, such
/// as a close frame's reason or an event kept in memory.
pub fn truncate_bytes(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut i = max_bytes;
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    &s[..i]
}

/// Longest server-chosen message printed on one line (error frames, close
/// reasons, refused-connection text), in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// JSON text made safe for a terminal without changing its meaning: every
/// [unsafe character](is_unsafe_char) that JSON allows raw inside a string
/// (DEL, C1, bidi and format characters) is written as a `\uXXXX` escape
/// (a surrogate pair beyond the BMP). `json` must come from `serde_json`'s
/// serializer, which already escapes C0 (`\u001b`) and uses no
/// non-ASCII character outside strings, so the result parses to the same value.
pub fn escape_json_unsafe(json: String) -> String {
    if !json.chars().any(is_unsafe_char) {
        return json;
    }
    let mut out = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if is_unsafe_char(c) {
            let mut buf = [0u16; 2];
            for unit in c.encode_utf16(&mut buf) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Fit `s` into `max` terminal columns, ending with `…` when cut. Cuts
/// between characters, by display width (wide CJK and emoji count 2).
/// The result is sanitized.
pub fn truncate_width(s: &str, max: usize) -> String {
    let s = sanitize(s);
    if s.width() <= max {
        return s.into_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut w = 0;
    for c in s.chars() {
        let cw = c.width().unwrap_or(0);
        if w + cw > max - 1 {
            break;
        }
        w += cw;
        out.push(c);
    }
    out.push('…');
    out
}

/// What a WebSocket close code means, for people; `None` for codes this
/// crate gives no meaning to.
pub fn close_code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        1000 => "normal close",
        1001 => "server going away",
        1006 => "connection lost",
        1008 => "policy violation",
        1009 => "message too big",
        1011 => "server error",
        1012 => "server restarting",
        1013 => "server overloaded, try later",
        4001 => "authentication failed",
        4401 => "authentication required",
        4403 => "forbidden",
        _ => return None,
    })
}

/// A close code with its meaning when known: "1001 server going away", "4999".
pub fn close_code_label(code: u16) -> String {
    match close_code_name(code) {
        Some(n) => format!("{code} {n}"),
        None => code.to_string(),
    }
}

/// A close for a sentence: "shutdown (close code 1001, server going away)",
/// the reason alone without a code, the code alone without a reason. The
/// reason comes from the server: it is sanitized and cut to
/// [`MAX_MESSAGE_CHARS`].
pub fn describe_close(code: Option<u16>, reason: &str) -> String {
    let reason = sanitize_line(reason, MAX_MESSAGE_CHARS);
    let reason = reason.as_str();
    let c = match code {
        Some(c) => match close_code_name(c) {
            Some(n) => format!("close code {c}, {n}"),
            None => format!("close code {c}"),
        },
        None => String::new(),
    };
    match (c.is_empty(), reason.is_empty()) {
        (true, _) => reason.to_string(),
        (false, true) => c,
        (false, false) => format!("{reason} ({c})"),
    }
}

/// "all skills", or the subscribed names (sanitized), comma-separated.
pub fn subscription_label(s: &Subscription) -> String {
    match s {
        Subscription::All => "all skills".into(),
        Subscription::Skills(v) => v
            .iter()
            .map(|s| sanitize(s).into_owned())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// The value as text, or `placeholder` when there is none.
pub fn or_placeholder<T: Display>(v: Option<T>, placeholder: &str) -> String {
    v.map_or_else(|| placeholder.to_string(), |v| v.to_string())
}

/// Does any skill carry the 1h/24h extension counts (skillmon servers do,
/// session-buddy does not)? Their columns are shown only then.
pub fn has_ext<'a>(stats: impl IntoIterator<Item = &'a SkillStat>) -> bool {
    stats
        .into_iter()
        .any(|s| s.invocations_1h.is_some() || s.invocations_24h.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitize_replaces_control_characters_only() {
        assert_eq!(sanitize("a\x1b[2Jb\n"), "a\u{fffd}[2Jb\u{fffd}");
        assert!(matches!(sanitize("plain – 日本"), Cow::Borrowed(_)));
    }

    #[test]
    fn sanitize_replaces_c1_del_bidi_and_format_characters() {
        // C1 CSI, DEL, a bidi override, an isolate, soft hyphen, zero-width
        // space and joiner, BOM, a tag character: each one column of U+FFFD.
        let s = "a\u{9b}b\u{7f}c\u{202e}d\u{2066}e\u{ad}f\u{200b}g\u{200d}h\u{feff}i\u{e0041}";
        assert_eq!(sanitize(s), "a�b�c�d�e�f�g�h�i�");
        assert_eq!(sanitize(s).width(), 18);
        // Accents, CJK and emoji are text, not format characters.
        assert!(matches!(sanitize("café 日本 🚀 é"), Cow::Borrowed(_)));
    }

    #[test]
    fn unicode_width_and_terminals_disagree_on_format_characters() {
        // Why they are replaced: unicode-width 0.2 gives a soft hyphen (and
        // zero-width characters) no column, while many terminals (xterm,
        // VTE) draw a soft hyphen as a one-column `-`: everything right of
        // it shifts. After `sanitize` both count the same.
        assert_eq!(('\u{ad}'.width(), "a\u{ad}b".width()), (Some(0), 2));
        assert_eq!("a\u{200b}b".width(), 2);
        assert_eq!(sanitize("a\u{ad}b\u{200b}c").width(), 5);
    }

    #[test]
    fn sanitize_line_cuts_long_messages() {
        assert_eq!(
            sanitize_line("abc\x1b]52;c;Zm9v\x07", 100),
            "abc�]52;c;Zm9v�"
        );
        assert_eq!(sanitize_line("abcdef", 3), "abc…");
        assert_eq!(sanitize_line("abc", 3), "abc");
    }

    #[test]
    fn json_escaping_keeps_the_value_and_drops_raw_unsafe_characters() {
        let v =
            serde_json::json!({"name": "x\u{1b}[2J\u{9b}\u{202e}\u{ad}\u{e0041}\u{7f}y", "n": 1});
        let text = escape_json_unsafe(v.to_string());
        assert!(text.chars().all(|c| !is_unsafe_char(c)), "{text}");
        assert!(!text.bytes().any(|b| b < 0x20 || b == 0x7f), "{text}");
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        assert_eq!(escape_json_unsafe("{}".into()), "{}");
    }

    #[test]
    fn truncate_counts_display_width() {
        assert_eq!(truncate_width("abcdef", 6), "abcdef");
        assert_eq!(truncate_width("abcdef", 4), "abc…");
        assert_eq!(truncate_width("日本語", 4), "日…");
        assert_eq!(truncate_width("abc", 0), "");
        assert_eq!(truncate_width("a\x07bc", 3), "a\u{fffd}…");
    }

    #[test]
    fn close_code_wording() {
        assert_eq!(close_code_name(4001), Some("authentication failed"));
        assert_eq!(close_code_name(4999), None);
        assert_eq!(close_code_label(1001), "1001 server going away");
        assert_eq!(close_code_label(4999), "4999");
        assert_eq!(
            describe_close(Some(1001), "shutdown"),
            "shutdown (close code 1001, server going away)"
        );
        assert_eq!(describe_close(Some(4999), ""), "close code 4999");
        assert_eq!(describe_close(None, "refused"), "refused");
        assert_eq!(
            describe_close(Some(1000), "\x1b]0;owned\x07"),
            "�]0;owned� (close code 1000, normal close)"
        );
    }

    #[test]
    fn labels_and_placeholders() {
        assert_eq!(subscription_label(&Subscription::All), "all skills");
        assert_eq!(
            subscription_label(&Subscription::from_names(["a", "b\x1b"])),
            "a, b\u{fffd}"
        );
        assert_eq!(or_placeholder(Some(3u64), PLACEHOLDER_PLAIN), "3");
        assert_eq!(or_placeholder(None::<u64>, PLACEHOLDER_SCREEN), "—");
    }
}
