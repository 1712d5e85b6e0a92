//! The `hedgerow store`, `hedgerow breaches` and `hedgerow audit` commands: plain words a
//! teacher or technician understands. The binary only parses arguments and calls these.

use crate::civil;
use std::{fmt::Write as _, io::Write, time::Duration};

use crate::{clock::Clock, config::Config};

use super::{
    open_offline, BreachFilter, CaseStatus, EraseTarget, ExportFilter, ExportFormat, StoreError,
};

/// Who the audit trail names for command-line actions.
pub fn actor() -> String {
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .unwrap_or_else(|_| "unknown user".into());
    format!("command line ({user})")
}

/// `hedgerow store export`: writes the rows to `out`, returns a one-line summary.
pub fn export(
    config: &Config,
    mut filter: ExportFilter,
    format: ExportFormat,
    out: &mut dyn Write,
    clock: Clock,
) -> Result<String, StoreError> {
    if filter.since.is_none() {
        filter.since = Some(civil::days_before(clock.now(), 7));
    }
    let (_, commands) = open_offline(&config.server.data_dir, clock)?;
    let n = commands.export(&filter, format, out, &actor())?;
    Ok(format!(
        "exported {n} queries since {} (this export is recorded in the audit trail)",
        filter.since.map(civil::format_rfc3339).unwrap_or_default()
    ))
}

/// `hedgerow store erase`.
pub fn erase(
    config: &Config,
    target: &EraseTarget,
    before: std::time::SystemTime,
    clock: Clock,
) -> Result<String, StoreError> {
    let (_, commands) = open_offline(&config.server.data_dir, clock)?;
    let report = commands.erase(
        target,
        before,
        &actor(),
        "erasure requested on the command line",
    )?;
    let mut out = format!(
        "erased {} logged queries and {} closed breaches of {target} from before {}\n",
        report.queries,
        report.breaches,
        civil::format_rfc3339(before)
    );
    if !report.kept_open_breaches.is_empty() {
        let _ = writeln!(
            out,
            "kept {} breach(es) whose case is still open, with their queries: {}\n(close the case first if they should go too)",
            report.kept_open_breaches.len(),
            report
                .kept_open_breaches
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

/// `hedgerow breaches list`.
pub fn breaches_list(
    config: &Config,
    status: Option<CaseStatus>,
    clock: Clock,
) -> Result<String, StoreError> {
    let (reader, _) = open_offline(&config.server.data_dir, clock)?;
    let filter = BreachFilter {
        status,
        ..BreachFilter::default()
    };
    let list = reader.breaches(&filter, None, 200)?;
    if list.is_empty() {
        return Ok("no breaches recorded\n".into());
    }
    let mut out = String::new();
    for b in list {
        let _ = writeln!(
            out,
            "#{} {} {} severity: {} tried {} ({}) {} time(s) between {} and {} [{}]",
            b.id,
            b.device,
            b.user
                .as_deref()
                .map(|u| format!("(user {u})"))
                .unwrap_or_default(),
            b.severity,
            b.domain,
            b.category.as_deref().unwrap_or("no category"),
            b.count,
            civil::format_rfc3339(b.first),
            civil::format_rfc3339(b.last),
            b.status.label()
        );
    }
    Ok(out)
}

/// `hedgerow breaches show ID`.
pub fn breach_show(config: &Config, id: i64, clock: Clock) -> Result<String, StoreError> {
    let (reader, commands) = open_offline(&config.server.data_dir, clock)?;
    let Some(d) = reader.breach(id, Duration::from_secs(300), 1000)? else {
        return Err(StoreError::NoSuchBreach(id));
    };
    // Who looked at a child's records is itself recorded.
    commands.append_audit(
        &actor(),
        super::AuditKind::View,
        &format!("viewed breach {id}"),
        "command line",
    )?;
    let b = &d.breach;
    let mut out = String::new();
    let _ = writeln!(out, "breach #{}: {} severity", b.id, b.severity);
    let _ = writeln!(out, "device:     {}", b.device);
    if let Some(u) = &b.user {
        let _ = writeln!(out, "user:       {u}");
    }
    let _ = writeln!(out, "group:      {}", b.group.as_deref().unwrap_or("none"));
    let _ = writeln!(out, "site:       {}", b.domain);
    let _ = writeln!(
        out,
        "category:   {}",
        b.category.as_deref().unwrap_or("none")
    );
    let _ = writeln!(
        out,
        "attempts:   {} between {} and {}",
        b.count,
        civil::format_rfc3339(b.first),
        civil::format_rfc3339(b.last)
    );
    let _ = writeln!(out, "case:       {}", b.status.label());
    if let Some(to) = &b.escalated_to {
        let _ = writeln!(out, "escalated to: {to}");
    }
    match &b.parents_informed {
        Some((on, by)) => {
            let _ = writeln!(
                out,
                "parents informed: yes, on {} by {by}",
                civil::format_date(*on)
            );
        }
        None => {
            let _ = writeln!(out, "parents informed: no");
        }
    }
    if let Some(o) = &b.outcome {
        let _ = writeln!(out, "outcome:    {o}");
    }
    if !b.notes.is_empty() {
        let _ = writeln!(out, "notes:\n  {}", b.notes.replace('\n', "\n  "));
    }
    let _ = writeln!(out, "\nhistory:");
    for h in &d.history {
        let _ = writeln!(
            out,
            "  {} {}: {}",
            civil::format_rfc3339(h.at),
            h.actor,
            h.change
        );
    }
    let _ = writeln!(
        out,
        "\nwhat the device looked up from 5 minutes before to 5 minutes after:"
    );
    for q in &d.around {
        let _ = writeln!(
            out,
            "  {} {} {}{}",
            civil::format_rfc3339(q.at),
            q.name,
            q.disposition.label(),
            q.category
                .as_deref()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        );
    }
    Ok(out)
}

/// `hedgerow audit list`.
pub fn audit_list(config: &Config, limit: u32, clock: Clock) -> Result<String, StoreError> {
    let (reader, _) = open_offline(&config.server.data_dir, clock)?;
    let mut out = String::new();
    let entries = reader.audit(None, limit)?;
    if entries.is_empty() {
        return Ok("the audit trail is empty\n".into());
    }
    for e in entries.iter().rev() {
        let _ = writeln!(
            out,
            "#{} {} {} [{}] {} (why: {})",
            e.id,
            civil::format_rfc3339(e.at),
            e.actor,
            e.kind.label(),
            e.change,
            e.reason
        );
    }
    Ok(out)
}

/// `hedgerow audit verify`: the report and whether the chain is intact.
pub fn audit_verify(config: &Config, clock: Clock) -> Result<(String, bool), StoreError> {
    let (reader, _) = open_offline(&config.server.data_dir, clock)?;
    let report = reader.verify_audit()?;
    Ok(match report.first_broken {
        None => (
            format!(
                "the audit trail is intact: {} records, each linked to the one before\n",
                report.records
            ),
            true,
        ),
        Some((id, problem)) => (
            format!(
                "THE AUDIT TRAIL HAS BEEN TAMPERED WITH: record #{id}: {problem}\n(records before #{id} are intact)\n"
            ),
            false,
        ),
    })
}
