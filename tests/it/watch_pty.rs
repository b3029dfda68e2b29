//! The real `skillmon watch` binary in a pseudo-terminal against a real
//! `skillmon serve` on a temp DB: the dashboard shows the DB's skills, and
//! every way out (q, Ctrl-C, SIGTERM) exits 0 with the terminal restored
//! (main screen, cursor shown, mouse reporting off), and so does a panic
//! (triggered through the `SKILLMON_TEST_PANIC_ON_KEY` test hook), its
//! message readable on the main screen. `skillmon demo` too:
//! its dashboard shows generated data and a live anomaly, and `q` removes
//! its temporary files.

use crate::support;

use std::time::{Duration, Instant};

use support::*;

/// Run `body` (off the async runtime) with a home and the URL of a real
/// `skillmon serve` on [`make_db`], then stop the server.
async fn on_served_db(body: impl FnOnce(&std::path::Path, &str) + Send + 'static) {
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let url = server.url();
    let home = db.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || body(&home, &url))
        .await
        .expect("pty test");
    server.stop().await.expect("stop");
}

fn live_with(screen: &vt100::Screen, skill: &str) -> bool {
    let c = screen.contents();
    screen.alternate_screen() && c.contains(skill) && c.contains("LIVE")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_the_db_and_q_restores_the_terminal() {
    on_served_db(|home, url| {
        let mut pty = Pty::spawn(home, &["watch", url]);
        // The whole first picture: a frame can arrive in several reads,
        // so wait for its last part (the panels) too.
        pty.wait_for("pytest-run on a live dashboard", |s| {
            live_with(s, "pytest-run")
                && s.contents().contains("Anomalies (1)")
                && s.contents().contains("Connected  ")
                && !s.contents().contains("CONNECTING")
        });
        let screen = pty.parser.screen().contents();
        assert!(
            screen.contains("ruff-check") && screen.contains("mypy"),
            "{screen}"
        );
        assert!(screen.contains("Anomalies (1)"), "{screen}");
        // Resize below the minimum, then back.
        pty.resize(8, 30);
        pty.wait_for("the too-small message", |s| {
            s.contents().contains("too small")
        });
        pty.resize(30, 100);
        pty.wait_for("the table again", |s| live_with(s, "pytest-run"));
        // Help, then quit.
        pty.send(b"?");
        pty.wait_for("the help overlay", |s| s.contents().contains("Help"));
        pty.send(b"q");
        pty.exits_0_restored();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_and_sigterm_restore_the_terminal() {
    on_served_db(|home, url| {
        let mut pty = Pty::spawn(home, &["watch", url, "--skill", "mypy"]);
        pty.wait_for("mypy", |s| live_with(s, "mypy"));
        pty.send(b"\x03");
        pty.exits_0_restored();

        let mut pty = Pty::spawn(home, &["watch", url, "--no-color"]);
        pty.wait_for("pytest-run", |s| live_with(s, "pytest-run"));
        let pid = pty.child.process_id().expect("pid");
        kill(pid, "TERM");
        pty.exits_0_restored();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_restores_the_terminal_and_prints_its_message() {
    let db = make_db();
    let server = serve(&db.path, WATCH_INTERVAL).await;
    let url = server.url();
    let home = db.dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        // The test hook: pressing 'P' panics inside the dashboard's loop.
        let mut pty = Pty::spawn_with_env(
            &home,
            &["watch", &url],
            &[("SKILLMON_TEST_PANIC_ON_KEY", "P")],
        );
        pty.wait_for("pytest-run", |s| live_with(s, "pytest-run"));
        assert_ne!(
            pty.parser.screen().mouse_protocol_mode(),
            vt100::MouseProtocolMode::None,
            "mouse reporting is on while the dashboard runs"
        );
        pty.send(b"P");
        let status = pty.wait_exit();
        assert!(!status.success(), "a panic is a failure: {status:?}");
        pty.assert_restored();
        let screen = pty.parser.screen().contents();
        assert!(
            screen.contains("panicked") && screen.contains("SKILLMON_TEST_PANIC_ON_KEY"),
            "the panic message is printed on the main screen:\n{screen}"
        );
    })
    .await
    .expect("pty test");
    server.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_against_session_buddy_waits_for_its_first_tick() {
    // No picture on connect: the first data comes one interval later.
    let sb = session_buddy(Duration::from_millis(300)).await;
    let url = sb.url.clone();
    let home = tempfile::tempdir().expect("tempdir");
    let home_path = home.path().to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut pty = Pty::spawn(&home_path, &["watch", &url]);
        pty.wait_for("the Python-escaped skill name", |s| {
            live_with(s, "caf\u{e9}-\u{1f680}")
        });
        pty.wait_for("the compat server label", |s| {
            s.contents().contains("session-buddy compatible")
        });
        pty.wait_for("an RTT from a bare pong", |s| {
            s.contents().contains(" ms last")
        });
        pty.send(b"q");
        pty.exits_0_restored();
    })
    .await
    .expect("pty test");
}

#[test]
fn demo_shows_live_data_and_q_removes_its_files() {
    let home = tempfile::tempdir().expect("home");
    let mut pty = Pty::spawn(home.path(), &["demo", "--interval", "200ms"]);
    pty.wait_for("the demo dashboard with a live anomaly", |s| {
        live_with(s, "pytest-run") && s.contents().contains("performance")
    });
    let tmp = home.path().join("tmp");
    let during: Vec<_> = std::fs::read_dir(&tmp).expect("tmp").collect();
    assert_eq!(
        during.len(),
        1,
        "the demo's temporary directory exists while it runs"
    );
    pty.send(b"q");
    pty.exits_0_restored();
    let after: Vec<_> = std::fs::read_dir(&tmp).expect("tmp").collect();
    assert!(after.is_empty(), "left behind: {after:?}");
}

#[test]
fn demo_detail_shows_the_back_filled_day_with_its_incidents() {
    // Issue 9's "done when": Enter on a skill of the demo, and the 24 h
    // chart is the server's day (the back-fill), its incident marked (the
    // demo's detector row for crackerjack-lint, 12 minutes ago).
    let home = tempfile::tempdir().expect("home");
    let mut pty = Pty::spawn(home.path(), &["demo", "--interval", "200ms"]);
    pty.wait_for("the demo dashboard", |s| live_with(s, "crackerjack-lint"));
    pty.send(b"/crackerjack-lint\r");
    pty.wait_for("the filtered table", |s| {
        s.contents().contains("Top skills (1 of")
    });
    pty.send(b"\r");
    let opened = Instant::now();
    // A marker is a `•` on a chart row (the legend line has one too).
    let marked = |s: &vt100::Screen| {
        s.contents()
            .lines()
            .any(|l| l.starts_with("││") && l.contains('•'))
    };
    pty.wait_for("the 24h history chart with its incident", |s| {
        let c = s.contents();
        c.contains("Invocations per 15 min")
            && c.contains("history: server's last 24h")
            && marked(s)
    });
    eprintln!("24h chart on screen {:?} after Enter", opened.elapsed());
    pty.send(b"w");
    pty.wait_for("the 1h history chart with its incident", |s| {
        s.contents().contains("Invocations per minute") && marked(s)
    });
    pty.send(b"q");
    pty.exits_0_restored();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_anomaly_asks_for_attention_and_rings_with_bell() {
    on_served_db(|home, url| {
        let mut pty = Pty::spawn(home, &["watch", url, "--bell"]);
        pty.wait_for("the first picture", |s| {
            live_with(s, "pytest-run") && s.contents().contains("Anomalies (1)")
        });
        assert_eq!(pty.bells, 0, "the first picture is the baseline");
        // An outside detector writes a new anomaly.
        let conn = rusqlite::Connection::open(home.join("skills.db")).expect("open db");
        let now = chrono::Utc::now().format("%Y-%m-%d %H:%M:%S").to_string();
        skillmon::store::fixture::insert_anomaly(&conn, "pytest-run", &now, "spike", Some(3.1))
            .expect("insert anomaly");
        pty.wait_for("the new-anomaly count", |s| {
            s.contents().contains("⚠ 1 new") && s.contents().contains("a seen")
        });
        assert_eq!(pty.bells, 1, "one BEL for one new anomaly");
        pty.send(b"a");
        pty.wait_for("the count cleared", |s| {
            let c = s.contents();
            live_with(s, "pytest-run") && !c.contains("⚠") && !c.contains("a seen")
        });
        pty.send(b"q");
        pty.exits_0_restored();
        assert_eq!(pty.bells, 1);
    })
    .await;
}
