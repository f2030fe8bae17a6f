//! Graceful shutdown as an object: servers stop accepting when it fires and
//! finish the requests already received.

use tokio_util::sync::CancellationToken;

/// A shared "stop now" signal.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A signal that has not fired.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fires the signal.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// True once fired.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes when the signal fires.
    pub async fn wait(&self) {
        self.token.cancelled().await
    }

    /// Fires the signal on SIGTERM or SIGINT (needs a tokio runtime).
    pub fn trigger_on_signals(&self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let me = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                _ = me.wait() => {}
            }
            me.trigger();
        });
        Ok(())
    }
}
