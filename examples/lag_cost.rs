//! What `--max-lag`'s ways of asking the kernel cost, in CPU time of the
//! calling thread (not wall time: the machine may be busy), next to what
//! one frame's `write` to a loopback client costs:
//!
//! - `ioctl(SIOCOUTQ)`: the kernel's unacknowledged bytes, per call;
//! - `setsockopt(SO_SNDBUF)`: a capped send buffer, once per socket;
//! - `write` of a FRAME-byte frame to a loopback socket a reader thread
//!   drains (the delivery to the reader runs on the writer's thread).
//!
//! ```sh
//! cargo run --release --example lag_cost -- [FRAME_BYTES] [ROUNDS]   # 3557 1000000
//! ```

use std::io::{Read as _, Write as _};
use std::os::fd::AsRawFd as _;

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through the pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &raw mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU ns per call of `f`, over `rounds` calls.
fn per_call(rounds: u64, mut f: impl FnMut()) -> f64 {
    let t = thread_cpu_ns();
    for _ in 0..rounds {
        f();
    }
    (thread_cpu_ns() - t) as f64 / rounds as f64
}

fn main() {
    let mut args = std::env::args().skip(1);
    let frame: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3557);
    let rounds: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);

    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut out =
        std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (mut peer, _) = listener.accept().expect("accept");
    out.set_nodelay(true).expect("nodelay");
    let reader = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        while matches!(peer.read(&mut buf), Ok(1..)) {}
    });
    let fd = out.as_raw_fd();

    let mut queued: libc::c_int = 0;
    let ioctl = per_call(rounds, || {
        // SAFETY: SIOCOUTQ writes one int through the pointer.
        unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &raw mut queued) };
    });
    let body = vec![b'x'; frame];
    let writes = rounds / 10;
    let write = per_call(writes, || out.write_all(&body).expect("write"));
    let size: libc::c_int = 1 << 20;
    let setsockopt = per_call(rounds, || {
        // SAFETY: SO_SNDBUF reads one int from the pointer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&raw const size).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    });
    drop(out);
    reader.join().expect("reader");

    println!("frame {frame} B, {rounds} rounds (writes: {writes}); CPU ns per call:");
    println!(
        "  ioctl(SIOCOUTQ)      {ioctl:8.1}  ({:.2} % of a frame's write)",
        100.0 * ioctl / write
    );
    println!("  setsockopt(SO_SNDBUF){setsockopt:8.1}  (once per socket)");
    println!("  write of one frame   {write:8.1}");
}
