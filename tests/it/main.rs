//! Every integration test of skillmon, as modules of one test binary: the
//! dependency graph is linked once and `support` is compiled once (bottom's
//! and cargo's own layout). One module per area; run one with
//! `cargo test --test it serve_http::` (a module path filter).
//!
//! - `serve_*`: the server on real sockets, in-process or the real binary;
//! - `store_*`: the store against real SQLite files;
//! - `watch_*`: the dashboard (in a pseudo-terminal) and its headless modes;
//! - `team_redis`: the team view against a `redis-server` each test starts;
//! - `bench_cli`, `demo_cli`, `theme_words`: the other subcommands;
//! - `install`, `log_format`: the installed binary (version, completions,
//!   man pages, the watch-only build) and `--log-format json`.

mod support;

mod bench_cli;
mod bench_door;
mod demo_cli;
mod install;
mod log_format;
mod serve_access;
mod serve_auth;
mod serve_browser;
mod serve_cli;
mod serve_compat_order;
mod serve_db;
mod serve_deflate;
mod serve_flood;
mod serve_history;
mod serve_host;
mod serve_http;
mod serve_lag;
mod serve_protocol;
mod serve_slow;
mod serve_tls;
mod store_history;
mod store_live;
mod team_redis;
mod theme_words;
mod watch_auth_tls;
mod watch_feed;
mod watch_headless;
mod watch_history;
mod watch_hostile;
mod watch_hostile_ui;
mod watch_pty;
