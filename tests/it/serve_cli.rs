//! The real `skillmon serve` binary: flags refused with a message naming the
//! flag, a busy port named as such, and a clean shutdown on SIGTERM/SIGINT
//! (every client closed with 1001, exit status 0).

use crate::support;

use std::ffi::OsStr;
use std::sync::mpsc;

use support::*;

#[test]
fn bad_flag_values_exit_non_zero_naming_the_flag() {
    let db = TestDb::missing();
    let db_arg = db.path.to_str().unwrap().to_owned();
    let cases: &[(&[&str], &str)] = &[
        (&["--interval", "fast"], "--interval"),
        (&["--interval", "0"], "--interval"),
        (&["--interval=-1s"], "--interval"),
        (&["--port", "99999"], "--port"),
        (&["--port", "http"], "--port"),
        (&["--top", "0"], "--top"),
        (&["--top", "1001"], "--top"),
        (&["--write-timeout", "soon"], "--write-timeout"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--bogus"], "--bogus"),
    ];
    for (args, flag) in cases {
        let mut cmd = command(db.dir.path());
        cmd.args(["serve", "--db", &db_arg, "--port", "0"])
            .args(*args);
        let out = run(cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} was accepted");
        assert!(
            stderr.contains(flag),
            "{args:?}: stderr does not name {flag}: {stderr}"
        );
    }
    // The same through the environment.
    let mut cmd = command(db.dir.path());
    cmd.args(["serve", "--db", &db_arg, "--port", "0"])
        .env("SKILLMON_INTERVAL", "fast");
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("--interval"), "{stderr}");
    assert!(!db.path.exists(), "a refused start creates nothing");
}

#[test]
fn a_port_in_use_is_named() {
    let db = TestDb::missing();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut cmd = command(db.dir.path());
    cmd.args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .arg("--db")
        .arg(&db.path);
    let out = run(cmd);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--port"), "{stderr}");
    assert!(stderr.contains(&port.to_string()), "{stderr}");
    drop(busy);
}

/// A running `skillmon serve` child and its stderr lines.
struct Running {
    child: Spawned,
    lines: mpsc::Receiver<String>,
    url: String,
    log: Vec<String>,
}

/// Start `skillmon serve --port 0` and learn its URL from the
/// "listening on ws://..." line on stderr.
async fn spawn_server(db: &std::path::Path) -> Running {
    let home = db.parent().expect("the db's temp dir");
    let args = ["serve", "--port", "0", "--interval", "100ms", "--db"].map(OsStr::new);
    let (child, lines) = spawn_logging(home, &[&args[..], &[db.as_os_str()]].concat());
    let mut running = Running {
        child,
        lines,
        url: String::new(),
        log: Vec::new(),
    };
    loop {
        let line = running.next_line().await;
        if let Some(i) = line.find("listening on ws://") {
            let rest = &line[i + "listening on ".len()..];
            rest.split_whitespace()
                .next()
                .unwrap()
                .clone_into(&mut running.url);
            return running;
        }
    }
}

impl Running {
    /// The next stderr line; panics at [`DEADLINE`] or on EOF.
    async fn next_line(&mut self) -> String {
        let rx = std::mem::replace(&mut self.lines, mpsc::channel().1);
        let (rx, got) = tokio::task::spawn_blocking(move || {
            let got = rx.recv_timeout(DEADLINE);
            (rx, got)
        })
        .await
        .unwrap();
        self.lines = rx;
        match got {
            Ok(line) => {
                self.log.push(line.clone());
                line
            }
            Err(e) => {
                let _ = self.child.kill();
                panic!("no stderr line ({e}); so far: {:#?}", self.log);
            }
        }
    }

    /// Wait for the exit status (killing it after [`DEADLINE`]) and the
    /// rest of stderr.
    async fn wait(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let child = self.child;
        let status = tokio::task::spawn_blocking(move || wait_within(child, DEADLINE))
            .await
            .unwrap();
        let Some(status) = status else {
            panic!("did not exit within {DEADLINE:?}; log: {:#?}", self.log);
        };
        // The reader thread ends at EOF, which follows the exit.
        self.log.extend(self.lines.iter());
        (status, self.log)
    }
}

async fn signal_closes_clients_with_1001_and_exits_0(signal: &str) {
    let (db, _conn) = TestDb::seeded();
    let server = spawn_server(&db.path).await;
    assert!(server.url.starts_with("ws://127.0.0.1:"), "{}", server.url);
    let mut clients = Vec::new();
    for _ in 0..3 {
        let (mut c, hello) = Client::connect(&server.url).await;
        assert_eq!(hello["interval_ms"], 100);
        assert_eq!(names(&c.next_update().await).len(), 4);
        clients.push(c);
    }
    kill(server.child.id(), signal);
    for c in &mut clients {
        assert_eq!(c.close_code_within(DEADLINE).await, 1001);
    }
    let (status, log) = server.wait().await;
    assert!(status.success(), "exit status {status:?}; log: {log:#?}");
    assert!(log.iter().any(|l| l.contains("shutting down")), "{log:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_every_client_with_1001_and_exits_0() {
    signal_closes_clients_with_1001_and_exits_0("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_closes_every_client_with_1001_and_exits_0() {
    signal_closes_clients_with_1001_and_exits_0("INT").await;
}
