//! Headless `watch`: `--json` (one JSON line per `metrics_update`, the
//! frame as received plus `received_at`) and `--once` (one snapshot as an
//! aligned table, or one JSON object with `--json`, then exit). Data goes to
//! stdout, connection problems to stderr. Owns no terminal state.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};
use unicode_width::UnicodeWidthStr;

use crate::client::{Feed, FeedCommand, FeedEvent};
use crate::protocol::{HistoryWindow, MetricsUpdate, Subscription, format_timestamp};
use crate::text::{
    PLACEHOLDER_PLAIN, describe_close, has_ext, or_placeholder, sanitize, subscription_label,
};

/// What to print and when to stop.
#[derive(Debug, Clone)]
pub struct HeadlessOptions {
    pub url: String,
    pub subscription: Subscription,
    pub json: bool,
    pub once: bool,
    pub timeout: Duration,
    /// `--fail-on-anomaly`: with `--once`, exit [`EXIT_ANOMALY`] when the
    /// snapshot holds any anomaly.
    pub fail_on_anomaly: bool,
    /// `--history 1h|24h` (with `--once --json`): ask for that history of
    /// the snapshot's skills and print the frame as the object's `history`.
    pub history: Option<HistoryWindow>,
    /// Token, TLS trust and limits.
    pub connect: crate::client::ConnectOptions,
}

/// Exit code when no snapshot came or the connection failed.
pub const EXIT_NO_DATA: u8 = 1;
/// Exit code of `--once --fail-on-anomaly` when the snapshot holds an anomaly.
pub const EXIT_ANOMALY: u8 = 3;

/// The frame as received with `received_at` added (a JSON object).
pub fn with_received_at(raw: &str, at: DateTime<Utc>) -> String {
    match serde_json::from_str::<serde_json::Value>(raw) {
        Ok(serde_json::Value::Object(mut m)) => {
            m.insert(
                "received_at".into(),
                serde_json::Value::String(format_timestamp(at)),
            );
            serde_json::Value::Object(m).to_string()
        }
        _ => raw.to_string(),
    }
}

/// Run until done; returns the process exit code.
pub async fn run(opts: HeadlessOptions) -> anyhow::Result<ExitCode> {
    let (feed, mut rx) = Feed::spawn_with(
        opts.url.clone(),
        opts.subscription.clone(),
        opts.connect.clone(),
    );
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut connected_before = false;
    // The server took `skillmon.v1` (it offers history).
    let mut ext = false;
    // `--history`: the snapshot waiting for its history frame, and its exit code.
    let mut waiting: Option<(serde_json::Map<String, serde_json::Value>, ExitCode)> = None;
    let code = loop {
        let ev = tokio::select! {
            ev = rx.recv() => ev,
            () = tokio::time::sleep_until(deadline), if opts.once && waiting.is_some() => {
                eprintln!(
                    "skillmon watch: no history frame from {} within {:?} (--timeout)",
                    opts.url, opts.timeout
                );
                break ExitCode::from(EXIT_NO_DATA);
            }
            () = tokio::time::sleep_until(deadline), if opts.once => {
                let what = match &opts.subscription {
                    Subscription::All => String::new(),
                    s @ Subscription::Skills(_) => format!(" for {}", subscription_label(s)),
                };
                eprintln!(
                    "skillmon watch: no metrics_update{what} from {} within {:?} (--timeout)",
                    opts.url, opts.timeout
                );
                break ExitCode::from(EXIT_NO_DATA);
            }
            _ = tokio::signal::ctrl_c() => break ExitCode::SUCCESS,
        };
        let Some(ev) = ev else {
            break ExitCode::from(EXIT_NO_DATA);
        };
        match ev {
            FeedEvent::Connected { ext: e, .. } => {
                ext = e;
                if connected_before {
                    eprintln!("skillmon watch: reconnected to {}", opts.url);
                }
                connected_before = true;
            }
            FeedEvent::Update { .. } if waiting.is_some() => {}
            FeedEvent::Update { update, raw, at } => {
                let code = if opts.fail_on_anomaly && !update.data.anomalies.is_empty() {
                    ExitCode::from(EXIT_ANOMALY)
                } else {
                    ExitCode::SUCCESS
                };
                if let (Some(window), true, true) = (opts.history, opts.once, opts.json) {
                    let mut obj = match serde_json::from_str(&with_received_at(&raw, at)) {
                        Ok(serde_json::Value::Object(m)) => m,
                        _ => serde_json::Map::new(),
                    };
                    if ext {
                        let names: Vec<String> = update
                            .data
                            .top_skills
                            .iter()
                            .take(crate::protocol::MAX_HISTORY_SKILLS)
                            .map(|s| s.skill_name.clone())
                            .collect();
                        let ask = FeedCommand::History {
                            skills: (!names.is_empty()).then_some(names),
                            window,
                        };
                        if feed.commands.send(ask).await.is_ok() {
                            waiting = Some((obj, code));
                            continue;
                        }
                    } else {
                        eprintln!(
                            "skillmon watch: --history: {} does not offer history (not a skillmon server); \"history\" is null",
                            opts.url
                        );
                    }
                    obj.insert("history".into(), serde_json::Value::Null);
                    let text = serde_json::Value::Object(obj).to_string();
                    let mut out = std::io::stdout().lock();
                    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
                    break code;
                }
                let text = if opts.json {
                    with_received_at(&raw, at)
                } else if opts.once {
                    snapshot_table(&update, at)
                } else {
                    continue;
                };
                let mut out = std::io::stdout().lock();
                if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
                    // The reader went away (e.g. `| head`): a normal end.
                    break ExitCode::SUCCESS;
                }
                if opts.once {
                    break code;
                }
            }
            FeedEvent::History { raw, at, .. } => {
                let Some((mut obj, code)) = waiting.take() else {
                    continue;
                };
                let frame = match serde_json::from_str(&with_received_at(&raw, at)) {
                    Ok(v) => v,
                    Err(_) => serde_json::Value::Null,
                };
                obj.insert("history".into(), frame);
                let text = serde_json::Value::Object(obj).to_string();
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}").and_then(|()| out.flush());
                break code;
            }
            FeedEvent::Disconnected {
                code,
                reason,
                retry_in,
                ..
            } => {
                let why = describe_close(code, &reason);
                if opts.once {
                    eprintln!(
                        "skillmon watch: cannot get a snapshot from {}: {why}",
                        opts.url
                    );
                    break ExitCode::from(EXIT_NO_DATA);
                }
                eprintln!(
                    "skillmon watch: disconnected from {} ({why}); retrying in {:.1}s",
                    opts.url,
                    retry_in.as_secs_f64()
                );
            }
            FeedEvent::Failed { code, reason, .. } => {
                eprintln!(
                    "skillmon watch: {} refused the connection: {}; not retrying",
                    opts.url,
                    describe_close(code, &reason)
                );
                break ExitCode::from(EXIT_NO_DATA);
            }
            FeedEvent::ServerError { error, .. } => {
                eprintln!("skillmon watch: server error: {}", error.message);
                if waiting.is_some() {
                    // The history request was refused: no frame will come.
                    break ExitCode::from(EXIT_NO_DATA);
                }
            }
            FeedEvent::Connecting { .. }
            | FeedEvent::Subscribed { .. }
            | FeedEvent::Pong { .. } => {}
        }
    };
    feed.close(rx).await;
    Ok(code)
}

/// Render rows as an aligned text table; `right[i]` right-aligns column i.
pub fn text_table(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
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
pub fn snapshot_table(update: &MetricsUpdate, received_at: DateTime<Utc>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{MetricsData, SkillStat};

    #[test]
    fn table_aligns_by_display_width() {
        let t = text_table(
            &["A", "NAME", "N"],
            &[
                vec!["1".into(), "日本語".into(), "5".into()],
                vec!["10".into(), "ab".into(), "123".into()],
            ],
            &[true, false, true],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], " A  NAME      N");
        assert_eq!(lines[1], " 1  日本語    5");
        assert_eq!(lines[2], "10  ab      123");
    }

    #[test]
    fn received_at_is_added() {
        let at = crate::protocol::parse_timestamp("2026-11-22T03:00:00Z").unwrap();
        let s = with_received_at(r#"{"type": "metrics_update", "data": {}}"#, at);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], "metrics_update");
        assert_eq!(v["received_at"], "2026-11-22T03:00:00.000000+00:00");
    }

    #[test]
    fn snapshot_lists_skills_and_no_anomalies() {
        let u = MetricsUpdate {
            seq: None,
            timestamp: None,
            data: MetricsData {
                top_skills: vec![SkillStat {
                    skill_name: "pytest-run".into(),
                    total_invocations: 30,
                    completion_rate: 93.33333333333333,
                    avg_duration_seconds: None,
                    invocations_1h: None,
                    invocations_24h: None,
                    last_invoked_at: None,
                }],
                anomalies: vec![],
            },
        };
        let at = crate::protocol::parse_timestamp("2026-11-22T03:00:00Z").unwrap();
        let t = snapshot_table(&u, at);
        assert!(t.contains("pytest-run"), "{t}");
        assert!(t.contains("93.3%"), "{t}");
        assert!(t.ends_with("no anomalies"), "{t}");
    }
}
