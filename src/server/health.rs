//! Whether each DNS listener is still running: for `/healthz`, and for the process to exit
//! (so systemd restarts it) instead of living on half-dead when a listener ends.

use std::{
    fmt::Write as _,
    sync::{Arc, Mutex},
};

use tokio::sync::watch;

/// The listeners' states, shared with whoever reports them.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    /// Each listener's name and whether it is up.
    listeners: Mutex<Vec<(String, bool)>>,
    /// Set, once, to what went down first.
    down: watch::Sender<Option<String>>,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            inner: Arc::new(Inner {
                listeners: Mutex::new(Vec::new()),
                down: watch::Sender::new(None),
            }),
        }
    }
}

impl Health {
    /// Adds a running listener called `name`; returns its index for [`Health::down`].
    pub(crate) fn register(&self, name: String) -> usize {
        let mut listeners = self.lock();
        listeners.push((name, true));
        listeners.len() - 1
    }

    /// Marks listener `index` down because of `why`.
    pub(crate) fn down(&self, index: usize, why: &str) {
        let name = {
            let mut listeners = self.lock();
            let Some(entry) = listeners.get_mut(index) else {
                return;
            };
            entry.1 = false;
            entry.0.clone()
        };
        tracing::error!(listener = %name, "DNS listener {why}");
        self.inner.down.send_if_modified(|first| {
            if first.is_none() {
                *first = Some(format!("DNS listener {name} {why}"));
                true
            } else {
                false
            }
        });
    }

    /// Whether every listener is up, and one line per listener ("dns udp 127.0.0.1:53 up").
    pub fn report(&self) -> (bool, String) {
        let listeners = self.lock();
        let mut text = String::new();
        for (name, up) in listeners.iter() {
            let _ = writeln!(text, "{name} {}", if *up { "up" } else { "down" });
        }
        (listeners.iter().all(|(_, up)| *up), text)
    }

    /// Completes, with what happened, once any listener has gone down.
    pub async fn failed(&self) -> String {
        let mut rx = self.inner.down.subscribe();
        let first = match rx.wait_for(Option::is_some).await {
            Ok(first) => first.clone(),
            // The sender lives in `self`, so this cannot happen.
            Err(_) => None,
        };
        match first {
            Some(first) => first,
            None => std::future::pending().await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(String, bool)>> {
        self.inner
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_listener_going_down_is_reported_and_wakes_the_watcher() {
        let health = Health::default();
        let udp = health.register("dns udp 127.0.0.1:53".into());
        health.register("dns tcp 127.0.0.1:53".into());
        assert!(health.report().0);
        let watcher = {
            let health = health.clone();
            tokio::spawn(async move { health.failed().await })
        };
        health.down(udp, "ended");
        assert_eq!(
            watcher.await.unwrap(),
            "DNS listener dns udp 127.0.0.1:53 ended"
        );
        let (ok, text) = health.report();
        assert!(!ok);
        assert_eq!(text, "dns udp 127.0.0.1:53 down\ndns tcp 127.0.0.1:53 up\n");
    }
}
