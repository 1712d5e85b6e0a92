//! Open-file descriptors: raise the soft limit at start-up, and share what there is between
//! client connections and everything else.
//!
//! Every TCP connection, upstream exchange (hickory opens a fresh UDP socket per exchange, for
//! source-port randomisation), list file and log file is a descriptor. Under systemd's default
//! soft limit of 1024, ~1,100 idle TCP connections used to leave none for upstream sockets, so
//! every uncached name got SERVFAIL. The caps here keep [`RESERVED`] descriptors out of the
//! clients' reach whatever the limit is.

use crate::config::ServerConfig;

/// Descriptors no client connection may take: upstream sockets for the exchanges in flight,
/// the compiled lists, the audit and query logs, the listeners themselves.
pub const RESERVED: usize = 256;

/// Raises the soft open-file limit to the hard limit (systemd's soft default of 1024 is far
/// below what a resolver needs) and returns the soft limit in force afterwards.
pub fn raise_open_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit through a valid pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot read the open-file limit; assuming 1024");
        return 1024;
    }
    let before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit reads one rlimit through a valid pointer.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, soft = before, "cannot raise the open-file limit");
        }
    }
    let soft = limit.rlim_cur;
    tracing::info!(soft, was = before, hard = limit.rlim_max, "open-file limit");
    soft
}

/// How many connections each listener may hold, from the configuration and the open-file
/// limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// DNS-over-TCP connections in all.
    pub tcp: usize,
    /// DNS-over-TCP connections from one client address (an IPv6 client: its /64).
    pub tcp_per_client: usize,
    /// DNS-over-TCP connections from clients outside every group (answered REFUSED), in all:
    /// a tenth of [`Budget::tcp`], so outsiders can never crowd out the school's clients.
    pub tcp_outsiders: usize,
    /// HTTP connections.
    pub http: usize,
}

impl Budget {
    /// The configured caps, lowered so that with `open_file_limit` descriptors, [`RESERVED`]
    /// stay free when every cap is full.
    pub fn new(server: &ServerConfig, open_file_limit: u64) -> Budget {
        let limit = usize::try_from(open_file_limit).unwrap_or(usize::MAX);
        let clients = limit.saturating_sub(RESERVED);
        let http = server.http_max_connections.min(clients / 8).max(1);
        let tcp = server
            .tcp_max_connections
            .min(clients.saturating_sub(http))
            .max(1);
        Budget {
            tcp,
            tcp_per_client: server.tcp_max_connections_per_client.min(tcp),
            tcp_outsiders: (tcp / 10).max(1),
            http,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn caps_leave_the_reserve_free() {
        let server = Config::embedded_default().server;
        let b = Budget::new(&server, 1024);
        assert!(b.tcp + b.http + RESERVED <= 1024, "{b:?}");
        assert_eq!(b.tcp_per_client, 50);
        assert!(b.tcp_outsiders < b.tcp);
        // With room to spare, the configured caps stand.
        let b = Budget::new(&server, 65_536);
        assert_eq!((b.tcp, b.tcp_per_client, b.http), (1000, 50, 64));
        // Even a silly limit leaves one connection each.
        let b = Budget::new(&server, 10);
        assert_eq!((b.tcp, b.http, b.tcp_outsiders), (1, 1, 1));
    }

    #[test]
    fn raising_keeps_a_limit_at_least_as_high() {
        let mut before = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(
            unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut before) },
            0
        );
        let soft = raise_open_file_limit();
        assert!(soft >= before.rlim_cur);
        assert_eq!(soft, before.rlim_max);
    }
}
