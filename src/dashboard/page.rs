//! What every page shares: the header and navigation for the signed-in person's roles,
//! errors rendered as pages, and plain words for times and the log's terms.

use std::time::SystemTime;

use askama::Template;
use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

use crate::{
    accounts::{Role, Roles},
    civil::civil_from_days,
    event::{BlockReason, Disposition, Severity},
    schedule::TimeZone,
    store::StoreError,
};

use super::{CategoryLine, GroupVerdict};

/// One link of the main navigation.
pub(super) struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// Which section a page belongs to (marks the navigation's current link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Section {
    Overview,
    Breaches,
    Queries,
    Requests,
    Policy,
    Checks,
    Reports,
    Audit,
}

/// The sections, who may open each, and their links.
const SECTIONS: [(Section, &str, &str, &[Role]); 8] = [
    (
        Section::Overview,
        "/",
        "Overview",
        &[Role::Dsl, Role::Technician],
    ),
    (Section::Breaches, "/breaches", "Breaches", &[Role::Dsl]),
    (Section::Queries, "/queries", "Search the log", &[Role::Dsl]),
    (
        Section::Requests,
        "/requests",
        "Unblock requests",
        &[Role::Approver, Role::Dsl],
    ),
    (
        Section::Policy,
        "/policy",
        "Policy and lists",
        &[Role::Technician, Role::Dsl, Role::Approver],
    ),
    (
        Section::Checks,
        "/checks",
        "Filtering checks",
        &[Role::Technician, Role::Dsl],
    ),
    (
        Section::Reports,
        "/reports",
        "Reports",
        &[Role::Dsl, Role::Governor],
    ),
    (
        Section::Audit,
        "/audit",
        "Audit trail",
        &[Role::Dsl, Role::Technician],
    ),
];

/// The header of every page.
pub(super) struct Chrome {
    pub title: String,
    pub school: String,
    /// Empty when nobody is signed in.
    pub user: String,
    pub csrf: String,
    pub nav: Vec<NavItem>,
    pub made: String,
}

impl Chrome {
    /// The header for `viewer` on a page of `section`.
    pub fn new(viewer: &Viewer, section: Section, title: impl Into<String>) -> Chrome {
        let nav = SECTIONS
            .iter()
            .filter(|(_, _, _, roles)| roles.iter().any(|r| viewer.roles.contains(*r)))
            .map(|&(s, href, label, _)| NavItem {
                href,
                label,
                current: s == section,
            })
            .collect();
        Chrome {
            title: title.into(),
            school: viewer.school.clone(),
            user: viewer.name.clone(),
            csrf: viewer.csrf.clone(),
            nav,
            made: viewer.zone_time(viewer.now),
        }
    }

    /// The header of a page shown to nobody in particular (sign-in, block page).
    pub fn anonymous(school: &str, title: impl Into<String>, made: String) -> Chrome {
        Chrome {
            title: title.into(),
            school: school.to_string(),
            user: String::new(),
            csrf: String::new(),
            nav: Vec::new(),
            made,
        }
    }
}

/// Why a page could not be shown; rendered as a page with the right status.
#[derive(Debug, thiserror::Error)]
pub(super) enum PageError {
    /// Not there.
    #[error("There is no such page or record.")]
    NotFound,
    /// Not for this person's roles.
    #[error("Your account does not have access to this page. Ask the school's technician if you need it.")]
    Forbidden,
    /// The request was wrong, in plain words.
    #[error("{0}")]
    BadRequest(String),
    /// A form without a valid security token (an old tab, or another site's form).
    #[error("This form has expired. Go back, reload the page and try again.")]
    Csrf,
    /// The store failed.
    #[error("The records could not be read or saved: {0}")]
    Store(#[from] StoreError),
    /// A blocking task failed.
    #[error("The server could not finish this request.")]
    Task(#[from] tokio::task::JoinError),
    /// A template failed.
    #[error("The page could not be drawn.")]
    Render(#[from] askama::Error),
}

#[derive(Template)]
#[template(path = "error.html", config = "dashboard/askama.toml")]
struct ErrorPage {
    title: &'static str,
    message: String,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title) = match &self {
            PageError::NotFound => (StatusCode::NOT_FOUND, "Not found"),
            PageError::Forbidden => (StatusCode::FORBIDDEN, "Not available to you"),
            PageError::BadRequest(_) => (StatusCode::BAD_REQUEST, "Something is not right"),
            PageError::Csrf => (StatusCode::FORBIDDEN, "Form expired"),
            PageError::Store(e) => {
                tracing::warn!(error = %e, "dashboard: store error");
                (StatusCode::INTERNAL_SERVER_ERROR, "Records unavailable")
            }
            PageError::Task(_) | PageError::Render(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "Server error")
            }
        };
        let message = self.to_string();
        let body = ErrorPage { title, message }
            .render()
            .unwrap_or_else(|_| title.to_string());
        (status, Html(body)).into_response()
    }
}

/// Renders a page.
pub(super) fn render(page: &impl Template) -> Result<Response, PageError> {
    Ok(Html(page.render()?).into_response())
}

/// `Sun 29 Nov 2026, 15:04` in the school's zone.
pub(super) fn local_time(zone: TimeZone, at: SystemTime) -> String {
    let rem = zone.local_secs(at).rem_euclid(86_400);
    format!(
        "{}, {:02}:{:02}",
        local_day(zone, at),
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `Sun 29 Nov 2026` in the school's zone (a day, such as when parents were informed).
pub(super) fn local_day(zone: TimeZone, at: SystemTime) -> String {
    let days = zone.local_secs(at).div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {} {}",
        DAYS[days.rem_euclid(7) as usize],
        d,
        MONTHS[(m as usize).saturating_sub(1).min(11)],
        y
    )
}

/// `15:04:07` in the school's zone (timelines).
pub(super) fn local_clock(zone: TimeZone, at: SystemTime) -> String {
    let rem = zone.local_secs(at).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `2026-11-29` in the school's zone (form values).
pub(super) fn local_date(zone: TimeZone, at: SystemTime) -> String {
    let (y, m, d) = civil_from_days(zone.local_secs(at).div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Midnight at the start of `date` (`YYYY-MM-DD`) in the school's zone.
pub(super) fn parse_local_date(zone: TimeZone, date: &str) -> Result<SystemTime, PageError> {
    let bad = || PageError::BadRequest(format!("`{date}` is not a date like 2026-11-29"));
    let mut parts = date.trim().splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let (y, m, d) = (
        y.parse::<i64>().map_err(|_| bad())?,
        m.parse::<u32>().map_err(|_| bad())?,
        d.parse::<u32>().map_err(|_| bad())?,
    );
    let utc = crate::civil::utc_secs(y, m, d, 0, 0, 0).ok_or_else(bad)?;
    Ok(crate::civil::from_unix_secs(zone.utc_of_local(utc)))
}

/// Category ids in the words of the lists' manifest: `self_harm` is shown as "Self-harm and
/// suicide". (Filters and links keep the ids.)
pub(super) struct CategoryTitles(Vec<CategoryLine>);

impl CategoryTitles {
    /// The titles of the lists in force.
    pub fn new(categories: Vec<CategoryLine>) -> CategoryTitles {
        CategoryTitles(categories)
    }

    /// A category key as the log records it (one id, or several comma separated for a name
    /// listed in more than one) in titles; an id the lists in force do not name (a category
    /// since removed) is shown as it is.
    pub fn words(&self, key: &str) -> String {
        key.split(',')
            .map(|id| {
                let id = id.trim();
                self.0
                    .iter()
                    .find(|c| c.id == id)
                    .map_or(id, |c| c.title.as_str())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// What a group gets for a name, in words, a category by its title ("blocked:
    /// Self-harm and suicide").
    pub fn verdict(&self, v: &GroupVerdict) -> String {
        match &v.category {
            Some(c) if v.blocked => format!("blocked: {}", self.words(c)),
            _ => v.summary.clone(),
        }
    }
}

/// What happened to a query, in plain words ("blocked", "answered").
pub(super) fn disposition_words(d: Disposition) -> &'static str {
    match d {
        Disposition::Forwarded | Disposition::Cached | Disposition::Stale => "allowed",
        Disposition::Blocked => "blocked",
        Disposition::SafeSearch => "allowed with SafeSearch",
        Disposition::Local => "answered by Hedgerow",
        Disposition::Refused => "refused (not a school device)",
        Disposition::RateLimited => "slowed down (too many queries)",
        Disposition::ServFail => "failed (the internet did not answer)",
    }
}

/// Why a query was blocked, in plain words.
pub(super) fn reason_words(r: BlockReason) -> &'static str {
    match r {
        BlockReason::Illegal => "on the child-abuse (IWF) list",
        BlockReason::IllegalProxy => "a proxy to illegal content",
        BlockReason::Circumvention => "a way round the filter",
        BlockReason::Deny => "blocked by the school's own list",
        BlockReason::Category => "blocked category",
        BlockReason::SafeSearchUnenforceable => "a search engine without SafeSearch",
    }
}

/// `high` / `medium` / `low` with its CSS class.
pub(super) fn severity_class(s: Severity) -> &'static str {
    match s {
        Severity::High => "sev sev-high",
        Severity::Medium => "sev sev-medium",
        Severity::Low => "sev sev-low",
    }
}

/// One option of a `<select>`.
pub(super) struct Choice {
    pub value: &'static str,
    pub label: &'static str,
    pub selected: bool,
}

/// The options `(value, label)`, with `current` selected.
pub(super) fn choices(all: &[(&'static str, &'static str)], current: &str) -> Vec<Choice> {
    all.iter()
        .map(|&(value, label)| Choice {
            value,
            label,
            selected: value == current,
        })
        .collect()
}

/// Percent-encodes a query-string value.
pub(super) fn q(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The person a page is shown to.
pub(super) struct Viewer {
    /// Their account name.
    pub name: String,
    /// Their roles.
    pub roles: Roles,
    /// The token their forms must carry.
    pub csrf: String,
    /// The school's name (page headers).
    pub school: String,
    /// The school's time zone.
    pub zone: TimeZone,
    /// When the request arrived.
    pub now: SystemTime,
}

impl Viewer {
    /// Has any of `roles`.
    pub fn may(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(*r))
    }

    /// Refuses the page unless the viewer has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), PageError> {
        if self.may(roles) {
            Ok(())
        } else {
            Err(PageError::Forbidden)
        }
    }

    /// Sees pupil-level records (devices, people, addresses, names looked up).
    pub fn sees_records(&self) -> bool {
        self.roles.contains(Role::Dsl)
    }

    /// A time in the school's zone, in words.
    pub fn zone_time(&self, at: SystemTime) -> String {
        local_time(self.zone, at)
    }

    /// Where this person starts.
    pub fn home(&self) -> &'static str {
        home(self.roles)
    }
}

/// Where a person with `roles` starts.
pub(super) fn home(roles: Roles) -> &'static str {
    if roles.contains(Role::Dsl) || roles.contains(Role::Technician) {
        "/"
    } else if roles.contains(Role::Approver) {
        "/requests"
    } else {
        "/reports"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_follow_the_school_zone() {
        // 2026-07-01 12:00 UTC is 13:00 BST, a Wednesday.
        let at = crate::civil::from_unix_secs(1_782_907_200);
        assert_eq!(
            local_time(TimeZone::EuropeLondon, at),
            "Wed 1 Jul 2026, 13:00"
        );
        assert_eq!(local_day(TimeZone::EuropeLondon, at), "Wed 1 Jul 2026");
        assert_eq!(local_clock(TimeZone::Fixed(0), at), "12:00:00");
        let day = parse_local_date(TimeZone::EuropeLondon, "2026-07-01").unwrap();
        assert_eq!(local_date(TimeZone::EuropeLondon, day), "2026-07-01");
        assert!(parse_local_date(TimeZone::EuropeLondon, "1/7/2026").is_err());
    }

    #[test]
    fn category_ids_are_shown_as_their_titles() {
        let titles = CategoryTitles::new(vec![
            CategoryLine {
                id: "self_harm".into(),
                title: "Self-harm and suicide".into(),
            },
            CategoryLine {
                id: "gambling".into(),
                title: "Gambling".into(),
            },
        ]);
        assert_eq!(titles.words("self_harm"), "Self-harm and suicide");
        assert_eq!(
            titles.words("gambling,self_harm"),
            "Gambling, Self-harm and suicide"
        );
        assert_eq!(titles.words("removed_since"), "removed_since");
    }

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(q("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
