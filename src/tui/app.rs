//! The dashboard state and its only mutator, [`App::update`]: key presses,
//! mouse, resizes, feed events and clock ticks go in; the state, a dirty
//! flag, a quit flag and commands for the feed come out. No I/O, no clock:
//! "now" is whatever the last event said it was, so rendering is
//! deterministic.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEvent, MouseEventKind,
};

use crate::client::{FeedCommand, FeedEvent};
use crate::protocol::{Anomaly, SkillStat, Subscription};
use crate::tui::keymap::{Action, Keymap};
use crate::tui::theme::Theme;
use crate::tui::theme::ThemeName;

/// Points of per-skill history kept for sparklines and charts.
pub const HISTORY_LEN: usize = 240;
/// The update interval assumed when the server does not announce one.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(1);
/// No update for this many intervals = stale.
pub const STALE_AFTER_INTERVALS: u32 = 3;
/// Window of the "messages per second" rate.
pub const RATE_WINDOW_SECS: i64 = 10;

/// Everything that can change the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Key(KeyEvent),
    Mouse(MouseEvent),
    Resize(u16, u16),
    Feed(FeedEvent),
    /// The clock moved (the 1 s tick).
    Tick(DateTime<Utc>),
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

/// The header badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Badge {
    Connecting,
    Live,
    Stale,
    Reconnecting,
    Failed,
}

impl Badge {
    pub fn label(self) -> &'static str {
        match self {
            Badge::Connecting => "CONNECTING",
            Badge::Live => "LIVE",
            Badge::Stale => "STALE",
            Badge::Reconnecting => "RECONNECTING",
            Badge::Failed => "FAILED",
        }
    }
}

/// One row of the top-skills table.
#[derive(Debug, Clone, PartialEq)]
pub struct SkillRow {
    /// 1-based position in the server's list.
    pub rank: usize,
    pub stat: SkillStat,
    /// Change of `total_invocations` since the previous update.
    pub delta: Option<i64>,
}

/// One sample of a skill's history.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub at: DateTime<Utc>,
    pub total: u64,
    pub completion: f64,
    pub duration: Option<f64>,
}

/// The data the screen shows; cloned aside when frozen.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DataView {
    pub rows: Vec<SkillRow>,
    pub anomalies: Vec<Anomaly>,
    pub updated_at: Option<DateTime<Utc>>,
    pub updates: u64,
    pub history: HashMap<String, VecDeque<Sample>>,
}

/// Connection health counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Health {
    pub connected_since: Option<DateTime<Utc>>,
    pub ever_connected: bool,
    pub server: Option<String>,
    pub interval: Option<Duration>,
    pub rtt_last: Option<Duration>,
    pub rtt_sum: Duration,
    pub rtt_count: u32,
    pub messages: u64,
    pub recent: VecDeque<DateTime<Utc>>,
    pub last_seq: Option<u64>,
    pub seq_gaps: u64,
    pub seq_missed: u64,
    pub seq_duplicates: u64,
    pub reconnects: u32,
    pub last_close: Option<(Option<u16>, String)>,
    pub last_error: Option<String>,
}

impl Health {
    pub fn rtt_avg(&self) -> Option<Duration> {
        (self.rtt_count > 0).then(|| self.rtt_sum / self.rtt_count)
    }

    /// Messages per second over the last [`RATE_WINDOW_SECS`].
    pub fn rate(&self, now: DateTime<Utc>) -> f64 {
        let from = now - chrono::Duration::seconds(RATE_WINDOW_SECS);
        let n = self
            .recent
            .iter()
            .filter(|t| **t > from && **t <= now)
            .count();
        n as f64 / RATE_WINDOW_SECS as f64
    }
}

/// Which column the table is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Rank,
    Name,
    Invocations,
    Delta,
    Completion,
    Duration,
    Last1h,
    Last24h,
}

impl SortKey {
    pub fn label(self) -> &'static str {
        match self {
            SortKey::Rank => "rank",
            SortKey::Name => "skill",
            SortKey::Invocations => "invocations",
            SortKey::Delta => "change",
            SortKey::Completion => "completion",
            SortKey::Duration => "avg duration",
            SortKey::Last1h => "1h",
            SortKey::Last24h => "24h",
        }
    }

    fn next(self) -> SortKey {
        match self {
            SortKey::Rank => SortKey::Name,
            SortKey::Name => SortKey::Invocations,
            SortKey::Invocations => SortKey::Delta,
            SortKey::Delta => SortKey::Completion,
            SortKey::Completion => SortKey::Duration,
            SortKey::Duration => SortKey::Last1h,
            SortKey::Last1h => SortKey::Last24h,
            SortKey::Last24h => SortKey::Rank,
        }
    }

    /// Rank and name read best ascending, numbers descending.
    pub fn natural_ascending(self) -> bool {
        matches!(self, SortKey::Rank | SortKey::Name)
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

/// Screen regions, computed from the terminal size alone so that key and
/// mouse handling agree with rendering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Areas {
    pub header: ratatui::layout::Rect,
    pub table: ratatui::layout::Rect,
    pub anomalies: Option<ratatui::layout::Rect>,
    pub health: Option<ratatui::layout::Rect>,
    pub footer: ratatui::layout::Rect,
}

/// Smallest terminal the dashboard draws in.
pub const MIN_WIDTH: u16 = 40;
pub const MIN_HEIGHT: u16 = 10;

/// The layout for a terminal of `width` x `height`.
pub fn layout(width: u16, height: u16) -> Areas {
    use ratatui::layout::Rect;
    let header = Rect::new(0, 0, width, 1);
    let footer = Rect::new(0, height.saturating_sub(1), width, 1);
    let middle_h = height.saturating_sub(2);
    if middle_h >= 16 {
        // Room for ten skills first (13 lines), then the panels get the rest.
        let bottom_h = middle_h.saturating_sub(13).clamp(7, 12);
        let table = Rect::new(0, 1, width, middle_h - bottom_h);
        let y = 1 + table.height;
        let anom_w = if width >= 100 {
            width * 3 / 5
        } else {
            width / 2
        };
        let anomalies = Rect::new(0, y, anom_w, bottom_h);
        let health = Rect::new(anom_w, y, width - anom_w, bottom_h);
        Areas {
            header,
            table,
            anomalies: Some(anomalies),
            health: Some(health),
            footer,
        }
    } else {
        Areas {
            header,
            table: Rect::new(0, 1, width, middle_h),
            anomalies: None,
            health: None,
            footer,
        }
    }
}

/// Rows of data that fit in the table area (borders and header row excluded).
pub fn table_capacity(table: ratatui::layout::Rect) -> usize {
    usize::from(table.height.saturating_sub(3))
}

/// First visible row so that `selected` is on screen.
pub fn table_offset(selected: usize, capacity: usize) -> usize {
    if capacity == 0 {
        0
    } else {
        (selected + 1).saturating_sub(capacity)
    }
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

    /// The rows on screen: filtered, then sorted.
    pub fn visible_rows(&self) -> Vec<&SkillRow> {
        let needle = self.filter.to_lowercase();
        let mut rows: Vec<&SkillRow> = self
            .view()
            .rows
            .iter()
            .filter(|r| needle.is_empty() || r.stat.skill_name.to_lowercase().contains(&needle))
            .collect();
        let key = self.sort;
        rows.sort_by(|a, b| {
            use std::cmp::Ordering;
            let f = |x: f64, y: f64| x.partial_cmp(&y).unwrap_or(Ordering::Equal);
            let ord = match key {
                SortKey::Rank => a.rank.cmp(&b.rank),
                SortKey::Name => a.stat.skill_name.cmp(&b.stat.skill_name),
                SortKey::Invocations => a.stat.total_invocations.cmp(&b.stat.total_invocations),
                SortKey::Delta => a.delta.unwrap_or(0).cmp(&b.delta.unwrap_or(0)),
                SortKey::Completion => f(a.stat.completion_rate, b.stat.completion_rate),
                SortKey::Duration => f(
                    a.stat.avg_duration_seconds.unwrap_or(-1.0),
                    b.stat.avg_duration_seconds.unwrap_or(-1.0),
                ),
                SortKey::Last1h => a.stat.invocations_1h.cmp(&b.stat.invocations_1h),
                SortKey::Last24h => a.stat.invocations_24h.cmp(&b.stat.invocations_24h),
            };
            let ord = if key.natural_ascending() {
                ord
            } else {
                ord.reverse()
            };
            let ord = if self.reversed { ord.reverse() } else { ord };
            ord.then(a.rank.cmp(&b.rank))
        });
        rows
    }

    /// Index of the selected row among the visible ones (0 when none matches).
    pub fn selected_index(&self) -> usize {
        let rows = self.visible_rows();
        self.selected
            .as_ref()
            .and_then(|name| rows.iter().position(|r| &r.stat.skill_name == name))
            .unwrap_or(0)
    }

    /// Is the sort order currently ascending?
    pub fn ascending(&self) -> bool {
        self.sort.natural_ascending() != self.reversed
    }

    fn table_capacity(&self) -> usize {
        table_capacity(layout(self.size.0, self.size.1).table)
    }

    fn select_index(&mut self, idx: usize) {
        let name = {
            let rows = self.visible_rows();
            if rows.is_empty() {
                return;
            }
            rows[idx.min(rows.len() - 1)].stat.skill_name.clone()
        };
        self.selected = Some(name);
        if let Overlay::Detail(_) = self.overlay
            && let Some(n) = &self.selected
        {
            self.overlay = Overlay::Detail(n.clone());
        }
    }

    fn move_by(&mut self, delta: isize) {
        let len = self.visible_rows().len();
        if len == 0 {
            return;
        }
        let cur = self.selected_index() as isize;
        let next = (cur + delta).clamp(0, len as isize - 1) as usize;
        self.select_index(next);
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
                self.dirty = true;
            }
            Event::Feed(f) => self.on_feed(f),
        }
    }

    fn on_key(&mut self, k: KeyEvent) {
        // Only presses count: no repeats, no releases (kitty protocol, Windows).
        if k.kind != KeyEventKind::Press {
            return;
        }
        let ctrl_c = k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl_c {
            self.quit = true;
            return;
        }
        match self.mode {
            Mode::Filter => {
                match k.code {
                    KeyCode::Esc => {
                        self.filter.clear();
                        self.mode = Mode::Normal;
                    }
                    KeyCode::Enter => self.mode = Mode::Normal,
                    KeyCode::Backspace => {
                        self.filter.pop();
                    }
                    KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.filter.push(c)
                    }
                    _ => return,
                }
                self.dirty = true;
                return;
            }
            Mode::Subscribe => {
                match k.code {
                    KeyCode::Esc => {
                        self.mode = Mode::Normal;
                        self.input.clear();
                    }
                    KeyCode::Enter => {
                        let sub = Subscription::from_names(
                            self.input.split(',').map(|s| s.trim().to_string()),
                        );
                        if let Err(e) = sub.validate() {
                            self.status = Some(e);
                            self.dirty = true;
                            return;
                        }
                        self.status = Some(match &sub {
                            Subscription::All => "subscribing to all skills".to_string(),
                            Subscription::Skills(s) => format!("subscribing to {}", s.join(", ")),
                        });
                        self.subscription = sub.clone();
                        self.outbox.push(FeedCommand::Subscribe(sub));
                        self.mode = Mode::Normal;
                        self.input.clear();
                    }
                    KeyCode::Backspace => {
                        self.input.pop();
                    }
                    KeyCode::Char(c) if !k.modifiers.contains(KeyModifiers::CONTROL) => {
                        self.input.push(c)
                    }
                    _ => return,
                }
                self.dirty = true;
                return;
            }
            Mode::Normal => {}
        }
        // Esc first closes what is open.
        if k.code == KeyCode::Esc {
            if self.overlay != Overlay::None {
                self.overlay = Overlay::None;
                self.dirty = true;
                return;
            }
            if !self.filter.is_empty() {
                self.filter.clear();
                self.dirty = true;
                return;
            }
        }
        let Some(action) = self.keymap.action(&k) else {
            return;
        };
        self.status = None;
        let page = self.table_capacity().max(1) as isize;
        match action {
            Action::Quit => self.quit = true,
            Action::Help => {
                self.overlay = if self.overlay == Overlay::Help {
                    Overlay::None
                } else {
                    Overlay::Help
                }
            }
            Action::Up => self.move_by(-1),
            Action::Down => self.move_by(1),
            Action::PageUp => self.move_by(-page),
            Action::PageDown => self.move_by(page),
            Action::Home => self.select_index(0),
            Action::End => self.select_index(usize::MAX),
            Action::Detail => {
                self.overlay = match &self.overlay {
                    Overlay::Detail(_) => Overlay::None,
                    _ => {
                        let rows = self.visible_rows();
                        match rows.get(self.selected_index()) {
                            Some(r) => Overlay::Detail(r.stat.skill_name.clone()),
                            None => Overlay::None,
                        }
                    }
                }
            }
            Action::SortNext => {
                self.sort = self.sort.next();
                self.reversed = false;
            }
            Action::SortReverse => self.reversed = !self.reversed,
            Action::Filter => {
                self.mode = Mode::Filter;
                self.overlay = Overlay::None;
            }
            Action::Freeze => {
                self.frozen = match self.frozen.take() {
                    Some(_) => None,
                    None => Some(self.live.clone()),
                }
            }
            Action::Theme => {
                if self.no_color {
                    self.status = Some("colours are off (NO_COLOR / --no-color)".into());
                } else {
                    self.theme = Theme::next_name(self.theme);
                    self.status = Some(format!("theme: {}", self.theme.as_str()));
                }
            }
            Action::Subscribe => {
                self.mode = Mode::Subscribe;
                self.input = self.subscription.skills().join(", ");
            }
        }
        self.dirty = true;
    }

    fn on_mouse(&mut self, m: MouseEvent) {
        match m.kind {
            MouseEventKind::ScrollDown => self.move_by(1),
            MouseEventKind::ScrollUp => self.move_by(-1),
            MouseEventKind::Down(MouseButton::Left) => {
                if self.overlay != Overlay::None {
                    return;
                }
                let table = layout(self.size.0, self.size.1).table;
                let first = table.y + 2;
                let cap = table_capacity(table);
                let in_x = m.column >= table.x && m.column < table.x + table.width;
                if !in_x || m.row < first || usize::from(m.row - first) >= cap {
                    return;
                }
                let offset = table_offset(self.selected_index(), cap);
                let idx = offset + usize::from(m.row - first);
                if idx < self.visible_rows().len() {
                    self.select_index(idx);
                } else {
                    return;
                }
            }
            _ => return,
        }
        self.dirty = true;
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
            FeedEvent::Connected { info, at } => {
                h.messages += 1;
                push_recent(&mut h.recent, at);
                if h.ever_connected {
                    h.reconnects += 1;
                }
                h.ever_connected = true;
                h.connected_since = Some(at);
                h.server = info.server;
                h.interval = info
                    .interval_ms
                    .filter(|ms| *ms > 0)
                    .map(Duration::from_millis);
                h.last_seq = None;
                self.conn = ConnState::Live;
            }
            FeedEvent::Update { update, at, .. } => {
                h.messages += 1;
                push_recent(&mut h.recent, at);
                if let Some(seq) = update.seq {
                    if let Some(last) = h.last_seq {
                        if seq > last.saturating_add(1) {
                            h.seq_gaps += 1;
                            h.seq_missed = h.seq_missed.saturating_add(seq - last - 1);
                        } else if seq <= last {
                            h.seq_duplicates += 1;
                        }
                    }
                    h.last_seq = Some(seq);
                }
                if self.conn != ConnState::Live {
                    self.conn = ConnState::Live;
                }
                // The feed already kept only the subscribed skills.
                apply_update(
                    &mut self.live,
                    update.data.top_skills,
                    update.data.anomalies,
                    at,
                );
            }
            FeedEvent::Subscribed { at } => {
                h.messages += 1;
                push_recent(&mut h.recent, at);
                if self
                    .status
                    .as_deref()
                    .is_some_and(|s| s.starts_with("subscribing"))
                {
                    self.status = Some(format!(
                        "subscribed to {}",
                        crate::tui::view::subscription_label(&self.subscription)
                    ));
                }
            }
            FeedEvent::Pong { rtt, at } => {
                h.messages += 1;
                push_recent(&mut h.recent, at);
                if let Some(rtt) = rtt {
                    h.rtt_last = Some(rtt);
                    h.rtt_sum = h.rtt_sum.saturating_add(rtt);
                    h.rtt_count = h.rtt_count.saturating_add(1);
                }
            }
            FeedEvent::ServerError { error, at } => {
                h.messages += 1;
                push_recent(&mut h.recent, at);
                h.last_error = Some(error.message.clone());
                self.status = Some(format!("server: {}", error.message));
            }
            FeedEvent::Disconnected {
                code,
                reason,
                retry_in,
                at,
            } => {
                h.connected_since = None;
                // A close frame is worth keeping; a failed attempt is an error.
                if code.is_some() {
                    h.last_close = Some((code, reason));
                } else {
                    h.last_error = Some(reason);
                }
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
            FeedEvent::Failed { code, reason, .. } => {
                h.connected_since = None;
                h.last_close = Some((code, reason.clone()));
                self.conn = ConnState::Failed { reason };
            }
        }
    }
}

fn push_recent(recent: &mut VecDeque<DateTime<Utc>>, at: DateTime<Utc>) {
    recent.push_back(at);
    let from = at - chrono::Duration::seconds(RATE_WINDOW_SECS);
    while recent.front().is_some_and(|t| *t <= from) || recent.len() > 10_000 {
        recent.pop_front();
    }
}

fn apply_update(
    view: &mut DataView,
    skills: Vec<SkillStat>,
    anomalies: Vec<Anomaly>,
    at: DateTime<Utc>,
) {
    let prev: HashMap<&str, u64> = view
        .rows
        .iter()
        .map(|r| (r.stat.skill_name.as_str(), r.stat.total_invocations))
        .collect();
    let rows: Vec<SkillRow> = skills
        .into_iter()
        .enumerate()
        .map(|(i, stat)| {
            let delta = prev.get(stat.skill_name.as_str()).map(|p| {
                let d = i128::from(stat.total_invocations) - i128::from(*p);
                d.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
            });
            SkillRow {
                rank: i + 1,
                stat,
                delta,
            }
        })
        .collect();
    for r in &rows {
        let h = view.history.entry(r.stat.skill_name.clone()).or_default();
        h.push_back(Sample {
            at,
            total: r.stat.total_invocations,
            completion: r.stat.completion_rate,
            duration: r.stat.avg_duration_seconds,
        });
        while h.len() > HISTORY_LEN {
            h.pop_front();
        }
    }
    // Forget skills gone for a long time so memory stays bounded.
    if view.history.len() > 1000 {
        let keep: std::collections::HashSet<&str> =
            rows.iter().map(|r| r.stat.skill_name.as_str()).collect();
        view.history.retain(|k, _| keep.contains(k.as_str()));
    }
    view.rows = rows;
    view.anomalies = anomalies;
    view.updated_at = Some(at);
    view.updates += 1;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::protocol::{Connected, ErrorCode, ErrorFrame, MetricsData, MetricsUpdate};
    use crossterm::event::KeyEventState;

    pub fn t0() -> DateTime<Utc> {
        crate::protocol::parse_timestamp("2026-11-22T03:00:00Z").unwrap_or_default()
    }

    pub fn secs(n: i64) -> DateTime<Utc> {
        t0() + chrono::Duration::seconds(n)
    }

    pub fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent {
            code,
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        })
    }

    pub fn ch(c: char) -> Event {
        key(KeyCode::Char(c))
    }

    pub fn stat(name: &str, total: u64, rate: f64, dur: Option<f64>) -> SkillStat {
        SkillStat {
            skill_name: name.into(),
            total_invocations: total,
            completion_rate: rate,
            avg_duration_seconds: dur,
            invocations_1h: None,
            invocations_24h: None,
            last_invoked_at: None,
        }
    }

    pub fn connected(at: DateTime<Utc>, interval_ms: Option<u64>) -> Event {
        Event::Feed(FeedEvent::Connected {
            info: Connected {
                message: "hi".into(),
                authenticated: false,
                timestamp: None,
                server: Some("skillmon/0.1.0".into()),
                protocol: Some(1),
                interval_ms,
                session_id: None,
            },
            at,
        })
    }

    pub fn update(
        at: DateTime<Utc>,
        seq: Option<u64>,
        skills: Vec<SkillStat>,
        anomalies: Vec<Anomaly>,
    ) -> Event {
        Event::Feed(FeedEvent::Update {
            update: MetricsUpdate {
                seq,
                timestamp: None,
                data: MetricsData {
                    top_skills: skills,
                    anomalies,
                },
            },
            raw: Default::default(),
            at,
        })
    }

    fn three() -> Vec<SkillStat> {
        vec![
            stat("pytest-run", 30, 93.3, Some(6.34)),
            stat("ruff-check", 20, 100.0, Some(0.8)),
            stat("mypy", 10, 50.0, None),
        ]
    }

    fn live_app() -> App {
        let mut app = App::new("ws://x", Subscription::All, t0());
        app.update(connected(t0(), Some(1000)));
        app.update(update(t0(), Some(1), three(), vec![]));
        app
    }

    #[test]
    fn connect_then_update_goes_live_with_rows() {
        let mut app = App::new("ws://x", Subscription::All, t0());
        assert_eq!(app.badge(), Badge::Connecting);
        app.update(Event::Feed(FeedEvent::Connecting {
            attempt: 1,
            at: t0(),
        }));
        assert_eq!(app.badge(), Badge::Connecting);
        app.update(connected(secs(1), None));
        assert_eq!(app.badge(), Badge::Live);
        app.update(update(secs(2), None, three(), vec![]));
        assert_eq!(app.live.rows.len(), 3);
        assert_eq!(app.live.rows[0].rank, 1);
        assert_eq!(app.live.rows[0].delta, None);
        assert_eq!(app.health.messages, 2);
        assert_eq!(app.now, secs(2));
    }

    #[test]
    fn deltas_history_and_seq_gaps() {
        let mut app = live_app();
        let mut s = three();
        s[0].total_invocations = 33;
        app.update(update(secs(1), Some(2), s.clone(), vec![]));
        assert_eq!(app.live.rows[0].delta, Some(3));
        assert_eq!(app.live.history["pytest-run"].len(), 2);
        app.update(update(secs(2), Some(5), s.clone(), vec![]));
        assert_eq!(app.health.seq_gaps, 1);
        assert_eq!(app.health.seq_missed, 2);
        app.update(update(secs(3), Some(5), s, vec![]));
        assert_eq!(app.health.seq_duplicates, 1);
    }

    #[test]
    fn stale_after_three_intervals_without_updates() {
        let mut app = live_app();
        app.update(Event::Tick(secs(3)));
        assert_eq!(app.badge(), Badge::Live);
        app.update(Event::Tick(secs(4)));
        assert_eq!(app.badge(), Badge::Stale);
        app.update(update(secs(5), Some(2), three(), vec![]));
        assert_eq!(app.badge(), Badge::Live);
        // A server announcing a 2 s interval is stale only after 6 s.
        app.update(connected(secs(5), Some(2000)));
        app.update(Event::Tick(secs(10)));
        assert_eq!(app.badge(), Badge::Live);
        app.update(Event::Tick(secs(12)));
        assert_eq!(app.badge(), Badge::Stale);
    }

    #[test]
    fn not_stale_right_after_a_reconnect() {
        let mut app = live_app(); // last update at 1 s, interval 1 s
        app.update(Event::Feed(FeedEvent::Disconnected {
            code: Some(1006),
            reason: "lost".into(),
            retry_in: Duration::from_secs(30),
            at: secs(2),
        }));
        // Back after 60 s; session-buddy's first update may take an interval.
        app.update(connected(secs(60), Some(1000)));
        app.update(Event::Tick(secs(61)));
        assert_eq!(app.badge(), Badge::Live);
        app.update(Event::Tick(secs(64)));
        assert_eq!(app.badge(), Badge::Stale);
    }

    #[test]
    fn disconnect_reconnect_and_failure() {
        let mut app = live_app();
        app.update(Event::Feed(FeedEvent::Disconnected {
            code: Some(1001),
            reason: "shutdown".into(),
            retry_in: Duration::from_millis(250),
            at: secs(1),
        }));
        assert_eq!(app.badge(), Badge::Reconnecting);
        assert_eq!(app.health.last_close, Some((Some(1001), "shutdown".into())));
        app.update(Event::Feed(FeedEvent::Connecting {
            attempt: 2,
            at: secs(2),
        }));
        assert_eq!(app.badge(), Badge::Reconnecting);
        app.update(connected(secs(2), None));
        assert_eq!(app.badge(), Badge::Live);
        assert_eq!(app.health.reconnects, 1);
        app.update(Event::Feed(FeedEvent::Failed {
            code: Some(4001),
            reason: "Authentication failed".into(),
            at: secs(3),
        }));
        assert_eq!(app.badge(), Badge::Failed);
    }

    #[test]
    fn pongs_measure_rtt_and_bare_pongs_count() {
        let mut app = live_app();
        app.update(Event::Feed(FeedEvent::Pong {
            rtt: Some(Duration::from_millis(4)),
            at: secs(1),
        }));
        app.update(Event::Feed(FeedEvent::Pong {
            rtt: Some(Duration::from_millis(2)),
            at: secs(1),
        }));
        app.update(Event::Feed(FeedEvent::Pong {
            rtt: None,
            at: secs(1),
        }));
        assert_eq!(app.health.rtt_last, Some(Duration::from_millis(2)));
        assert_eq!(app.health.rtt_avg(), Some(Duration::from_millis(3)));
        assert_eq!(app.health.messages, 5);
    }

    #[test]
    fn server_error_and_subscribed_are_recorded() {
        let mut app = live_app();
        app.update(Event::Feed(FeedEvent::Subscribed { at: secs(1) }));
        app.update(Event::Feed(FeedEvent::ServerError {
            error: ErrorFrame {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
            },
            at: secs(1),
        }));
        assert_eq!(app.health.last_error.as_deref(), Some("slow down"));
        assert!(app.status.as_deref().unwrap_or("").contains("slow down"));
    }

    #[test]
    fn only_key_presses_count() {
        let mut app = live_app();
        app.dirty = false;
        app.update(Event::Key(KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Release,
            state: KeyEventState::NONE,
        }));
        assert!(!app.quit);
        assert!(!app.dirty);
        app.update(Event::Key(KeyEvent {
            code: KeyCode::Char('q'),
            modifiers: KeyModifiers::NONE,
            kind: KeyEventKind::Repeat,
            state: KeyEventState::NONE,
        }));
        assert!(!app.quit);
        app.update(ch('q'));
        assert!(app.quit);
    }

    #[test]
    fn quit_keys() {
        for ev in [
            ch('q'),
            key(KeyCode::Esc),
            Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        ] {
            let mut app = live_app();
            app.update(ev);
            assert!(app.quit);
        }
    }

    #[test]
    fn navigation_keys_move_the_selection() {
        let mut app = live_app();
        app.update(ch('j'));
        assert_eq!(app.selected.as_deref(), Some("ruff-check"));
        app.update(key(KeyCode::Down));
        app.update(key(KeyCode::Down));
        assert_eq!(app.selected.as_deref(), Some("mypy"));
        app.update(ch('k'));
        assert_eq!(app.selected_index(), 1);
        app.update(key(KeyCode::Home));
        assert_eq!(app.selected_index(), 0);
        app.update(key(KeyCode::End));
        assert_eq!(app.selected_index(), 2);
        app.update(key(KeyCode::PageUp));
        assert_eq!(app.selected_index(), 0);
        app.update(key(KeyCode::PageDown));
        assert_eq!(app.selected_index(), 2);
        app.update(key(KeyCode::Up));
        assert_eq!(app.selected_index(), 1);
    }

    #[test]
    fn selection_follows_the_skill_across_resorts() {
        let mut app = live_app();
        app.update(ch('j')); // ruff-check
        app.update(ch('s')); // by name: mypy, pytest-run, ruff-check
        assert_eq!(app.sort, SortKey::Name);
        assert_eq!(app.selected_index(), 2);
        let names: Vec<_> = app
            .visible_rows()
            .iter()
            .map(|r| r.stat.skill_name.clone())
            .collect();
        assert_eq!(names, ["mypy", "pytest-run", "ruff-check"]);
        app.update(ch('S'));
        assert!(app.reversed);
        assert_eq!(app.visible_rows()[0].stat.skill_name, "ruff-check");
        app.update(ch('s')); // invocations, descending
        assert!(!app.reversed);
        assert_eq!(app.visible_rows()[0].stat.skill_name, "pytest-run");
        app.update(ch('s'));
        app.update(ch('s')); // completion
        assert_eq!(app.sort, SortKey::Completion);
        assert_eq!(app.visible_rows()[0].stat.skill_name, "ruff-check");
    }

    #[test]
    fn filter_typing_escape_and_enter() {
        let mut app = live_app();
        app.update(ch('/'));
        assert_eq!(app.mode, Mode::Filter);
        for c in "PYT".chars() {
            app.update(ch(c));
        }
        assert_eq!(app.visible_rows().len(), 1, "case-insensitive");
        app.update(key(KeyCode::Backspace));
        assert_eq!(app.visible_rows().len(), 2, "pytest-run and mypy");
        app.update(key(KeyCode::Enter));
        assert_eq!(app.mode, Mode::Normal);
        assert_eq!(app.filter, "PY");
        // 'q' in filter mode types, it does not quit.
        app.update(ch('/'));
        app.update(ch('q'));
        assert!(!app.quit);
        assert_eq!(app.visible_rows().len(), 0);
        app.update(key(KeyCode::Esc));
        assert_eq!(app.filter, "");
        assert_eq!(app.mode, Mode::Normal);
        // Esc in normal mode with a filter clears it instead of quitting.
        app.filter = "my".into();
        app.update(key(KeyCode::Esc));
        assert!(!app.quit);
        assert_eq!(app.filter, "");
    }

    #[test]
    fn help_and_detail_overlays() {
        let mut app = live_app();
        app.update(ch('?'));
        assert_eq!(app.overlay, Overlay::Help);
        app.update(ch('?'));
        assert_eq!(app.overlay, Overlay::None);
        app.update(ch('?'));
        app.update(key(KeyCode::Esc));
        assert_eq!(app.overlay, Overlay::None);
        assert!(!app.quit);
        app.update(ch('j'));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.overlay, Overlay::Detail("ruff-check".into()));
        app.update(ch('j'));
        assert_eq!(app.overlay, Overlay::Detail("mypy".into()));
        app.update(key(KeyCode::Enter));
        assert_eq!(app.overlay, Overlay::None);
    }

    #[test]
    fn freeze_keeps_the_picture_while_data_arrives() {
        let mut app = live_app();
        app.update(ch('f'));
        assert!(app.frozen.is_some());
        let mut s = three();
        s[0].total_invocations = 99;
        app.update(update(secs(1), Some(2), s, vec![]));
        assert_eq!(app.view().rows[0].stat.total_invocations, 30);
        assert_eq!(app.live.rows[0].stat.total_invocations, 99);
        app.update(ch('f'));
        assert_eq!(app.view().rows[0].stat.total_invocations, 99);
    }

    #[test]
    fn theme_cycles_unless_colours_are_off() {
        let mut app = live_app();
        app.update(ch('t'));
        assert_eq!(app.theme, ThemeName::Light);
        app.update(ch('t'));
        assert_eq!(app.theme, ThemeName::Mono);
        app.update(ch('t'));
        assert_eq!(app.theme, ThemeName::Dark);
        app.no_color = true;
        app.update(ch('t'));
        assert_eq!(app.theme, ThemeName::Dark);
        assert_eq!(app.theme().name, ThemeName::Mono);
    }

    #[test]
    fn subscription_can_be_changed_live() {
        let mut app = live_app();
        app.update(ch('c'));
        assert_eq!(app.mode, Mode::Subscribe);
        for c in "mypy, pytest-run".chars() {
            app.update(ch(c));
        }
        app.update(key(KeyCode::Enter));
        let want = Subscription::from_names(["mypy", "pytest-run"]);
        assert_eq!(app.subscription, want);
        assert_eq!(app.outbox, vec![FeedCommand::Subscribe(want)]);
        app.outbox.clear();
        // Empty = all.
        app.update(ch('c'));
        assert_eq!(app.input, "mypy, pytest-run");
        for _ in 0..20 {
            app.update(key(KeyCode::Backspace));
        }
        app.update(key(KeyCode::Enter));
        assert_eq!(app.outbox, vec![FeedCommand::Subscribe(Subscription::All)]);
        // A name the server would refuse is refused here, with the reason.
        app.update(ch('c'));
        for _ in 0..300 {
            app.update(ch('x'));
        }
        app.update(key(KeyCode::Enter));
        assert_eq!(app.outbox, vec![FeedCommand::Subscribe(Subscription::All)]);
        assert_eq!(app.mode, Mode::Subscribe);
        assert!(app.status.as_deref().unwrap_or("").contains("longer than"));
        app.update(key(KeyCode::Esc));
        // Esc cancels.
        app.outbox.clear();
        app.update(ch('c'));
        app.update(ch('x'));
        app.update(key(KeyCode::Esc));
        assert!(app.outbox.is_empty());
        assert_eq!(app.mode, Mode::Normal);
    }

    #[test]
    fn mouse_wheel_and_click() {
        let mut app = live_app();
        app.update(Event::Resize(100, 30));
        let mouse = |kind, column, row| {
            Event::Mouse(MouseEvent {
                kind,
                column,
                row,
                modifiers: KeyModifiers::NONE,
            })
        };
        app.update(mouse(MouseEventKind::ScrollDown, 5, 5));
        assert_eq!(app.selected_index(), 1);
        app.update(mouse(MouseEventKind::ScrollUp, 5, 5));
        assert_eq!(app.selected_index(), 0);
        // Table at y=1: border, header row, then data rows from y=3.
        app.update(mouse(MouseEventKind::Down(MouseButton::Left), 10, 5));
        assert_eq!(app.selected.as_deref(), Some("mypy"));
        // A click below the rows selects nothing new.
        app.update(mouse(MouseEventKind::Down(MouseButton::Left), 10, 9));
        assert_eq!(app.selected.as_deref(), Some("mypy"));
    }

    #[test]
    fn resize_and_tick_mark_dirty() {
        let mut app = live_app();
        app.dirty = false;
        app.update(Event::Resize(120, 40));
        assert!(app.dirty);
        assert_eq!(app.size, (120, 40));
        app.dirty = false;
        app.update(Event::Tick(secs(9)));
        assert!(app.dirty);
        assert_eq!(app.now, secs(9));
        app.dirty = false;
        app.update(ch('x')); // unbound
        assert!(!app.dirty);
    }

    #[test]
    fn message_rate_over_the_window() {
        let mut app = App::new("ws://x", Subscription::All, t0());
        app.update(connected(t0(), None));
        for i in 1..=10 {
            app.update(update(secs(i), None, three(), vec![]));
        }
        assert!((app.health.rate(secs(10)) - 1.0).abs() < 1e-9);
        assert_eq!(app.health.rate(secs(30)), 0.0);
    }

    #[test]
    fn layout_never_overflows() {
        for (w, h) in [(40, 10), (80, 24), (200, 60), (41, 17), (40, 18)] {
            let a = layout(w, h);
            for r in [
                Some(a.header),
                Some(a.table),
                a.anomalies,
                a.health,
                Some(a.footer),
            ]
            .into_iter()
            .flatten()
            {
                assert!(r.right() <= w && r.bottom() <= h, "{w}x{h}: {r:?}");
            }
        }
    }
}
