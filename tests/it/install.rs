//! Installed like the tools its users already have: the real
//! binary, run from a directory outside the checkout with a clean
//! environment, prints its version (and commit), completion scripts whose
//! enum flags complete to their values, and man pages that render and name
//! every flag; without the `team` feature, `--publish` / `--from` say how to
//! get it.
//!
//! What every page and script must hold is derived from the CLI's own clap
//! `Command` (the binary's `src/cli`, compiled into this test too), never
//! from a hand list.

use crate::support;

// The binary's command line, for its clap `Command` alone.
#[path = "../../src/cli/mod.rs"]
#[allow(dead_code)]
mod cli;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use clap::{Arg, CommandFactory as _, ValueEnum as _};
use support::clean_env;

/// `skillmon ARGS` with a clean environment (home `home`), run from `cwd`.
fn run_from(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    Command::new(support::BIN)
        .env_clear()
        .envs(clean_env(home))
        .current_dir(cwd)
        .args(args)
        .output()
        .expect("run skillmon")
}

/// A home and a working directory, both outside the checkout.
struct Outside {
    _dir: tempfile::TempDir,
    home: PathBuf,
    cwd: PathBuf,
}

impl Outside {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (home, cwd) = (dir.path().join("home"), dir.path().join("work"));
        std::fs::create_dir_all(&cwd).expect("cwd");
        assert!(!cwd.starts_with(env!("CARGO_MANIFEST_DIR")));
        Self {
            _dir: dir,
            home,
            cwd,
        }
    }

    /// Run and insist on success; stdout as text.
    fn ok(&self, args: &[&str]) -> String {
        let out = run_from(&self.cwd, &self.home, args);
        assert!(
            out.status.success(),
            "skillmon {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 stdout")
    }
}

/// The CLI's command, built (so `--help` / `--version` are among its args).
fn built_command() -> clap::Command {
    let mut cmd = cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The visible options and positionals of one (sub)command.
fn visible_args(cmd: &clap::Command) -> Vec<&Arg> {
    cmd.get_arguments().filter(|a| !a.is_hide_set()).collect()
}

/// The names a value of `arg` may take, as completion lists them.
fn value_names(arg: &Arg) -> Vec<String> {
    arg.get_possible_values()
        .iter()
        .filter(|v| !v.is_hide_set())
        .map(|v| v.get_name().to_owned())
        .collect()
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let outside = Outside::new();
    let out = outside.ok(&["--version"]);
    let want = format!("skillmon {}", env!("CARGO_PKG_VERSION"));
    assert!(out.starts_with(&want), "{out:?}");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let head = Command::new("git")
        .arg("-C")
        .arg(manifest)
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success() && manifest.join(".git").exists())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let Some(head) = head else {
        eprintln!("not a git checkout (or no git): only the version is checked");
        assert_eq!(out.trim(), want);
        return;
    };
    let commit = out
        .split("(commit ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap_or_else(|| panic!("no commit in {out:?}"));
    assert!(
        commit.len() >= 7 && head.starts_with(commit),
        "{out:?} does not name HEAD {head}"
    );
}

#[test]
fn completion_scripts_list_every_enum_flags_values() {
    let outside = Outside::new();
    for shell in clap_complete::Shell::value_variants() {
        let name = shell.to_string();
        let script = outside.ok(&["completions", &name]);
        assert!(script.contains("skillmon"), "{name}: {script}");
    }
    let fish = outside.ok(&["completions", "fish"]);
    let bash = outside.ok(&["completions", "bash"]);
    // fish: one `complete` entry per flag (a value list may span lines).
    let entries: Vec<&str> = fish.split("\ncomplete ").collect();
    let cmd = built_command();
    let mut enum_flags = Vec::new();
    for sub in cmd.get_subcommands() {
        for arg in visible_args(sub) {
            let values = value_names(arg);
            let Some(long) = arg.get_long() else { continue };
            if values.is_empty() || long == "help" {
                continue;
            }
            let flag = format!("{} --{long}", sub.get_name());
            let entry = entries
                .iter()
                .find(|e| {
                    e.contains(&format!("using_subcommand {}\"", sub.get_name()))
                        && e.contains(&format!(" -l {long} "))
                })
                .unwrap_or_else(|| panic!("fish has no entry for {flag}"));
            for v in &values {
                assert!(
                    entry.contains(&format!("\"{v}\\t")) || entry.contains(&format!("\n{v}\\t")),
                    "fish: {flag} does not offer {v}: {entry}"
                );
            }
            if let Some(offered) = bash_complete(&bash, sub.get_name(), long) {
                assert_eq!(offered, values, "bash: skillmon {flag} <TAB>");
            }
            enum_flags.push(flag);
        }
    }
    for flag in [
        "serve --anomalies",
        "serve --log-format",
        "watch --theme",
        "watch --history",
        "watch --log-format",
        "demo --log-format",
        "bench --protocol",
    ] {
        assert!(
            enum_flags.iter().any(|f| f == flag),
            "{flag} should complete to its values; enum flags: {enum_flags:?}"
        );
    }
}

/// What bash offers for `skillmon SUB --LONG <TAB>` with `script` loaded
/// (`None`, with a note, when bash is not installed).
fn bash_complete(script: &str, sub: &str, long: &str) -> Option<Vec<String>> {
    let run = format!(
        "{script}\nCOMP_WORDS=(skillmon {sub} --{long} ''); COMP_CWORD=3; \
         _skillmon skillmon '' --{long}; printf '%s\\n' \"${{COMPREPLY[@]}}\""
    );
    let Ok(out) = Command::new("bash").args(["--norc", "-c", &run]).output() else {
        eprintln!("bash is not installed: the bash script is not run");
        return None;
    };
    assert!(out.status.success(), "{out:?}");
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// A page as text: through groff (or `man -l`) when the machine has one,
/// else its roff source with the hyphen escapes undone.
fn render(page: &Path) -> String {
    let plain = |out: Output| {
        assert!(out.status.success(), "{}: {out:?}", page.display());
        String::from_utf8_lossy(&out.stdout).replace(['\u{2010}', '\u{2011}', '\u{2212}'], "-")
    };
    // Wide lines, no hyphenation: a flag is never broken across lines.
    if let Ok(out) = Command::new("groff")
        .args([
            "-man",
            "-Tutf8",
            "-rLL=1000n",
            "-rHY=0",
            "-P-c",
            "-P-b",
            "-P-u",
        ])
        .arg(page)
        .output()
    {
        return plain(out);
    }
    if let Ok(out) = Command::new("man")
        .arg("-l")
        .arg(page)
        .env("MANWIDTH", "1000")
        .env("MANPAGER", "cat")
        .env("MAN_KEEP_FORMATTING", "")
        .output()
    {
        return plain(out);
    }
    eprintln!(
        "skipped rendering {}: neither groff nor man is installed; checking its source",
        page.display()
    );
    std::fs::read_to_string(page)
        .expect("read page")
        .replace("\\-", "-")
}

#[test]
fn man_pages_render_and_name_every_flag() {
    let outside = Outside::new();
    let listed = outside.ok(&["man", "--out", "pages"]);
    let dir = outside.cwd.join("pages");
    let cmd = built_command();
    let mut pages = vec![(PathBuf::from("skillmon.1"), &cmd)];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages.push((format!("skillmon-{}.1", sub.get_name()).into(), sub));
    }
    assert!(
        pages.len() >= 7,
        "skillmon + serve, demo, watch, bench, completions, man"
    );
    let listed: Vec<PathBuf> = listed.lines().map(PathBuf::from).collect();
    assert_eq!(listed.len(), pages.len(), "{listed:?}");
    for (file, page_cmd) in &pages {
        let path = dir.join(file);
        assert!(
            listed.iter().any(|l| l.ends_with(file)),
            "{file:?} not listed"
        );
        let text = render(&path);
        let title = file.with_extension("");
        assert!(
            text.contains(&*title.to_string_lossy()),
            "{file:?} does not name itself"
        );
        for arg in visible_args(page_cmd) {
            let mut names = Vec::new();
            names.extend(arg.get_long().map(|l| format!("--{l}")));
            names.extend(arg.get_short().map(|s| format!("-{s}")));
            if arg.is_positional() {
                names.extend(
                    arg.get_value_names()
                        .into_iter()
                        .flatten()
                        .map(ToString::to_string),
                );
            }
            assert!(!names.is_empty(), "{file:?}: {arg:?} has no name");
            for name in names {
                assert!(text.contains(&name), "{file:?} does not name {name}");
            }
        }
    }
}

#[test]
fn installed_binary_keeps_config_and_logs_in_the_users_dirs() {
    let outside = Outside::new();
    let out = outside.ok(&["watch", "--print-config"]);
    let config = outside.home.join("config/skillmon/config.toml");
    let log = outside.home.join("data/skillmon/skillmon-watch.log");
    assert!(
        out.contains(&format!("# config file: {}", config.display())),
        "{out}"
    );
    assert!(
        out.contains(&format!("# log file: {}", log.display())),
        "{out}"
    );
    // Nothing was written into the working directory.
    let left: Vec<_> = std::fs::read_dir(&outside.cwd).expect("cwd").collect();
    assert!(left.is_empty(), "{left:?}");
}

/// Without the `team` feature (`cargo test --no-default-features --test
/// install`), the team flags still parse and answer with the fix.
#[cfg(not(feature = "team"))]
#[test]
fn without_the_team_feature_publish_and_from_name_the_fix() {
    let outside = Outside::new();
    for (args, env) in [
        (&["serve", "--publish", "redis://127.0.0.1:1"][..], None),
        (&["serve", "--from", "redis://127.0.0.1:1"][..], None),
        (
            &["serve"][..],
            Some(("SKILLMON_PUBLISH", "redis://127.0.0.1:1")),
        ),
    ] {
        let mut c = Command::new(support::BIN);
        c.env_clear()
            .envs(clean_env(&outside.home))
            .current_dir(&outside.cwd)
            .args(args);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().expect("run skillmon");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(
            err.contains("built without the team feature") && err.contains("default features"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("unexpected argument"), "{args:?}: {err}");
    }
}
