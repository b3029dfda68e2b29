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
