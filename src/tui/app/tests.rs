//! `App::update` driven by events, one behaviour per test.

use std::time::Duration;

use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers, MouseButton, MouseEvent,
    MouseEventKind,
};

use super::*;
use crate::protocol::{ErrorCode, ErrorFrame, SkillStat};
use crate::tui::test_support::{ch, connected, key, secs, stat, t0, update};

fn three() -> Vec<SkillStat> {
    vec![
        stat("pytest-run", 30, 93.3, Some(6.34)),
        stat("ruff-check", 20, 100.0, Some(0.8)),
        stat("mypy", 10, 50.0, None),
    ]
}

fn live_app() -> App {
    let mut app = App::new("ws://x", Subscription::All, t0());
    app.update(connected(t0(), Some(1000)));
    app.update(update(t0(), Some(1), three(), vec![]));
    app
}

#[test]
fn connect_then_update_goes_live_with_rows() {
    let mut app = App::new("ws://x", Subscription::All, t0());
    assert_eq!(app.badge(), Badge::Connecting);
    app.update(Event::Feed(FeedEvent::Connecting {
        attempt: 1,
        at: t0(),
    }));
    assert_eq!(app.badge(), Badge::Connecting);
    app.update(connected(secs(1), None));
    assert_eq!(app.badge(), Badge::Live);
    app.update(update(secs(2), None, three(), vec![]));
    assert_eq!(app.live.rows.len(), 3);
    assert_eq!(app.live.rows[0].rank, 1);
    assert_eq!(app.live.rows[0].delta, None);
    assert_eq!(app.health.messages, 2);
    assert_eq!(app.now, secs(2));
}

#[test]
fn deltas_history_and_seq_gaps() {
    let mut app = live_app();
    let mut s = three();
    s[0].total_invocations = 33;
    app.update(update(secs(1), Some(2), s.clone(), vec![]));
    assert_eq!(app.live.rows[0].delta, Some(3));
    assert_eq!(app.live.history["pytest-run"].len(), 2);
    app.update(update(secs(2), Some(5), s.clone(), vec![]));
    assert_eq!(app.health.seq_gaps, 1);
    assert_eq!(app.health.seq_missed, 2);
    app.update(update(secs(3), Some(5), s, vec![]));
    assert_eq!(app.health.seq_duplicates, 1);
}

#[test]
fn stale_after_three_intervals_without_updates() {
    let mut app = live_app();
    app.update(Event::Tick(secs(3)));
    assert_eq!(app.badge(), Badge::Live);
    app.update(Event::Tick(secs(4)));
    assert_eq!(app.badge(), Badge::Stale);
    app.update(update(secs(5), Some(2), three(), vec![]));
    assert_eq!(app.badge(), Badge::Live);
    // A server announcing a 2 s interval is stale only after 6 s.
    app.update(connected(secs(5), Some(2000)));
    app.update(Event::Tick(secs(10)));
    assert_eq!(app.badge(), Badge::Live);
    app.update(Event::Tick(secs(12)));
    assert_eq!(app.badge(), Badge::Stale);
}

#[test]
fn not_stale_right_after_a_reconnect() {
    let mut app = live_app(); // last update at 1 s, interval 1 s
    app.update(Event::Feed(FeedEvent::Disconnected {
        code: Some(1006),
        reason: "lost".into(),
        retry_in: Duration::from_secs(30),
        at: secs(2),
    }));
    // Back after 60 s; session-buddy's first update may take an interval.
    app.update(connected(secs(60), Some(1000)));
    app.update(Event::Tick(secs(61)));
    assert_eq!(app.badge(), Badge::Live);
    app.update(Event::Tick(secs(64)));
    assert_eq!(app.badge(), Badge::Stale);
}

#[test]
fn disconnect_reconnect_and_failure() {
    let mut app = live_app();
    app.update(Event::Feed(FeedEvent::Disconnected {
        code: Some(1001),
        reason: "shutdown".into(),
        retry_in: Duration::from_millis(250),
        at: secs(1),
    }));
    assert_eq!(app.badge(), Badge::Reconnecting);
    assert_eq!(app.health.last_close, Some((Some(1001), "shutdown".into())));
    app.update(Event::Feed(FeedEvent::Connecting {
        attempt: 2,
        at: secs(2),
    }));
    assert_eq!(app.badge(), Badge::Reconnecting);
    app.update(connected(secs(2), None));
    assert_eq!(app.badge(), Badge::Live);
    assert_eq!(app.health.reconnects, 1);
    app.update(Event::Feed(FeedEvent::Failed {
        code: Some(4001),
        reason: "Authentication failed".into(),
        at: secs(3),
    }));
    assert_eq!(app.badge(), Badge::Failed);
}

#[test]
fn pongs_measure_rtt_and_bare_pongs_count() {
    let mut app = live_app();
    app.update(Event::Feed(FeedEvent::Pong {
        rtt: Some(Duration::from_millis(4)),
        at: secs(1),
    }));
    app.update(Event::Feed(FeedEvent::Pong {
        rtt: Some(Duration::from_millis(2)),
        at: secs(1),
    }));
    app.update(Event::Feed(FeedEvent::Pong {
        rtt: None,
        at: secs(1),
    }));
    assert_eq!(app.health.rtt_last, Some(Duration::from_millis(2)));
    assert_eq!(app.health.rtt_avg(), Some(Duration::from_millis(3)));
    assert_eq!(app.health.messages, 5);
}

#[test]
fn server_error_and_subscribed_are_recorded() {
    let mut app = live_app();
    app.update(Event::Feed(FeedEvent::Subscribed { at: secs(1) }));
    app.update(Event::Feed(FeedEvent::ServerError {
        error: ErrorFrame {
            code: ErrorCode::RateLimited,
            message: "slow down".into(),
        },
        at: secs(1),
    }));
    assert_eq!(app.health.last_error.as_deref(), Some("slow down"));
    assert!(app.status.as_deref().unwrap_or("").contains("slow down"));
}

#[test]
fn only_key_presses_count() {
    let mut app = live_app();
    app.dirty = false;
    app.update(Event::Key(KeyEvent {
        code: KeyCode::Char('q'),
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Release,
        state: KeyEventState::NONE,
    }));
    assert!(!app.quit);
    assert!(!app.dirty);
    app.update(Event::Key(KeyEvent {
        code: KeyCode::Char('q'),
        modifiers: KeyModifiers::NONE,
        kind: KeyEventKind::Repeat,
        state: KeyEventState::NONE,
    }));
    assert!(!app.quit);
    app.update(ch('q'));
    assert!(app.quit);
}

#[test]
fn quit_keys() {
    for ev in [
        ch('q'),
        key(KeyCode::Esc),
        Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
    ] {
        let mut app = live_app();
        app.update(ev);
        assert!(app.quit);
    }
}

#[test]
fn navigation_keys_move_the_selection() {
    let mut app = live_app();
    app.update(ch('j'));
    assert_eq!(app.selected.as_deref(), Some("ruff-check"));
    app.update(key(KeyCode::Down));
    app.update(key(KeyCode::Down));
    assert_eq!(app.selected.as_deref(), Some("mypy"));
    app.update(ch('k'));
    assert_eq!(app.selected_index(), 1);
    app.update(key(KeyCode::Home));
    assert_eq!(app.selected_index(), 0);
    app.update(key(KeyCode::End));
    assert_eq!(app.selected_index(), 2);
    app.update(key(KeyCode::PageUp));
    assert_eq!(app.selected_index(), 0);
    app.update(key(KeyCode::PageDown));
    assert_eq!(app.selected_index(), 2);
    app.update(key(KeyCode::Up));
    assert_eq!(app.selected_index(), 1);
}

#[test]
fn selection_follows_the_skill_across_resorts() {
    let mut app = live_app();
    app.update(ch('j')); // ruff-check
    app.update(ch('s')); // by name: mypy, pytest-run, ruff-check
    assert_eq!(app.sort, SortKey::Name);
    assert_eq!(app.selected_index(), 2);
    let names: Vec<_> = app
        .visible_rows()
        .iter()
        .map(|r| r.stat.skill_name.clone())
        .collect();
    assert_eq!(names, ["mypy", "pytest-run", "ruff-check"]);
    app.update(ch('S'));
    assert!(app.reversed);
    assert_eq!(app.visible_rows()[0].stat.skill_name, "ruff-check");
    app.update(ch('s')); // invocations, descending
    assert!(!app.reversed);
    assert_eq!(app.visible_rows()[0].stat.skill_name, "pytest-run");
    app.update(ch('s'));
    app.update(ch('s')); // completion
    assert_eq!(app.sort, SortKey::Completion);
    assert_eq!(app.visible_rows()[0].stat.skill_name, "ruff-check");
}

#[test]
fn filter_typing_escape_and_enter() {
    let mut app = live_app();
    app.update(ch('/'));
    assert_eq!(app.mode, Mode::Filter);
    for c in "PYT".chars() {
        app.update(ch(c));
    }
    assert_eq!(app.visible_rows().len(), 1, "case-insensitive");
    app.update(key(KeyCode::Backspace));
    assert_eq!(app.visible_rows().len(), 2, "pytest-run and mypy");
    app.update(key(KeyCode::Enter));
    assert_eq!(app.mode, Mode::Normal);
    assert_eq!(app.filter, "PY");
    // 'q' in filter mode types, it does not quit.
    app.update(ch('/'));
    app.update(ch('q'));
    assert!(!app.quit);
    assert_eq!(app.visible_rows().len(), 0);
    app.update(key(KeyCode::Esc));
    assert_eq!(app.filter, "");
    assert_eq!(app.mode, Mode::Normal);
    // Esc in normal mode with a filter clears it instead of quitting.
    app.filter = "my".into();
    app.update(key(KeyCode::Esc));
    assert!(!app.quit);
    assert_eq!(app.filter, "");
}

#[test]
fn help_and_detail_overlays() {
    let mut app = live_app();
    app.update(ch('?'));
    assert_eq!(app.overlay, Overlay::Help);
    app.update(ch('?'));
    assert_eq!(app.overlay, Overlay::None);
    app.update(ch('?'));
    app.update(key(KeyCode::Esc));
    assert_eq!(app.overlay, Overlay::None);
    assert!(!app.quit);
    app.update(ch('j'));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.overlay, Overlay::Detail("ruff-check".into()));
    app.update(ch('j'));
    assert_eq!(app.overlay, Overlay::Detail("mypy".into()));
    app.update(key(KeyCode::Enter));
    assert_eq!(app.overlay, Overlay::None);
}

#[test]
fn freeze_keeps_the_picture_while_data_arrives() {
    let mut app = live_app();
    app.update(ch('f'));
    assert!(app.frozen.is_some());
    let mut s = three();
    s[0].total_invocations = 99;
    app.update(update(secs(1), Some(2), s, vec![]));
    assert_eq!(app.view().rows[0].stat.total_invocations, 30);
    assert_eq!(app.live.rows[0].stat.total_invocations, 99);
    app.update(ch('f'));
    assert_eq!(app.view().rows[0].stat.total_invocations, 99);
}

#[test]
fn theme_cycles_unless_colours_are_off() {
    let mut app = live_app();
    app.update(ch('t'));
    assert_eq!(app.theme, ThemeName::Light);
    app.update(ch('t'));
    assert_eq!(app.theme, ThemeName::Mono);
    app.update(ch('t'));
    assert_eq!(app.theme, ThemeName::Dark);
    app.no_color = true;
    app.update(ch('t'));
    assert_eq!(app.theme, ThemeName::Dark);
    assert_eq!(app.theme().name, ThemeName::Mono);
}

#[test]
fn subscription_can_be_changed_live() {
    let mut app = live_app();
    app.update(ch('c'));
    assert_eq!(app.mode, Mode::Subscribe);
    for c in "mypy, pytest-run".chars() {
        app.update(ch(c));
    }
    app.update(key(KeyCode::Enter));
    let want = Subscription::from_names(["mypy", "pytest-run"]);
    assert_eq!(app.subscription, want);
    assert_eq!(app.outbox, vec![FeedCommand::Subscribe(want)]);
    app.outbox.clear();
    // Empty = all.
    app.update(ch('c'));
    assert_eq!(app.input, "mypy, pytest-run");
    for _ in 0..20 {
        app.update(key(KeyCode::Backspace));
    }
    app.update(key(KeyCode::Enter));
    assert_eq!(app.outbox, vec![FeedCommand::Subscribe(Subscription::All)]);
    // A name the server would refuse is refused here, with the reason.
    app.update(ch('c'));
    for _ in 0..300 {
        app.update(ch('x'));
    }
    app.update(key(KeyCode::Enter));
    assert_eq!(app.outbox, vec![FeedCommand::Subscribe(Subscription::All)]);
    assert_eq!(app.mode, Mode::Subscribe);
    assert!(app.status.as_deref().unwrap_or("").contains("longer than"));
    app.update(key(KeyCode::Esc));
    // Esc cancels.
    app.outbox.clear();
    app.update(ch('c'));
    app.update(ch('x'));
    app.update(key(KeyCode::Esc));
    assert!(app.outbox.is_empty());
    assert_eq!(app.mode, Mode::Normal);
}

#[test]
fn mouse_wheel_and_click() {
    let mut app = live_app();
    app.update(Event::Resize(100, 30));
    let mouse = |kind, column, row| {
        Event::Mouse(MouseEvent {
            kind,
            column,
            row,
            modifiers: KeyModifiers::NONE,
        })
    };
    app.update(mouse(MouseEventKind::ScrollDown, 5, 5));
    assert_eq!(app.selected_index(), 1);
    app.update(mouse(MouseEventKind::ScrollUp, 5, 5));
    assert_eq!(app.selected_index(), 0);
    // Table at y=1: border, header row, then data rows from y=3.
    app.update(mouse(MouseEventKind::Down(MouseButton::Left), 10, 5));
    assert_eq!(app.selected.as_deref(), Some("mypy"));
    // A click below the rows selects nothing new.
    app.update(mouse(MouseEventKind::Down(MouseButton::Left), 10, 9));
    assert_eq!(app.selected.as_deref(), Some("mypy"));
}

#[test]
fn resize_and_tick_mark_dirty() {
    let mut app = live_app();
    app.dirty = false;
    app.update(Event::Resize(120, 40));
    assert!(app.dirty);
    assert_eq!(app.size, (120, 40));
    app.dirty = false;
    app.update(Event::Tick(secs(9)));
    assert!(app.dirty);
    assert_eq!(app.now, secs(9));
    app.dirty = false;
    app.update(ch('x')); // unbound
    assert!(!app.dirty);
}

#[test]
fn message_rate_over_the_window() {
    let mut app = App::new("ws://x", Subscription::All, t0());
    app.update(connected(t0(), None));
    for i in 1..=10 {
        app.update(update(secs(i), None, three(), vec![]));
    }
    assert!((app.health.rate(secs(10)) - 1.0).abs() < 1e-9);
    assert_eq!(app.health.rate(secs(30)), 0.0);
}

fn anomaly(skill: &str, kind: &str) -> crate::protocol::Anomaly {
    crate::protocol::Anomaly {
        skill_name: skill.into(),
        detected_at: "2026-11-22T03:00:00Z".into(),
        anomaly_type: kind.into(),
        deviation_score: Some(-3.0),
        baseline_value: None,
        observed_value: None,
        source: None,
    }
}

#[test]
fn new_anomalies_are_highlighted_counted_and_cleared_by_the_seen_key() {
    let mut app = live_app();
    app.attention.bell = true;
    let a = anomaly("mypy", "drop");
    app.update(update(secs(1), Some(2), three(), vec![a.clone()]));
    assert_eq!(app.attention.unseen, 1);
    assert!(app.attention.is_fresh(&a, app.now));
    assert!(app.attention.title_flash(app.now));
    assert!(app.attention.bell_pending);
    assert!(app.hint_applies(Action::Seen));
    // The title flashes once a second (event time, not a clock).
    app.update(Event::Tick(secs(2)));
    assert!(!app.attention.title_flash(app.now));
    app.update(Event::Tick(secs(3)));
    assert!(app.attention.title_flash(app.now));
    // The same (skill, type) again is not new; a second type is.
    app.attention.bell_pending = false;
    let b = anomaly("mypy", "spike");
    app.update(update(
        secs(4),
        Some(3),
        three(),
        vec![a.clone(), b.clone()],
    ));
    assert_eq!(app.attention.unseen, 2);
    assert!(app.attention.bell_pending);
    // Highlights end after HIGHLIGHT_SECS; the count stays until seen.
    app.update(Event::Tick(secs(1 + HIGHLIGHT_SECS)));
    assert!(!app.attention.is_fresh(&a, app.now));
    assert!(app.attention.is_fresh(&b, app.now));
    app.update(Event::Tick(secs(4 + HIGHLIGHT_SECS)));
    assert!(!app.attention.is_fresh(&b, app.now));
    assert!(!app.attention.title_flash(app.now));
    assert_eq!(app.attention.unseen, 2);
    app.update(ch('a'));
    assert_eq!(app.attention.unseen, 0);
    assert!(!app.hint_applies(Action::Seen));
}

#[test]
fn the_first_picture_and_unchanged_anomalies_ask_for_nothing() {
    let mut app = App::new("ws://x", Subscription::All, t0());
    app.attention.bell = true;
    app.update(connected(t0(), Some(1000)));
    let a = anomaly("mypy", "drop");
    app.update(update(t0(), Some(1), three(), vec![a.clone()]));
    assert_eq!(app.attention.unseen, 0, "the first picture is the baseline");
    assert!(!app.attention.bell_pending);
    app.update(update(secs(1), Some(2), three(), vec![a.clone()]));
    assert_eq!(app.attention.unseen, 0);
    // Gone, then back: new again.
    app.update(update(secs(2), Some(3), three(), vec![]));
    app.update(update(secs(3), Some(4), three(), vec![a.clone()]));
    assert_eq!(app.attention.unseen, 1);
    assert!(app.attention.bell_pending);
    // Without --bell nothing rings.
    let mut quiet = live_app();
    quiet.update(update(secs(1), Some(2), three(), vec![a]));
    assert_eq!(quiet.attention.unseen, 1);
    assert!(!quiet.attention.bell_pending);
}

mod server_history {
    use super::*;
    use crate::protocol::HistoryWindow::{Day, Hour};
    use crate::tui::test_support::{connected_ext, history};

    fn asks(app: &mut App) -> Vec<FeedCommand> {
        std::mem::take(&mut app.outbox)
    }

    fn ask(skills: &[&str], window: HistoryWindow) -> FeedCommand {
        FeedCommand::History {
            skills: Some(
                skills
                    .iter()
                    .map(std::string::ToString::to_string)
                    .collect(),
            ),
            window,
        }
    }

    #[test]
    fn the_skills_in_view_are_asked_for_after_connect_subscribe_and_reconnect() {
        let mut app = App::new("ws://x", Subscription::All, t0());
        app.update(connected_ext(t0()));
        assert!(asks(&mut app).is_empty(), "no skills known yet");
        app.update(update(t0(), Some(1), three(), vec![]));
        assert_eq!(
            asks(&mut app),
            vec![ask(&["pytest-run", "ruff-check", "mypy"], Hour)]
        );
        app.update(update(secs(1), Some(2), three(), vec![]));
        assert!(asks(&mut app).is_empty(), "once per connection");
        // A subscription change: asked at the first update after the confirmation.
        app.update(Event::Feed(FeedEvent::Subscribed { at: secs(2) }));
        app.update(update(secs(2), Some(3), three()[..1].to_vec(), vec![]));
        assert_eq!(asks(&mut app), vec![ask(&["pytest-run"], Hour)]);
        // A reconnect asks again.
        app.update(Event::Feed(FeedEvent::Disconnected {
            code: Some(1006),
            reason: String::new(),
            retry_in: Duration::from_millis(250),
            at: secs(3),
        }));
        app.update(connected_ext(secs(4)));
        app.update(update(secs(4), Some(1), three(), vec![]));
        assert_eq!(asks(&mut app).len(), 1);
    }

    #[test]
    fn a_server_without_history_is_never_asked() {
        let mut app = live_app(); // `connected` without skillmon.v1
        app.update(Event::Feed(FeedEvent::Subscribed { at: secs(1) }));
        app.update(update(secs(1), Some(2), three(), vec![]));
        app.update(key(KeyCode::Enter));
        assert!(app.outbox.is_empty(), "{:?}", app.outbox);
        assert_eq!(app.history.offered, Some(false));
    }

    #[test]
    fn the_detail_view_asks_for_both_windows_and_a_key_switches() {
        let mut app = App::new("ws://x", Subscription::All, t0());
        app.update(connected_ext(t0()));
        app.update(update(t0(), Some(1), three(), vec![]));
        asks(&mut app);
        assert_eq!(app.window, Day);
        assert!(!app.hint_applies(Action::Window));
        app.update(key(KeyCode::Enter));
        assert_eq!(
            asks(&mut app),
            vec![ask(&["pytest-run"], Hour), ask(&["pytest-run"], Day)]
        );
        assert!(app.hint_applies(Action::Window));
        app.update(ch('w'));
        assert_eq!(app.window, Hour);
        app.update(ch('w'));
        assert_eq!(app.window, Day);
        // A reconnect while the detail view is open asks for it again.
        app.update(connected_ext(secs(5)));
        assert_eq!(asks(&mut app).len(), 2);
    }

    #[test]
    fn frames_are_kept_bounded_and_live_updates_extend_them() {
        let mut app = App::new("ws://x", Subscription::All, t0());
        app.update(connected_ext(t0()));
        let names: Vec<String> = (0..70).map(|i| format!("s{i:02}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        app.update(history(Hour, t0(), &refs, |i| i as u64, &[]));
        let hour = &app.history.series[&Hour];
        assert_eq!(hour.len(), MAX_HISTORY_SKILLS);
        assert!(hour.values().all(|s| s.buckets.len() == 60));
        // A later frame for other skills evicts the oldest series.
        app.update(history(Hour, t0(), &["pytest-run"], |_| 2, &[]));
        assert_eq!(app.history.series[&Hour].len(), MAX_HISTORY_SKILLS);
        assert!(app.history.get(Hour, "pytest-run").is_some());

        // Live: 3 new invocations at 03:00:30 go into the 03:00 bucket;
        // the next minute opens a bucket and the oldest one drops.
        app.update(update(secs(0), Some(1), three(), vec![]));
        let mut s = three();
        s[0].total_invocations += 3;
        app.update(update(secs(30), Some(2), s.clone(), vec![]));
        let series = app.history.get(Hour, "pytest-run").unwrap();
        assert_eq!(series.buckets.len(), 60);
        assert_eq!(series.buckets[59].invocations, 5);
        s[0].total_invocations += 4;
        app.update(update(secs(61), Some(3), s, vec![]));
        let series = app.history.get(Hour, "pytest-run").unwrap();
        assert_eq!(series.buckets.len(), 60);
        assert_eq!(series.buckets[58].invocations, 5);
        assert_eq!(series.buckets[59].invocations, 4);
        assert_eq!(series.buckets[59].start, secs(60));
    }
}

pub(crate) mod hostile_history {
    use super::*;
    use crate::protocol::{History, HistoryBucket, HistoryWindow, SkillHistory};
    use crate::tui::test_support::connected_ext;

    /// A frame no honest server sends: 500 buckets, out of order, absurd
    /// counts and durations, unparsable times.
    pub(crate) fn broken_frame() -> Event {
        let buckets = (0..500)
            .map(|i| HistoryBucket {
                start: if i % 7 == 0 {
                    "not a time".into()
                } else {
                    crate::protocol::format_bucket_start(1_700_000_000 - (i as i64 * 37_777))
                },
                invocations: u64::MAX - i as u64,
                completed: u64::MAX,
                avg_duration: [
                    Some(f64::NAN),
                    Some(f64::INFINITY),
                    Some(-1.0),
                    Some(1e300),
                    Some(2.0),
                ][i % 5],
            })
            .collect();
        Event::Feed(FeedEvent::History {
            history: History {
                window: HistoryWindow::Hour,
                bucket_seconds: -5,
                start: String::new(),
                timestamp: None,
                skills: vec![SkillHistory {
                    skill_name: "pytest-run".into(),
                    buckets,
                    anomalies: Vec::new(),
                }],
            },
            raw: Default::default(),
            at: t0(),
        })
    }

    #[test]
    fn a_broken_history_frame_is_bounded_and_cleaned() {
        let mut app = App::new("ws://x", Subscription::All, t0());
        app.update(connected_ext(t0()));
        app.update(update(t0(), Some(1), three(), vec![]));
        app.update(broken_frame());
        let s = app.history.get(HistoryWindow::Hour, "pytest-run").unwrap();
        assert_eq!(s.buckets.len(), 60);
        assert!(s.buckets.windows(2).all(|w| w[0].start <= w[1].start));
        assert!(
            s.buckets
                .iter()
                .filter_map(|b| b.avg_duration)
                .all(|d| d == 2.0)
        );
        assert!(s.buckets.iter().all(|b| b.completion() == Some(100.0)));
        // Live updates still fold in without overflow.
        let mut st = three();
        st[0].total_invocations += 5;
        app.update(update(secs(1), Some(2), st, vec![]));
    }

    #[test]
    fn freeze_keeps_the_trend_column_still() {
        let mut app = App::new("ws://x", Subscription::All, t0());
        app.update(connected_ext(t0()));
        app.update(update(t0(), Some(1), three(), vec![]));
        app.update(crate::tui::test_support::history(
            HistoryWindow::Hour,
            t0(),
            &["pytest-run"],
            |_| 1,
            &[],
        ));
        app.update(ch('f'));
        let mut st = three();
        st[0].total_invocations += 9;
        app.update(update(secs(1), Some(2), st, vec![]));
        let newest = |h: &ServerHistory| {
            h.get(HistoryWindow::Hour, "pytest-run")
                .and_then(|s| s.buckets.last())
                .map(|b| b.invocations)
        };
        assert_eq!(newest(&app.history), Some(10));
        assert_eq!(newest(app.trend_history()), Some(1));
        app.update(ch('f'));
        assert_eq!(newest(app.trend_history()), Some(10));
    }
}
