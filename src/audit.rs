//! The policy audit trail: every change to what is filtered, who or what made it, and why
//! (DfE: "decisions on what is blocked or allowed and why", changes logged so nobody can make
//! unilateral changes).
//!
//! Records are appended as JSON lines to `DATA_DIR/audit.jsonl` and fsynced; the store reads
//! the same records. A failed write is logged loudly and never stops the resolver.

use std::{
    collections::BTreeSet,
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use serde::Serialize;

use crate::config::{Config, GroupConfig};

/// One change to the filtering policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    /// Unix seconds.
    pub at: u64,
    /// Who or what made the change (`configuration file /etc/…`, `hedgerow lists compile`, …).
    pub actor: String,
    /// What changed, in plain English.
    pub change: String,
    /// Why (the trigger, or the reason given with a grant).
    pub reason: String,
}

/// Appends audit records to a JSON-lines file.
#[derive(Debug, Clone)]
pub struct AuditLog {
    path: PathBuf,
}

impl AuditLog {
    /// An audit log at `DATA_DIR/audit.jsonl`.
    pub fn in_dir(data_dir: &Path) -> AuditLog {
        AuditLog {
            path: data_dir.join("audit.jsonl"),
        }
    }

    /// Where records go.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `records` durably; on failure logs an error naming the file.
    pub fn append(&self, records: &[AuditRecord]) {
        if records.is_empty() {
            return;
        }
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
            let mut buf = Vec::new();
            for r in records {
                serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
                buf.push(b'\n');
            }
            file.write_all(&buf)?;
            file.sync_data()
        })();
        for r in records {
            tracing::info!(target: "audit", actor = %r.actor, reason = %r.reason, "{}", r.change);
        }
        if let Err(error) = result {
            tracing::error!(path = %self.path.display(), %error, "cannot write the policy audit log");
        }
    }
}

/// Now, in Unix seconds.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The policy differences between two configurations, in plain English.
pub fn diff(old: &Config, new: &Config) -> Vec<String> {
    let mut out = Vec::new();
    let set = |v: &[String]| v.iter().cloned().collect::<BTreeSet<String>>();
    let list_change = |out: &mut Vec<String>, what: String, old: &[String], new: &[String]| {
        let (o, n) = (set(old), set(new));
        let added: Vec<&String> = n.difference(&o).collect();
        let removed: Vec<&String> = o.difference(&n).collect();
        if !added.is_empty() {
            out.push(format!("{what}: added {}", join(&added)));
        }
        if !removed.is_empty() {
            out.push(format!("{what}: removed {}", join(&removed)));
        }
    };
    for g in &old.groups {
        if !new.groups.iter().any(|n| n.name == g.name) {
            out.push(format!("group `{}` removed", g.name));
        }
    }
    for n in &new.groups {
        let Some(o) = old.groups.iter().find(|o| o.name == n.name) else {
            out.push(format!("group `{}` added ({})", n.name, summary(n)));
            continue;
        };
        let nets = |g: &GroupConfig| g.networks.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        list_change(
            &mut out,
            format!("group `{}` networks", n.name),
            &nets(o),
            &nets(n),
        );
        list_change(
            &mut out,
            format!("group `{}` deny", n.name),
            &o.deny,
            &n.deny,
        );
        list_change(
            &mut out,
            format!("group `{}` allow", n.name),
            &o.allow,
            &n.allow,
        );
        list_change(
            &mut out,
            format!("group `{}` blocked categories", n.name),
            &o.block_categories,
            &n.block_categories,
        );
        if o.block_answer != n.block_answer {
            out.push(format!(
                "group `{}` block answer: {:?} → {:?}",
                n.name, o.block_answer, n.block_answer
            ));
        }
        if o.anti_circumvention != n.anti_circumvention {
            out.push(format!(
                "group `{}` anti-circumvention rules: {}",
                n.name,
                if n.anti_circumvention { "on" } else { "OFF" }
            ));
        }
        if o.safesearch != n.safesearch {
            out.push(format!(
                "group `{}` {}",
                n.name,
                crate::pipeline::safesearch::describe(&n.safesearch)
            ));
        }
        if o.strip_ech != n.strip_ech {
            out.push(format!("group `{}` ECH stripping: {}", n.name, n.strip_ech));
        }
        if o.schedules.len() != n.schedules.len()
            || o.schedules
                .iter()
                .zip(&n.schedules)
                .any(|(a, b)| a.window != b.window || a.allow_categories != b.allow_categories)
        {
            out.push(format!(
                "group `{}` schedules changed ({} now)",
                n.name,
                n.schedules.len()
            ));
        }
    }
    if old.lists.illegal_list != new.lists.illegal_list {
        out.push(match &new.lists.illegal_list {
            Some(_) => "illegal-content list configured".to_string(),
            None => "illegal-content list REMOVED from the configuration".to_string(),
        });
    }
    let ups = |c: &Config| {
        c.upstream
            .servers
            .iter()
            .map(|u| u.to_string())
            .collect::<Vec<_>>()
    };
    list_change(&mut out, "upstreams".into(), &ups(old), &ups(new));
    out
}

fn summary(g: &GroupConfig) -> String {
    let nets: Vec<String> = g.networks.iter().map(|n| n.to_string()).collect();
    format!(
        "networks {}; categories {}",
        nets.join(", "),
        if g.block_categories.is_empty() {
            "none".to_string()
        } else {
            g.block_categories.join(", ")
        }
    )
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> Config {
        Config::from_toml_str(
            &format!("[[group]]\nname = \"pupils\"\nnetworks = [\"10.0.0.0/8\"]\n{extra}"),
            "t.toml",
        )
        .unwrap()
    }

    #[test]
    fn describes_each_change() {
        let old = config("deny = [\"a.com\"]\nblock_categories = [\"games\"]\n");
        let new = config("deny = [\"b.com\"]\nblock_categories = [\"games\", \"gambling\"]\nanti_circumvention = false\n[[group]]\nname = \"staff\"\nnetworks = [\"10.1.0.0/16\"]\n");
        let d = diff(&old, &new);
        assert_eq!(
            d,
            [
                "group `pupils` deny: added b.com",
                "group `pupils` deny: removed a.com",
                "group `pupils` blocked categories: added gambling",
                "group `pupils` anti-circumvention rules: OFF",
                "group `staff` added (networks 10.1.0.0/16; categories none)",
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn appends_json_lines() {
        let dir = std::env::temp_dir().join(format!("hedgerow-audit-{}", std::process::id()));
        let log = AuditLog::in_dir(&dir);
        let r = AuditRecord {
            at: 1,
            actor: "test".into(),
            change: "x".into(),
            reason: "y".into(),
        };
        log.append(&[r.clone(), r]);
        let text = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.starts_with("{\"at\":1,\"actor\":\"test\""));
        let _ = std::fs::remove_dir_all(dir);
    }
}
