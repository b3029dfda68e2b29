//! The one home of the integration tests' helpers. Every `tests/*.rs` says
//! `mod support;` and takes what it needs:
//!
//! - [`db`]: real SQLite files in temp dirs, seeded with the fixture, and
//!   expectations read straight from them;
//! - [`server`]: a real `skillmon serve` in-process on 127.0.0.1 port 0;
//! - [`ws`]: a WebSocket client that awaits frames with a deadline (never
//!   sleeps to synchronize) and checks the protocol invariants on every frame;
//! - [`http`]: a raw HTTP client and `/healthz` polling;
//! - [`bin`]: the real binary, run with one clean environment;
//! - [`session_buddy`]: a tiny session-buddy-like server (compat frames only);
//! - [`hostile`]: a server that misbehaves on purpose (scripted frames,
//!   floods, hostile close reasons, refused upgrades);
//! - [`pty`]: the binary in a pseudo-terminal, and its peak memory;
//! - [`serve_bin`]: the real `serve` binary on port 0, killed on drop;
//! - [`pki`]: a test CA and a server certificate for localhost (rcgen);
//! - [`flood`]: a bounded connection flood from 127.0.0.1 and the /proc
//!   readings (descriptors, RSS) it is judged by;
//! - [`stall`]: a raw client that stops reading, and a parser for what it
//!   finally reads.
//!
//! It owns no test: the assertions stay in the test files.
#![allow(dead_code, unused_imports)] // each test crate uses a different subset

pub mod bin;
pub mod db;
pub mod deflate;
pub mod flood;
pub mod hostile;
pub mod http;
pub mod pki;
pub mod pty;
pub mod serve_bin;
pub mod server;
pub mod session_buddy;
pub mod stall;
pub mod ws;

use std::time::Duration;

pub use bin::*;
pub use db::*;
pub use flood::*;
pub use hostile::*;
pub use http::*;
pub use pki::*;
pub use pty::*;
pub use serve_bin::*;
pub use server::*;
pub use session_buddy::*;
pub use stall::*;
pub use ws::*;

/// How long any single awaited event may take before the test fails. Generous
/// on purpose: it only bounds a failure, a passing test never waits for it.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// An interval long enough that a frame arriving "at once" cannot be a tick.
pub const LONG_INTERVAL: Duration = Duration::from_secs(30);

/// A short interval that keeps the tick-driven tests fast.
pub const SHORT_INTERVAL: Duration = Duration::from_millis(50);

/// The interval the `watch` tests serve with: a few ticks a second.
pub const WATCH_INTERVAL: Duration = Duration::from_millis(200);
