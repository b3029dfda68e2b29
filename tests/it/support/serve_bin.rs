//! The real `skillmon serve` binary as a child process on port 0: its port
//! (read from its "listening on" line), its stderr lines, and a guard that
//! kills it when the test ends, passing or failing mid-way.

use std::net::SocketAddr;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;

use super::{DEADLINE, Spawned, stderr_lines, terminate};

/// A running `skillmon serve`; SIGKILLed on drop ([`Spawned`]) unless
/// terminated.
pub struct ServeChild {
    child: Option<Spawned>,
    pub port: u16,
    /// Its stderr lines after "listening on".
    pub lines: Receiver<String>,
    /// Its stderr lines up to "listening on".
    pub before: Vec<String>,
}

impl ServeChild {
    /// Spawn `cmd` (a `command(home)` with `serve … --port 0` set) logging
    /// at info to a piped stderr, and wait for it to listen.
    pub fn spawn(mut cmd: Command) -> Self {
        cmd.env("SKILLMON_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Spawned::spawn(&mut cmd);
        let lines = stderr_lines(&mut child);
        let mut s = Self {
            child: Some(child),
            port: 0,
            lines,
            before: Vec::new(),
        };
        s.port = loop {
            let Ok(line) = s.lines.recv_timeout(DEADLINE) else {
                panic!("no \"listening on\" line: {:?}", s.before);
            };
            if let Some(rest) = line.split("listening on ws").nth(1) {
                let addr = rest.split('/').nth(2).expect("an address after ws://");
                break addr.rsplit(':').next().unwrap().parse().unwrap();
            }
            s.before.push(line);
        };
        s
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// 127.0.0.1 and its port.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// SIGTERM and its exit status; [`Self::lines`] then ends with its last
    /// line.
    pub fn terminate(&mut self) -> ExitStatus {
        terminate(self.child.take().expect("running"))
    }
}
