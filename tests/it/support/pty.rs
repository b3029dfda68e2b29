//! The real binary in a pseudo-terminal (portable-pty) with a VT parser
//! (vt100) reading its screen, for tests that need the dashboard; the child
//! gets the [`super::clean_env`] plus `TERM`. Output is read continuously on
//! a thread, so the child never blocks on a full pty.

use std::io::{Read, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portable_pty::{Child, CommandBuilder, MasterPty, PtySize, native_pty_system};

use super::{BIN, clean_env};

/// How long a pty test waits for a screen or an exit (the demo back-fills a
/// day first, and debug builds under load are slow).
pub const PTY_DEADLINE: Duration = Duration::from_secs(20);

pub struct Pty {
    pub parser: vt100::Parser,
    /// BEL bytes seen in the output so far.
    pub bells: usize,
    output: mpsc::Receiver<Vec<u8>>,
    writer: Box<dyn Write + Send>,
    pub master: Box<dyn MasterPty + Send>,
    pub child: Box<dyn Child + Send + Sync>,
}

impl Pty {
    /// `skillmon ARGS` in a 30×100 terminal, home `home`.
    pub fn spawn(home: &std::path::Path, args: &[&str]) -> Pty {
        Pty::spawn_with_env(home, args, &[])
    }

    /// [`Pty::spawn`] with extra environment variables.
    pub fn spawn_with_env(home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Pty {
        let size = PtySize {
            rows: 30,
            cols: 100,
            pixel_width: 0,
            pixel_height: 0,
        };
        let pair = native_pty_system().openpty(size).expect("openpty");
        let mut cmd = CommandBuilder::new(BIN);
        cmd.args(args);
        cmd.env_clear();
        for (k, v) in clean_env(home) {
            cmd.env(k, v);
        }
        cmd.env("TERM", "xterm-256color");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pair.slave.spawn_command(cmd).expect("spawn");
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().expect("reader");
        let writer = pair.master.take_writer().expect("writer");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match reader.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let rows = std::num::NonZeroU16::new(30).unwrap_or(std::num::NonZeroU16::MIN);
        let cols = std::num::NonZeroU16::new(100).unwrap_or(std::num::NonZeroU16::MIN);
        Pty {
            parser: vt100::Parser::new(rows, cols, 0),
            bells: 0,
            output: rx,
            writer,
            master: pair.master,
            child,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.process_id().expect("child pid")
    }

    /// Feed output to the parser until `pred` holds; fail after [`PTY_DEADLINE`].
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&vt100::Screen) -> bool) {
        let deadline = Instant::now() + PTY_DEADLINE;
        loop {
            if pred(self.parser.screen()) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.process(&bytes),
                Err(e) => panic!(
                    "waiting for {what}: {e}; screen:\n{}",
                    self.parser.screen().contents()
                ),
            }
        }
    }

    /// Read what the child wrote, waiting at most `d` for it.
    pub fn pump(&mut self, d: Duration) {
        if let Ok(bytes) = self.output.recv_timeout(d) {
            self.process(&bytes);
        }
    }

    /// Resize the terminal (the child gets SIGWINCH) and the screen model.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let nz = |n: u16| std::num::NonZeroU16::new(n).unwrap_or(std::num::NonZeroU16::MIN);
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .expect("resize");
        self.parser.screen_mut().set_size(nz(rows), nz(cols));
    }

    /// Feed output to the screen, counting BEL bytes.
    pub fn process(&mut self, bytes: &[u8]) {
        self.bells += bytes.iter().filter(|b| **b == 0x07).count();
        self.parser.process(bytes);
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("write");
        self.writer.flush().expect("flush");
    }

    /// Wait (reading its output) until the child exits: its status and when
    /// the exit was seen (within a few ms); `None` after `within`.
    pub fn exit_within(&mut self, within: Duration) -> Option<(portable_pty::ExitStatus, Instant)> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                let seen = Instant::now();
                // The rest of the output (the reader ends when the pty closes).
                while let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(300)) {
                    self.process(&bytes);
                }
                return Some((status, seen));
            }
            if Instant::now() >= deadline {
                return None;
            }
            if let Ok(bytes) = self.output.recv_timeout(Duration::from_millis(2)) {
                self.process(&bytes);
            }
        }
    }
}

impl Pty {
    /// Wait for the child to exit (failing after [`PTY_DEADLINE`]), reading
    /// all its output.
    pub fn wait_exit(&mut self) -> portable_pty::ExitStatus {
        match self.exit_within(PTY_DEADLINE) {
            Some((status, _)) => status,
            None => panic!(
                "the child did not exit; screen:\n{}",
                self.parser.screen().contents()
            ),
        }
    }

    /// Wait for the exit: status 0 and the terminal restored.
    pub fn exits_0_restored(&mut self) {
        let status = self.wait_exit();
        assert!(status.success(), "{status:?}");
        self.assert_restored();
    }

    /// Main screen, cursor shown, mouse reporting off.
    pub fn assert_restored(&self) {
        let s = self.parser.screen();
        assert!(!s.alternate_screen(), "still on the alternate screen");
        assert!(!s.hide_cursor(), "cursor still hidden");
        assert_eq!(s.mouse_protocol_mode(), vt100::MouseProtocolMode::None);
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

/// Peak resident memory (VmHWM) of process `pid`, in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status");
    kb * 1024
}
