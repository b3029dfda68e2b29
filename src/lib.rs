//! skillmon: watch how AI-assistant skills are used, live.
//!
//! One binary, two roles sharing one WebSocket protocol (`docs/PROTOCOL.md`):
//! [`server`] reads a session-buddy skills database read-only and fans
//! `metrics_update` frames out to every subscriber; [`watch`] (the dashboard
//! in [`tui`], fed by [`client`], or the [`headless`] printers) consumes them. [`protocol`] holds the wire types both sides share,
//! [`store`] the read-only database access.
//!
//! The public surface is what `main.rs`, `tests/` and `examples/` use;
//! everything else is `pub(crate)`, and `unreachable_pub` keeps it so.
#![warn(unreachable_pub)]

pub(crate) mod backoff;
pub mod bench;
pub mod client;
pub mod config;
pub mod deflate;
pub mod demo;
pub mod duration;
pub mod error;
pub(crate) mod headless;
pub mod logging;
pub mod protocol;
pub(crate) mod rlimit;
pub(crate) mod secret_file;
pub mod server;
pub(crate) mod signal;
pub mod size;
pub mod store;
pub(crate) mod sync;
pub mod team;
pub(crate) mod text;
pub mod tui;
pub mod watch;

/// `skillmon/<version>`, announced in `connected` and `/healthz`.
pub const SERVER_NAME: &str = concat!("skillmon/", env!("CARGO_PKG_VERSION"));
