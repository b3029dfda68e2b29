//! The process's open-file limit (RLIMIT_NOFILE): raised at start by the
//! roles that hold many sockets (`serve`, `bench`), with a warning naming
//! the fix when the hard limit is too low. Owns nothing else.

/// Raise the soft open-file limit to at least `needed` (up to the hard
/// limit). Returns the limit now in force, and a warning when it is still
/// below `needed`, ending with `fewer` (how to need less).
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub(crate) fn raise_nofile(needed: u64, fewer: &str) -> (u64, Option<String>) {
    // SAFETY: getrlimit/setrlimit read and write the struct we own.
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        return (
            0,
            Some("cannot read the open-file limit (RLIMIT_NOFILE)".into()),
        );
    }
    let current = lim.rlim_cur as u64;
    if current >= needed {
        return (current, None);
    }
    let hard = lim.rlim_max as u64;
    let mut target = needed.min(hard);
    // Some systems cap the soft limit below the hard one (macOS: OPEN_MAX):
    // halve the step until it is taken, so the limit rises as far as it can.
    while target > current {
        lim.rlim_cur = target as libc::rlim_t;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } == 0 {
            break;
        }
        target = current + (target - current) / 2;
    }
    if target <= current && current < needed {
        return (
            current,
            Some(format!(
                "cannot raise the open-file limit from {current}; \
                 run `ulimit -n {needed}` first or {fewer}"
            )),
        );
    }
    if target < needed {
        return (
            target,
            Some(format!(
                "the open-file limit is {target} (hard limit) but this run needs about {needed}; \
                 raise the hard limit (`ulimit -Hn`, limits.conf or LimitNOFILE=) or {fewer}"
            )),
        );
    }
    (target, None)
}
