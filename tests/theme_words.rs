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
        let runs: [(&str, Box<dyn FnOnce(&mut Command)>); 3] = [
            ("flag", Box::new(|c| _ = c.args(["--theme", word]))),
            ("env", Box::new(|c| _ = c.env("SKILLMON_THEME", word))),
            ("file", Box::new(|c| _ = c.arg("--config").arg(&file))),
        ];
        for (source, how) in runs {
            let (ok, out, err) = print_config(home, how);
            assert!(ok, "{word:?} via {source}: {err}");
            let want = format!("theme = \"{theme}\"  # {source}");
            assert!(out.contains(&want), "{word:?} via {source}: {out}");
        }
    }
    for word in ["purple", "mon", "dark,light"] {
        std::fs::write(&file, format!("theme = {word:?}\n")).expect("write config");
        let runs: [(&str, Box<dyn FnOnce(&mut Command)>); 3] = [
            ("flag", Box::new(|c| _ = c.args(["--theme", word]))),
            ("env", Box::new(|c| _ = c.env("SKILLMON_THEME", word))),
            ("file", Box::new(|c| _ = c.arg("--config").arg(&file))),
        ];
        for (source, how) in runs {
            let (ok, out, err) = print_config(home, how);
            assert!(!ok, "{word:?} via {source} was accepted: {out}");
            assert!(
                err.contains("dark") && err.contains("mono"),
                "{source}: {err}"
            );
        }
    }
}
