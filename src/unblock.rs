//! The `hedgerow unblock` and `hedgerow grants` commands: deciding staff's unblock requests
//! and managing time-limited grants from the command line, in plain words. The binary only
//! parses arguments and calls these.
//!
//! Changes go through the store (audited there, in the same transaction); a running server
//! notices them within five seconds. A name on the illegal-content tier of the lists in
//! force is refused with neutral words before anything is written, and nothing is printed
//! about the tier.

use std::{fmt::Write as _, time::Duration};

use crate::{
    civil,
    clock::Clock,
    config::Config,
    lists::{self, ListError},
    names::{self, NameError},
    store::{self, cli::actor, GrantRecord, RequestStatus, StoreError, UnblockRequest},
};

/// The neutral refusal for a name on the illegal-content tier.
pub const CANNOT_BE_UNBLOCKED: &str = "this name cannot be unblocked";

/// Why a command could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum UnblockError {
    /// The store refused or failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The lists in force could not be opened to check the name.
    #[error("cannot check the name against the lists in force: {0}")]
    Lists(#[from] ListError),
    /// The name is not a domain name.
    #[error("`{0}` is not a valid domain name: {1}")]
    BadName(String, NameError),
    /// A group the configuration does not have.
    #[error("there is no group `{group}` in {config} (the groups are: {known})")]
    NoSuchGroup {
        /// The group asked for.
        group: String,
        /// The configuration file.
        config: String,
        /// The groups it has.
        known: String,
    },
    /// The name is on the illegal-content tier (said in neutral words).
    #[error("{CANNOT_BE_UNBLOCKED}")]
    CannotBeUnblocked,
}

/// Refuses `key` (normalised) when it is on the illegal-content tier of the lists in force.
/// Without an illegal-content list configured there is no tier to check.
fn refuse_illegal(config: &Config, key: &str) -> Result<(), UnblockError> {
    if config.lists.illegal_list.is_none() {
        return Ok(());
    }
    // Fail closed: lists that cannot be opened refuse the grant (the `?`).
    let lists = lists::configured::open_to_read(config)?;
    match lists.illegal(key) {
        Some(_) => Err(UnblockError::CannotBeUnblocked),
        None => Ok(()),
    }
}

/// When a grant of `period` from now ends (the store checks the period's bounds).
fn until(clock: &Clock, period: Duration) -> Result<std::time::SystemTime, UnblockError> {
    clock
        .now()
        .checked_add(period)
        .ok_or_else(|| StoreError::Invalid("a grant can run for at most 365 days".into()).into())
}

/// Checks that every group is one of the configuration's.
fn check_groups(config: &Config, groups: &[String]) -> Result<(), UnblockError> {
    for group in groups {
        if !config.groups.iter().any(|g| g.name == *group) {
            let known: Vec<&str> = config.groups.iter().map(|g| g.name.as_str()).collect();
            return Err(UnblockError::NoSuchGroup {
                group: group.clone(),
                config: config.source.display().to_string(),
                known: known.join(", "),
            });
        }
    }
    Ok(())
}

fn describe_request(out: &mut String, r: &UnblockRequest) {
    let _ = writeln!(
        out,
        "#{} [{}] {} for {} ({}) asked by {} on {}: {}",
        r.id,
        r.status.label(),
        r.name,
        r.groups.join(", "),
        civil::describe_period(r.duration),
        r.requested_by,
        civil::format_minute(r.requested_at),
        r.reason
    );
    if let (Some(by), Some(at)) = (&r.decided_by, r.decided_at) {
        let note = r
            .decision_note
            .as_deref()
            .map(|n| format!(": {n}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    {} by {by} on {}{note}",
            r.status.label(),
            civil::format_minute(at)
        );
    }
}

fn describe_grant(out: &mut String, g: &GrantRecord, now: std::time::SystemTime) {
    let state = match &g.revoked {
        Some((at, by)) => format!("revoked by {by} on {}", civil::format_minute(*at)),
        None if g.expires <= now => format!("lapsed on {}", civil::format_minute(g.expires)),
        None => format!("in force until {}", civil::format_minute(g.expires)),
    };
    let request = g
        .request_id
        .map(|id| format!(", unblock request {id}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "#{} {} for {}: {state} (granted by {} on {}{request})",
        g.id,
        g.name,
        g.group,
        g.granted_by,
        civil::format_minute(g.starts)
    );
}

fn describe_made(grants: &[GrantRecord]) -> String {
    let mut out = String::new();
    for g in grants {
        let _ = writeln!(
            out,
            "grant {}: {} for {} until {}",
            g.id,
            g.name,
            g.group,
            civil::format_minute(g.expires)
        );
    }
    out.push_str("(a running Hedgerow applies it within 5 seconds)\n");
    out
}

/// `hedgerow unblock request NAME --group G [--group …] --for PERIOD --reason TEXT`: records
/// a request on someone's behalf (a technician taking one by email or phone), to be decided
/// like any other. Returns its number and a summary.
pub fn request(
    config: &Config,
    name: &str,
    groups: &[String],
    period: Duration,
    reason: &str,
    clock: Clock,
) -> Result<(i64, String), UnblockError> {
    let key = names::normalise(name).map_err(|e| UnblockError::BadName(name.into(), e))?;
    check_groups(config, groups)?;
    // Nothing to decide: it could never be approved.
    refuse_illegal(config, &key)?;
    let (_, commands) = store::open_offline(&config.server.data_dir, clock)?;
    let id = commands.request_unblock(&store::NewUnblockRequest {
        name: key.clone(),
        groups: groups.to_vec(),
        reason: reason.into(),
        duration: period,
        requested_by: actor(),
        client: None,
    })?;
    Ok((
        id,
        format!(
            "unblock request {id} recorded for {key} for {} ({}); approve or refuse it with `hedgerow unblock approve {id}` or `hedgerow unblock refuse {id} --reason …`\n",
            groups.join(", "),
            civil::describe_period(period)
        ),
    ))
}

/// `hedgerow unblock list [--status pending]`: requests, newest first.
pub fn list_requests(
    config: &Config,
    status: Option<RequestStatus>,
    clock: Clock,
) -> Result<String, UnblockError> {
    let (reader, _) = store::open_offline(&config.server.data_dir, clock)?;
    let requests = reader.unblock_requests(status, 200)?;
    if requests.is_empty() {
        return Ok(match status {
            Some(s) => format!("no {} unblock requests\n", s.label()),
            None => "no unblock requests\n".into(),
        });
    }
    let mut out = String::new();
    for r in &requests {
        describe_request(&mut out, r);
    }
    Ok(out)
}

/// `hedgerow unblock approve ID [--group G …] [--for PERIOD] [--note TEXT]`: the groups and
/// period asked for unless others are given.
pub fn approve(
    config: &Config,
    id: i64,
    groups: &[String],
    period: Option<Duration>,
    note: &str,
    clock: Clock,
) -> Result<String, UnblockError> {
    let (reader, commands) = store::open_offline(&config.server.data_dir, clock.clone())?;
    let request = reader
        .unblock_request(id)?
        .ok_or(StoreError::NoSuchUnblockRequest(id))?;
    let groups = if groups.is_empty() {
        request.groups.clone()
    } else {
        groups.to_vec()
    };
    check_groups(config, &groups)?;
    refuse_illegal(config, &request.name)?;
    let until = until(&clock, period.unwrap_or(request.duration))?;
    let grants = commands.approve_unblock(id, &groups, until, &actor(), note)?;
    Ok(format!(
        "approved unblock request {id} for {}\n{}",
        request.name,
        describe_made(&grants)
    ))
}

/// `hedgerow unblock refuse ID --reason TEXT`.
pub fn refuse(
    config: &Config,
    id: i64,
    reason: &str,
    clock: Clock,
) -> Result<String, UnblockError> {
    let (_, commands) = store::open_offline(&config.server.data_dir, clock)?;
    commands.refuse_unblock(id, &actor(), reason)?;
    Ok(format!(
        "refused unblock request {id} (the reason is recorded in the audit trail)\n"
    ))
}

/// `hedgerow grants list`: grants in force, and those that ended in the last 7 days.
pub fn list_grants(config: &Config, clock: Clock) -> Result<String, UnblockError> {
    let now = clock.now();
    let (reader, _) = store::open_offline(&config.server.data_dir, clock)?;
    let grants = reader.grants(civil::days_before(now, 7), 200)?;
    if grants.is_empty() {
        return Ok("no grants in force or in the last 7 days\n".into());
    }
    let mut out = String::new();
    for g in &grants {
        describe_grant(&mut out, g, now);
    }
    Ok(out)
}

/// `hedgerow grants add NAME --group G [--group …] --for PERIOD --note TEXT`: a grant
/// without a request.
pub fn add_grant(
    config: &Config,
    name: &str,
    groups: &[String],
    period: Duration,
    note: &str,
    clock: Clock,
) -> Result<String, UnblockError> {
    let key = names::normalise(name).map_err(|e| UnblockError::BadName(name.into(), e))?;
    check_groups(config, groups)?;
    refuse_illegal(config, &key)?;
    let (_, commands) = store::open_offline(&config.server.data_dir, clock.clone())?;
    let grants = commands.grant(&key, groups, until(&clock, period)?, &actor(), note)?;
    Ok(describe_made(&grants))
}

/// `hedgerow grants revoke ID --reason TEXT`.
pub fn revoke(
    config: &Config,
    id: i64,
    reason: &str,
    clock: Clock,
) -> Result<String, UnblockError> {
    let (_, commands) = store::open_offline(&config.server.data_dir, clock)?;
    commands.revoke_grant(id, &actor(), reason)?;
    Ok(format!(
        "revoked grant {id} (a running Hedgerow stops applying it within 5 seconds)\n"
    ))
}
