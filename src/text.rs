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

/// Replace control characters (which would move the cursor or change the
/// terminal state) with U+FFFD.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
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
/// the reason alone without a code, the code alone without a reason.
pub fn describe_close(code: Option<u16>, reason: &str) -> String {
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
