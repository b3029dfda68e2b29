//! The shutdown signals (SIGINT / Ctrl-C and SIGTERM) in one place, for the
//! server, the demo and the dashboard.
//!
//! Owns only waiting for a signal; what to do then (close sessions with
//! 1001, restore the terminal) is the caller's.

/// Which signal asked us to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shutdown {
    /// SIGINT (Ctrl-C outside raw mode, `kill -INT`).
    Interrupt,
    /// SIGTERM (`kill`, service managers).
    Terminate,
}

/// Resolves on the first SIGINT or SIGTERM. The handlers are installed
/// when this is called (inside the runtime), so keep one pinned
/// future across a loop (`std::pin::pin!`) rather than calling this each
/// iteration, and no signal between two polls is missed. If the SIGTERM
/// handler cannot be installed only SIGINT is awaited.
pub(crate) fn shutdown() -> impl Future<Output = Shutdown> {
    // Both handlers are installed now, not at the first poll: a signal that
    // comes after this call is never lost (nor kills the process).
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        if let (Some(mut int), Some(mut term)) = (int, term) {
            return tokio::select! {
                _ = int.recv() => Shutdown::Interrupt,
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
