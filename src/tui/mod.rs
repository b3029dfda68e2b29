//! The interactive dashboard: terminal lifecycle and the event loop.
//!
//! Owns raw mode, the alternate screen and mouse capture, and restores them
//! on every exit path: quit, Ctrl-C and SIGTERM end the loop and an error
//! returns through `Screen`'s `Drop`; on a panic, the hook installed by
//! [`ratatui::try_init`] restores the screen before the message is printed
//! and unwinding drops `Screen` (mouse reporting off, cursor shown).
//! The loop feeds terminal events, feed events and a 1 s clock tick into
//! [`app::App::update`] and redraws only when the app is dirty, at most
//! ~30 frames per second. Its select is biased: a signal (the feed handle's
//! stop token, cancelled by `watch`'s own task, never lost), then input,
//! then the clock and the feed; the feed arrives in batches with only the
//! newest update ([`FeedHandle`]), so the work per turn is bounded whatever
//! the server sends. It neither starts nor closes the feed (`watch` does).
//! State lives in [`app`], geometry in [`layout`], drawing in [`view`].
//!
//! With `--bell`, the loop writes one BEL byte when the app says a new
//! anomaly arrived (`App::attention`); rendering never writes it.
//!
//! Test hook: with `SKILLMON_TEST_PANIC_ON_KEY=<char>` in the environment,
//! pressing that key panics inside the loop, so that a test can check the
//! panic path restores the terminal (`tests/it/watch_pty.rs`). Nothing else
//! reads that variable, and only a debug build (`debug_assertions`) does.

pub mod app;
pub(crate) mod keymap;
pub(crate) mod layout;
#[cfg(test)]
pub(crate) mod test_support;
pub mod theme;
pub mod view;

use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream, KeyCode};
use futures_util::StreamExt;
use ratatui::DefaultTerminal;
use tokio::time::Instant;

use crate::client::{FeedEvent, FeedHandle};
use app::{App, Event};

/// Shortest time between two frames (~30 fps).
pub const MIN_FRAME: Duration = Duration::from_millis(33);

/// The environment variable of the panic test hook (see the module docs).
pub const TEST_PANIC_ENV: &str = "SKILLMON_TEST_PANIC_ON_KEY";

/// The terminal in dashboard mode (ratatui's raw mode and alternate screen,
/// plus mouse capture); dropping it restores everything.
struct Screen {
    terminal: DefaultTerminal,
}

impl Screen {
    fn enter() -> anyhow::Result<Self> {
        let terminal = ratatui::try_init()
            .inspect_err(|_| {
                let _ = ratatui::try_restore();
            })
            .context("cannot switch the terminal to the dashboard (raw mode, alternate screen)")?;
        // From here on, `Drop` restores whatever was switched on.
        let screen = Screen { terminal };
        crossterm::execute!(std::io::stdout(), EnableMouseCapture)
            .context("cannot enable mouse reporting")?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        let _ = ratatui::try_restore();
        let _ = self.terminal.show_cursor();
    }
}

/// The key of the panic test hook, if set to a single character. Debug
/// builds only (the tests run the debug binary): a release build, what
/// `cargo install` ships, never reads the variable.
#[cfg(not(debug_assertions))]
fn test_panic_key() -> Option<char> {
    None
}

/// The key of the panic test hook, if set to a single character.
#[cfg(debug_assertions)]
fn test_panic_key() -> Option<char> {
    let v = std::env::var(TEST_PANIC_ENV).ok()?;
    let mut chars = v.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) => Some(c),
        _ => None,
    }
}

/// Run the dashboard on `feed` until the user quits or a signal arrives
/// (`feed.stop()`).
pub async fn run(mut app: App, feed: &FeedHandle) -> anyhow::Result<()> {
    event_loop(&mut app, feed).await
}

/// The loop proper; the terminal is restored when it returns (`Screen`).
async fn event_loop(app: &mut App, feed: &FeedHandle) -> anyhow::Result<()> {
    let panic_key = test_panic_key();
    let mut screen = Screen::enter()?;
    if let Ok(size) = screen.terminal.size() {
        app.update(Event::Resize(size.width, size.height));
    }
    app.update(Event::Tick(Utc::now()));
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut feed_open = true;
    let mut rows_logged = false;
    let mut last_draw: Option<Instant> = None;
    loop {
        if app.attention.bell_pending {
            // The only place a BEL is written (never by the pure render).
            app.attention.bell_pending = false;
            ring_bell();
        }
        if app.dirty && last_draw.is_none_or(|t| t.elapsed() >= MIN_FRAME) {
            screen
                .terminal
                .draw(|f| view::render(app, f))
                .context("cannot draw to the terminal")?;
            app.dirty = false;
            last_draw = Some(Instant::now());
        }
        let next_draw = match (app.dirty, last_draw) {
            (true, Some(t)) => Some(t + MIN_FRAME),
            _ => None,
        };
        // Biased: a signal first, then input, then the clock and the
        // feed, so `q` and Ctrl-C are answered whatever the server sends.
        tokio::select! {
            biased;
            () = feed.stop().cancelled() => break,
            ev = events.next() => match ev {
                Some(Ok(ev)) => {
                    if let (Some(c), crossterm::event::Event::Key(k)) = (panic_key, &ev)
                        && k.code == KeyCode::Char(c)
                    {
                        panic!("{TEST_PANIC_ENV}: test panic on key {c:?}");
                    }
                    if let Some(e) = convert(ev) {
                        app.update(e);
                    }
                }
                Some(Err(e)) => return Err(e).context("cannot read terminal events"),
                None => break,
            },
            _ = tick.tick() => app.update(Event::Tick(Utc::now())),
            () = async {
                match next_draw {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            batch = feed.next_batch(), if feed_open => if let Some(batch) = batch {
                    // At most one update per batch (the newest), plus the
                    // small events in order.
                    if batch.skipped > 0 || batch.dropped > 0 {
                        app.update(Event::FeedSkipped {
                            updates: batch.skipped,
                            events: batch.dropped,
                        });
                    }
                    app.update(Event::Traffic(feed.traffic()));
                    for e in batch.events {
                        if let FeedEvent::Update { update, .. } = &e
                            && !rows_logged
                            && let Some(why) = &update.rows.first_error
                        {
                            rows_logged = true;
                            tracing::warn!(
                                "left out {} row(s) with bad values from an update (logged once): {}",
                                update.rows.rejected,
                                crate::text::sanitize_line(why, crate::text::MAX_MESSAGE_CHARS)
                            );
                        }
                        app.update(Event::Feed(e));
                    }
            } else {
                feed_open = false;
                // The feed only ends by itself after a final failure; any
                // other end is a bug (e.g. a panic in its task).
                if !matches!(app.conn, app::ConnState::Failed { .. }) {
                    anyhow::bail!("the connection task stopped unexpectedly");
                }
            },
        }
        for cmd in app.outbox.drain(..) {
            if feed.commands().try_send(cmd).is_err() {
                tracing::warn!(
                    "feed is busy or gone; a command for it (subscribe or history) was dropped"
                );
            }
        }
        if app.quit {
            break;
        }
    }
    drop(screen);
    Ok(())
}

/// Write one BEL byte to the terminal (`--bell` on a new anomaly).
fn ring_bell() {
    use std::io::Write as _;
    let mut out = std::io::stdout();
    if let Err(e) = out.write_all(b"\x07").and_then(|()| out.flush()) {
        tracing::debug!("cannot ring the bell: {e}");
    }
}

fn convert(ev: crossterm::event::Event) -> Option<Event> {
    use crossterm::event::Event as C;
    match ev {
        C::Key(k) => Some(Event::Key(k)),
        C::Mouse(m) => Some(Event::Mouse(m)),
        C::Resize(w, h) => Some(Event::Resize(w, h)),
        _ => None,
    }
}
