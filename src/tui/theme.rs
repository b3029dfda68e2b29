//! Colour themes as named styles: dark, light (readable on light
//! terminals) and mono (NO_COLOR: bold / reverse / underline only).
//! Every background is the terminal's own (`Color::Reset`).

use crate::error::InvalidValue;
use ratatui::style::{Color, Modifier, Style};

/// Colour theme of the dashboard. Its names (and their aliases) are parsed
/// by one `FromStr` for `--theme`, `SKILLMON_THEME` and the config file's
/// `theme`, case-insensitively; each variant's doc line is its help text.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
    strum::EnumMessage,
)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum ThemeName {
    /// Bright colours for dark terminals (the default).
    #[default]
    Dark,
    /// Dark colours readable on light terminals.
    Light,
    /// No colour at all: bold, reverse and underline only (as with NO_COLOR).
    #[strum(to_string = "mono", serialize = "monochrome", serialize = "none")]
    Mono,
}

impl ThemeName {
    /// The canonical name (`dark`, `light`, `mono`).
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Parse a theme name or alias, ignoring case and surrounding blanks;
    /// the error names the accepted words.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        s.trim()
            .parse()
            .map_err(|_| InvalidValue(format!("{s:?} is not a theme; use dark, light or mono")))
    }
}

/// The named styles every view draws with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub name: ThemeName,
    pub base: Style,
    pub title: Style,
    pub border: Style,
    pub dim: Style,
    pub header_row: Style,
    pub selected: Style,
    pub key: Style,
    pub badge_live: Style,
    pub badge_connecting: Style,
    pub badge_stale: Style,
    pub badge_failed: Style,
    pub good: Style,
    pub warn: Style,
    pub bad: Style,
    pub bar_empty: Style,
    pub delta_up: Style,
    pub spark: Style,
    pub drop: Style,
    pub spike: Style,
    pub other_anomaly: Style,
    pub accent: Style,
    pub chart_a: Style,
    pub chart_b: Style,
}

fn fg(c: Color) -> Style {
    Style::new().fg(c).bg(Color::Reset)
}

impl Theme {
    pub fn get(name: ThemeName) -> Theme {
        match name {
            ThemeName::Dark => Theme::dark(),
            ThemeName::Light => Theme::light(),
            ThemeName::Mono => Theme::mono(),
        }
    }

    pub fn dark() -> Theme {
        let bold = Modifier::BOLD;
        Theme {
            name: ThemeName::Dark,
            base: fg(Color::Reset),
            title: fg(Color::Cyan).add_modifier(bold),
            border: fg(Color::DarkGray),
            dim: fg(Color::Gray),
            header_row: fg(Color::Yellow).add_modifier(bold),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            key: fg(Color::Cyan).add_modifier(bold),
            badge_live: fg(Color::Black).bg(Color::Green).add_modifier(bold),
            badge_connecting: fg(Color::Black).bg(Color::Yellow).add_modifier(bold),
            badge_stale: fg(Color::Black).bg(Color::LightYellow).add_modifier(bold),
            badge_failed: fg(Color::White).bg(Color::Red).add_modifier(bold),
            good: fg(Color::Green),
            warn: fg(Color::Yellow),
            bad: fg(Color::LightRed),
            bar_empty: fg(Color::DarkGray),
            delta_up: fg(Color::LightGreen),
            spark: fg(Color::LightBlue),
            drop: fg(Color::LightRed).add_modifier(bold),
            spike: fg(Color::LightMagenta).add_modifier(bold),
            other_anomaly: fg(Color::LightYellow),
            accent: fg(Color::LightCyan),
            chart_a: fg(Color::LightGreen),
            chart_b: fg(Color::LightBlue),
        }
    }

    pub fn light() -> Theme {
        let bold = Modifier::BOLD;
        Theme {
            name: ThemeName::Light,
            base: fg(Color::Reset),
            title: fg(Color::Blue).add_modifier(bold),
            border: fg(Color::Gray),
            dim: fg(Color::DarkGray),
            header_row: fg(Color::Magenta).add_modifier(bold),
            selected: Style::new().add_modifier(Modifier::REVERSED),
            key: fg(Color::Blue).add_modifier(bold),
            badge_live: fg(Color::White).bg(Color::Green).add_modifier(bold),
            badge_connecting: fg(Color::Black).bg(Color::Yellow).add_modifier(bold),
            badge_stale: fg(Color::White).bg(Color::Magenta).add_modifier(bold),
            badge_failed: fg(Color::White).bg(Color::Red).add_modifier(bold),
            good: fg(Color::Green),
            warn: fg(Color::Rgb(0x9a, 0x60, 0x00)),
            bad: fg(Color::Red),
            bar_empty: fg(Color::Gray),
            delta_up: fg(Color::Green).add_modifier(bold),
            spark: fg(Color::Blue),
            drop: fg(Color::Red).add_modifier(bold),
            spike: fg(Color::Magenta).add_modifier(bold),
            other_anomaly: fg(Color::Rgb(0x9a, 0x60, 0x00)),
            accent: fg(Color::Blue),
            chart_a: fg(Color::Green),
            chart_b: fg(Color::Blue),
        }
    }

    /// No colour: only modifiers, every colour Reset.
    pub fn mono() -> Theme {
        let plain = Style::new().fg(Color::Reset).bg(Color::Reset);
        let bold = plain.add_modifier(Modifier::BOLD);
        let rev = plain.add_modifier(Modifier::REVERSED | Modifier::BOLD);
        Theme {
            name: ThemeName::Mono,
            base: plain,
            title: bold,
            border: plain,
            dim: plain.add_modifier(Modifier::DIM),
            header_row: bold.add_modifier(Modifier::UNDERLINED),
            selected: plain.add_modifier(Modifier::REVERSED),
            key: bold,
            badge_live: rev,
            badge_connecting: bold,
            badge_stale: rev.add_modifier(Modifier::UNDERLINED),
            badge_failed: rev.add_modifier(Modifier::UNDERLINED),
            good: plain,
            warn: bold,
            bad: bold.add_modifier(Modifier::UNDERLINED),
            bar_empty: plain.add_modifier(Modifier::DIM),
            delta_up: bold,
            spark: plain,
            drop: bold.add_modifier(Modifier::UNDERLINED),
            spike: bold,
            other_anomaly: plain,
            accent: bold,
            chart_a: plain,
            chart_b: plain,
        }
    }

    /// The theme after this one (`t`); mono stays mono when colours are off.
    pub fn next_name(name: ThemeName) -> ThemeName {
        match name {
            ThemeName::Dark => ThemeName::Light,
            ThemeName::Light => ThemeName::Mono,
            ThemeName::Mono => ThemeName::Dark,
        }
    }
}
