//! Whole-frame snapshots through ratatui's `TestBackend` (gitui's habit):
//! real `App` states reached through `App::update`, a fixed clock.

use std::time::Duration;

use crossterm::event::KeyCode;
use ratatui::Terminal;
use ratatui::backend::TestBackend;

use crate::client::FeedEvent;
use crate::protocol::{Anomaly, SkillStat, Subscription};
use crate::tui::app::{App, Event};
use crate::tui::test_support::{ch, connected, key, secs, stat, t0, update};

fn draw(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).expect("test backend");
    t.draw(|f| super::render(app, f)).expect("draw");
    t
}

fn skills() -> Vec<SkillStat> {
    let mut v = vec![
        stat("pytest-run", 30, 93.33333333333333, Some(6.34)),
        stat("ruff-check", 24, 100.0, Some(0.82)),
        stat("mypy", 12, 58.3, Some(41.5)),
        stat("git-commit", 9, 77.8, Some(125.0)),
        stat("docs-build", 2, 0.0, None),
    ];
    for (i, s) in v.iter_mut().enumerate() {
        s.invocations_1h = Some(10 - i as u64 * 2);
        s.invocations_24h = Some(40 - i as u64 * 5);
    }
    v
}

fn anomalies() -> Vec<Anomaly> {
    let a = |skill: &str, at: &str, kind: &str, z: Option<f64>, b: Option<f64>, o: Option<f64>| {
        Anomaly {
            skill_name: skill.into(),
            detected_at: at.into(),
            anomaly_type: kind.into(),
            deviation_score: z,
            baseline_value: b,
            observed_value: o,
            source: None,
        }
    };
    vec![
        a(
            "mypy",
            "2026-11-22 02:59:20",
            "drop",
            Some(-3.4),
            Some(0.92),
            Some(0.41),
        ),
        a(
            "pytest-run",
            "2026-11-22T02:55:00Z",
            "spike",
            Some(2.1),
            Some(3.0),
            Some(9.0),
        ),
        a(
            "ruff-check",
            "2026-11-22T01:00:00+00:00",
            "pattern_shift",
            None,
            None,
            None,
        ),
        a(
            "git-commit",
            "2026-11-22 02:30:00",
            "performance_drop",
            Some(-1.2),
            None,
            None,
        ),
    ]
}

/// Connected at t0, then updates every second for `n` seconds, with the
/// first skill growing so trends and deltas show.
fn app_with_data(n: i64) -> App {
    let mut app = App::new("ws://127.0.0.1:8765/ws", Subscription::All, t0());
    app.update(Event::Resize(100, 30));
    app.update(connected(t0(), Some(1000)));
    for i in 0..n {
        let mut s = skills();
        s[0].total_invocations += (i * i % 7) as u64 + i as u64;
        s[0].completion_rate = 90.0 + (i % 5) as f64;
        s[0].avg_duration_seconds = Some(5.0 + (i % 3) as f64);
        s[1].total_invocations += i as u64 / 2;
        let anomalies = if i == n - 1 { anomalies() } else { vec![] };
        app.update(update(secs(i), Some(i as u64 + 1), s, anomalies));
    }
    // A 4.6 KiB frame per second, ~220 B each on the wire after the first.
    app.update(Event::Traffic(crate::client::Traffic {
        received: 4_700 * n as u64,
        inflated: 4_700 * n as u64,
        wire: 1_100 + 220 * (n as u64 - 1),
        deflate: true,
    }));
    app.update(Event::Feed(FeedEvent::Pong {
        rtt: Some(Duration::from_micros(1500)),
        at: secs(n - 1),
    }));
    app.update(Event::Tick(secs(n - 1)));
    app
}

#[test]
fn snapshot_connecting() {
    let mut app = App::new("ws://127.0.0.1:8765", Subscription::All, t0());
    app.update(Event::Feed(FeedEvent::Connecting {
        attempt: 1,
        at: t0(),
    }));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_connected_waiting_for_first_update() {
    // session-buddy sends no picture on connect.
    let mut app = App::new(
        "ws://127.0.0.1:8765",
        Subscription::from_names(["mypy"]),
        t0(),
    );
    let mut c = connected(t0(), None);
    if let Event::Feed(FeedEvent::Connected { info, .. }) = &mut c {
        info.server = None;
        info.protocol = None;
    }
    app.update(c);
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn snapshot_data() {
    let app = app_with_data(12);
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_data_80x24() {
    let mut app = app_with_data(12);
    app.update(Event::Resize(80, 24));
    insta::assert_snapshot!(draw(&app, 80, 24).backend());
}

#[test]
fn snapshot_anomalies_wide() {
    let mut app = app_with_data(3);
    app.update(Event::Resize(140, 36));
    insta::assert_snapshot!(draw(&app, 140, 36).backend());
}

#[test]
fn snapshot_no_anomalies_empty_state() {
    let mut app = App::new("ws://h:1", Subscription::All, t0());
    app.update(connected(t0(), None));
    app.update(update(t0(), None, skills(), vec![]));
    // A server that declined permessage-deflate (session-buddy without
    // compression, `serve --compression off`).
    app.update(Event::Traffic(crate::client::Traffic {
        received: 1_627,
        deflate: false,
        ..Default::default()
    }));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_stale() {
    let mut app = app_with_data(5);
    app.update(Event::Tick(secs(20)));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_reconnecting() {
    let mut app = app_with_data(5);
    app.update(Event::Feed(FeedEvent::Disconnected {
        code: Some(1001),
        reason: "server shutting down".into(),
        retry_in: Duration::from_millis(2500),
        at: secs(5),
    }));
    app.update(Event::Feed(FeedEvent::Disconnected {
        code: None,
        reason: "Connection refused (os error 111)".into(),
        retry_in: Duration::from_secs(4),
        at: secs(8),
    }));
    app.update(Event::Tick(secs(9)));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_failed() {
    let mut app = App::new("ws://h:1", Subscription::All, t0());
    app.update(Event::Feed(FeedEvent::Failed {
        code: Some(4001),
        reason: "Authentication failed".into(),
        at: t0(),
    }));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_help() {
    let mut app = app_with_data(3);
    app.update(ch('?'));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_detail() {
    let mut app = app_with_data(12);
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_detail_without_history() {
    let mut app = app_with_data(1);
    app.update(ch('j'));
    app.update(ch('j'));
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_filter_active() {
    let mut app = app_with_data(3);
    app.update(ch('/'));
    for c in "ck".chars() {
        app.update(ch(c));
    }
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_filter_no_match() {
    let mut app = app_with_data(3);
    app.update(ch('/'));
    app.update(ch('z'));
    app.update(key(KeyCode::Enter));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_sorted_and_selected() {
    let mut app = app_with_data(3);
    for _ in 0..4 {
        app.update(ch('s')); // name, invocations, change, completion
    }
    app.update(ch('S'));
    app.update(ch('j'));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_frozen() {
    let mut app = app_with_data(3);
    app.update(ch('f'));
    let mut s = skills();
    s[0].total_invocations = 999;
    app.update(update(secs(10), Some(11), s, vec![]));
    app.update(Event::Tick(secs(10)));
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_subscribe_input() {
    let mut app = app_with_data(3);
    app.update(ch('c'));
    for c in "mypy, ruff".chars() {
        app.update(ch(c));
    }
    insta::assert_snapshot!(draw(&app, 100, 30).backend());
}

#[test]
fn snapshot_tiny_terminal() {
    let app = app_with_data(3);
    insta::assert_snapshot!(draw(&app, 39, 9).backend());
}

#[test]
fn snapshot_minimum_size() {
    let app = app_with_data(3);
    insta::assert_snapshot!(draw(&app, 40, 10).backend());
}

#[test]
fn snapshot_monochrome_styles() {
    // Text and every cell's style: only modifiers, no colour anywhere.
    let mut app = app_with_data(3);
    app.no_color = true;
    app.update(Event::Resize(80, 24));
    let t = draw(&app, 80, 24);
    for cell in t.backend().buffer().content() {
        use ratatui::style::Color;
        assert!(
            matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
            "colour in mono: {cell:?}"
        );
    }
    insta::assert_snapshot!(format!("{:?}", t.backend().buffer()));
}

#[test]
fn light_theme_keeps_the_terminal_background() {
    let mut app = app_with_data(3);
    app.theme = crate::tui::theme::ThemeName::Light;
    let t = draw(&app, 100, 30);
    let badge_cells = 20; // the header badge is the only filled background
    let filled = t
        .backend()
        .buffer()
        .content()
        .iter()
        .filter(|c| c.bg != ratatui::style::Color::Reset)
        .count();
    assert!(filled <= badge_cells, "{filled} cells with a background");
}

#[test]
fn snapshot_wide_and_emoji_names() {
    let mut app = App::new("ws://h:1", Subscription::All, t0());
    app.update(Event::Resize(72, 20));
    app.update(connected(t0(), None));
    let names = [
        "日本語のスキル名はとても長いのでここで切られるはずです",
        "rocket-🚀-deploy-🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀🚀",
        "café-naïve-résumé",
        "ctrl\u{1b}[31mred\u{7}",
    ];
    let s: Vec<SkillStat> = names
        .iter()
        .enumerate()
        .map(|(i, n)| stat(n, 10 - i as u64, 50.0, Some(1.0)))
        .collect();
    let mut anomaly = anomalies()[0].clone();
    anomaly.skill_name = names[0].into();
    app.update(update(t0(), None, s, vec![anomaly]));
    let t = draw(&app, 72, 20);
    // No escape or bell character reaches the terminal.
    for cell in t.backend().buffer().content() {
        assert!(!cell.symbol().chars().any(char::is_control), "{cell:?}");
    }
    insta::assert_snapshot!(t.backend());
}

#[test]
fn never_panics_at_any_size() {
    let mut app = app_with_data(4);
    type Step = Box<dyn Fn(&mut App)>;
    let states: Vec<Step> = vec![
        Box::new(|_| {}),
        Box::new(|a| a.update(ch('?'))),
        Box::new(|a| {
            a.update(key(KeyCode::Esc));
            a.update(key(KeyCode::Enter));
        }),
    ];
    for st in states {
        st(&mut app);
        for w in (0..=130).step_by(7) {
            for h in (0..=45).step_by(3) {
                app.update(Event::Resize(w, h));
                let _ = draw(&app, w, h);
            }
        }
    }
}

#[test]
fn scrolled_table_shows_the_selected_row_and_only_the_rows_that_fit() {
    let mut app = App::new("ws://127.0.0.1:8765/ws", Subscription::All, t0());
    app.update(Event::Resize(100, 30));
    app.update(connected(t0(), Some(1000)));
    let many: Vec<SkillStat> = (0..200)
        .map(|i| stat(&format!("skill-{i:03}"), 1000 - i as u64, 90.0, Some(1.0)))
        .collect();
    app.update(update(secs(0), Some(1), many, vec![]));
    app.update(key(KeyCode::End));
    let screen = format!("{:?}", draw(&app, 100, 30).backend());
    assert!(
        screen.contains("skill-199"),
        "the selected last row is on screen"
    );
    assert!(!screen.contains("skill-000"), "the first row scrolled away");
    app.update(key(KeyCode::Home));
    let screen = format!("{:?}", draw(&app, 100, 30).backend());
    assert!(screen.contains("skill-000") && !screen.contains("skill-199"));
}

/// The text of row `y` and whether any of its cells has `modifier`.
fn row_has(
    t: &Terminal<TestBackend>,
    y: u16,
    modifier: ratatui::style::Modifier,
) -> (String, bool) {
    let buf = t.backend().buffer();
    let w = buf.area.width;
    let text: String = (0..w).map(|x| buf[(x, y)].symbol()).collect();
    let styled = (0..w).any(|x| buf[(x, y)].modifier.contains(modifier));
    (text, styled)
}

#[test]
fn snapshot_new_anomalies_ask_for_attention() {
    use ratatui::style::Modifier;
    // A new anomaly after a quiet first picture: header count, highlighted
    // row, flashing title, the `a seen` hint.
    let mut app = app_with_data(3);
    let mut s = skills();
    s[0].total_invocations += 10;
    let mut list = anomalies();
    list.insert(
        0,
        Anomaly {
            skill_name: "docs-build".into(),
            detected_at: "2026-11-22T03:00:03Z".into(),
            anomaly_type: "performance_drop".into(),
            deviation_score: Some(-4.2),
            baseline_value: None,
            observed_value: None,
            source: None,
        },
    );
    app.update(Event::Feed(FeedEvent::Update {
        update: crate::protocol::MetricsUpdate {
            seq: Some(4),
            timestamp: None,
            data: crate::protocol::MetricsData {
                top_skills: s,
                anomalies: list,
            },
            rows: crate::protocol::RowReport::default(),
            team: None,
        },
        raw: Default::default(),
        at: secs(3),
    }));
    let t = draw(&app, 100, 30);
    insta::assert_snapshot!(t.backend());
    // Row 19 is the first anomaly (docs-build, new); row 20 (mypy) is from
    // the previous update's batch and is highlighted too (first seen at 2s).
    let (text, fresh) = row_has(&t, 19, Modifier::UNDERLINED);
    assert!(text.contains("docs-build") && fresh, "{text}");
    let (title, flash) = row_has(&t, 17, Modifier::REVERSED);
    assert!(title.contains("Anomalies (5)") && flash, "{title}");
    // One second on, the title is in its "off" phase; after HIGHLIGHT_SECS
    // the highlight is gone, the count stays until `a`.
    app.update(Event::Tick(secs(4)));
    let t = draw(&app, 100, 30);
    assert!(!row_has(&t, 17, Modifier::REVERSED).1);
    app.update(Event::Tick(secs(3 + crate::tui::app::HIGHLIGHT_SECS)));
    let t = draw(&app, 100, 30);
    assert!(!row_has(&t, 19, Modifier::UNDERLINED).1);
    assert!(row_has(&t, 0, Modifier::BOLD).0.contains("⚠ 5 new"));
    app.update(ch('a'));
    let t = draw(&app, 100, 30);
    let (header, _) = row_has(&t, 0, Modifier::BOLD);
    assert!(
        !header.contains("new") && header.contains("ws://"),
        "{header}"
    );
    let (footer, _) = row_has(&t, 29, Modifier::BOLD);
    assert!(!footer.contains("seen"), "{footer}");
}

mod server_history {
    use super::*;
    use crate::protocol::HistoryWindow::{Day, Hour};
    use crate::tui::test_support::{connected_ext, history};

    const NAMES: [&str; 5] = [
        "pytest-run",
        "ruff-check",
        "mypy",
        "git-commit",
        "docs-build",
    ];

    /// Connected to a server with history at t0 (03:00 UTC): the first
    /// update, then the Trend column's 1 h for every skill.
    fn app_ext() -> App {
        let mut app = App::new("ws://127.0.0.1:8765/ws", Subscription::All, t0());
        app.update(Event::Resize(100, 30));
        app.update(connected_ext(t0()));
        app.update(update(t0(), Some(1), skills(), vec![]));
        app.update(history(Hour, t0(), &NAMES, |i| ((i * 7) % 11) as u64, &[]));
        app.outbox.clear();
        app
    }

    /// pytest-run's day and hour with two incidents each.
    fn with_detail(mut app: App) -> App {
        let incidents = |a: i64, b: i64| {
            [
                (
                    "pytest-run",
                    "performance_drop",
                    t0() - chrono::Duration::minutes(a),
                ),
                (
                    "pytest-run",
                    "duration_spike",
                    t0() - chrono::Duration::minutes(b),
                ),
            ]
        };
        app.update(key(KeyCode::Enter));
        app.update(history(
            Day,
            t0(),
            &["pytest-run"],
            // A quiet night, a busy morning.
            |i| if i < 40 { 2 } else { 10 + (i % 5) as u64 * 3 },
            &incidents(9 * 60, 2 * 60 + 30),
        ));
        app.update(history(
            Hour,
            t0(),
            &["pytest-run"],
            |i| (i % 6) as u64,
            &incidents(45, 12),
        ));
        app.update(Event::Tick(secs(1)));
        app
    }

    #[test]
    fn snapshot_trend_column_shows_the_last_hour_at_once() {
        let app = app_ext();
        insta::assert_snapshot!(draw(&app, 100, 30).backend());
    }

    #[test]
    fn snapshot_detail_24h_with_anomaly_markers() {
        let app = with_detail(app_ext());
        assert_eq!(app.window, Day);
        insta::assert_snapshot!(draw(&app, 100, 30).backend());
    }

    #[test]
    fn snapshot_detail_1h_with_anomaly_markers() {
        let mut app = with_detail(app_ext());
        app.update(ch('w'));
        insta::assert_snapshot!(draw(&app, 100, 30).backend());
    }

    #[test]
    fn snapshot_detail_24h_80x24() {
        let mut app = with_detail(app_ext());
        app.update(Event::Resize(80, 24));
        insta::assert_snapshot!(draw(&app, 80, 24).backend());
    }

    #[test]
    fn detail_from_session_buddy_says_it_has_no_history() {
        let mut app = App::new("ws://127.0.0.1:8765", Subscription::All, t0());
        let mut c = connected(t0(), None);
        if let Event::Feed(FeedEvent::Connected { info, .. }) = &mut c {
            info.server = None;
            info.protocol = None;
        }
        app.update(c);
        app.update(update(t0(), None, skills(), vec![]));
        app.update(update(secs(1), None, skills(), vec![]));
        app.update(key(KeyCode::Enter));
        assert!(app.outbox.is_empty(), "{:?}", app.outbox);
        let text = format!("{:?}", draw(&app, 100, 30).backend());
        assert!(
            text.contains("history: this server does not offer it"),
            "{text}"
        );
        assert!(text.contains("03:00:00"), "wall-clock axis: {text}");
    }

    #[test]
    fn detail_waits_for_its_history() {
        let mut app = app_ext();
        app.update(ch('j'));
        app.update(key(KeyCode::Enter));
        let t = draw(&app, 100, 30);
        let text = format!("{:?}", t.backend());
        assert!(
            text.contains("asking the server for the last 24h"),
            "{text}"
        );
    }
}

#[test]
fn a_broken_history_frame_draws_without_panicking() {
    let mut app = App::new("ws://h:1", Subscription::All, t0());
    app.update(Event::Resize(100, 30));
    app.update(crate::tui::test_support::connected_ext(t0()));
    app.update(update(t0(), Some(1), skills(), vec![]));
    app.update(crate::tui::app::tests::hostile_history::broken_frame());
    let t = draw(&app, 100, 30);
    assert!(format!("{:?}", t.backend()).contains("pytest-run"));
    app.update(key(KeyCode::Enter));
    app.update(ch('w'));
    assert_eq!(app.window, crate::protocol::HistoryWindow::Hour);
    let t = draw(&app, 100, 30);
    assert!(format!("{:?}", t.backend()).contains("Invocations per minute"));
}

/// Every cell drawn holds only safe text, and every line of the screen has
/// its borders where a well-behaved screen has them: `│` (or a corner) in the
/// first and last column of each bordered row.
fn assert_clean_and_aligned(t: &Terminal<TestBackend>) {
    let buf = t.backend().buffer();
    let (w, h) = (buf.area.width, buf.area.height);
    for y in 0..h {
        for x in 0..w {
            let sym = buf[(x, y)].symbol();
            assert!(
                !sym.chars().any(crate::text::is_unsafe_char),
                "unsafe character {sym:?} drawn at ({x}, {y})"
            );
        }
        let first = buf[(0, y)].symbol();
        let last = buf[(w - 1, y)].symbol();
        if "│┌└╭╰".contains(first) && first != " " {
            assert!(
                "│┐┘╮╯".contains(last) && last != " ",
                "row {y}: border shifted, last cell {last:?}"
            );
        }
    }
}

#[test]
fn snapshot_hostile_names_are_sanitized_with_borders_intact() {
    let mut app = App::new("ws://127.0.0.1:8765", Subscription::All, t0());
    app.update(Event::Resize(100, 30));
    app.update(connected(t0(), Some(1000)));
    let names = [
        "soft\u{ad}hyphen\u{ad}name",
        "bidi-\u{202e}gnp.exe\u{202c}-name",
        "zero\u{200b}width\u{2060}joiner\u{feff}",
        "esc-\u{1b}[31mred\u{1b}]52;c;Zm9v\u{7}-c1\u{9b}2J",
        "plain-name",
    ];
    let s: Vec<SkillStat> = names
        .iter()
        .enumerate()
        .map(|(i, n)| stat(n, 10 - i as u64, 90.0, Some(1.0)))
        .collect();
    let mut a = anomalies();
    a[0].skill_name = names[0].into();
    a[0].anomaly_type = "drop\u{202e}\u{ad}".into();
    app.update(update(t0(), Some(1), s.clone(), a.clone()));
    app.update(update(secs(1), Some(2), s, a));
    app.update(Event::Feed(FeedEvent::ServerError {
        error: crate::protocol::ErrorFrame {
            code: crate::protocol::ErrorCode::Other,
            message: "boom\u{1b}]0;title\u{7}\u{202e}".into(),
        },
        at: secs(1),
    }));
    app.update(Event::Tick(secs(1)));
    let t = draw(&app, 100, 30);
    assert_clean_and_aligned(&t);
    insta::assert_snapshot!(t.backend());
    // Open and close the help and the detail overlays on one terminal
    // (ratatui draws only the differences, as on a real one): after each
    // close the screen is exactly a fresh drawing of the same state.
    let mut term = t;
    for keys in [
        vec![ch('?'), key(KeyCode::Esc)],
        vec![key(KeyCode::Enter), key(KeyCode::Esc)],
    ] {
        for k in keys {
            app.update(k);
            term.draw(|f| super::render(&app, f)).expect("draw");
            assert_clean_and_aligned(&term);
        }
        assert_eq!(
            term.backend().buffer(),
            draw(&app, 100, 30).backend().buffer()
        );
    }
    // A close with a hostile reason, in the health panel.
    app.update(Event::Feed(FeedEvent::Disconnected {
        code: Some(1011),
        reason: "bye\u{1b}[2J\u{9b}\u{ad}".into(),
        retry_in: Duration::from_secs(1),
        at: secs(2),
    }));
    assert_clean_and_aligned(&draw(&app, 100, 30));
}

#[test]
fn dropped_line_shows_only_when_something_was_dropped() {
    let mut app = app_with_data(3);
    let text = |app: &App| format!("{:?}", draw(app, 100, 30).backend());
    assert!(!text(&app).contains("Dropped"));
    app.update(Event::FeedSkipped {
        updates: 7,
        events: 2,
    });
    let mut u = update(secs(3), Some(4), skills(), vec![]);
    if let Event::Feed(FeedEvent::Update { update, .. }) = &mut u {
        update.rows.rejected = 3;
    }
    app.update(u);
    assert!(
        text(&app).contains("Dropped    7 skipped · 3 bad rows · 2"),
        "{}",
        text(&app)
    );
}
