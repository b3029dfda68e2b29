//! What `bench` reads from the operating system: a process's resident memory
//! and CPU time from /proc, its own CPU from `getrusage`, and its open-file
//! limit. Linux only for another process's figures (absent elsewhere: `None`).
//! Must not touch the network.

/// Resident memory of `pid` in kB (`VmRSS` of /proc/PID/status).
pub fn rss_kb(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// User + system CPU time of `pid` (all its threads, living or exited), in
/// microseconds: the process's CPU-time clock (`clock_getcpuclockid`,
/// nanosecond resolution), or /proc/PID/stat where that clock cannot be
/// read (clock-tick resolution, usually 10 ms: too coarse for a short
/// window).
pub fn cpu_us(pid: u32) -> Option<u64> {
    process_clock_ns(pid)
        .map(|ns| ns / 1000)
        .or_else(|| stat_cpu_us(pid))
}

fn process_clock_ns(pid: u32) -> Option<u64> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    let mut clock: libc::clockid_t = 0;
    // SAFETY: both calls only write into the values we own.
    if unsafe { libc::clock_getcpuclockid(pid, &raw mut clock) } != 0 {
        return None;
    }
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if unsafe { libc::clock_gettime(clock, &raw mut ts) } != 0 {
        return None;
    }
    Some(u64::try_from(ts.tv_sec).ok()? * 1_000_000_000 + u64::try_from(ts.tv_nsec).ok()?)
}

fn stat_cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after it.
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11)?.parse().ok()?;
    let stime: u64 = f.get(12)?.parse().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some((utime + stime) * 1_000_000 / hz)
}

/// This process's user + system CPU time in microseconds (`getrusage`).
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

/// Raise the soft open-file limit to at least `needed` (up to the hard
/// limit). Returns the limit now in force, and a warning when it is still
/// below `needed`.
#[allow(clippy::unnecessary_cast)] // rlim_t is not u64 everywhere
pub fn raise_nofile(needed: u64) -> (u64, Option<String>) {
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
    let target = needed.min(hard);
    if target > current {
        lim.rlim_cur = target as libc::rlim_t;
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const lim) } != 0 {
            return (
                current,
                Some(format!(
                    "cannot raise the open-file limit from {current} to {target}; \
                     run `ulimit -n {needed}` first or use fewer --clients"
                )),
            );
        }
    }
    if target < needed {
        return (
            target,
            Some(format!(
                "the open-file limit is {target} (hard limit) but this run needs about {needed}; \
                 raise the hard limit (`ulimit -Hn`, limits.conf or LimitNOFILE=) or use fewer --clients"
            )),
        );
    }
    (target, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        assert!(rss_kb(pid).is_some_and(|kb| kb > 0));
        assert!(cpu_us(pid).is_some());
        let (limit, warning) = raise_nofile(64);
        assert!(limit >= 64, "{limit} {warning:?}");
        assert!(rss_kb(u32::MAX).is_none());
        assert!(cpu_us(u32::MAX).is_none());
        assert!(stat_cpu_us(pid).is_some());
    }

    #[test]
    fn another_process_cpu_is_read_finer_than_a_clock_tick() {
        use std::io::BufRead as _;
        // A child that spins a few ms of CPU, says so, then waits on stdin.
        let mut child = std::process::Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; echo spun; read x",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the child's line");
        assert_eq!(line.trim(), "spun");
        let last = cpu_us(child.id()).expect("the child's CPU clock");
        drop(child.stdin.take());
        let _ = child.wait();
        // Clock ticks would give a multiple of 10 ms (or 0).
        assert!(last > 0 && last % 10_000 != 0, "{last} µs");
    }
}
