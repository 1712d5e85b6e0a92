//! Who a client address was: DHCP leases (device name, MAC address) and user sessions
//! (the person), so every blocked attempt can be attributed as the DfE filtering standard
//! asks.
//!
//! Everything here is off the DNS path: readers and a polling follower whose results the
//! store keeps as history. Nothing here imports the store, the pipeline or the server.
//!
//! - [`leases`]: parsers for dnsmasq, ISC dhcpd and Kea lease files.
//! - [`watch`]: [`LeaseWatcher`], which follows one lease file and reports what changed.
//! - [`sessions`]: user sessions from a CSV export or the sessions API's JSON body.

pub mod leases;
pub mod sessions;
pub mod watch;

use std::path::PathBuf;

pub use leases::{Lease, LeaseError, LeaseFormat, LeaseSource};
pub use sessions::{Session, SessionError, SessionRequest, SessionsToken};
pub use watch::{LeaseChanges, LeaseWatcher, WatchEvent};

/// One line of an input file that could not be used; the good lines around it are kept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {reason}", file.display())]
pub struct LineError {
    /// The file (or the name the text was given).
    pub file: PathBuf,
    /// 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// "first error (and N more)": how a list of line errors reads in one log line.
pub(crate) fn summarise(errors: &[LineError]) -> String {
    match errors {
        [] => "no errors".to_string(),
        [one] => one.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more bad lines)", rest.len()),
    }
}
