//! One parser per value: `--theme`, `SKILLMON_THEME` and the config file's
//! `theme` accept exactly the same words (names, aliases, any case), checked
//! through the real binary's `--print-config`.

use std::path::Path;
use std::process::Command;

/// `skillmon watch --print-config` with config and data dirs under `home`
/// and nothing else from the caller's environment.
fn print_config(home: &Path, extra: impl FnOnce(&mut Command)) -> (bool, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_skillmon"));
    c.env_clear()
        .envs([
            ("XDG_CONFIG_HOME", home.join("c")),
            ("XDG_DATA_HOME", home.join("d")),
        ])
        .env("HOME", home)
        .args(["watch", "--print-config"]);
    extra(&mut c);
    let out = c.output().expect("run skillmon");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

const SOURCES: [&str; 3] = ["flag", "env", "file"];

/// Give the theme `word` through `source` (the file already holds it).
fn give(c: &mut Command, source: &str, word: &str, file: &Path) {
    match source {
        "flag" => c.args(["--theme", word]),
        "env" => c.env("SKILLMON_THEME", word),
        _ => c.arg("--config").arg(file),
    };
}

#[test]
fn flag_env_and_file_accept_the_same_theme_words() {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let file = home.join("theme.toml");
    let words = [
        ("dark", "dark"),
        ("light", "light"),
        ("mono", "mono"),
        ("monochrome", "mono"),
        ("none", "mono"),
        ("Light", "light"),
        ("MONO", "mono"),
        ("NoNe", "mono"),
    ];
    for (word, theme) in words {
        std::fs::write(&file, format!("theme = {word:?}\n")).expect("write config");
        for source in SOURCES {
            let (ok, out, err) = print_config(home, |c| give(c, source, word, &file));
            assert!(ok, "{word:?} via {source}: {err}");
            let want = format!("theme = \"{theme}\"  # {source}");
            assert!(out.contains(&want), "{word:?} via {source}: {out}");
        }
    }
    for word in ["purple", "mon", "dark,light"] {
        std::fs::write(&file, format!("theme = {word:?}\n")).expect("write config");
        for source in SOURCES {
            let (ok, out, err) = print_config(home, |c| give(c, source, word, &file));
            assert!(!ok, "{word:?} via {source} was accepted: {out}");
            assert!(
                err.contains("dark") && err.contains("mono"),
                "{source}: {err}"
            );
        }
    }
}
