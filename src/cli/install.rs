//! `skillmon completions SHELL` and `skillmon man`: a shell's completion
//! script (clap_complete) and the man pages (clap_mangen), both generated
//! from the clap definitions of [`super::Cli`], so they cannot drift from
//! the flags (enum flags complete to the domain enums' own names).
//!
//! Owns only rendering and writing them out; this is here, not in the
//! library, because only `cli` may see clap's `Command`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, CommandFactory as _};

use super::Cli;

/// The binary's name, as the scripts complete it and the pages title it.
const BIN: &str = "skillmon";

#[derive(Debug, Args)]
#[command(after_help = "Turn them on (once):\n  \
    bash:       skillmon completions bash > ~/.local/share/bash-completion/completions/skillmon\n  \
    zsh:        skillmon completions zsh > ~/.zfunc/_skillmon   (with fpath+=~/.zfunc before compinit)\n  \
    fish:       skillmon completions fish > ~/.config/fish/completions/skillmon.fish\n  \
    powershell: skillmon completions powershell >> $PROFILE\n  \
    elvish:     skillmon completions elvish >> ~/.config/elvish/rc.elv")]
pub struct CompletionsArgs {
    /// The shell to print the completion script for.
    #[arg(value_name = "SHELL", value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Directory to write the pages into (created if missing).
    #[arg(long, value_name = "DIR", default_value = ".", value_hint = clap::ValueHint::DirPath)]
    pub out: PathBuf,
}

/// Print the completion script on stdout (a closed pipe is an error, not a
/// panic).
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), BIN, &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .context("cannot write the completion script to stdout")?;
    Ok(ExitCode::SUCCESS)
}

/// Write `skillmon.1` and `skillmon-SUBCOMMAND.1` for each subcommand into
/// `--out`, and name each file written on stdout.
pub fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    let written = write_man_pages(&args.out)?;
    let mut out = std::io::stdout().lock();
    for path in written {
        writeln!(out, "{}", path.display()).context("cannot write to stdout")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The pages' files, top page first.
fn write_man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let fix = "choose a writable directory with --out DIR";
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create {}; {fix}", dir.display()))?;
    // Built once: subcommands get their display names (skillmon-serve).
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let pages = std::iter::once(cmd.clone())
        .chain(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    pages
        .map(|page| {
            let man = clap_mangen::Man::new(page);
            man.generate_to(dir).with_context(|| {
                format!(
                    "cannot write {}; {fix}",
                    dir.join(man.get_filename()).display()
                )
            })
        })
        .collect()
}
