//! [`LeaseWatcher`]: follows one DHCP lease file off the DNS path and reports what changed.
//!
//! It polls rather than using inotify: lease files live on whatever the DHCP server uses
//! (sometimes a network share or another container's volume), every server writes them
//! differently (dnsmasq rewrites in place, ISC dhcpd renames a new file over the old one, Kea
//! appends and, at each lease file cleanup, moves the file aside and starts a new one; the
//! follower reads the files Kea itself reads, see [`leases::kea_files`]), and a few seconds'
//! delay is fine for attribution. The file is re-read only when
//! its size, modification time or inode changed, so an idle poll is one `stat`.
//!
//! A server that rewrites in place truncates the file and then writes it, so a poll can read
//! it empty or half written while its size and time hold still. Such a version would say that
//! every device whose lease is missing left the network, and their queries would go
//! unattributed until the next poll. So a version that drops a lease or adds bad lines is
//! believed only when it is still the same [`SETTLE`] later.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Condvar, Mutex},
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use super::{
    leases::{self, Lease, LeaseError, LeaseFormat},
    summarise, LineError,
};

/// How often a lease file is checked unless the caller says otherwise: a device's first
/// queries after joining the network may go unattributed for this long.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// How long a version that drops leases must stay unchanged before it is believed. A rewrite
/// in place takes milliseconds (dnsmasq writes its whole file at once).
const SETTLE: Duration = Duration::from_millis(250);
/// Versions doubted in a row before the last one read is believed anyway: a file rewritten
/// faster than every [`SETTLE`] must not hold every change back.
const MAX_DOUBTS: u8 = 8;

/// What changed in a lease file since the last report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseChanges {
    /// The file.
    pub file: PathBuf,
    /// Leases that are new or differ from the last report (all of them, the first time).
    pub changed: Vec<Lease>,
    /// Addresses whose lease is no longer in the file (released, freed or reclaimed).
    pub removed: Vec<IpAddr>,
}

/// What a [`LeaseWatcher`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    /// Leases changed.
    Changed(LeaseChanges),
    /// The file is missing or cannot be read. Reported once until it can be read again.
    Unavailable {
        /// The file.
        file: PathBuf,
        /// Why, in words.
        reason: String,
    },
    /// Some lines of the file could not be used (the other lines' leases are still
    /// reported). Reported again only when the set of bad lines changes.
    BadLines(Vec<LineError>),
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Signature {
    len: u64,
    modified: Option<SystemTime>,
    inode: (u64, u64),
}

fn signature(path: &Path) -> std::io::Result<Signature> {
    // `metadata` follows symbolic links, so a link swapped to a new file is seen too.
    let m = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let inode = (0, 0);
    Ok(Signature {
        len: m.len(),
        modified: m.modified().ok(),
        inode,
    })
}

/// The versions of the lease file and, for Kea, of the files its cleanup leaves beside it
/// (`None` for one that does not exist). Only the lease file itself must exist.
fn signatures(path: &Path, format: LeaseFormat) -> std::io::Result<Vec<Option<Signature>>> {
    let mut all = vec![Some(signature(path)?)];
    if format == LeaseFormat::Kea {
        for suffix in [".completed", ".2", ".1"] {
            let mut name = path.as_os_str().to_os_string();
            name.push(suffix);
            all.push(signature(Path::new(&name)).ok());
        }
    }
    Ok(all)
}

/// The follower's state between polls.
struct Follower {
    path: PathBuf,
    format: LeaseFormat,
    seen: Option<Vec<Option<Signature>>>,
    leases: HashMap<IpAddr, Lease>,
    unavailable: bool,
    bad_lines: Vec<LineError>,
    /// A version read whole that drops leases or adds bad lines, not yet believed: it may be
    /// a rewrite caught part-way. The next poll comes after [`SETTLE`] and believes it if the
    /// files are still this version.
    doubted: Option<Vec<Option<Signature>>>,
    /// Versions doubted in a row.
    doubts: u8,
}

impl Follower {
    fn new(path: PathBuf, format: LeaseFormat) -> Follower {
        Follower {
            path,
            format,
            seen: None,
            leases: HashMap::new(),
            unavailable: false,
            bad_lines: Vec::new(),
            doubted: None,
            doubts: 0,
        }
    }

    /// One poll: the events to report (none when nothing changed).
    fn poll(&mut self) -> Vec<WatchEvent> {
        let mut events = Vec::new();
        let before = match signatures(&self.path, self.format) {
            Ok(s) => s,
            Err(e) => {
                self.unreadable(e.to_string(), &mut events);
                return events;
            }
        };
        if self.seen.as_ref() == Some(&before) {
            return events;
        }
        let parsed = leases::read(&self.path, self.format);
        // A writer in the middle of rewriting the file: read it again next poll rather
        // than report a half-written version.
        match signatures(&self.path, self.format) {
            Ok(after) if after == before => {}
            Ok(_) => return events,
            Err(e) => {
                self.unreadable(e.to_string(), &mut events);
                return events;
            }
        }
        let (found, errors) = match parsed {
            Ok(l) => (l, Vec::new()),
            Err(LeaseError::Partial { leases, errors }) => (leases, errors),
            Err(LeaseError::Read { source, .. }) => {
                self.unreadable(source.to_string(), &mut events);
                return events;
            }
        };
        let found_ips: HashSet<IpAddr> = found.iter().map(|l| l.ip).collect();
        let drops = self.leases.keys().any(|ip| !found_ips.contains(ip));
        let new_errors = errors.iter().any(|e| !self.bad_lines.contains(e));
        if (drops || new_errors)
            && self.doubted.as_ref() != Some(&before)
            && self.doubts < MAX_DOUBTS
        {
            self.doubted = Some(before);
            self.doubts += 1;
            return events;
        }
        self.doubted = None;
        self.doubts = 0;
        self.seen = Some(before);
        if self.unavailable {
            tracing::info!(file = %self.path.display(), "lease file readable again");
            self.unavailable = false;
        }
        if errors != self.bad_lines {
            if !errors.is_empty() {
                tracing::warn!(
                    file = %self.path.display(),
                    "lease file has lines that cannot be used: {}",
                    summarise(&errors)
                );
                events.push(WatchEvent::BadLines(errors.clone()));
            }
            self.bad_lines = errors;
        }
        let mut next = HashMap::with_capacity(found.len());
        let mut changed = Vec::new();
        for lease in found {
            if self.leases.get(&lease.ip) != Some(&lease) {
                changed.push(lease.clone());
            }
            next.insert(lease.ip, lease);
        }
        let mut removed: Vec<IpAddr> = self
            .leases
            .keys()
            .filter(|ip| !next.contains_key(ip))
            .copied()
            .collect();
        removed.sort();
        self.leases = next;
        if !changed.is_empty() || !removed.is_empty() {
            events.push(WatchEvent::Changed(LeaseChanges {
                file: self.path.clone(),
                changed,
                removed,
            }));
        }
        events
    }

    /// How long to wait before the next poll.
    fn wait(&self, interval: Duration) -> Duration {
        if self.doubted.is_some() {
            SETTLE.min(interval)
        } else {
            interval
        }
    }

    fn unreadable(&mut self, reason: String, events: &mut Vec<WatchEvent>) {
        // Forget the version seen, so the file is read in full when it comes back.
        self.seen = None;
        self.doubted = None;
        self.doubts = 0;
        if !self.unavailable {
            self.unavailable = true;
            tracing::warn!(file = %self.path.display(), "cannot read the lease file: {reason}");
            events.push(WatchEvent::Unavailable {
                file: self.path.clone(),
                reason,
            });
        }
    }
}

/// Follows one lease file on its own thread until dropped or [`LeaseWatcher::stop`]ped.
pub struct LeaseWatcher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl LeaseWatcher {
    /// Starts following `path` (written by `format`'s server), checking it every `interval`
    /// (at least 100 ms). `on_event` runs on the watcher's thread: the first poll reports
    /// every lease in the file, later ones only what changed. A missing or unreadable file
    /// is reported once and polled on; a panic in `on_event` is the caller's bug and ends
    /// the thread.
    pub fn spawn(
        path: PathBuf,
        format: LeaseFormat,
        interval: Duration,
        mut on_event: impl FnMut(WatchEvent) + Send + 'static,
    ) -> std::io::Result<LeaseWatcher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let interval = interval.max(Duration::from_millis(100));
        let mut follower = Follower::new(path, format);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("hedgerow-leases".into())
            .spawn(move || loop {
                for event in follower.poll() {
                    on_event(event);
                }
                let (lock, wake) = &*flag;
                // A poisoned lock means a panic elsewhere while holding it: stop following.
                let Ok(stopped) = lock.lock() else { return };
                let wait = follower.wait(interval);
                let Ok((stopped, _)) = wake.wait_timeout_while(stopped, wait, |s| !*s) else {
                    return;
                };
                if *stopped {
                    return;
                }
            })?;
        Ok(LeaseWatcher {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops following and waits for the thread (at most one poll).
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        let (lock, wake) = &*self.stop;
        if let Ok(mut s) = lock.lock() {
            *s = true;
        }
        wake.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for LeaseWatcher {
    fn drop(&mut self) {
        self.halt();
    }
}

impl std::fmt::Debug for LeaseWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LeaseWatcher")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: u8) -> String {
        format!("1795723262 52:54:00:00:00:0{n} 10.0.0.{n} pc-{n} *\n")
    }

    /// What a poll reported: (addresses changed, addresses removed), or `None` for nothing.
    fn poll(f: &mut Follower) -> Option<(Vec<String>, Vec<String>)> {
        let events = f.poll();
        assert!(events.len() <= 1, "{events:?}");
        events.into_iter().next().map(|e| match e {
            WatchEvent::Changed(c) => (
                c.changed.iter().map(|l| l.ip.to_string()).collect(),
                c.removed.iter().map(|ip| ip.to_string()).collect(),
            ),
            other => panic!("unexpected {other:?}"),
        })
    }

    #[test]
    fn a_rewrite_caught_part_way_drops_no_lease_and_a_real_removal_follows_a_settled_poll() {
        let dir = std::env::temp_dir().join(format!("hedgerow-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dnsmasq.leases");
        std::fs::write(&path, format!("{}{}", line(1), line(2))).unwrap();
        let mut f = Follower::new(path.clone(), LeaseFormat::Dnsmasq);
        let interval = Duration::from_secs(5);
        let ips = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(poll(&mut f), Some((ips(&["10.0.0.1", "10.0.0.2"]), vec![])));
        assert_eq!(f.wait(interval), interval);

        // dnsmasq truncated the file and has not written it yet; then it has, half of it
        // (the last line cut short, so also a bad line); then all, with a third lease.
        std::fs::write(&path, "").unwrap();
        assert_eq!(poll(&mut f), None);
        assert_eq!(f.wait(interval), SETTLE);
        std::fs::write(&path, format!("{}1795723262 52:54", line(1))).unwrap();
        assert_eq!(poll(&mut f), None);
        std::fs::write(&path, format!("{}{}{}", line(1), line(2), line(3))).unwrap();
        assert_eq!(poll(&mut f), Some((ips(&["10.0.0.3"]), vec![])));
        assert_eq!(f.wait(interval), interval);

        // A lease really gone: believed when the next poll finds the same version.
        std::fs::write(&path, format!("{}{}", line(1), line(3))).unwrap();
        assert_eq!(poll(&mut f), None);
        assert_eq!(poll(&mut f), Some((vec![], ips(&["10.0.0.2"]))));
        // Nothing changed since: nothing to report, and the usual interval again.
        assert_eq!(poll(&mut f), None);
        assert_eq!(f.wait(interval), interval);

        // A file rewritten at every poll, each version without pc-3: believed after
        // MAX_DOUBTS polls all the same.
        for i in 0..=MAX_DOUBTS {
            // Each a different length: two writes within a clock tick can share a time.
            let host = "x".repeat(usize::from(i) + 1);
            let renamed = format!("1795723262 52:54:00:00:00:01 10.0.0.1 {host} *\n");
            std::fs::write(&path, renamed).unwrap();
            let polled = poll(&mut f);
            if i < MAX_DOUBTS {
                assert_eq!(polled, None, "version {i}");
            } else {
                assert_eq!(polled, Some((ips(&["10.0.0.1"]), ips(&["10.0.0.3"]))));
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
