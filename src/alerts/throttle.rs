//! Per-device throttling: at most one alert per device per window, with what was held back
//! carried into the next alert, so the DSL hears at once about a new problem without getting
//! one message per page reload.

use std::{
    collections::HashMap,
    time::{Duration, SystemTime},
};

use super::BreachAlert;

/// Attempts held back for one device since its last alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suppressed {
    /// Attempts (the sum of the held-back alerts' counts).
    pub attempts: u64,
    /// Alerts held back.
    pub alerts: u64,
    /// The first held-back attempt.
    pub since: SystemTime,
}

/// An alert to deliver, with what was held back before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The alert.
    pub alert: BreachAlert,
    /// Attempts on the same device held back since its previous alert.
    pub suppressed: Option<Suppressed>,
}

#[derive(Debug)]
struct DeviceState {
    last_sent: SystemTime,
    pending: Option<Suppressed>,
}

/// Past this many devices, those with nothing pending and an expired window are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// The throttle: per device key, when its last alert went and what was held back since.
#[derive(Debug)]
pub struct Throttle {
    window: Duration,
    devices: HashMap<String, DeviceState>,
}

impl Throttle {
    /// A throttle allowing one alert per device per `window` (zero: every alert goes).
    pub fn new(window: Duration) -> Throttle {
        Throttle {
            window,
            devices: HashMap::new(),
        }
    }

    /// Whether the window of `window` that started at `last` is over at `now`. A clock that
    /// went back counts as over: for safeguarding, a duplicate beats a lost alert.
    fn elapsed(window: Duration, last: SystemTime, now: SystemTime) -> bool {
        now.duration_since(last).map_or(true, |d| d >= window)
    }

    /// Offers `alert` at `now`: `Some` to deliver it (carrying what was held back), `None`
    /// when it is held back.
    pub fn offer(&mut self, alert: BreachAlert, now: SystemTime) -> Option<Outgoing> {
        if self.devices.len() > PRUNE_ABOVE {
            let window = self.window;
            self.devices
                .retain(|_, s| s.pending.is_some() || !Self::elapsed(window, s.last_sent, now));
        }
        let window = self.window;
        match self.devices.get_mut(&alert.device) {
            Some(state) if !Self::elapsed(window, state.last_sent, now) => {
                let p = state.pending.get_or_insert(Suppressed {
                    attempts: 0,
                    alerts: 0,
                    since: alert.first,
                });
                p.attempts = p.attempts.saturating_add(alert.count.max(1));
                p.alerts += 1;
                p.since = p.since.min(alert.first);
                None
            }
            Some(state) => {
                state.last_sent = now;
                let suppressed = state.pending.take();
                Some(Outgoing { alert, suppressed })
            }
            None => {
                self.devices.insert(
                    alert.device.clone(),
                    DeviceState {
                        last_sent: now,
                        pending: None,
                    },
                );
                Some(Outgoing {
                    alert,
                    suppressed: None,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Severity;

    fn alert(device: &str, at: SystemTime) -> BreachAlert {
        BreachAlert {
            breach_id: 1,
            device: device.into(),
            group: None,
            category: None,
            severity: Severity::High,
            domain: "example.com".into(),
            count: 2,
            first: at,
            last: at,
            dashboard_url: None,
        }
    }

    #[test]
    fn one_per_window_per_device_with_the_held_back_count() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
        let min = |m: u64| t0 + Duration::from_secs(60 * m);
        let mut t = Throttle::new(Duration::from_secs(600));
        assert!(t.offer(alert("pc-1", t0), t0).is_some());
        assert!(t.offer(alert("pc-1", min(1)), min(1)).is_none());
        assert!(t.offer(alert("pc-2", min(1)), min(1)).is_some());
        assert!(t.offer(alert("pc-1", min(2)), min(2)).is_none());
        let next = t.offer(alert("pc-1", min(10)), min(10)).unwrap();
        assert_eq!(
            next.suppressed,
            Some(Suppressed {
                attempts: 4,
                alerts: 2,
                since: min(1)
            })
        );
        assert!(t.offer(alert("pc-1", min(11)), min(11)).is_none());
        // A clock that went back lets the alert through.
        assert!(t.offer(alert("pc-1", t0), t0).is_some());
        let mut none = Throttle::new(Duration::ZERO);
        assert!(none.offer(alert("pc-1", t0), t0).is_some());
        assert!(none.offer(alert("pc-1", t0), t0).is_some());
    }
}
