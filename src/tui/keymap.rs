//! Key bindings as data: one table of (key, action) drives the key handling,
//! the footer hint bar and the help overlay. Owns key parsing ("Ctrl-c",
//! "PgUp", "?"), config overrides and duplicate detection. It does no I/O.

use crate::error::InvalidValue;
use std::collections::BTreeMap;
use std::fmt;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Everything a key can do in normal mode, in table order (the help
/// overlay and the footer list them so). The strum name is the action's
/// name in the config file's `[keys]` table.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    strum::EnumIter,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[strum(serialize_all = "snake_case")]
pub enum Action {
    Quit,
    Help,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Detail,
    #[strum(serialize = "sort")]
    SortNext,
    SortReverse,
    Filter,
    Freeze,
    Theme,
    Subscribe,
    Seen,
    Window,
}

impl Action {
    /// Every action, in table order.
    pub fn all() -> impl Iterator<Item = Action> {
        <Action as strum::IntoEnumIterator>::iter()
    }

    /// The name used in the config file's `[keys]` table.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// What the help overlay says.
    pub fn description(self) -> &'static str {
        match self {
            Action::Quit => "quit (Esc first closes a view or clears the filter)",
            Action::Help => "show / hide this help",
            Action::Up => "select the previous skill",
            Action::Down => "select the next skill",
            Action::PageUp => "one page up",
            Action::PageDown => "one page down",
            Action::Home => "first skill",
            Action::End => "last skill",
            Action::Detail => "detail view of the selected skill",
            Action::SortNext => "sort by the next column",
            Action::SortReverse => "reverse the sort order",
            Action::Filter => "filter skills by substring (Esc clears)",
            Action::Freeze => "freeze / unfreeze the display (data keeps arriving)",
            Action::Theme => "next colour theme",
            Action::Subscribe => "change the subscription (names, comma-separated; empty = all)",
            Action::Seen => "mark the new anomalies as seen (clears the header count)",
            Action::Window => "detail view: switch the charts between the last 24h and 1h",
        }
    }

    /// The short label in the footer hint bar; `None` = not in the hint bar.
    pub fn hint(self) -> Option<&'static str> {
        match self {
            Action::Quit => Some("quit"),
            Action::Help => Some("help"),
            Action::Down => Some("move"),
            Action::Detail => Some("detail"),
            Action::SortNext => Some("sort"),
            Action::Filter => Some("filter"),
            Action::Freeze => Some("freeze"),
            Action::Theme => Some("theme"),
            Action::Subscribe => Some("skills"),
            Action::Seen => Some("seen"),
            Action::Window => Some("1h/24h"),
            _ => None,
        }
    }

    pub fn from_name(s: &str) -> Option<Action> {
        s.parse().ok()
    }

    fn default_keys(self) -> &'static [&'static str] {
        match self {
            Action::Quit => &["q", "Esc", "Ctrl-c"],
            Action::Help => &["?"],
            Action::Up => &["Up", "k"],
            Action::Down => &["Down", "j"],
            Action::PageUp => &["PgUp"],
            Action::PageDown => &["PgDn"],
            Action::Home => &["Home", "g"],
            Action::End => &["End", "G"],
            Action::Detail => &["Enter"],
            Action::SortNext => &["s"],
            Action::SortReverse => &["S"],
            Action::Filter => &["/"],
            Action::Freeze => &["f"],
            Action::Theme => &["t"],
            Action::Subscribe => &["c"],
            Action::Seen => &["a"],
            Action::Window => &["w"],
        }
    }
}

/// A key with its modifiers, normalised so that `S` and `Shift-s` are equal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub code: KeyCode,
    pub ctrl: bool,
    pub alt: bool,
}

impl Key {
    pub fn from_event(ev: &KeyEvent) -> Key {
        let code = match ev.code {
            // Terminals report Shift-Tab as BackTab and 'S' with SHIFT; the
            // character already carries the shift.
            KeyCode::Char(c) if ev.modifiers.contains(KeyModifiers::CONTROL) => {
                KeyCode::Char(c.to_ascii_lowercase())
            }
            other => other,
        };
        Key {
            code,
            ctrl: ev.modifiers.contains(KeyModifiers::CONTROL),
            alt: ev.modifiers.contains(KeyModifiers::ALT),
        }
    }

    /// Parse "q", "?", "Ctrl-c", "Alt-x", "Esc", "Enter", "Up", "PgDn", "F1", "Space".
    pub fn parse(s: &str) -> Result<Key, InvalidValue> {
        let mut ctrl = false;
        let mut alt = false;
        let mut rest = s;
        loop {
            let lower = rest.to_ascii_lowercase();
            if rest.chars().count() > 2
                && (lower.starts_with("ctrl-") || lower.starts_with("ctrl+"))
            {
                ctrl = true;
                rest = &rest[5..];
            } else if rest.chars().count() > 2
                && (lower.starts_with("alt-") || lower.starts_with("alt+"))
            {
                alt = true;
                rest = &rest[4..];
            } else {
                break;
            }
        }
        let mut chars = rest.chars();
        let code = match (chars.next(), chars.next()) {
            (Some(c), None) => KeyCode::Char(if ctrl { c.to_ascii_lowercase() } else { c }),
            _ => match rest.to_ascii_lowercase().as_str() {
                "esc" | "escape" => KeyCode::Esc,
                "enter" | "return" => KeyCode::Enter,
                "up" => KeyCode::Up,
                "down" => KeyCode::Down,
                "left" => KeyCode::Left,
                "right" => KeyCode::Right,
                "pgup" | "pageup" => KeyCode::PageUp,
                "pgdn" | "pgdown" | "pagedown" => KeyCode::PageDown,
                "home" => KeyCode::Home,
                "end" => KeyCode::End,
                "tab" => KeyCode::Tab,
                "backtab" => KeyCode::BackTab,
                "backspace" => KeyCode::Backspace,
                "delete" | "del" => KeyCode::Delete,
                "insert" | "ins" => KeyCode::Insert,
                "space" => KeyCode::Char(' '),
                f if f.starts_with('f')
                    && f[1..].parse::<u8>().is_ok_and(|n| (1..=12).contains(&n)) =>
                {
                    KeyCode::F(f[1..].parse().unwrap_or(1))
                }
                _ => {
                    return Err(InvalidValue(format!(
                        "{s:?} is not a key; use e.g. q, ?, Ctrl-c, Esc, Enter, Up, PgDn, F1"
                    )));
                }
            },
        };
        Ok(Key { code, ctrl, alt })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.ctrl {
            f.write_str("Ctrl-")?;
        }
        if self.alt {
            f.write_str("Alt-")?;
        }
        match self.code {
            KeyCode::Char(' ') => f.write_str("Space"),
            KeyCode::Char(c) => write!(f, "{c}"),
            KeyCode::Esc => f.write_str("Esc"),
            KeyCode::Enter => f.write_str("Enter"),
            KeyCode::Up => f.write_str("Up"),
            KeyCode::Down => f.write_str("Down"),
            KeyCode::Left => f.write_str("Left"),
            KeyCode::Right => f.write_str("Right"),
            KeyCode::PageUp => f.write_str("PgUp"),
            KeyCode::PageDown => f.write_str("PgDn"),
            KeyCode::Home => f.write_str("Home"),
            KeyCode::End => f.write_str("End"),
            KeyCode::Tab => f.write_str("Tab"),
            KeyCode::BackTab => f.write_str("BackTab"),
            KeyCode::Backspace => f.write_str("Backspace"),
            KeyCode::Delete => f.write_str("Delete"),
            KeyCode::Insert => f.write_str("Insert"),
            KeyCode::F(n) => write!(f, "F{n}"),
            other => write!(f, "{other:?}"),
        }
    }
}

/// A binding problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeymapError {
    #[error("[keys]: unknown action {0:?}; known actions: {1}")]
    UnknownAction(String, String),
    #[error("[keys] {action}: {message}")]
    BadKey { action: String, message: String },
    #[error("[keys]: key {key} is bound to both {first} and {second}")]
    Duplicate {
        key: String,
        first: String,
        second: String,
    },
}

/// The bindings, in table order.
#[derive(Debug, Clone, PartialEq)]
pub struct Keymap {
    bindings: Vec<(Key, Action)>,
}

impl Default for Keymap {
    fn default() -> Self {
        Self::with_overrides(&BTreeMap::new()).unwrap_or(Keymap {
            bindings: Vec::new(),
        })
    }
}

impl Keymap {
    /// The defaults with some actions' keys replaced (action name → keys).
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Self, KeymapError> {
        for name in overrides.keys() {
            if Action::from_name(name).is_none() {
                let known: Vec<&str> = Action::all().map(Action::as_str).collect();
                return Err(KeymapError::UnknownAction(name.clone(), known.join(", ")));
            }
        }
        let mut bindings: Vec<(Key, Action)> = Vec::new();
        for action in Action::all() {
            let keys: Vec<String> = match overrides.get(action.as_str()) {
                Some(v) => v.clone(),
                None => action
                    .default_keys()
                    .iter()
                    .map(std::string::ToString::to_string)
                    .collect(),
            };
            for k in keys {
                let key = Key::parse(&k).map_err(|message| KeymapError::BadKey {
                    action: action.as_str().to_string(),
                    message: message.to_string(),
                })?;
                if let Some((_, first)) = bindings.iter().find(|(b, _)| *b == key) {
                    return Err(KeymapError::Duplicate {
                        key: key.to_string(),
                        first: first.as_str().to_string(),
                        second: action.as_str().to_string(),
                    });
                }
                bindings.push((key, action));
            }
        }
        Ok(Keymap { bindings })
    }

    /// The action bound to this key press, if any.
    pub fn action(&self, ev: &KeyEvent) -> Option<Action> {
        let key = Key::from_event(ev);
        self.bindings
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, a)| *a)
    }

    pub fn keys_for(&self, action: Action) -> Vec<Key> {
        self.bindings
            .iter()
            .filter(|(_, a)| *a == action)
            .map(|(k, _)| *k)
            .collect()
    }

    /// Every action with its keys as text, in table order.
    pub fn by_action(&self) -> Vec<(&'static str, Vec<String>)> {
        Action::all()
            .map(|a| {
                (
                    a.as_str(),
                    self.keys_for(a)
                        .iter()
                        .map(std::string::ToString::to_string)
                        .collect(),
                )
            })
            .collect()
    }

    /// (keys label, hint) for the footer; arrows shown compactly.
    pub fn hints(&self) -> Vec<(String, &'static str)> {
        self.hints_where(|_| true)
    }

    /// [`Keymap::hints`] for the actions `show` keeps (the footer leaves
    /// out the contextual ones, e.g. `seen` when nothing is new).
    pub fn hints_where(&self, show: impl Fn(Action) -> bool) -> Vec<(String, &'static str)> {
        Action::all()
            .filter(|a| show(*a))
            .filter_map(|a| {
                let hint = a.hint()?;
                let keys = self.keys_for(a);
                let first = keys.first()?;
                let label = if a == Action::Down {
                    "↑↓".to_string()
                } else if first.code == KeyCode::Enter {
                    "⏎".to_string()
                } else {
                    first.to_string()
                };
                Some((label, hint))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyEventKind, KeyEventState};

    fn ev(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent {
            code,
            modifiers,
            kind: KeyEventKind::Press,
            state: KeyEventState::NONE,
        }
    }

    #[test]
    fn defaults_resolve() {
        let km = Keymap::default();
        assert_eq!(
            km.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(
            km.action(&ev(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Action::Quit)
        );
        assert_eq!(
            km.action(&ev(KeyCode::Char('S'), KeyModifiers::SHIFT)),
            Some(Action::SortReverse)
        );
        assert_eq!(
            km.action(&ev(KeyCode::Char('s'), KeyModifiers::NONE)),
            Some(Action::SortNext)
        );
        assert_eq!(
            km.action(&ev(KeyCode::PageDown, KeyModifiers::NONE)),
            Some(Action::PageDown)
        );
        assert_eq!(km.action(&ev(KeyCode::Char('x'), KeyModifiers::NONE)), None);
    }

    #[test]
    fn overrides_replace_and_duplicates_are_rejected() {
        let mut o = BTreeMap::new();
        o.insert("quit".to_string(), vec!["x".to_string()]);
        let km = Keymap::with_overrides(&o).unwrap();
        assert_eq!(
            km.action(&ev(KeyCode::Char('x'), KeyModifiers::NONE)),
            Some(Action::Quit)
        );
        assert_eq!(km.action(&ev(KeyCode::Char('q'), KeyModifiers::NONE)), None);

        let mut o = BTreeMap::new();
        o.insert("freeze".to_string(), vec!["t".to_string()]);
        let e = Keymap::with_overrides(&o).unwrap_err();
        assert!(matches!(e, KeymapError::Duplicate { .. }), "{e}");
        assert!(
            e.to_string().contains("freeze") && e.to_string().contains("theme"),
            "{e}"
        );

        let mut o = BTreeMap::new();
        o.insert("explode".to_string(), vec!["x".to_string()]);
        assert!(matches!(
            Keymap::with_overrides(&o),
            Err(KeymapError::UnknownAction(..))
        ));

        let mut o = BTreeMap::new();
        o.insert("help".to_string(), vec!["Hyper-z".to_string()]);
        assert!(matches!(
            Keymap::with_overrides(&o),
            Err(KeymapError::BadKey { .. })
        ));
    }

    #[test]
    fn config_names_are_unchanged() {
        let names: Vec<&str> = Action::all().map(Action::as_str).collect();
        assert_eq!(
            names,
            [
                "quit",
                "help",
                "up",
                "down",
                "page_up",
                "page_down",
                "home",
                "end",
                "detail",
                "sort",
                "sort_reverse",
                "filter",
                "freeze",
                "theme",
                "subscribe",
                "seen",
                "window",
            ]
        );
        for a in Action::all() {
            assert_eq!(Action::from_name(a.as_str()), Some(a));
        }
        assert_eq!(Action::from_name("sort_next"), None);
        assert_eq!(Action::from_name("Quit"), None);
    }

    #[test]
    fn key_text_round_trips() {
        for s in [
            "q", "?", "Ctrl-c", "Esc", "Enter", "Up", "PgUp", "PgDn", "F5", "Space", "S",
        ] {
            assert_eq!(Key::parse(s).unwrap().to_string(), s);
        }
    }
}
