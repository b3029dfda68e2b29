//! The interactive dashboard: terminal lifecycle and the event loop.
//!
//! Owns raw mode, the alternate screen and mouse capture, and restores them
//! on every exit path (quit, Ctrl-C, SIGTERM, error return via the guard's
//! `Drop`, panic via a hook that restores before the message is printed).
//! The loop feeds terminal events, feed events and a 1 s clock tick into
//! [`app::App::update`] and redraws only when the app is dirty, at most
//! ~30 frames per second. State lives in [`app`], drawing in [`view`].

pub mod app;
pub mod keymap;
pub mod theme;
pub mod view;

use std::io::Stdout;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture, EventStream};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::time::Instant;

use crate::client::Feed;
use app::{App, Event};

/// Shortest time between two frames (~30 fps).
pub const MIN_FRAME: Duration = Duration::from_millis(33);

/// Put the terminal back: raw mode off, main screen, mouse off, cursor on.
/// Safe to call more than once.
pub fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = crossterm::execute!(
        std::io::stdout(),
        DisableMouseCapture,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

type PanicHook = Box<dyn Fn(&std::panic::PanicHookInfo<'_>) + Sync + Send + 'static>;

/// The terminal in dashboard mode; dropping it restores everything.
struct TerminalGuard {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    previous_hook: Arc<PanicHook>,
}

impl TerminalGuard {
    fn enter() -> anyhow::Result<Self> {
        let previous_hook: Arc<PanicHook> = Arc::new(std::panic::take_hook());
        let prev = previous_hook.clone();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        let mut guard_hook = Some(previous_hook);
        let setup = (|| -> anyhow::Result<Terminal<CrosstermBackend<Stdout>>> {
            enable_raw_mode().context("cannot switch the terminal to raw mode")?;
            crossterm::execute!(std::io::stdout(), EnterAlternateScreen, EnableMouseCapture)
                .context("cannot enter the alternate screen")?;
            let mut t = Terminal::new(CrosstermBackend::new(std::io::stdout()))
                .context("cannot set up the terminal")?;
            t.hide_cursor().context("cannot hide the cursor")?;
            Ok(t)
        })();
        match setup {
            Ok(terminal) => Ok(TerminalGuard {
                terminal,
                previous_hook: guard_hook
                    .take()
                    .unwrap_or_else(|| Arc::new(Box::new(|_| {}))),
            }),
            Err(e) => {
                restore_terminal();
                if let Some(h) = guard_hook.take() {
                    reinstall_hook(h);
                }
                Err(e)
            }
        }
    }
}

fn reinstall_hook(h: Arc<PanicHook>) {
    if !std::thread::panicking() {
        std::panic::set_hook(Box::new(move |info| h(info)));
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore_terminal();
        reinstall_hook(self.previous_hook.clone());
    }
}

/// Run the dashboard until the user quits or a signal arrives.
pub async fn run(mut app: App, connect: crate::client::ConnectOptions) -> anyhow::Result<()> {
    let (feed, mut feed_rx) = Feed::spawn_with(app.url.clone(), app.subscription.clone(), connect);
    let mut guard = TerminalGuard::enter()?;
    if let Ok(size) = guard.terminal.size() {
        app.update(Event::Resize(size.width, size.height));
    }
    app.update(Event::Tick(Utc::now()));
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut term_signal = terminate_signal();
    let mut feed_open = true;
    let mut last_draw: Option<Instant> = None;
    loop {
        if app.dirty && last_draw.is_none_or(|t| t.elapsed() >= MIN_FRAME) {
            guard
                .terminal
                .draw(|f| view::render(&app, f))
                .context("cannot draw to the terminal")?;
            app.dirty = false;
            last_draw = Some(Instant::now());
        }
        let next_draw = match (app.dirty, last_draw) {
            (true, Some(t)) => Some(t + MIN_FRAME),
            _ => None,
        };
        tokio::select! {
            _ = async {
                match next_draw {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            } => {}
            ev = events.next() => match ev {
                Some(Ok(ev)) => {
                    if let Some(e) = convert(ev) {
                        app.update(e);
                    }
                }
                Some(Err(e)) => return Err(e).context("cannot read terminal events"),
                None => break,
            },
            fe = feed_rx.recv(), if feed_open => match fe {
                Some(e) => {
                    app.update(Event::Feed(e));
                    // Drain what is already queued so a burst costs one frame.
                    for _ in 0..64 {
                        match feed_rx.try_recv() {
                            Ok(e) => app.update(Event::Feed(e)),
                            Err(_) => break,
                        }
                    }
                }
                None => {
                    feed_open = false;
                    // The feed only ends by itself after a final failure; any
                    // other end is a bug (e.g. a panic in its task).
                    if !matches!(app.conn, app::ConnState::Failed { .. }) {
                        anyhow::bail!("the connection task stopped unexpectedly");
                    }
                }
            },
            _ = tick.tick() => app.update(Event::Tick(Utc::now())),
            _ = recv_signal(&mut term_signal) => {
                tracing::info!("SIGTERM: quitting");
                break;
            }
            _ = tokio::signal::ctrl_c() => break,
        }
        for cmd in app.outbox.drain(..) {
            if feed.commands.try_send(cmd).is_err() {
                tracing::warn!("feed is busy or gone; a subscription change was dropped");
            }
        }
        if app.quit {
            break;
        }
    }
    drop(guard);
    feed.close(feed_rx).await;
    Ok(())
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

#[cfg(unix)]
type TermSignal = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type TermSignal = Option<()>;

#[cfg(unix)]
fn terminate_signal() -> TermSignal {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok()
}
#[cfg(not(unix))]
fn terminate_signal() -> TermSignal {
    None
}

#[cfg(unix)]
async fn recv_signal(s: &mut TermSignal) {
    match s {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}
#[cfg(not(unix))]
async fn recv_signal(_s: &mut TermSignal) {
    std::future::pending::<()>().await
}
