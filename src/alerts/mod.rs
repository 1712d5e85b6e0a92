//! Instant safeguarding alerts: high-severity breaches reach the Designated Safeguarding Lead
//! at once, by webhook and/or email.
//!
//! ```text
//!  submit() ─▶ bounded queue ─▶ dispatcher (throttle per device) ─┬─▶ webhook thread (retries)
//!                                                                  └─▶ email thread (retries)
//! ```
//!
//! [`Alerter::submit`] never waits: a full queue drops the alert and counts it. The
//! dispatcher lets one alert per device through per throttle window and carries the number
//! of held-back attempts into the next one ("and 7 more attempts since 10:02"). Each channel
//! has its own thread, so a slow webhook does not hold up email; a failed delivery is retried
//! with doubling waits, then given up and counted.
//!
//! A failed filtering check is alerted through the same channels, apart from this queue and
//! throttle (one message per failed run): see [`check`].
//!
//! Logs name breaches by id only: device names, groups and domains are personal data and go
//! only to the DSL through the channels.
//!
//! This module imports nothing from the store, pipeline, server, app or dashboard; the
//! caller builds [`BreachAlert`]s from its own records.

pub mod check;
mod deliver;
pub mod message;
pub mod throttle;

use std::{
    path::PathBuf,
    sync::{
        mpsc::{self, Receiver, SyncSender, TrySendError},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, SystemTime},
};

use prometheus::{IntCounter, IntCounterVec, Opts, Registry};

use crate::{clock::Clock, config::alerts::AlertsConfig, event::Severity};
pub use check::{send_check_alert, CheckAlert, CheckFailure};
use deliver::{Channel, Email, Webhook};
pub use throttle::{Outgoing, Suppressed, Throttle};

/// Alerts waiting for the dispatcher; beyond this, [`Alerter::submit`] drops.
pub const QUEUE: usize = 256;

/// Alerts waiting for one channel's thread (which may be retrying a delivery).
const CHANNEL_QUEUE: usize = 64;

/// One breach for the DSL. Owned plain data, built by whoever keeps breach records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreachAlert {
    /// The breach record's id (the only thing logs name).
    pub breach_id: i64,
    /// The device name or id; the throttling key.
    pub device: String,
    /// The device's group.
    pub group: Option<String>,
    /// The list category in plain words (e.g. `self-harm`).
    pub category: Option<String>,
    /// How serious it is.
    pub severity: Severity,
    /// The domain; for the illegal tier, "withheld (illegal-content list)" (see
    /// [`WITHHELD`]).
    pub domain: String,
    /// Attempts in this breach.
    pub count: u64,
    /// First attempt.
    pub first: SystemTime,
    /// Last attempt.
    pub last: SystemTime,
    /// Link to the breach in the dashboard.
    pub dashboard_url: Option<String>,
}

/// What the `domain` of an illegal-tier breach says.
pub use crate::event::WITHHELD;

/// Why alerts could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    /// A secret file could not be read.
    #[error("{}: cannot read the secret: {source}", path.display())]
    Secret {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another configured file (the mail server's CA) could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The SMTP transport could not be built.
    #[error("alerts email: {reason}")]
    Smtp {
        /// What went wrong.
        reason: String,
    },
    /// The metrics could not be registered.
    #[error("alerts metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A thread could not be started.
    #[error("alerts: cannot start a thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Sends one HTML email (the weekly report) through the `[alerts.email]` channel's server to
/// its recipients: one attempt, blocking (call it off the runtime's workers).
pub fn send_html_email(
    config: &crate::config::alerts::EmailConfig,
    subject: &str,
    html: String,
) -> Result<(), AlertError> {
    deliver::send_html(config, subject, html)
}

/// Outcomes of `hedgerow_store_alerts_total`.
const OUTCOMES: [&str; 4] = ["sent", "failed", "retried", "suppressed"];

/// One channel's counters, by outcome.
#[derive(Clone)]
struct ChannelMetrics {
    sent: IntCounter,
    failed: IntCounter,
    retried: IntCounter,
    suppressed: IntCounter,
}

impl ChannelMetrics {
    fn new(vec: &IntCounterVec, channel: &str) -> ChannelMetrics {
        let c = |o: &str| vec.with_label_values(&[channel, o]);
        ChannelMetrics {
            sent: c(OUTCOMES[0]),
            failed: c(OUTCOMES[1]),
            retried: c(OUTCOMES[2]),
            suppressed: c(OUTCOMES[3]),
        }
    }
}

/// Registers `store_alerts_total` (exported as `hedgerow_store_alerts_total`). A new
/// alerter after a configuration reload replaces the previous one's counters (Prometheus
/// treats the restart from zero as a counter reset).
fn register(registry: &Registry) -> Result<IntCounterVec, prometheus::Error> {
    let make = || {
        IntCounterVec::new(
            Opts::new(
                "store_alerts_total",
                "Safeguarding alerts by channel and outcome",
            ),
            &["channel", "outcome"],
        )
    };
    let vec = make()?;
    match registry.register(Box::new(vec.clone())) {
        Ok(()) => Ok(vec),
        Err(prometheus::Error::AlreadyReg) => {
            registry.unregister(Box::new(make()?))?;
            registry.register(Box::new(vec.clone()))?;
            Ok(vec)
        }
        Err(e) => Err(e),
    }
}

/// The alert sender: a bounded queue, a throttling dispatcher and one thread per channel.
/// Dropping it lets queued alerts finish in the background; [`Alerter::close`] waits for
/// them.
pub struct Alerter {
    tx: Option<SyncSender<(SystemTime, BreachAlert)>>,
    threads: Vec<JoinHandle<()>>,
    clock: Clock,
    /// Counters of every configured channel, for what cannot even be queued.
    dropped: Vec<IntCounter>,
}

impl Alerter {
    /// Sets up the configured channels (reading their secret files) and starts the threads.
    /// With no channel configured, the alerter takes and drops every alert.
    pub fn new(
        config: &AlertsConfig,
        clock: Clock,
        registry: &Registry,
    ) -> Result<Alerter, AlertError> {
        let vec = register(registry)?;
        let mut channels: Vec<Box<dyn Channel>> = Vec::new();
        if let Some(w) = &config.webhook {
            channels.push(Box::new(Webhook::new(w, config.timezone)?));
        }
        if let Some(e) = &config.email {
            channels.push(Box::new(Email::new(e, config.timezone, config.throttle)?));
        }
        if channels.is_empty() {
            return Ok(Alerter {
                tx: None,
                threads: Vec::new(),
                clock,
                dropped: Vec::new(),
            });
        }

        let mut threads = Vec::new();
        let mut outs = Vec::new();
        let mut dropped = Vec::new();
        for channel in channels {
            let metrics = ChannelMetrics::new(&vec, channel.name());
            dropped.push(metrics.failed.clone());
            let (tx, rx) = mpsc::sync_channel::<Arc<Outgoing>>(CHANNEL_QUEUE);
            let name = channel.name();
            let (tries, backoff) = (config.tries.max(1), config.retry_backoff);
            let m = metrics.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("hedgerow-alerts-{name}"))
                    .spawn(move || deliver_all(channel, rx, m, tries, backoff))?,
            );
            outs.push((tx, metrics));
        }
        let (tx, rx) = mpsc::sync_channel(QUEUE);
        let throttle = Throttle::new(config.throttle);
        threads.push(
            std::thread::Builder::new()
                .name("hedgerow-alerts".into())
                .spawn(move || dispatch(rx, throttle, outs))?,
        );
        Ok(Alerter {
            tx: Some(tx),
            threads,
            clock,
            dropped,
        })
    }

    /// Whether any channel is configured.
    pub fn enabled(&self) -> bool {
        self.tx.is_some()
    }

    /// Queues `alert` without waiting; the throttle window is judged from now (the one
    /// clock's time). Every alert submitted is sent (throttle permitting): the caller submits
    /// the breaches that warrant an instant alert, i.e. [`Severity::High`] ones. `false` when it was dropped: no channel configured, or the queue is
    /// full (counted as `failed` on every channel and logged by breach id).
    pub fn submit(&self, alert: BreachAlert) -> bool {
        let Some(tx) = &self.tx else { return false };
        let id = alert.breach_id;
        match tx.try_send((self.clock.now(), alert)) {
            Ok(()) => true,
            Err(e) => {
                for c in &self.dropped {
                    c.inc();
                }
                let why = match e {
                    TrySendError::Full(_) => "the alert queue is full",
                    // Only after a panic in the dispatcher.
                    TrySendError::Disconnected(_) => "the alert dispatcher has stopped",
                };
                tracing::warn!(breach_id = id, "alert dropped: {why}");
                false
            }
        }
    }

    /// Stops taking alerts and waits until everything queued is delivered or given up
    /// (at most the retries of the deliveries in flight).
    pub fn close(mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter")
            .field("enabled", &self.enabled())
            .finish()
    }
}

/// The dispatcher: throttles, then hands each alert to every channel.
fn dispatch(
    rx: Receiver<(SystemTime, BreachAlert)>,
    mut throttle: Throttle,
    outs: Vec<(SyncSender<Arc<Outgoing>>, ChannelMetrics)>,
) {
    for (now, alert) in rx {
        let id = alert.breach_id;
        let Some(out) = throttle.offer(alert, now) else {
            for (_, m) in &outs {
                m.suppressed.inc();
            }
            tracing::debug!(breach_id = id, "alert held back by the per-device throttle");
            continue;
        };
        let out = Arc::new(out);
        for (tx, m) in &outs {
            if tx.try_send(Arc::clone(&out)).is_err() {
                m.failed.inc();
                tracing::warn!(
                    breach_id = id,
                    "alert channel is behind: alert dropped for this channel"
                );
            }
        }
    }
}

/// One channel's thread: delivers each alert, retrying with doubling waits.
fn deliver_all(
    mut channel: Box<dyn Channel>,
    rx: Receiver<Arc<Outgoing>>,
    m: ChannelMetrics,
    tries: u32,
    backoff: Duration,
) {
    let name = channel.name();
    for out in rx {
        let id = out.alert.breach_id;
        let mut wait = backoff;
        for attempt in 1..=tries {
            match channel.deliver(&out) {
                Ok(()) => {
                    m.sent.inc();
                    tracing::info!(breach_id = id, channel = name, attempt, "alert sent");
                    break;
                }
                Err(f) if f.permanent || attempt == tries => {
                    m.failed.inc();
                    tracing::warn!(
                        breach_id = id,
                        channel = name,
                        attempt,
                        "alert not delivered, giving up: {}",
                        f.reason
                    );
                    break;
                }
                Err(f) => {
                    m.retried.inc();
                    tracing::warn!(
                        breach_id = id,
                        channel = name,
                        attempt,
                        "alert delivery failed, retrying in {} ms: {}",
                        wait.as_millis(),
                        f.reason
                    );
                    std::thread::sleep(wait);
                    wait = wait.saturating_mul(2);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_alerter_on_one_registry_replaces_the_counters() {
        let registry = Registry::new_custom(Some("hedgerow".into()), None).unwrap();
        let first = register(&registry).unwrap();
        first.with_label_values(&["email", "sent"]).inc();
        let second = register(&registry).unwrap();
        second.with_label_values(&["email", "sent"]).inc_by(5);
        let families = registry.gather();
        let family = families
            .iter()
            .find(|f| f.name() == "hedgerow_store_alerts_total")
            .unwrap();
        assert_eq!(family.get_metric()[0].get_counter().get_value(), 5.0);
    }

    #[test]
    fn with_no_channel_alerts_are_dropped() {
        let registry = Registry::new();
        let alerter = Alerter::new(&AlertsConfig::default(), Clock::system(), &registry).unwrap();
        assert!(!alerter.enabled());
        let now = SystemTime::now();
        assert!(!alerter.submit(BreachAlert {
            breach_id: 1,
            device: "pc".into(),
            group: None,
            category: None,
            severity: Severity::High,
            domain: WITHHELD.into(),
            count: 1,
            first: now,
            last: now,
            dashboard_url: None,
        }));
        alerter.close();
    }
}
