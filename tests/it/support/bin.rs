//! The real `skillmon` binary as a child process, always with one clean
//! environment: nothing inherited from the caller but `PATH` (no
//! `SKILLMON_*`, no `NO_COLOR`, no `TERM`, no real home), and `HOME`, the XDG
//! config and data dirs and `TMPDIR` all inside a temp dir the test owns, so
//! no config file, log file or temp file of the user's is read or written.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::DEADLINE;

pub const BIN: &str = env!("CARGO_BIN_EXE_skillmon");

/// The whole environment of a child whose home is `home` (creates
/// `home/tmp` for its `TMPDIR`). Apply it after clearing the environment.
pub fn clean_env(home: &Path) -> Vec<(&'static str, OsString)> {
    let tmp = home.join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp dir in the test home");
    vec![
        ("PATH", std::env::var_os("PATH").unwrap_or_default()),
        ("HOME", home.into()),
        ("XDG_CONFIG_HOME", home.join("config").into()),
        ("XDG_DATA_HOME", home.join("data").into()),
        ("TMPDIR", tmp.into()),
    ]
}

/// `skillmon` with the [`clean_env`] of `home` and stdin from /dev/null.
pub fn command(home: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.env_clear().envs(clean_env(home)).stdin(Stdio::null());
    c
}

/// A spawned child that is killed (SIGKILL) and reaped when dropped, so a
/// test that fails half-way never leaves a server or a dashboard running.
/// Derefs to the [`Child`]; [`Spawned::into_inner`] hands it over to be
/// waited for.
pub struct Spawned(Option<Child>);

impl Spawned {
    /// Spawn `cmd`, failing the test with the error when it cannot start.
    pub fn spawn(cmd: &mut Command) -> Self {
        Self(Some(
            cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}")),
        ))
    }

    /// The child, no longer killed on drop (the caller waits for it).
    pub fn into_inner(mut self) -> Child {
        self.0.take().expect("a child until into_inner")
    }
}

impl Deref for Spawned {
    type Target = Child;
    fn deref(&self) -> &Child {
        self.0.as_ref().expect("a child until into_inner")
    }
}

impl DerefMut for Spawned {
    fn deref_mut(&mut self) -> &mut Child {
        self.0.as_mut().expect("a child until into_inner")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }
}

/// Run `skillmon ARGS` (config and logs under `home`) to completion.
pub async fn run_in(home: &Path, args: &[&str]) -> Output {
    let mut c = command(home);
    c.args(args);
    output(c).await
}

/// Run `skillmon ARGS` (config and logs under `home`) and insist it succeeds.
pub async fn run_ok(home: &Path, args: &[&str]) -> Output {
    let out = run_in(home, args).await;
    assert!(
        out.status.success(),
        "skillmon {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Run `skillmon ARGS` (config and logs under `home`) and insist it fails.
pub async fn run_fails(home: &Path, args: &[&str]) -> Output {
    let out = run_in(home, args).await;
    assert!(!out.status.success(), "skillmon {args:?} succeeded");
    out
}

/// Run to completion off the async runtime.
pub async fn output(mut c: Command) -> Output {
    tokio::task::spawn_blocking(move || c.output().expect("run skillmon"))
        .await
        .expect("join")
}

/// Run to completion with stdout and stderr captured, or kill it and fail
/// after [`DEADLINE`].
pub fn run(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn skillmon");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    if let Ok(out) = rx.recv_timeout(DEADLINE) {
        out.expect("wait for skillmon")
    } else {
        kill(pid, "KILL");
        panic!("skillmon did not exit within {DEADLINE:?}");
    }
}

/// Send each line of a child's output (wrapped by `wrap`) to `tx`, read on a
/// thread so the child never blocks on a full pipe.
pub fn send_lines<T: Send + 'static>(
    out: impl Read + Send + 'static,
    tx: mpsc::Sender<T>,
    wrap: impl Fn(String) -> T + Send + 'static,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(wrap(line)).is_err() {
                break;
            }
        }
    });
}

/// Spawn `skillmon ARGS` (home `home`) logging at `info` to stderr, stdout
/// discarded: the child and its stderr lines.
pub fn spawn_logging(home: &Path, args: &[&OsStr]) -> (Spawned, mpsc::Receiver<String>) {
    spawn_logging_at(home, args, "info")
}

/// [`spawn_logging`] with the `SKILLMON_LOG` filter `filter`.
pub fn spawn_logging_at(
    home: &Path,
    args: &[&OsStr],
    filter: &str,
) -> (Spawned, mpsc::Receiver<String>) {
    let mut child = Spawned::spawn(
        command(home)
            .args(args)
            .env("SKILLMON_LOG", filter)
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let lines = stderr_lines(&mut child);
    (child, lines)
}

/// The lines of a child's stderr (taken from it), read on a thread.
pub fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, rx) = mpsc::channel();
    send_lines(stderr, tx, |line| line);
    rx
}

pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Wait for `child` to exit; after `deadline` SIGKILL it and return `None`.
pub fn wait_within(child: Spawned, deadline: Duration) -> Option<ExitStatus> {
    let mut child = child.into_inner();
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    if let Ok(status) = rx.recv_timeout(deadline) {
        Some(status.expect("wait"))
    } else {
        kill(pid, "KILL");
        None
    }
}

/// SIGTERM `child` and wait for its exit status (SIGKILL and fail after
/// [`DEADLINE`]).
pub fn terminate(child: Spawned) -> ExitStatus {
    let pid = child.id();
    kill(pid, "TERM");
    wait_within(child, DEADLINE)
        .unwrap_or_else(|| panic!("pid {pid} did not exit within {DEADLINE:?} of SIGTERM"))
}
