//! The shutdown signals (SIGINT / Ctrl-C and SIGTERM) in one place, for the
//! server, the demo and the dashboard.
//!
//! Owns only waiting for a signal; what to do then (close sessions with
//! 1001, restore the terminal) is the caller's.

/// Which signal asked us to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// SIGINT (Ctrl-C outside raw mode, `kill -INT`).
    Interrupt,
    /// SIGTERM (`kill`, service managers).
    Terminate,
}

/// Resolves on the first SIGINT or SIGTERM. The SIGTERM handler is
/// installed when this is called (inside the runtime), so keep one pinned
/// future across a loop (`std::pin::pin!`) rather than calling this each
/// iteration, and no signal between two polls is missed. If the SIGTERM
/// handler cannot be installed only SIGINT is awaited.
pub fn shutdown() -> impl Future<Output = Shutdown> {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            return tokio::select! {
                () = ctrl_c() => Shutdown::Interrupt,
                _ = term.recv() => Shutdown::Terminate,
            };
        }
        ctrl_c().await;
        Shutdown::Interrupt
    }
}

/// SIGINT (resolves at once if its handler cannot be installed, as the
/// callers always did).
async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}
