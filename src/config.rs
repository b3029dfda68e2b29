//! The `skillmon watch` configuration: the TOML file in the platform config
//! dir (or `--config` / `SKILLMON_CONFIG`), merged under environment
//! variables and flags (precedence: flag > env > file > default).
//!
//! Owns file discovery, parsing with errors that name the file, line and key,
//! the inputs of a run ([`WatchOptions`], built by the binary from the
//! command line, each flag/env value tagged with its [`Source`]) and the
//! effective [`WatchConfig`]. It never reads `SKILLMON_*` variables itself
//! (the binary resolved them), and knows nothing of the command-line parser.
//! Key bindings are validated by [`crate::tui::keymap`]; this module only
//! carries their text.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::tui::theme::ThemeName;

mod net;
pub use net::NetConfig;

/// The URL `skillmon watch` connects to when nothing else says.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8765";

/// What the config file may hold.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub url: Option<String>,
    pub skills: Option<Vec<String>>,
    pub theme: Option<String>,
    /// Ring the terminal bell on a new anomaly (default false).
    pub bell: Option<bool>,
    /// Action name → keys, e.g. `quit = ["q", "Ctrl-c"]`; replaces that
    /// action's default keys.
    #[serde(default)]
    pub keys: BTreeMap<String, KeyList>,
    /// Over a network (see [`NetConfig`]).
    pub token_file: Option<PathBuf>,
    pub ca_cert: Option<PathBuf>,
    pub max_frame: Option<String>,
    /// `deflate` (the default) or `off`.
    pub compression: Option<String>,
}

/// One key or a list of keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum KeyList {
    One(String),
    Many(Vec<String>),
}

impl KeyList {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            KeyList::One(s) => vec![s.clone()],
            KeyList::Many(v) => v.clone(),
        }
    }
}

/// A config problem, always naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}, line {line}, column {column}{key}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        /// `, key "theme"` when known, else empty.
        key: String,
        message: String,
    },
    #[error("config file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// `skillmon watch`'s inputs before the config file: what the command line
/// and the environment said (each with where it came from), and the per-run
/// switches. Build one in code with [`WatchOptions::for_url`] (every other
/// field has a sensible `Default`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WatchOptions {
    /// Server URL (`URL` / `SKILLMON_URL`).
    pub url: Option<(String, Source)>,
    /// Only these skills (`--skill` / `SKILLMON_SKILLS`); `None` = not given.
    pub skills: Option<(Vec<String>, Source)>,
    /// `--theme` / `SKILLMON_THEME`.
    pub theme: Option<(ThemeName, Source)>,
    /// `--no-color` (the `NO_COLOR` variable is read by [`load`]).
    pub no_color: bool,
    /// `--json`: one JSON line per update instead of the dashboard.
    pub json: bool,
    /// `--once`: one snapshot, then exit.
    pub once: bool,
    /// `--timeout` for `--once` [default: `watch::DEFAULT_TIMEOUT`].
    pub timeout: Option<Duration>,
    /// `--config` / `SKILLMON_CONFIG`.
    pub config: Option<PathBuf>,
    /// `--log-file` / `SKILLMON_LOG_FILE`.
    pub log_file: Option<PathBuf>,
    /// `--log-format` / `SKILLMON_LOG_FORMAT`: how the log file's lines are written.
    pub log_format: crate::logging::LogFormat,
    /// `--print-config`.
    pub print_config: bool,
    /// `--bell`: ring the terminal bell on a new anomaly (config `bell`).
    pub bell: bool,
    /// `--fail-on-anomaly` (with `--once`): exit 3 when the snapshot holds an anomaly.
    pub fail_on_anomaly: bool,
    /// `--history 1h|24h` (with `--once --json`): include that history frame.
    pub history: Option<crate::protocol::HistoryWindow>,
    /// Over a network (see [`NetConfig`]): where the token comes from
    /// (`--token-file`, else `SKILLMON_TOKEN` when set; never the value),
    /// `--ca-cert` / `SKILLMON_CA_CERT`, `--max-frame` / `SKILLMON_MAX_FRAME`.
    pub token: Option<(crate::client::TokenSource, Source)>,
    pub ca_cert: Option<(PathBuf, Source)>,
    pub max_frame: Option<(usize, Source)>,
    /// `--compression` / `SKILLMON_COMPRESSION`.
    pub compression: Option<(crate::deflate::Compression, Source)>,
    /// Send no token whatever the config file says (`demo`: its own
    /// loopback server needs none).
    pub no_token: bool,
}

impl WatchOptions {
    /// `skillmon watch URL` with everything else defaulted.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: Some((url.into(), Source::Flag)),
            ..Self::default()
        }
    }
}

/// Where the config file is looked for: `--config` / `SKILLMON_CONFIG`, else
/// `config.toml` in the platform config dir.
pub fn config_path(args: &WatchOptions) -> Option<PathBuf> {
    if let Some(p) = &args.config {
        return Some(p.clone());
    }
    directories::ProjectDirs::from("", "", "skillmon").map(|d| d.config_dir().join("config.toml"))
}

/// Default log file: `skillmon-watch.log` in the platform data dir.
pub fn default_log_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "skillmon")
        .map(|d| d.data_dir().join("skillmon-watch.log"))
}

/// Parse config text; `path` only names the file in errors.
pub fn parse_file(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
    toml::from_str::<FileConfig>(text).map_err(|e| {
        let (line, column, key) = match e.span() {
            Some(span) => locate(text, span.start),
            None => (1, 1, None),
        };
        ConfigError::Parse {
            path: path.to_path_buf(),
            line,
            column,
            key: key.map(|k| format!(", key {k:?}")).unwrap_or_default(),
            message: e.message().trim().to_string(),
        }
    })
}

/// 1-based line and column of byte `offset`, and the key assigned on that line.
fn locate(text: &str, offset: usize) -> (usize, usize, Option<String>) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_text = text[line_start..].lines().next().unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    (line, column, key)
}

/// Where a setting came from, for `--print-config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The effective configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchConfig {
    pub url: String,
    pub url_source: Source,
    pub skills: Vec<String>,
    pub skills_source: Source,
    pub theme: ThemeName,
    pub theme_source: Source,
    /// Colours off (NO_COLOR or --no-color): the theme is forced to mono.
    pub no_color: bool,
    /// Ring the terminal bell on a new anomaly (`--bell` or config `bell`).
    pub bell: bool,
    pub bell_source: Source,
    pub keys: BTreeMap<String, Vec<String>>,
    pub file: Option<PathBuf>,
    pub file_found: bool,
    /// Where logs go (`--log-file`, else the platform data dir).
    pub log_file: Option<PathBuf>,
    /// Token source, CA file and message limit.
    pub net: NetConfig,
}

/// Load the file (a missing default file is fine; a missing `--config` file
/// is an error) and merge it under the args. `NO_COLOR` (set and non-empty)
/// turns colours off as `--no-color` does.
pub fn load(args: &WatchOptions) -> Result<WatchConfig, ConfigError> {
    let path = config_path(args);
    let explicit = args.config.is_some();
    let (file, found) = match &path {
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => (parse_file(&text, p)?, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
                (FileConfig::default(), false)
            }
            Err(e) => {
                return Err(ConfigError::Read {
                    path: p.clone(),
                    source: e,
                });
            }
        },
        None => (FileConfig::default(), false),
    };
    let no_color = args.no_color || std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    merge(args, file, path, found, no_color)
}

/// Merge args (flags and env, each tagged with its source) over the file.
pub fn merge(
    args: &WatchOptions,
    file: FileConfig,
    path: Option<PathBuf>,
    found: bool,
    no_color: bool,
) -> Result<WatchConfig, ConfigError> {
    let (url, url_source) = match (&args.url, &file.url) {
        (Some((u, src)), _) => (u.clone(), *src),
        (None, Some(u)) => (u.clone(), Source::File),
        (None, None) => (DEFAULT_URL.to_string(), Source::Default),
    };
    let (skills, skills_source) = match (&args.skills, &file.skills) {
        (Some((s, src)), _) if !s.is_empty() => (s.clone(), *src),
        (_, Some(s)) => (s.clone(), Source::File),
        _ => (Vec::new(), Source::Default),
    };
    let file_path = path.clone().unwrap_or_default();
    let (mut theme, theme_source) = match (&args.theme, &file.theme) {
        (Some((t, src)), _) => (*t, *src),
        (None, Some(t)) => match ThemeName::parse(t) {
            Ok(t) => (t, Source::File),
            Err(e) => {
                return Err(ConfigError::Invalid {
                    path: file_path,
                    message: format!("key \"theme\": {e}"),
                });
            }
        },
        (None, None) => (ThemeName::Dark, Source::Default),
    };
    if no_color {
        theme = ThemeName::Mono;
    }
    let keys = file
        .keys
        .iter()
        .map(|(k, v)| (k.clone(), v.to_vec()))
        .collect();
    let (bell, bell_source) = match (args.bell, file.bell) {
        (true, _) => (true, Source::Flag),
        (false, Some(b)) => (b, Source::File),
        (false, None) => (false, Source::Default),
    };
    Ok(WatchConfig {
        bell,
        bell_source,
        url,
        url_source,
        skills,
        skills_source,
        theme,
        theme_source,
        no_color,
        keys,
        file_found: found,
        log_file: args.log_file.clone().or_else(default_log_path),
        net: NetConfig::merge(args, &file, path.as_deref())?,
        file: path,
    })
}

impl WatchConfig {
    /// The effective configuration as TOML, with where each value came from.
    pub fn to_display(&self, keymap: &crate::tui::keymap::Keymap) -> String {
        let mut out = String::new();
        match &self.file {
            Some(p) if self.file_found => {
                out.push_str(&format!("# config file: {}\n", p.display()));
            }
            Some(p) => out.push_str(&format!(
                "# config file: {} (not found; defaults used)\n",
                p.display()
            )),
            None => out.push_str("# config file: none (no config dir on this platform)\n"),
        }
        if let Some(p) = &self.log_file {
            out.push_str(&format!("# log file: {}\n", p.display()));
        }
        out.push_str(&format!(
            "url = {}  # {}\n",
            toml_str(&self.url),
            self.url_source.as_str()
        ));
        let skills: Vec<String> = self.skills.iter().map(|s| toml_str(s)).collect();
        out.push_str(&format!(
            "skills = [{}]  # {}{}\n",
            skills.join(", "),
            self.skills_source.as_str(),
            if self.skills.is_empty() {
                "; empty = all skills"
            } else {
                ""
            }
        ));
        out.push_str(&format!(
            "theme = {}  # {}{}\n",
            toml_str(self.theme.as_str()),
            self.theme_source.as_str(),
            if self.no_color {
                "; NO_COLOR / --no-color forces mono"
            } else {
                ""
            }
        ));
        out.push_str(&format!(
            "bell = {}  # {}\n",
            self.bell,
            self.bell_source.as_str()
        ));
        out.push_str(&self.net.to_display());
        out.push_str("\n[keys]\n");
        for (action, keys) in keymap.by_action() {
            let keys: Vec<String> = keys.iter().map(|k| toml_str(k)).collect();
            out.push_str(&format!("{} = [{}]\n", action, keys.join(", ")));
        }
        out
    }
}

fn toml_str(s: &str) -> String {
    // JSON string escaping is valid TOML basic-string escaping for our needs.
    serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> PathBuf {
        PathBuf::from("/tmp/skillmon.toml")
    }

    #[test]
    fn parses_a_full_file() {
        let f = parse_file(
            "url = \"ws://h:1\"\nskills = [\"a\", \"b\"]\ntheme = \"light\"\n[keys]\nquit = \"x\"\nhelp = [\"h\", \"?\"]\n",
            &p(),
        )
        .unwrap();
        assert_eq!(f.url.as_deref(), Some("ws://h:1"));
        assert_eq!(f.skills, Some(vec!["a".into(), "b".into()]));
        assert_eq!(f.keys["quit"].to_vec(), vec!["x"]);
        assert_eq!(f.keys["help"].to_vec(), vec!["h", "?"]);
    }

    #[test]
    fn malformed_file_names_file_line_and_key() {
        let e = parse_file("url = \"ws://x\"\ntheme = 5\n", &p()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("/tmp/skillmon.toml"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("key \"theme\""), "{msg}");

        let e = parse_file("url = \"ws://x\"\n\ncolour = \"red\"\n", &p()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("colour"), "{msg}");

        let e = parse_file("url = \n", &p()).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn flags_beat_file_beats_default() {
        let file = FileConfig {
            url: Some("ws://file:1".into()),
            skills: Some(vec!["f".into()]),
            theme: Some("light".into()),
            keys: BTreeMap::new(),
            ..FileConfig::default()
        };
        let args = WatchOptions::default();
        let c = merge(&args, file.clone(), Some(p()), true, false).unwrap();
        assert_eq!(c.url, "ws://file:1");
        assert_eq!(c.url_source, Source::File);
        assert_eq!(c.skills, vec!["f"]);
        assert_eq!(c.theme, ThemeName::Light);

        let mut args = WatchOptions::for_url("ws://flag:2");
        args.skills = Some((vec!["x".into(), "y".into()], Source::Flag));
        args.theme = Some((ThemeName::Dark, Source::Flag));
        let c = merge(&args, file.clone(), Some(p()), true, false).unwrap();
        assert_eq!(c.url, "ws://flag:2");
        assert_eq!(c.skills, vec!["x", "y"]);
        assert_eq!(c.theme, ThemeName::Dark);

        let c = merge(
            &WatchOptions::default(),
            FileConfig::default(),
            None,
            false,
            true,
        )
        .unwrap();
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(c.url_source, Source::Default);
        assert_eq!(c.theme, ThemeName::Mono);
    }

    #[test]
    fn sources_are_the_callers_not_guessed_from_the_environment() {
        let args = WatchOptions {
            url: Some(("ws://e:1".into(), Source::Env)),
            skills: Some((vec!["s".into()], Source::Env)),
            theme: Some((ThemeName::Light, Source::Flag)),
            ..WatchOptions::default()
        };
        let c = merge(&args, FileConfig::default(), None, false, false).unwrap();
        assert_eq!(
            (c.url_source, c.skills_source, c.theme_source),
            (Source::Env, Source::Env, Source::Flag)
        );
        let empty = WatchOptions {
            skills: Some((Vec::new(), Source::Env)),
            ..WatchOptions::default()
        };
        let file = FileConfig {
            skills: Some(vec!["f".into()]),
            ..FileConfig::default()
        };
        let c = merge(&empty, file, None, true, false).unwrap();
        assert_eq!(
            (c.skills, c.skills_source),
            (vec!["f".to_string()], Source::File)
        );
    }

    #[test]
    fn bell_is_off_unless_the_flag_or_the_file_says() {
        let c = merge(
            &WatchOptions::default(),
            FileConfig::default(),
            None,
            false,
            false,
        )
        .unwrap();
        assert_eq!((c.bell, c.bell_source), (false, Source::Default));
        let file = parse_file("bell = true\n", &p()).unwrap();
        let c = merge(&WatchOptions::default(), file, Some(p()), true, false).unwrap();
        assert_eq!((c.bell, c.bell_source), (true, Source::File));
        let args = WatchOptions {
            bell: true,
            ..WatchOptions::default()
        };
        let c = merge(&args, FileConfig::default(), None, false, false).unwrap();
        assert_eq!((c.bell, c.bell_source), (true, Source::Flag));
        assert!(parse_file("bell = \"yes\"\n", &p()).is_err());
    }

    #[test]
    fn bad_theme_in_file_is_named() {
        let file = FileConfig {
            theme: Some("purple".into()),
            ..FileConfig::default()
        };
        let e = merge(&WatchOptions::default(), file, Some(p()), true, false).unwrap_err();
        assert!(e.to_string().contains("theme"), "{e}");
        assert!(e.to_string().contains("/tmp/skillmon.toml"), "{e}");
    }

    #[test]
    fn explicit_missing_config_is_an_error() {
        let args = WatchOptions {
            config: Some(PathBuf::from("/nonexistent/skillmon/config.toml")),
            ..WatchOptions::default()
        };
        let e = load(&args).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/skillmon/config.toml"));
    }
}
