//! Headless `watch`: `--json` (one JSON line per `metrics_update`, the
//! frame as received compacted onto one line plus `received_at`) and
//! `--once` (one snapshot as an aligned table, or one JSON object with
//! `--json`, then exit). Data goes to stdout, connection problems to
//! stderr; every server string printed goes through [`crate::text`]'s
//! sanitizer (stdout JSON through its escaping). Updates that come faster
//! than stdout takes them are skipped for the newest (the batches of
//! [`FeedHandle`]). Owns no terminal state; it neither starts nor closes
//! the feed, nor installs signal handlers (`watch` does both).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::client::{FeedCommand, FeedEvent, FeedHandle};
use crate::protocol::{HistoryWindow, MetricsUpdate, Subscription};
use crate::text::{
    MAX_MESSAGE_CHARS, describe_close, escape_json_unsafe, sanitize_line, subscription_label,
};

mod format;
pub use format::{json_line, snapshot_table};

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
}

/// Exit code when no snapshot came or the connection failed.
pub const EXIT_NO_DATA: u8 = 1;
/// Exit code of `--once --fail-on-anomaly` when the snapshot holds an anomaly.
pub const EXIT_ANOMALY: u8 = 3;

/// How long a signal waits for a line being written to stdout to end.
const LAST_WRITE_GRACE: Duration = Duration::from_millis(50);

/// What printing one update came to.
enum Printed {
    Written,
    /// `--json` and the frame is not a JSON object: nothing written.
    NotAnObject,
    /// stdout is closed (or the printing task failed).
    Closed,
}

/// Format one update (`--json` line or `--once` table) and write it to
/// stdout. Blocking: runs on the blocking pool.
fn print_update(update: &MetricsUpdate, raw: &str, at: DateTime<Utc>, json: bool) -> Printed {
    let text = if json {
        match json_line(raw, at) {
            Some(line) => line,
            None => return Printed::NotAnObject,
        }
    } else {
        snapshot_table(update, at)
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
        Printed::Closed
    } else {
        Printed::Written
    }
}

/// Messages about frames the server sent that are not for stdout, at most
/// one line a second after the first (a flood must not flood stderr).
#[derive(Default)]
struct Notes {
    ignored: u64,
    skipped: u64,
    rejected_rows: u64,
    first_ignored: Option<String>,
    first_rejected: Option<String>,
    last: Option<tokio::time::Instant>,
    /// Error frames not printed yet (one line a second at most) and the
    /// newest of them.
    errors: u64,
    last_error: Option<String>,
    last_error_at: Option<tokio::time::Instant>,
}

impl Notes {
    /// An `error` frame: printed at once unless one was printed less than a
    /// second ago (then counted, and summed up by [`Notes::flush`]).
    fn server_error(&mut self, message: &str) {
        let now = tokio::time::Instant::now();
        if self
            .last_error_at
            .is_none_or(|t| now - t >= Duration::from_secs(1))
        {
            eprintln!(
                "skillmon watch: server error: {}",
                sanitize_line(message, MAX_MESSAGE_CHARS)
            );
            self.last_error_at = Some(now);
        } else {
            self.errors += 1;
            self.last_error = Some(message.to_owned());
        }
    }

    /// Print what accumulated, if the last note is old enough (or `force`).
    fn flush(&mut self, url: &str, force: bool) {
        let now = tokio::time::Instant::now();
        let due = force || self.last.is_none_or(|t| now - t >= Duration::from_secs(1));
        if !due {
            return;
        }
        let mut printed = false;
        if self.ignored > 0 {
            let why = self
                .first_ignored
                .take()
                .map(|w| format!(" ({})", sanitize_line(&w, MAX_MESSAGE_CHARS)))
                .unwrap_or_default();
            eprintln!(
                "skillmon watch: skipped {} frame(s) from {url} that are not protocol messages (not a JSON object with a string \"type\"){why}",
                self.ignored
            );
            self.ignored = 0;
            printed = true;
        }
        if self.rejected_rows > 0 {
            let why = self
                .first_rejected
                .take()
                .map(|w| format!(" (first: {})", sanitize_line(&w, MAX_MESSAGE_CHARS)))
                .unwrap_or_default();
            eprintln!(
                "skillmon watch: left out {} row(s) with bad values from {url}{why}",
                self.rejected_rows
            );
            self.rejected_rows = 0;
            printed = true;
        }
        if self.errors > 0 {
            let last = self.last_error.take().unwrap_or_default();
            eprintln!(
                "skillmon watch: {} more server error(s), the last: {}",
                self.errors,
                sanitize_line(&last, MAX_MESSAGE_CHARS)
            );
            self.errors = 0;
            self.last_error_at = Some(now);
            printed = true;
        }
        if self.skipped > 0 {
            eprintln!(
                "skillmon watch: skipped {} update(s) from {url}: they came faster than they could be written (the newest is kept)",
                self.skipped
            );
            self.skipped = 0;
            printed = true;
        }
        if printed {
            self.last = Some(now);
        }
    }
}

/// Run on `feed` until done; returns the process exit code.
pub async fn run(opts: HeadlessOptions, feed: &FeedHandle) -> anyhow::Result<ExitCode> {
    // A SIGINT/SIGTERM cancels `stop` (from `watch`'s own task), so a
    // signal that comes while this loop is busy is never lost; the loop
    // checks it first at every turn (biased select) and between events.
    let stop = feed.stop();
    let deadline = tokio::time::Instant::now() + opts.timeout;
    let mut connected_before = false;
    let mut notes = Notes::default();
    let url = opts.url.as_str();
    // The server took `skillmon.v1` (it offers history).
    let mut ext = false;
    // `--history`: the snapshot waiting for its history frame, and its exit code.
    let mut waiting: Option<(serde_json::Map<String, serde_json::Value>, ExitCode)> = None;
    let code = 'run: loop {
        let batch = tokio::select! {
            biased;
            () = stop.cancelled() => break ExitCode::SUCCESS,
            () = tokio::time::sleep_until(deadline), if opts.once && waiting.is_some() => {
                eprintln!(
                    "skillmon watch: no history frame from {url} within {:?} (--timeout)",
                    opts.timeout
                );
                break ExitCode::from(EXIT_NO_DATA);
            }
            () = tokio::time::sleep_until(deadline), if opts.once => {
                let what = match &opts.subscription {
                    Subscription::All => String::new(),
                    s @ Subscription::Skills(_) => format!(" for {}", subscription_label(s)),
                };
                eprintln!(
                    "skillmon watch: no metrics_update{what} from {url} within {:?} (--timeout)",
                    opts.timeout
                );
                break ExitCode::from(EXIT_NO_DATA);
            }
            b = feed.next_batch() => b,
        };
        let Some(batch) = batch else {
            break ExitCode::from(EXIT_NO_DATA);
        };
        notes.skipped += batch.skipped;
        for ev in batch.events {
            if stop.is_cancelled() {
                break 'run ExitCode::SUCCESS;
            }
            match ev {
                FeedEvent::Connected { ext: e, .. } => {
                    ext = e;
                    if connected_before {
                        eprintln!("skillmon watch: reconnected to {url}");
                    }
                    connected_before = true;
                }
                FeedEvent::Update { update, raw, at } => {
                    if update.rows.rejected > 0 {
                        notes.rejected_rows += update.rows.rejected;
                        if notes.first_rejected.is_none() {
                            notes.first_rejected.clone_from(&update.rows.first_error);
                        }
                    }
                    if !opts.json && !opts.once || waiting.is_some() {
                        continue;
                    }
                    let code = if opts.fail_on_anomaly && !update.data.anomalies.is_empty() {
                        ExitCode::from(EXIT_ANOMALY)
                    } else {
                        ExitCode::SUCCESS
                    };
                    if let (Some(window), true, true) = (opts.history, opts.once, opts.json) {
                        let mut obj = match json_line(raw.as_str(), at)
                            .and_then(|l| serde_json::from_str(&l).ok())
                        {
                            Some(serde_json::Value::Object(m)) => m,
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
                            if feed.commands().send(ask).await.is_ok() {
                                waiting = Some((obj, code));
                                continue;
                            }
                        } else {
                            eprintln!(
                                "skillmon watch: --history: {url} does not offer history (not a skillmon server); \"history\" is null"
                            );
                        }
                        obj.insert("history".into(), serde_json::Value::Null);
                        print_object(obj);
                        break 'run code;
                    }
                    // Formatting (megabytes for a large frame) and the write
                    // (which waits while the reader is slow) run off this
                    // loop, so a signal still ends it at once; one at a time,
                    // so memory stays bounded.
                    let json = opts.json;
                    let work = tokio::task::spawn_blocking(move || {
                        print_update(&update, raw.as_str(), at, json)
                    });
                    tokio::pin!(work);
                    let printed = tokio::select! {
                        biased;
                        () = stop.cancelled() => {
                            // Let a line being written end, briefly.
                            let _ = tokio::time::timeout(LAST_WRITE_GRACE, &mut work).await;
                            break 'run ExitCode::SUCCESS;
                        }
                        r = &mut work => r.unwrap_or(Printed::Closed),
                    };
                    match printed {
                        Printed::NotAnObject => {
                            notes.ignored += 1;
                            notes
                                .first_ignored
                                .get_or_insert_with(|| "not a JSON object".into());
                        }
                        // The reader went away (e.g. `| head`): a normal end.
                        Printed::Closed => break 'run ExitCode::SUCCESS,
                        Printed::Written if opts.once => break 'run code,
                        Printed::Written => {}
                    }
                }
                FeedEvent::History { raw, at, .. } => {
                    let Some((mut obj, code)) = waiting.take() else {
                        continue;
                    };
                    let frame = json_line(raw.as_str(), at)
                        .and_then(|l| serde_json::from_str(&l).ok())
                        .unwrap_or(serde_json::Value::Null);
                    obj.insert("history".into(), frame);
                    print_object(obj);
                    break 'run code;
                }
                FeedEvent::Ignored { reason, .. } => {
                    notes.ignored += 1;
                    notes.first_ignored.get_or_insert(reason);
                }
                FeedEvent::Disconnected {
                    code,
                    reason,
                    retry_in,
                    ..
                } => {
                    let why = describe_close(code, &reason);
                    if opts.once {
                        eprintln!("skillmon watch: cannot get a snapshot from {url}: {why}");
                        break 'run ExitCode::from(EXIT_NO_DATA);
                    }
                    eprintln!(
                        "skillmon watch: disconnected from {url} ({why}); retrying in {:.1}s",
                        retry_in.as_secs_f64()
                    );
                }
                FeedEvent::Failed { code, reason, .. } => {
                    eprintln!(
                        "skillmon watch: {url} refused the connection: {}; not retrying",
                        describe_close(code, &reason)
                    );
                    break 'run ExitCode::from(EXIT_NO_DATA);
                }
                FeedEvent::ServerError { error, .. } => {
                    notes.server_error(&error.message);
                    if waiting.is_some() {
                        // The history request was refused: no frame will come.
                        break 'run ExitCode::from(EXIT_NO_DATA);
                    }
                }
                FeedEvent::Connecting { .. }
                | FeedEvent::Subscribed { .. }
                | FeedEvent::Pong { .. } => {}
            }
        }
        notes.flush(url, false);
    };
    notes.flush(url, true);
    Ok(code)
}

/// One `--once --json --history` object on one line (JSON escaping keeps it
/// free of anything a terminal would act on).
fn print_object(obj: serde_json::Map<String, serde_json::Value>) {
    let text = escape_json_unsafe(serde_json::Value::Object(obj).to_string());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}").and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    use super::format::text_table;
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
        let s = json_line(r#"{"type": "metrics_update", "data": {}}"#, at).unwrap();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["type"], "metrics_update");
        assert_eq!(v["received_at"], "2026-11-22T03:00:00.000000+00:00");
        assert_eq!(
            json_line("{}", at).unwrap(),
            r#"{"received_at":"2026-11-22T03:00:00.000000+00:00"}"#
        );
        // The server's own received_at is replaced, not duplicated.
        let s = json_line(r#"{"received_at": 1, "a": 2}"#, at).unwrap();
        assert_eq!(s.matches("received_at").count(), 1, "{s}");
    }

    #[test]
    fn json_lines_are_one_compact_safe_object() {
        let at = crate::protocol::parse_timestamp("2026-11-22T03:00:00Z").unwrap();
        let raw = "{\n  \"type\": \"metrics_update\",\n\t\"data\": {\"top_skills\": [{\"skill_name\": \"a b\\n\\u001b]52;c;x\\u0007 \u{9b}\u{202e}\\\" }\", \"n\": 1e400}]}\r\n}";
        let line = json_line(raw, at).unwrap();
        assert!(!line.contains('\n'), "{line}");
        assert!(!line.bytes().any(|b| b < 0x20 || b == 0x7f), "{line}");
        assert!(
            !line.contains('\u{9b}') && !line.contains('\u{202e}'),
            "{line}"
        );
        // Strings keep their spaces and escapes; numbers are kept verbatim.
        assert!(
            line.contains(r#""skill_name":"a b\n\u001b]52;c;x\u0007 \u009b\u202e\" }""#),
            "{line}"
        );
        assert!(line.contains(r#""n":1e400"#), "{line}");
        assert!(json_line("[1, 2]", at).is_none());
        assert!(json_line("\"text\"", at).is_none());
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
            rows: crate::protocol::RowReport::default(),
            team: None,
        };
        let at = crate::protocol::parse_timestamp("2026-11-22T03:00:00Z").unwrap();
        let t = snapshot_table(&u, at);
        assert!(t.contains("pytest-run"), "{t}");
        assert!(t.contains("93.3%"), "{t}");
        assert!(t.ends_with("no anomalies"), "{t}");
    }
}
