//! The weekly summary for the Designated Safeguarding Lead: what was blocked, by category and
//! by group, the devices with the most serious attempts, new and still-open breaches,
//! attempts to get round the filter, how fresh the lists are, and the totals.
//!
//! The week is an ISO week (Monday to Sunday) in the school's time zone (`server.timezone`),
//! so a week spanning a clock change is 167 or 169 hours long. Counts come from the store's
//! per-minute rollups and its small table of blocked queries, never a scan of every query.
//!
//! Two renderings: a self-contained printable HTML page (inline CSS, no scripts, no fonts or
//! images from elsewhere) and one CSV file with a `section` column saying which table a row
//! belongs to, so it opens as one sheet and filters by section (columns: [`CSV_COLUMNS`]).
//!
//! `hedgerow report weekly` writes one to standard output; the server writes
//! `DATA_DIR/reports/weekly-YYYY-Www.html` every Monday at 07:00 school time (or at its next
//! start, if it was down then) and emails it when `[alerts.email]` is configured. Both are
//! recorded in the audit trail, because the report names devices and people.

use std::{
    fmt::Write as _,
    io::Write,
    path::{Path, PathBuf},
    time::SystemTime,
};

use crate::{
    civil::{self, civil_from_days, days_from_civil},
    clock::{unix_millis, Clock},
    config::Config,
    lists::artifact::Meta,
    schedule::TimeZone,
    store::{
        self, AuditKind, BreachSummary, CircumventionSummary, Commands, CountBy, CountRow,
        DeviceAttempts, Reader, StoreError,
    },
};

/// How many devices the "most serious attempts" table lists.
pub const TOP_DEVICES: u32 = 10;
/// At most this many breaches per breach table: the newest of the week, the longest open. A
/// week with more says how many in all and points to the dashboard's Breaches page (at a
/// large school's worst, millions: a table of every one is neither readable nor mailable).
pub const MAX_BREACHES: u32 = 100;
/// The scheduled report is written on Monday at this minute of the day, school time.
pub const SCHEDULED_MINUTE: i64 = 7 * 60;
/// Lists built longer than this before the end of the week are pointed out.
const STALE_LIST_DAYS: i64 = 7;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The store could not be read, or the audit record written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `--week` is not an ISO week.
    #[error("`{0}` is not a week: write it like 2026-W44 (year, W, week number 01 to 53)")]
    BadWeek(String),
    /// An unknown `--format`.
    #[error("`{0}` is not a report format: use html or csv")]
    BadFormat(String),
    /// The report could not be written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file (or `standard output`).
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// An ISO 8601 week: Monday to Sunday, week 1 being the one with the year's first Thursday.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IsoWeek {
    year: i64,
    week: u32,
}

/// Monday = 0 … Sunday = 6 of a day counted from 1970-01-01 (a Thursday).
fn weekday(day: i64) -> i64 {
    (day + 3).rem_euclid(7)
}

/// The Monday of week 1 of `year`: the week holding 4 January.
fn week1_monday(year: i64) -> i64 {
    let jan4 = days_from_civil(year, 1, 4);
    jan4 - weekday(jan4)
}

impl IsoWeek {
    /// The week, if `year` has it (52 or 53 weeks).
    pub fn new(year: i64, week: u32) -> Option<IsoWeek> {
        let weeks = (week1_monday(year + 1) - week1_monday(year)) / 7;
        (week >= 1 && i64::from(week) <= weeks).then_some(IsoWeek { year, week })
    }

    /// Reads `2026-W44` (`2026-w44` too).
    pub fn parse(text: &str) -> Result<IsoWeek, ReportError> {
        let bad = || ReportError::BadWeek(text.to_string());
        let t = text.trim();
        let (year, week) = t
            .split_once(['W', 'w'])
            .and_then(|(y, w)| Some((y.strip_suffix('-')?, w)))
            .ok_or_else(bad)?;
        if year.len() != 4 || week.len() != 2 {
            return Err(bad());
        }
        let year: i64 = year.parse().map_err(|_| bad())?;
        let week: u32 = week.parse().map_err(|_| bad())?;
        IsoWeek::new(year, week).ok_or_else(bad)
    }

    /// The week a day (counted from 1970-01-01) falls in.
    pub fn of_day(day: i64) -> IsoWeek {
        // The ISO year is the year of the week's Thursday.
        let thursday = day - weekday(day) + 3;
        let (year, _, _) = civil_from_days(thursday);
        let week = (thursday - week1_monday(year)) / 7 + 1;
        IsoWeek {
            year,
            week: u32::try_from(week).unwrap_or(1),
        }
    }

    /// The week in force at `at` on the school's clock.
    pub fn containing(at: SystemTime, zone: TimeZone) -> IsoWeek {
        IsoWeek::of_day(zone.local_secs(at).div_euclid(86_400))
    }

    /// The last week that has ended at `at` on the school's clock.
    pub fn last_full(at: SystemTime, zone: TimeZone) -> IsoWeek {
        IsoWeek::containing(at, zone).previous()
    }

    /// The week before.
    pub fn previous(self) -> IsoWeek {
        IsoWeek::of_day(self.monday() - 7)
    }

    /// The week after.
    pub fn next(self) -> IsoWeek {
        IsoWeek::of_day(self.monday() + 7)
    }

    /// Its Monday, as days from 1970-01-01.
    pub fn monday(self) -> i64 {
        week1_monday(self.year) + 7 * (i64::from(self.week) - 1)
    }

    /// From Monday 00:00 to the next Monday 00:00 on the school's clock, as instants.
    pub fn bounds(self, zone: TimeZone) -> (SystemTime, SystemTime) {
        let start = self.monday() * 86_400;
        (
            civil::from_unix_secs(zone.utc_of_local(start)),
            civil::from_unix_secs(zone.utc_of_local(start + 7 * 86_400)),
        )
    }
}

impl std::fmt::Display for IsoWeek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-W{:02}", self.year, self.week)
    }
}

/// How the report is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    /// A printable page.
    Html,
    /// One CSV file with a `section` column.
    Csv,
}

impl ReportFormat {
    /// Reads `html` or `csv`.
    pub fn parse(text: &str) -> Result<ReportFormat, ReportError> {
        match text.trim().to_ascii_lowercase().as_str() {
            "html" => Ok(ReportFormat::Html),
            "csv" => Ok(ReportFormat::Csv),
            _ => Err(ReportError::BadFormat(text.to_string())),
        }
    }

    fn label(self) -> &'static str {
        match self {
            ReportFormat::Html => "html",
            ReportFormat::Csv => "csv",
        }
    }
}

/// When the lists in force were built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListFreshness {
    /// Build time.
    pub built: SystemTime,
    /// Names on the lists.
    pub names: u64,
}

/// Everything the weekly report says, read once and rendered either way.
#[derive(Debug, Clone)]
pub struct WeeklyReport {
    /// The week.
    pub week: IsoWeek,
    /// The school's time zone.
    pub zone: TimeZone,
    /// Start of the week (inclusive).
    pub from: SystemTime,
    /// End of the week (exclusive).
    pub until: SystemTime,
    /// When the report was made.
    pub made: SystemTime,
    /// Look-ups in the week.
    pub queries: u64,
    /// Of which blocked.
    pub blocked: u64,
    /// Blocked look-ups by category (categories with none blocked left out), most first.
    pub by_category: Vec<CountRow>,
    /// Look-ups and blocks by group, most look-ups first.
    pub by_group: Vec<CountRow>,
    /// The devices with the most high-severity attempts, most first.
    pub top_devices: Vec<DeviceAttempts>,
    /// Breaches first seen in the week, newest first, at most [`MAX_BREACHES`].
    pub new_breaches: Vec<BreachSummary>,
    /// How many breaches were first seen in the week in all.
    pub new_total: u64,
    /// Breaches first seen by the end of the week whose case is not closed (as of `made`),
    /// oldest first, at most [`MAX_BREACHES`].
    pub open_breaches: Vec<BreachSummary>,
    /// How many such breaches there are in all.
    pub open_total: u64,
    /// Attempts to get round the filter.
    pub circumvention: CircumventionSummary,
    /// The lists in force, or why that is not known.
    pub lists: Result<ListFreshness, String>,
    /// Category ids → titles, from the lists' metadata.
    titles: Vec<(String, String)>,
}

/// When the lists in `dir` were built (their `meta.toml`), and their category titles.
pub fn list_meta(dir: &Path) -> (Result<ListFreshness, String>, Vec<(String, String)>) {
    match Meta::read(dir) {
        Ok(meta) => (
            Ok(ListFreshness {
                built: civil::from_unix_secs(i64::try_from(meta.built_unix).unwrap_or(i64::MAX)),
                names: meta.names,
            }),
            meta.categories
                .into_iter()
                .map(|c| (c.id, c.title))
                .collect(),
        ),
        Err(error) => (
            Err(format!("no compiled lists could be read: {error}")),
            Vec::new(),
        ),
    }
}

impl WeeklyReport {
    /// Reads the week's figures from the store (blocking: call it off the runtime's workers).
    pub fn assemble(
        reader: &Reader,
        week: IsoWeek,
        zone: TimeZone,
        lists_dir: &Path,
        made: SystemTime,
    ) -> Result<WeeklyReport, ReportError> {
        Self::assemble_with(reader, week, zone, list_meta(lists_dir), made)
    }

    /// As [`WeeklyReport::assemble`], with the lists described by the caller (the dashboard
    /// has the lists in force): their freshness and the category ids' titles, as
    /// [`list_meta`] reads them.
    pub fn assemble_with(
        reader: &Reader,
        week: IsoWeek,
        zone: TimeZone,
        (lists, titles): (Result<ListFreshness, String>, Vec<(String, String)>),
        made: SystemTime,
    ) -> Result<WeeklyReport, ReportError> {
        let (from, until) = week.bounds(zone);
        let totals = reader.counts(from, until, CountBy::Disposition)?;
        let mut by_category = reader.counts(from, until, CountBy::Category)?;
        by_category.retain(|r| r.blocks > 0);
        by_category.sort_by(|a, b| b.blocks.cmp(&a.blocks).then_with(|| a.key.cmp(&b.key)));
        let breaches = reader.breach_totals(from, until)?;
        Ok(WeeklyReport {
            week,
            zone,
            from,
            until,
            made,
            queries: totals.iter().map(|r| r.queries).sum(),
            blocked: totals.iter().map(|r| r.blocks).sum(),
            by_category,
            by_group: reader.counts(from, until, CountBy::Group)?,
            top_devices: reader.high_severity_devices(from, until, TOP_DEVICES)?,
            new_breaches: reader.breaches_opened(from, until, MAX_BREACHES)?,
            new_total: breaches.opened,
            open_breaches: reader.open_breaches(until, MAX_BREACHES)?,
            open_total: breaches.open,
            circumvention: reader.circumvention(from, until, TOP_DEVICES)?,
            lists,
            titles,
        })
    }

    /// The report in `format`.
    pub fn render(&self, format: ReportFormat) -> String {
        match format {
            ReportFormat::Html => self.html(),
            ReportFormat::Csv => self.csv(),
        }
    }

    /// Whole days from a breach's first attempt to when the report was made.
    pub fn days_open(&self, b: &BreachSummary) -> i64 {
        (unix_millis(self.made) - unix_millis(b.first)).max(0) / 86_400_000
    }

    /// A category key (ids, comma separated) in words.
    pub fn category_words(&self, key: &str) -> String {
        if key == "none" {
            return "no category (a school deny entry or another rule)".into();
        }
        key.split(',')
            .map(|id| {
                self.titles
                    .iter()
                    .find(|(i, _)| i == id)
                    .map_or(id, |(_, t)| t.as_str())
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// A group key in words ("none": outside every group).
    pub fn group_words(key: &str) -> &str {
        if key == "none" {
            "outside every group (refused)"
        } else {
            key
        }
    }

    /// A time on the school's clock, as people write it: `Mon 26 Oct 2026 14:05`.
    fn local(&self, at: SystemTime) -> String {
        let local = self.zone.local_secs(at);
        let day = local.div_euclid(86_400);
        let minute = local.rem_euclid(86_400) / 60;
        format!("{} {:02}:{:02}", day_words(day), minute / 60, minute % 60)
    }

    /// The school's time zone in words ("UK time").
    pub fn zone_words(&self) -> String {
        match self.zone {
            TimeZone::EuropeLondon => "UK time".into(),
            TimeZone::Fixed(0) => "UTC".into(),
            TimeZone::Fixed(m) => format!(
                "UTC{}{:02}:{:02}",
                if m < 0 { '-' } else { '+' },
                m.abs() / 60,
                m.abs() % 60
            ),
        }
    }

    /// How fresh the lists are, in a sentence or two (stale lists are pointed out).
    pub fn lists_words(&self) -> String {
        match &self.lists {
            Ok(l) => {
                let age = (unix_millis(self.until) - unix_millis(l.built)) / 86_400_000;
                let mut text = format!(
                    "The blocking lists now in force were built on {} ({} names).",
                    self.local(l.built),
                    l.names
                );
                if age > STALE_LIST_DAYS {
                    let _ = write!(
                        text,
                        " That is {age} days before the end of this week: ask your technician \
                         to check that list updates are running."
                    );
                }
                text
            }
            Err(why) => format!("Not known: {why}."),
        }
    }

    fn html(&self) -> String {
        let mut h = String::new();
        let title = format!("Weekly filtering summary, week {}", self.week);
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html lang=\"en-GB\">\n<head>\n<meta charset=\"utf-8\">\n\
             <title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<h1>{}</h1>\n",
            esc(&title),
            esc(&title)
        );
        let last_day = day_words(self.week.monday() + 6);
        let _ = writeln!(
            h,
            "<p class=\"lead\">From {} to {} ({}). Made {}. This report names devices and \
             people: keep it as you keep other safeguarding records.</p>",
            esc(&day_words(self.week.monday())),
            esc(&last_day),
            esc(&self.zone_words()),
            esc(&self.local(self.made))
        );

        h.push_str("<h2>This week in numbers</h2>\n<table>\n");
        row(&mut h, "th", &["", "Number"]);
        row(
            &mut h,
            "td",
            &[
                "Websites looked up (DNS look-ups)",
                &self.queries.to_string(),
            ],
        );
        row(
            &mut h,
            "td",
            &["Of which blocked", &self.blocked.to_string()],
        );
        row(&mut h, "td", &["New breaches", &self.new_total.to_string()]);
        row(
            &mut h,
            "td",
            &[
                "Attempts to get round the filter",
                &self.circumvention.attempts.to_string(),
            ],
        );
        h.push_str("</table>\n");

        h.push_str("<h2>Blocked, by category</h2>\n");
        if self.by_category.is_empty() {
            h.push_str("<p>Nothing was blocked this week.</p>\n");
        } else {
            h.push_str("<table>\n");
            row(&mut h, "th", &["Category", "Blocked"]);
            for r in &self.by_category {
                row(
                    &mut h,
                    "td",
                    &[&self.category_words(&r.key), &r.blocks.to_string()],
                );
            }
            h.push_str("</table>\n");
        }

        h.push_str("<h2>By group</h2>\n");
        if self.by_group.is_empty() {
            h.push_str("<p>No look-ups were recorded this week.</p>\n");
        } else {
            h.push_str("<table>\n");
            row(&mut h, "th", &["Group", "Look-ups", "Blocked"]);
            for r in &self.by_group {
                row(
                    &mut h,
                    "td",
                    &[
                        Self::group_words(&r.key),
                        &r.queries.to_string(),
                        &r.blocks.to_string(),
                    ],
                );
            }
            h.push_str("</table>\n");
        }

        let _ = writeln!(
            h,
            "<h2>Devices with the most serious blocked attempts</h2>\n<p>High-severity \
             attempts (for example self-harm, extremism or illegal content), top {TOP_DEVICES}.</p>"
        );
        device_table(
            &mut h,
            &self.top_devices,
            "No high-severity attempts this week.",
        );

        h.push_str("<h2>New breaches this week</h2>\n");
        shown_of(
            &mut h,
            self.new_breaches.len(),
            self.new_total,
            "most recent",
        );
        self.breach_table(
            &mut h,
            &self.new_breaches,
            false,
            "No new breaches this week.",
        );

        h.push_str(
            "<h2>Breaches still open</h2>\n<p>Cases not yet closed, as of when this report \
             was made.</p>\n",
        );
        shown_of(
            &mut h,
            self.open_breaches.len(),
            self.open_total,
            "longest open",
        );
        self.breach_table(&mut h, &self.open_breaches, true, "No open cases.");

        let _ = writeln!(
            h,
            "<h2>Attempts to get round the filter</h2>\n<p>{} attempt(s) from {} device(s) to \
             use another way of looking up websites (such as a browser's own secure DNS or a \
             private relay).</p>",
            self.circumvention.attempts, self.circumvention.devices
        );
        device_table(&mut h, &self.circumvention.top, "None this week.");

        let _ = writeln!(
            h,
            "<h2>Blocking lists</h2>\n<p>{}</p>\n</body>\n</html>",
            esc(&self.lists_words())
        );
        h
    }

    fn breach_table(&self, h: &mut String, list: &[BreachSummary], age: bool, empty: &str) {
        if list.is_empty() {
            let _ = writeln!(h, "<p>{}</p>", esc(empty));
            return;
        }
        h.push_str("<table>\n");
        let mut head = vec![
            "No.", "Device", "User", "Group", "Site", "Category", "Severity", "Attempts", "First",
            "Latest", "Case",
        ];
        if age {
            head.push("Open for");
        }
        row(h, "th", &head);
        for b in list {
            let mut cells = vec![
                b.id.to_string(),
                b.device.clone(),
                b.user.clone().unwrap_or_else(|| "not known".into()),
                b.group.clone().unwrap_or_else(|| "none".into()),
                b.domain.clone(),
                b.category
                    .as_deref()
                    .map_or_else(|| "none".into(), |c| self.category_words(c)),
                b.severity.label().into(),
                b.count.to_string(),
                self.local(b.first),
                self.local(b.last),
                b.status.label().into(),
            ];
            if age {
                let days = self.days_open(b);
                cells.push(format!("{days} day{}", if days == 1 { "" } else { "s" }));
            }
            let cells: Vec<&str> = cells.iter().map(String::as_str).collect();
            row(h, "td", &cells);
        }
        h.push_str("</table>\n");
    }

    fn csv(&self) -> String {
        let mut out = String::new();
        csv_row(&mut out, &CSV_COLUMNS.map(String::from));
        let mut put = |fields: &[(&str, String)]| {
            let mut cells: [String; 16] = Default::default();
            for (name, value) in fields {
                if let Some(i) = CSV_COLUMNS.iter().position(|c| c == name) {
                    cells[i] = value.clone();
                }
            }
            csv_row(&mut out, &cells);
        };
        put(&[
            ("section", "report".into()),
            ("name", self.week.to_string()),
            ("first_attempt", civil::format_rfc3339(self.from)),
            ("last_attempt", civil::format_rfc3339(self.until)),
            (
                "note",
                format!(
                    "week from {} to {} ({}); made {}",
                    self.local(self.from),
                    self.local(self.until),
                    self.zone_words(),
                    civil::format_rfc3339(self.made)
                ),
            ),
        ]);
        put(&[
            ("section", "totals".into()),
            ("name", "all".into()),
            ("queries", self.queries.to_string()),
            ("blocked", self.blocked.to_string()),
        ]);
        for (name, listed, total, which) in [
            (
                "new_breaches",
                self.new_breaches.len(),
                self.new_total,
                "most recent",
            ),
            (
                "open_breaches",
                self.open_breaches.len(),
                self.open_total,
                "longest open",
            ),
        ] {
            put(&[
                ("section", "totals".into()),
                ("name", name.into()),
                (
                    "note",
                    format!("{total} in all; {listed} listed, the {which}"),
                ),
            ]);
        }
        for r in &self.by_category {
            put(&[
                ("section", "blocks_by_category".into()),
                ("name", r.key.clone()),
                ("category", r.key.clone()),
                ("blocked", r.blocks.to_string()),
                ("note", self.category_words(&r.key)),
            ]);
        }
        for r in &self.by_group {
            put(&[
                ("section", "blocks_by_group".into()),
                ("name", r.key.clone()),
                ("group", r.key.clone()),
                ("queries", r.queries.to_string()),
                ("blocked", r.blocks.to_string()),
            ]);
        }
        for d in &self.top_devices {
            put(&[
                ("section", "high_severity_devices".into()),
                ("name", d.device.clone()),
                ("device", d.device_key.clone()),
                ("severity", "high".into()),
                ("attempts", d.attempts.to_string()),
            ]);
        }
        for (section, list) in [
            ("new_breaches", &self.new_breaches),
            ("open_breaches", &self.open_breaches),
        ] {
            for b in list {
                put(&[
                    ("section", section.into()),
                    ("name", format!("breach {}", b.id)),
                    ("device", b.device.clone()),
                    ("user", b.user.clone().unwrap_or_default()),
                    ("group", b.group.clone().unwrap_or_default()),
                    ("site", b.domain.clone()),
                    ("category", b.category.clone().unwrap_or_default()),
                    ("severity", b.severity.label().into()),
                    ("attempts", b.count.to_string()),
                    ("first_attempt", civil::format_rfc3339(b.first)),
                    ("last_attempt", civil::format_rfc3339(b.last)),
                    ("case_status", b.status.label().into()),
                    ("days_open", self.days_open(b).to_string()),
                ]);
            }
        }
        put(&[
            ("section", "circumvention".into()),
            ("name", "all".into()),
            ("attempts", self.circumvention.attempts.to_string()),
            ("note", format!("{} device(s)", self.circumvention.devices)),
        ]);
        for d in &self.circumvention.top {
            put(&[
                ("section", "circumvention_devices".into()),
                ("name", d.device.clone()),
                ("device", d.device_key.clone()),
                ("attempts", d.attempts.to_string()),
            ]);
        }
        match &self.lists {
            Ok(l) => put(&[
                ("section", "lists".into()),
                ("name", "built".into()),
                ("first_attempt", civil::format_rfc3339(l.built)),
                ("note", format!("{} names", l.names)),
            ]),
            Err(why) => put(&[
                ("section", "lists".into()),
                ("name", "not known".into()),
                ("note", why.clone()),
            ]),
        }
        out
    }
}

/// The CSV's columns. `section` says which table a row belongs to: `report` (the week; its
/// `first_attempt` and `last_attempt` are the week's bounds), `totals` (the look-ups, then
/// how many new and open breaches there are in all, in `note`),
/// `blocks_by_category`, `blocks_by_group`, `high_severity_devices`, `new_breaches`,
/// `open_breaches`, `circumvention` (the count), `circumvention_devices` and `lists` (its
/// `first_attempt` is the build time); `note` explains a row in words. Columns a section does
/// not use are empty. Times are RFC 3339 in UTC.
pub const CSV_COLUMNS: [&str; 16] = [
    "section",
    "name",
    "device",
    "user",
    "group",
    "site",
    "category",
    "severity",
    "queries",
    "blocked",
    "attempts",
    "first_attempt",
    "last_attempt",
    "case_status",
    "days_open",
    "note",
];

const STYLE: &str = "body{font-family:Arial,Helvetica,sans-serif;font-size:11pt;color:#111;\
margin:2em;max-width:60em}h1{font-size:18pt}h2{font-size:14pt;margin-top:1.5em;\
border-bottom:1px solid #999}table{border-collapse:collapse;margin:.5em 0}\
th,td{border:1px solid #999;padding:.25em .5em;text-align:left;vertical-align:top}\
th{background:#eee}.lead{font-size:12pt}@media print{body{margin:0}h2{page-break-after:avoid}\
tr{page-break-inside:avoid}}";

/// `Mon 26 Oct 2026` for a day counted from 1970-01-01.
fn day_words(day: i64) -> String {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = civil_from_days(day);
    format!(
        "{} {d} {} {y}",
        DAYS[weekday(day) as usize],
        MONTHS[(m as usize).saturating_sub(1) % 12]
    )
}

/// Escapes text for HTML.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn row(h: &mut String, cell: &str, cells: &[&str]) {
    h.push_str("<tr>");
    for c in cells {
        let _ = write!(h, "<{cell}>{}</{cell}>", esc(c));
    }
    h.push_str("</tr>\n");
}

/// "The 100 most recent of 2,345" above a breach table that does not list them all.
fn shown_of(h: &mut String, listed: usize, total: u64, which: &str) {
    if (listed as u64) < total {
        let _ = writeln!(
            h,
            "<p>{total} in all: the {listed} {which} are listed here. The dashboard's Breaches \
             page lists every one.</p>"
        );
    }
}

fn device_table(h: &mut String, list: &[DeviceAttempts], empty: &str) {
    if list.is_empty() {
        let _ = writeln!(h, "<p>{}</p>", esc(empty));
        return;
    }
    h.push_str("<table>\n");
    row(h, "th", &["Device", "Attempts"]);
    for d in list {
        row(h, "td", &[&d.device, &d.attempts.to_string()]);
    }
    h.push_str("</table>\n");
}

/// One CSV field: quoted when needed, and a cell a spreadsheet would run as a formula
/// (starting `=`, `+`, `-`, `@`) prefixed with `'`.
fn csv_field(out: &mut String, v: &str) {
    let risky = v.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if risky || v.contains([',', '"', '\n', '\r']) {
        let _ = write!(
            out,
            "\"{}{}\"",
            if risky { "'" } else { "" },
            v.replace('"', "\"\"")
        );
    } else {
        out.push_str(v);
    }
}

fn csv_row(out: &mut String, cells: &[String]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, c);
    }
    out.push('\n');
}

/// `hedgerow report weekly`: writes the report for `week` (default: the last full week) to
/// `out`, records it in the audit trail, and returns a one-line summary for the terminal.
pub fn weekly_command(
    config: &Config,
    week: Option<IsoWeek>,
    format: ReportFormat,
    out: &mut dyn Write,
    clock: Clock,
) -> Result<String, ReportError> {
    let now = clock.now();
    let zone = config.server.timezone;
    let week = week.unwrap_or_else(|| IsoWeek::last_full(now, zone));
    let (reader, commands) = store::open_offline(&config.server.data_dir, clock)?;
    let report = WeeklyReport::assemble(&reader, week, zone, &config.lists.artifact_dir, now)?;
    let text = report.render(format);
    // Recorded before it is written: a report that reached anyone is always in the trail.
    commands.append_audit(
        &store::cli::actor(),
        AuditKind::Export,
        &format!("weekly report for {week} ({})", format.label()),
        "command line",
    )?;
    let stdout = Path::new("standard output");
    out.write_all(text.as_bytes()).map_err(io_error(stdout))?;
    out.flush().map_err(io_error(stdout))?;
    Ok(format!(
        "weekly report for {week} ({} to {}); recorded in the audit trail",
        civil::format_rfc3339(report.from),
        civil::format_rfc3339(report.until)
    ))
}

/// The week the scheduled report is due for at `now`: the last full week once Monday 07:00
/// has passed on the school's clock, the one before until then.
pub fn due_week(now: SystemTime, zone: TimeZone) -> IsoWeek {
    let shifted = zone.local_secs(now) - SCHEDULED_MINUTE * 60;
    IsoWeek::of_day(shifted.div_euclid(86_400)).previous()
}

/// Where the scheduled report for `week` is written.
pub fn report_path(data_dir: &Path, week: IsoWeek) -> PathBuf {
    data_dir.join("reports").join(format!("weekly-{week}.html"))
}

/// What the scheduled report needs, taken from the configuration at start-up.
#[derive(Clone)]
pub struct Scheduled {
    /// The store's reader.
    pub reader: Reader,
    /// The store's commands (for the audit record).
    pub commands: Commands,
    /// `server.data_dir`.
    pub data_dir: PathBuf,
    /// `lists.artifact_dir`.
    pub lists_dir: PathBuf,
    /// `server.timezone`.
    pub zone: TimeZone,
    /// `[alerts.email]`, to send the report to the DSL.
    pub email: Option<crate::config::alerts::EmailConfig>,
}

impl Scheduled {
    /// From the configuration and the open store.
    pub fn new(config: &Config, reader: Reader, commands: Commands) -> Scheduled {
        Scheduled {
            reader,
            commands,
            data_dir: config.server.data_dir.clone(),
            lists_dir: config.lists.artifact_dir.clone(),
            zone: config.server.timezone,
            email: config.alerts.email.clone(),
        }
    }

    /// Writes the report due at `now` (see [`due_week`]) unless its file exists, then emails
    /// it when email is configured; returns the file written, if any. Because the file is
    /// the record of the run, a run missed while the server was down is made up at the next
    /// call, and a run is never repeated. Blocking.
    pub fn run_if_due(&self, now: SystemTime) -> Result<Option<PathBuf>, ReportError> {
        let week = due_week(now, self.zone);
        let path = report_path(&self.data_dir, week);
        if path.exists() {
            return Ok(None);
        }
        let report = WeeklyReport::assemble(&self.reader, week, self.zone, &self.lists_dir, now)?;
        let html = report.render(ReportFormat::Html);
        self.commands.append_audit(
            "scheduled weekly report",
            AuditKind::Export,
            &format!(
                "weekly report for {week} written to {}{}",
                path.display(),
                if self.email.is_some() {
                    " and emailed to the alert recipients"
                } else {
                    ""
                }
            ),
            "every Monday at 07:00 school time",
        )?;
        write_private(&path, html.as_bytes())?;
        tracing::info!(%week, file = %path.display(), "weekly report written");
        if let Some(email) = &self.email {
            let subject = format!("Weekly filtering summary, week {week}");
            match crate::alerts::send_html_email(email, &subject, html) {
                Ok(()) => tracing::info!(%week, "weekly report emailed"),
                // Not retried: the file is there for the DSL, and a retry loop could send
                // it twice.
                Err(error) => tracing::warn!(%week, %error, "weekly report not emailed"),
            }
        }
        Ok(Some(path))
    }
}

/// Writes `bytes` to `path` (mode 0600, its folder 0700), through a temporary file renamed
/// into place so a half-written report is never taken for a finished one.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_error(dir))?;
    }
    let tmp = path.with_extension("html.partial");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_weeks_read_write_and_cross_years() {
        let w = IsoWeek::parse("2026-W44").unwrap();
        assert_eq!(w.to_string(), "2026-W44");
        // 2026-W44 starts on Monday 26 October 2026.
        assert_eq!(w.monday(), days_from_civil(2026, 10, 26));
        assert!(IsoWeek::parse("2026-W54").is_err());
        assert!(IsoWeek::parse("2026-44").is_err());
        assert!(IsoWeek::parse("2026-W00").is_err());
        // 2026 has 53 weeks (it starts on a Thursday); 2025 has 52.
        assert!(IsoWeek::parse("2026-W53").is_ok());
        assert!(IsoWeek::parse("2025-W53").is_err());
        // 1 January 2027 is a Friday: still in 2026-W53.
        assert_eq!(
            IsoWeek::of_day(days_from_civil(2027, 1, 1)).to_string(),
            "2026-W53"
        );
        // 29 December 2025 is a Monday: 2026-W01.
        assert_eq!(
            IsoWeek::of_day(days_from_civil(2025, 12, 29)).to_string(),
            "2026-W01"
        );
        assert_eq!(
            IsoWeek::parse("2026-W01").unwrap().previous().to_string(),
            "2025-W52"
        );
    }

    #[test]
    fn a_week_spanning_the_october_clock_change_is_169_hours() {
        let w = IsoWeek::parse("2026-W43").unwrap(); // 19–25 October; clocks go back on the 25th.
        let (from, until) = w.bounds(TimeZone::EuropeLondon);
        assert_eq!(civil::format_rfc3339(from), "2026-10-18T23:00:00Z");
        assert_eq!(civil::format_rfc3339(until), "2026-10-26T00:00:00Z");
        let hours = until.duration_since(from).unwrap().as_secs() / 3600;
        assert_eq!(hours, 169);
    }

    #[test]
    fn the_scheduled_week_turns_at_monday_seven() {
        let zone = TimeZone::EuropeLondon;
        // Monday 2 November 2026 06:59 and 07:00 GMT.
        let before = civil::from_unix_secs(civil::utc_secs(2026, 11, 2, 6, 59, 0).unwrap());
        let after = civil::from_unix_secs(civil::utc_secs(2026, 11, 2, 7, 0, 0).unwrap());
        assert_eq!(due_week(before, zone).to_string(), "2026-W43");
        assert_eq!(due_week(after, zone).to_string(), "2026-W44");
        assert_eq!(IsoWeek::last_full(after, zone).to_string(), "2026-W44");
    }

    #[test]
    fn html_escapes_and_csv_defuses() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        let mut out = String::new();
        csv_row(&mut out, &["=1+1".into(), "a,b".into(), "plain".into()]);
        assert_eq!(out, "\"'=1+1\",\"a,b\",plain\n");
    }
}
