//! Shutdown signals for the testkit's binaries.

use std::future::Future;

/// A future resolving on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
///
/// The SIGTERM handler is installed when this is *called*, not when the future is first
/// polled: call it before announcing readiness (e.g. before printing the listening
/// address), so a SIGTERM sent right after the announcement is not fatal.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let term = {
        use tokio::signal::unix::{signal, SignalKind};
        signal(SignalKind::terminate()).ok()
    };
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}
