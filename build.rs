//! Build script: the git commit the binary is built from, for `--version`.
//! Sets `SKILLMON_VERSION` to "0.1.0 (commit abc1234567)" when the crate is
//! built from a git checkout (a `.git` beside Cargo.toml and `git` on the
//! PATH), else to the package version alone (a crates.io or tarball build).
//! Reruns only when HEAD or the branch it points to moves.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let commit = Path::new(&dir)
        .join(".git")
        .exists()
        .then(|| commit(&dir))
        .flatten();
    match commit {
        Some(c) => println!("cargo:rustc-env=SKILLMON_VERSION={version} (commit {c})"),
        None => println!("cargo:rustc-env=SKILLMON_VERSION={version}"),
    }
}

/// HEAD's short hash, and a rerun whenever HEAD or its branch moves (paths
/// from git itself, so a worktree's HEAD and packed refs are found too).
fn commit(dir: &str) -> Option<String> {
    let hash = git(dir, &["rev-parse", "--short=10", "HEAD"])?;
    if !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(dir, &["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = Path::new(dir).join(path);
            // A path that does not exist would rerun the script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    Some(hash)
}

fn git(dir: &str, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (out.status.success() && !text.is_empty()).then(|| text.to_owned())
}
