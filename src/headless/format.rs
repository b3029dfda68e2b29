//! What the headless modes print: a frame as one compact, escaped JSON line
//! (`--json`) and a snapshot as an aligned table (`--once`). Pure text
//! work: no I/O.

use chrono::{DateTime, Utc};
use unicode_width::UnicodeWidthStr;

use crate::protocol::{MetricsUpdate, format_timestamp};
use crate::text::{PLACEHOLDER_PLAIN, escape_json_unsafe, has_ext, or_placeholder, sanitize};

/// The frame as received, compacted onto one line, with `received_at`
/// added, as one JSON object: whitespace outside strings is dropped (so a
/// frame spread over several lines is one line), strings and numbers are
/// kept byte for byte, and characters JSON allows raw but a terminal would
/// act on (DEL, C1, bidi and format characters) are written as `\uXXXX`.
/// `None` when the frame is not a JSON object.
pub(crate) fn json_line(raw: &str, at: DateTime<Utc>) -> Option<String> {
    let at = format_timestamp(at);
    if raw.contains("\"received_at\"") {
        // The server sent its own: replace it, the slow way.
        let serde_json::Value::Object(mut m) = serde_json::from_str(raw).ok()? else {
            return None;
        };
        m.insert("received_at".into(), serde_json::Value::String(at));
        return Some(escape_json_unsafe(serde_json::Value::Object(m).to_string()));
    }
    let compact = compact_json(raw);
    let body = compact.strip_prefix('{')?.strip_suffix('}')?;
    let sep = if body.is_empty() { "" } else { "," };
    Some(escape_json_unsafe(format!(
        "{{{body}{sep}\"received_at\":\"{at}\"}}"
    )))
}

/// `json` (valid JSON) without the whitespace outside its strings.
fn compact_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_str, mut escaped) = (false, false);
    for c in json.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '"' {
            in_str = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// Render rows as an aligned text table; `right[i]` right-aligns column i.
pub(super) fn text_table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.width()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.width());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            let pad = widths
                .get(i)
                .copied()
                .unwrap_or(0)
                .saturating_sub(c.width());
            let is_right = right.get(i).copied().unwrap_or(false);
            if is_right {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < n {
                    s.push_str(&" ".repeat(pad));
                }
            }
            if i + 1 < n {
                s.push_str("  ");
            }
        }
        out.push_str(s.trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for r in rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// The `--once` text: top skills and anomalies.
pub(crate) fn snapshot_table(update: &MetricsUpdate, received_at: DateTime<Utc>) -> String {
    let clean = |s: &str| sanitize(s).into_owned();
    let skills = &update.data.top_skills;
    let has_ext = has_ext(skills);
    let mut headers = vec!["RANK", "SKILL", "INVOCATIONS", "COMPLETION", "AVG DURATION"];
    let mut right = vec![true, false, true, true, true];
    if has_ext {
        headers.extend(["1H", "24H"]);
        right.extend([true, true]);
    }
    let opt = |v: Option<u64>| or_placeholder(v, PLACEHOLDER_PLAIN);
    let rows: Vec<Vec<String>> = skills
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut r = vec![
                (i + 1).to_string(),
                clean(&s.skill_name),
                s.total_invocations.to_string(),
                format!("{:.1}%", s.completion_rate),
                or_placeholder(
                    s.avg_duration_seconds.map(|d| format!("{d:.2}s")),
                    PLACEHOLDER_PLAIN,
                ),
            ];
            if has_ext {
                r.push(opt(s.invocations_1h));
                r.push(opt(s.invocations_24h));
            }
            r
        })
        .collect();
    let mut out = format!(
        "# skillmon snapshot, received {}{}\n",
        format_timestamp(received_at),
        update
            .timestamp
            .as_deref()
            .map(|t| format!(", server time {}", clean(t)))
            .unwrap_or_default()
    );
    if rows.is_empty() {
        out.push_str("no skills\n");
    } else {
        out.push_str(&text_table(&headers, &rows, &right));
    }
    out.push('\n');
    let anomalies = &update.data.anomalies;
    if anomalies.is_empty() {
        out.push_str("no anomalies\n");
    } else {
        let rows: Vec<Vec<String>> = anomalies
            .iter()
            .map(|a| {
                let f = |v: Option<f64>| or_placeholder(v, PLACEHOLDER_PLAIN);
                vec![
                    clean(&a.anomaly_type),
                    clean(&a.skill_name),
                    f(a.deviation_score),
                    clean(&a.detected_at),
                    f(a.baseline_value),
                    f(a.observed_value),
                ]
            })
            .collect();
        out.push_str(&text_table(
            &[
                "ANOMALY",
                "SKILL",
                "SCORE",
                "DETECTED AT",
                "BASELINE",
                "OBSERVED",
            ],
            &rows,
            &[false, false, true, false, true, true],
        ));
    }
    // No trailing blank line: println adds one newline.
    while out.ends_with('\n') {
        out.pop();
    }
    out
}
