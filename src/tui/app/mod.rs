//! The dashboard state and its only mutator, [`App::update`]: key presses,
//! mouse, resizes, feed events and clock ticks go in; the state, a dirty
//! flag, a quit flag and commands for the feed come out. No I/O, no clock:
//! "now" is whatever the last event said it was, so rendering is
//! deterministic. No JSON either: feed events come parsed (an edge's team
//! fields in `MetricsUpdate::team`).
//!
//! The parts live beside it: the data reducer in `data`, connection health
//! counters in `health`, sort/filter/selection in `selection`; geometry is
//! [`crate::tui::layout`]'s. Must not call into [`crate::tui::view`] (text
//! it needs comes from [`crate::text`]).

mod attention;
mod data;
mod health;
mod history;
mod input;
mod selection;

use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use crate::client::{FeedCommand, FeedEvent};
use crate::protocol::{HistoryWindow, Subscription};
use crate::text::subscription_label;
use crate::tui::keymap::{Action, Keymap};
use crate::tui::layout::{layout, table_capacity, table_offset};
use crate::tui::theme::Theme;
use crate::tui::theme::ThemeName;

pub use attention::{Attention, HIGHLIGHT_SECS};
pub use data::{DataView, HISTORY_LEN, HISTORY_SKILLS, HISTORY_TOP, Sample, SkillRow};
pub use health::{Health, RATE_WINDOW_SECS};
pub use history::{Bucket, MAX_SKILLS as MAX_HISTORY_SKILLS, Marker, Series, ServerHistory};
pub use selection::SortKey;

/// The update interval assumed when the server does not announce one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// No update for this many intervals = stale.
pub const STALE_AFTER_INTERVALS: u32 = 3;

/// Everything that can change the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Feed(FeedEvent),
    /// Feed events dropped before they reached the app: `updates` superseded
    /// by a newer one, `events` small events lost in a flood.
    FeedSkipped {
        updates: u64,
        events: u64,
    },
    /// The clock moved (the 1 s tick).
    Tick(DateTime<Utc>),
    /// The feed's byte counts, read with each batch.
    Traffic(crate::client::Traffic),
}

/// What the connection is doing.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnState {
    Connecting,
    Live,
    /// Waiting until `retry_at` (None: attempt `attempt` under way).
    Reconnecting {
        retry_at: Option<DateTime<Utc>>,
        attempt: u32,
    },
    Failed {
        reason: String,
    },
}

/// The header badge; its word is the variant's name in capitals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "UPPERCASE")]
pub enum Badge {
    Connecting,
    Live,
    Stale,
    Reconnecting,
    Failed,
}

impl Badge {
    /// `LIVE`, `STALE`, …: what the header shows.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}
/// Keyboard input mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Typing the filter (edits it live).
    Filter,
    /// Typing a new subscription.
    Subscribe,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    Help,
    Detail(String),
}

/// The whole dashboard state.
#[derive(Debug, Clone)]
pub struct App {
    pub url: String,
    pub subscription: Subscription,
    pub now: DateTime<Utc>,
    pub conn: ConnState,
    pub live: DataView,
    pub frozen: Option<DataView>,
    pub health: Health,
    pub mode: Mode,
    pub input: String,
    pub filter: String,
    pub overlay: Overlay,
    pub sort: SortKey,
    pub reversed: bool,
    /// Selected skill, by name (survives re-sorting).
    pub selected: Option<String>,
    pub size: (u16, u16),
    pub theme: ThemeName,
    pub no_color: bool,
    pub keymap: Keymap,
    /// A short message for the footer (e.g. "subscribed to all skills").
    pub status: Option<String>,
    /// Something visible changed since the last draw.
    pub dirty: bool,
    pub quit: bool,
    /// Commands for the feed, drained by the event loop.
    pub outbox: Vec<FeedCommand>,
    /// New anomalies: highlights, the header count, the bell.
    pub attention: Attention,
    /// (ext) The server's history of the skills in view and in the detail view.
    pub history: ServerHistory,
    /// The Trend column's history as it was when the display was frozen.
    pub frozen_history: Option<ServerHistory>,
    /// The detail view's chart window (the `window` key switches it).
    pub window: HistoryWindow,
    /// The visible rows (indices into `view().rows`), filtered and sorted
    /// when the data, the sort or the filter changed, not per draw.
    order: Vec<usize>,
    /// What `order` was computed for.
    order_key: Option<selection::OrderKey>,
    /// (team) The latest update's team fields when the server is an edge.
    pub team: Option<Box<crate::protocol::team::TeamFrame>>,
}

impl App {
    pub fn new(url: impl Into<String>, subscription: Subscription, now: DateTime<Utc>) -> Self {
        Self {
            url: url.into(),
            subscription,
            now,
            conn: ConnState::Connecting,
            live: DataView::default(),
            frozen: None,
            health: Health::default(),
            mode: Mode::Normal,
            input: String::new(),
            filter: String::new(),
            overlay: Overlay::None,
            sort: SortKey::Rank,
            reversed: false,
            selected: None,
            size: (80, 24),
            theme: ThemeName::Dark,
            no_color: false,
            keymap: Keymap::default(),
            status: None,
            dirty: true,
            quit: false,
            outbox: Vec::new(),
            attention: Attention::default(),
            history: ServerHistory::default(),
            frozen_history: None,
            window: HistoryWindow::Day,
            order: Vec::new(),
            order_key: None,
            team: None,
        }
    }

    pub fn theme(&self) -> Theme {
        Theme::get(if self.no_color {
            ThemeName::Mono
        } else {
            self.theme
        })
    }

    /// What the screen shows: the frozen copy, else the live data.
    pub fn view(&self) -> &DataView {
        self.frozen.as_ref().unwrap_or(&self.live)
    }

    /// The history the Trend column shows: the frozen copy, else the live one.
    pub fn trend_history(&self) -> &ServerHistory {
        self.frozen_history.as_ref().unwrap_or(&self.history)
    }

    /// The expected update interval (announced by skillmon, else 1 s).
    pub fn interval(&self) -> Duration {
        self.health.interval.unwrap_or(DEFAULT_INTERVAL)
    }

    pub fn badge(&self) -> Badge {
        match &self.conn {
            ConnState::Connecting => Badge::Connecting,
            ConnState::Reconnecting { .. } => Badge::Reconnecting,
            ConnState::Failed { .. } => Badge::Failed,
            ConnState::Live => {
                // The newer of the last update and this connection's start:
                // right after a reconnect, an old update is not staleness.
                let last = self.live.updated_at.max(self.health.connected_since);
                let limit = self.interval() * STALE_AFTER_INTERVALS;
                match last {
                    Some(t) if (self.now - t).to_std().is_ok_and(|age| age > limit) => Badge::Stale,
                    _ => Badge::Live,
                }
            }
        }
    }
    /// Does the footer show this action's hint now? Contextual actions
    /// (`seen`) only when they would do something.
    pub fn hint_applies(&self, action: Action) -> bool {
        match action {
            Action::Seen => self.attention.unseen > 0,
            Action::Window => matches!(self.overlay, Overlay::Detail(_)),
            _ => true,
        }
    }

    /// Apply one event. Sets `dirty` when the screen must be redrawn.
    pub fn update(&mut self, event: Event) {
        match event {
            Event::Key(k) => self.on_key(k),
            Event::Mouse(m) => self.on_mouse(m),
            Event::Resize(w, h) => {
                self.size = (w, h);
                self.dirty = true;
            }
            Event::Tick(now) => {
                self.now = now;
                self.attention.tick(now);
                self.dirty = true;
            }
            Event::Feed(f) => self.on_feed(f),
            Event::FeedSkipped { updates, events } => {
                let h = &mut self.health;
                h.skipped_updates = h.skipped_updates.saturating_add(updates);
                h.ignored_frames = h.ignored_frames.saturating_add(events);
                self.dirty = true;
            }
            Event::Traffic(t) => {
                if self.health.traffic != t {
                    self.health.traffic = t;
                    self.dirty = true;
                }
            }
        }
        self.refresh_order();
    }

    fn on_feed(&mut self, f: FeedEvent) {
        let at = f.at();
        if at > self.now {
            self.now = at;
        }
        self.dirty = true;
        let h = &mut self.health;
        match f {
            FeedEvent::Connecting { attempt, .. } => {
                self.conn = match self.conn {
                    ConnState::Reconnecting { .. } => ConnState::Reconnecting {
                        retry_at: None,
                        attempt,
                    },
                    _ if attempt > 1 || h.ever_connected => ConnState::Reconnecting {
                        retry_at: None,
                        attempt,
                    },
                    _ => ConnState::Connecting,
                };
            }
            FeedEvent::Connected { info, ext, at } => {
                h.message(at);
                h.connected(info.server, info.interval_ms, at);
                self.conn = ConnState::Live;
                // A new connection (or a reconnect) asks again.
                self.history.connected(ext);
                if let Overlay::Detail(name) = &self.overlay {
                    let asks = self.history.detail_requests(name);
                    self.outbox.extend(asks);
                }
            }
            FeedEvent::History { history, at, .. } => {
                h.message(at);
                self.history.receive(history);
            }
            FeedEvent::Update { update, at, .. } => {
                h.message(at);
                // Parsed with the frame by the client: no JSON here.
                self.team = update.team;
                if let Some(seq) = update.seq {
                    h.seq(seq);
                }
                if self.conn != ConnState::Live {
                    self.conn = ConnState::Live;
                }
                self.attention.observe(
                    &self.live.anomalies,
                    &update.data.anomalies,
                    self.live.updates == 0,
                    at,
                );
                h.rejected_rows = h.rejected_rows.saturating_add(update.rows.rejected);
                // Per-skill history is kept for what the user can see or
                // has selected (plus the top ranks, see `data`).
                let wanted = self.wanted_history();
                // The feed already kept only the subscribed skills.
                data::apply_update(
                    &mut self.live,
                    update.data.top_skills,
                    update.data.anomalies,
                    at,
                    &wanted,
                );
                let deltas: Vec<(String, i64)> = self
                    .live
                    .rows
                    .iter()
                    .filter_map(|r| r.delta.map(|d| (r.stat.skill_name.clone(), d)))
                    .collect();
                self.history.extend(&deltas, at);
                let stats: Vec<_> = self.live.rows.iter().map(|r| r.stat.clone()).collect();
                if let Some(ask) = self.history.trend_request(&stats) {
                    self.outbox.push(ask);
                }
            }
            FeedEvent::Subscribed { at } => {
                h.message(at);
                // The skills in view change: their history is asked for
                // at the next update.
                if self.history.offered() {
                    self.history.trend_wanted = true;
                }
                if self
                    .status
                    .as_deref()
                    .is_some_and(|s| s.starts_with("subscribing"))
                {
                    self.status = Some(format!(
                        "subscribed to {}",
                        subscription_label(&self.subscription)
                    ));
                }
            }
            FeedEvent::Pong { rtt, at } => {
                h.message(at);
                if let Some(rtt) = rtt {
                    h.rtt(rtt);
                }
            }
            FeedEvent::ServerError { error, at } => {
                h.message(at);
                h.last_error = Some(error.message.clone());
                self.status = Some(format!("server: {}", error.message));
            }
            FeedEvent::Disconnected {
                code,
                reason,
                retry_in,
                at,
            } => {
                h.disconnected(code, reason);
                let retry = chrono::Duration::from_std(retry_in).unwrap_or_default();
                let attempt = match self.conn {
                    ConnState::Reconnecting { attempt, .. } => attempt,
                    _ => 1,
                };
                self.conn = ConnState::Reconnecting {
                    retry_at: Some(at + retry),
                    attempt,
                };
            }
            FeedEvent::Ignored { .. } => {
                h.ignored_frames = h.ignored_frames.saturating_add(1);
            }
            FeedEvent::Failed { code, reason, .. } => {
                h.connected_since = None;
                h.last_close = Some((code, reason.clone()));
                self.conn = ConnState::Failed { reason };
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
