//! `accept` that backs off when it fails, shared by the DNS-over-TCP and HTTP listeners.
//!
//! Out of descriptors (EMFILE), `accept` fails at once every time it is called; retrying at
//! once spins a core while nothing gets better. Waiting (10 ms, doubling to 1 s) gives
//! connections and upstream sockets time to close.

use std::{io, net::SocketAddr, time::Duration};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::log_limit::LogLimit;

/// First wait after a failed `accept`; doubled on each further failure.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest wait after a failed `accept`.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// One listener's accept loop state.
pub struct Acceptor {
    listener: TcpListener,
    backoff: Duration,
    warnings: &'static LogLimit,
}

impl Acceptor {
    /// Accepts on `listener`; failures are logged through `warnings`.
    pub fn new(listener: TcpListener, warnings: &'static LogLimit) -> Acceptor {
        Acceptor {
            listener,
            backoff: BACKOFF_MIN,
            warnings,
        }
    }

    /// The next connection; `None` once `shutdown` is cancelled.
    pub async fn accept(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.cancelled() => return None,
            };
            match accepted {
                Ok(accepted) => {
                    self.backoff = BACKOFF_MIN;
                    return Some(accepted);
                }
                // The client gave up before we accepted: nothing to wait for.
                Err(error) if is_per_connection(&error) => continue,
                Err(error) => {
                    crate::warn_limited!(
                        self.warnings,
                        %error,
                        "cannot accept a connection; backing off {} ms",
                        self.backoff.as_millis()
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(self.backoff) => {},
                        _ = shutdown.cancelled() => return None,
                    }
                    self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }
}

/// Accept errors that concern one connection, not the listener.
fn is_per_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}
