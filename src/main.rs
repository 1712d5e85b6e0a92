//! The `hedgerow` command: parses arguments and calls the library.

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hedgerow::{accounts::Role, app, clock::Clock, config::Config, lists, store, users};

/// A DNS-level filtering resolver for schools.
#[derive(Parser)]
#[command(name = "hedgerow", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer DNS for the school's subnets (with no --config: the embedded default).
    Serve {
        /// Configuration file.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// DNS address to listen on (UDP and TCP); repeatable; overrides the file.
        #[arg(long)]
        listen: Vec<SocketAddr>,
        /// Upstream resolver; repeatable; overrides the file.
        #[arg(long)]
        upstream: Vec<SocketAddr>,
        /// Dashboard and /metrics address; overrides the file.
        #[arg(long)]
        http: Option<SocketAddr>,
        /// Worker threads (default: one per CPU).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Validate a configuration file and print what each group will get.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
    },
    /// Compile, update, inspect the category lists.
    #[command(subcommand)]
    Lists(ListsCommand),
    /// Export or erase logged queries.
    #[command(subcommand)]
    Store(StoreCommand),
    /// Safeguarding breaches: blocked attempts that need a look.
    #[command(subcommand)]
    Breaches(BreachesCommand),
    /// The audit trail of changes, exports, erasures and views.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Summaries for the Designated Safeguarding Lead.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Who was logged in where: user sessions.
    #[command(subcommand)]
    Sessions(SessionsCommand),
    /// Check that filtering works for every group (as a device of each group gets it),
    /// record the check, and alert when something failed. Exits non-zero on a failure.
    CheckFiltering {
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Staff's requests to unblock a name: list, approve, refuse.
    #[command(subcommand)]
    Unblock(UnblockCommand),
    /// Time-limited grants (unblocked names): list, add, revoke. A running server applies
    /// changes within 5 seconds.
    #[command(subcommand)]
    Grants(GrantsCommand),
    /// Dashboard accounts: who may sign in, with which roles.
    #[command(subcommand)]
    User(UserCommand),
}

#[derive(Subcommand)]
enum UnblockCommand {
    /// Record a request on someone's behalf, to be approved or refused like any other.
    Request {
        /// The name to unblock (with its subdomains).
        name: String,
        /// A group it should be unblocked for; repeatable.
        #[arg(long, required = true)]
        group: Vec<String>,
        /// For how long: 30m, 1h, 2d, 1w (between 1 minute and 365 days).
        #[arg(long = "for", value_name = "PERIOD")]
        period: String,
        /// Why it is needed.
        #[arg(long)]
        reason: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List unblock requests, newest first.
    List {
        /// Only requests with this status: pending, approved or refused.
        #[arg(long)]
        status: Option<String>,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Approve a pending request: one grant per group, from now for the period. Names on the
    /// illegal-content list cannot be unblocked.
    Approve {
        /// The request's number.
        id: i64,
        /// A group to grant it to; repeatable (default: the groups asked for).
        #[arg(long)]
        group: Vec<String>,
        /// For how long: 30m, 1h, 2d, 1w (default: the period asked for).
        #[arg(long = "for", value_name = "PERIOD")]
        period: Option<String>,
        /// A note for the audit trail.
        #[arg(long, default_value = "")]
        note: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Refuse a pending request, saying why.
    Refuse {
        /// The request's number.
        id: i64,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GrantsCommand {
    /// List grants in force and those that ended in the last 7 days.
    List {
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Unblock a name for groups for a while, without a request. Names on the
    /// illegal-content list cannot be unblocked.
    Add {
        /// The name (with its subdomains).
        name: String,
        /// A group to grant it to; repeatable.
        #[arg(long, required = true)]
        group: Vec<String>,
        /// For how long: 30m, 1h, 2d, 1w.
        #[arg(long = "for", value_name = "PERIOD")]
        period: String,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        note: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// End a grant now, saying why.
    Revoke {
        /// The grant's number.
        id: i64,
        /// Why (recorded in the audit trail).
        #[arg(long)]
        reason: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

/// Dashboard accounts. Roles: dsl (breaches, pupil-level logs and reports), approver (unblock
/// requests), technician (lists, policy, health; no pupil-level records unless also dsl),
/// governor (aggregate reports only).
#[derive(Subcommand)]
enum UserCommand {
    /// Add an account. The password is read from standard input when it is not a terminal
    /// (its first line), else asked for twice with echo off.
    Add {
        /// The account name (letters, digits, `.`, `_`, `@`, `-`).
        name: String,
        /// A role: dsl, approver, technician or governor (repeatable; at least one).
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<Role>,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Set a new password (read like `user add`'s).
    Passwd {
        /// The account name.
        name: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Stop an account signing in.
    Disable {
        /// The account name.
        name: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Let a disabled account sign in again.
    Enable {
        /// The account name.
        name: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Replace an account's roles.
    Roles {
        /// The account name.
        name: String,
        /// A role: dsl, approver, technician or governor (repeatable; at least one).
        #[arg(long = "role", value_name = "ROLE", required = true)]
        roles: Vec<Role>,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// List the accounts: roles, two-factor, disabled, last sign-in.
    List {
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Set up two-factor sign-in: prints a new secret as a QR code and an otpauth:// URI for
    /// an authenticator app (replacing any earlier one).
    Totp {
        /// The account name.
        name: String,
        /// Switch two-factor sign-in off for the account instead.
        #[arg(long)]
        remove: bool,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// The weekly summary (blocks, breaches, attempts to get round the filter), to standard
    /// output. It names devices and people, so it is recorded in the audit trail.
    Weekly {
        /// The ISO week, like 2026-W44, in the school's time zone (default: the last full
        /// week).
        #[arg(long)]
        week: Option<String>,
        /// html (a printable page) or csv (one file, a `section` column per table).
        #[arg(long, default_value = "html")]
        format: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SessionsCommand {
    /// Store the sessions in a CSV file (header `ip,username,device,start,end`). Good lines
    /// are stored even when others are bad; bad lines are listed and the exit status is
    /// non-zero.
    Import {
        /// The CSV file.
        file: PathBuf,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Export logged queries (default: the last 7 days, as CSV, to standard output). The
    /// export is recorded in the audit trail.
    Export {
        /// From this date (2026-09-01 or 2026-09-01T13:30, UTC).
        #[arg(long)]
        since: Option<String>,
        /// Until this date (UTC).
        #[arg(long)]
        until: Option<String>,
        /// Only this group.
        #[arg(long)]
        group: Option<String>,
        /// Only this device (as shown in breaches and exports).
        #[arg(long)]
        device: Option<String>,
        /// csv (opens in a spreadsheet) or jsonl (one JSON object per line).
        #[arg(long, default_value = "csv")]
        format: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Erase one device's, address's or user's logged queries from before a date. Breaches
    /// whose case is still open are kept. Recorded in the audit trail.
    Erase {
        /// The device (as shown in breaches and exports).
        #[arg(long, group = "whose")]
        device: Option<String>,
        /// The address.
        #[arg(long, group = "whose")]
        ip: Option<IpAddr>,
        /// The user.
        #[arg(long, group = "whose")]
        user: Option<String>,
        /// Erase what was logged before this date (UTC).
        #[arg(long)]
        before: String,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum BreachesCommand {
    /// List breaches, newest first.
    List {
        /// Only this case status: new, reviewed, escalated or closed.
        #[arg(long)]
        status: Option<String>,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Show one breach, its case and what the device looked up around it (recorded in the
    /// audit trail).
    Show {
        /// The breach number.
        id: i64,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// List the latest audit records, oldest first.
    List {
        /// How many.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Check that no audit record was changed or removed.
    Verify {
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ListsCommand {
    /// Compile every category of the manifest into the artifact folder. A build in which a
    /// category, or the whole, shrank to zero or below `lists.shrink_threshold` of the build
    /// in force is refused.
    Compile {
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Replace the build in force even though the new one shrank (marks it as forced,
        /// so running servers take it too).
        #[arg(long)]
        force: bool,
    },
    /// Download the manifest's `url` sources (conditional requests; the last good copy is kept
    /// when a download fails or shrinks suspiciously), then compile.
    Update {
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Compile even though the build shrank (see `lists compile --force`).
        #[arg(long)]
        force: bool,
    },
    /// Show what each group (or one client's group) gets for a name, and why.
    Lookup {
        /// The name to look up.
        name: String,
        /// Only the group of this client address.
        #[arg(long)]
        client: Option<IpAddr>,
        /// Configuration file (default: the embedded default).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Create a secret key for hashing the illegal-content list (mode 0600).
    Keygen {
        /// Where to write it (keep it outside the artifact folder).
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HEDGEROW_LOG").unwrap_or_else(|_| {
        // hickory's per-packet warnings (a malformed EDNS option, a bad query from outside)
        // cost a client nothing to cause and would flood the log: errors only. Hedgerow's
        // own warnings about client traffic are rate-limited (`log_limit`).
        tracing_subscriber::EnvFilter::new(
            "info,hickory_proto=error,hickory_server=error,hickory_net=error,hickory_resolver=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    // A panic while answering is caught and costs one query, but the default hook still
    // prints each one: a client that finds a panicking name must not flood the log with them.
    static PANIC_REPORTS: hedgerow::log_limit::LogLimit =
        hedgerow::log_limit::LogLimit::new("panic report", 10);
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if PANIC_REPORTS.allow() {
            report(info);
        }
    }));
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hedgerow: {}", describe(&error));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, skipping a cause its parent's message already quotes.
fn describe(error: &anyhow::Error) -> String {
    let mut out = error.to_string();
    for cause in error.chain().skip(1) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out = format!("{out}: {text}");
        }
    }
    out
}

fn config_or_default(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::from_file(p)?,
        None => Config::embedded_default(),
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            upstream,
            http,
            threads,
        } => {
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = threads {
                builder.worker_threads(n.max(1));
            }
            let runtime = builder
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let overrides = app::Overrides {
                listen,
                upstreams: upstream,
                http,
                clock: None,
            };
            runtime.block_on(app::run(config, overrides, shutdown_signal()))?;
            Ok(())
        }
        Command::CheckConfig { file } => {
            let config = Config::from_file(&file)?;
            print!("{}", hedgerow::describe::describe(&config));
            let findings = hedgerow::describe::check(&config);
            if !findings.warnings.is_empty() || !findings.errors.is_empty() {
                println!();
            }
            for w in &findings.warnings {
                println!("warning: {w}");
            }
            // Wherever `serve` would refuse to start, so does the check.
            anyhow::ensure!(
                findings.errors.is_empty(),
                "{}: `serve` would refuse this configuration:\n  {}",
                file.display(),
                findings.errors.join("\n  ")
            );
            Ok(())
        }
        Command::Lists(ListsCommand::Compile { config, force }) => {
            let config = config_or_default(config.as_ref())?;
            let report = lists::configured::compile_guarded(&config, force)?;
            print!("{report}");
            Ok(())
        }
        Command::Lists(ListsCommand::Update { config, force }) => {
            let config = config_or_default(config.as_ref())?;
            let updated =
                lists::configured::update_and_compile(&config, force, Clock::system().now())?;
            let report = updated.report;
            print!("{report}");
            let compiled = updated.compiled?;
            print!("{compiled}");
            anyhow::ensure!(
                report.failed() == 0,
                "some sources could not be updated (their last good copies were compiled)"
            );
            Ok(())
        }
        Command::Lists(ListsCommand::Lookup {
            name,
            client,
            config,
        }) => {
            let config = config_or_default(config.as_ref())?;
            let blocklists = lists::configured::open_to_read(&config)?;
            let manifest = lists::Manifest::load(&config.lists.manifest).ok();
            let report = hedgerow::lookup::report(
                &config,
                &blocklists,
                manifest.as_ref(),
                &name,
                client,
                hedgerow::clock::Clock::system().now(),
            )?;
            print!("{report}");
            Ok(())
        }
        Command::Store(StoreCommand::Export {
            since,
            until,
            group,
            device,
            format,
            config,
        }) => {
            let config = config_or_default(config.as_ref())?;
            let format = match format.as_str() {
                "csv" => store::ExportFormat::Csv,
                "jsonl" => store::ExportFormat::Jsonl,
                other => anyhow::bail!("`{other}` is not a format: use csv or jsonl"),
            };
            let filter = store::ExportFilter {
                since: since
                    .as_deref()
                    .map(hedgerow::civil::parse_day_or_datetime)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                until: until
                    .as_deref()
                    .map(hedgerow::civil::parse_day_or_datetime)
                    .transpose()
                    .map_err(anyhow::Error::msg)?,
                group,
                device,
                ..store::ExportFilter::default()
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary = store::cli::export(&config, filter, format, &mut out, Clock::system())?;
            eprintln!("{summary}");
            Ok(())
        }
        Command::Store(StoreCommand::Erase {
            device,
            ip,
            user,
            before,
            config,
        }) => {
            let config = config_or_default(config.as_ref())?;
            let target = match (device, ip, user) {
                (Some(d), _, _) => store::EraseTarget::Device(d),
                (_, Some(ip), _) => store::EraseTarget::Ip(ip),
                (_, _, Some(u)) => store::EraseTarget::User(u),
                _ => anyhow::bail!("say whose queries to erase: --device, --ip or --user"),
            };
            let before =
                hedgerow::civil::parse_day_or_datetime(&before).map_err(anyhow::Error::msg)?;
            print!(
                "{}",
                store::cli::erase(&config, &target, before, Clock::system())?
            );
            Ok(())
        }
        Command::Breaches(BreachesCommand::List { status, config }) => {
            let config = config_or_default(config.as_ref())?;
            let status = match status {
                Some(s) => Some(store::CaseStatus::parse(&s).with_context(|| {
                    format!("`{s}` is not a case status: use new, reviewed, escalated or closed")
                })?),
                None => None,
            };
            print!(
                "{}",
                store::cli::breaches_list(&config, status, Clock::system())?
            );
            Ok(())
        }
        Command::Breaches(BreachesCommand::Show { id, config }) => {
            let config = config_or_default(config.as_ref())?;
            print!("{}", store::cli::breach_show(&config, id, Clock::system())?);
            Ok(())
        }
        Command::Audit(AuditCommand::List { limit, config }) => {
            let config = config_or_default(config.as_ref())?;
            print!(
                "{}",
                store::cli::audit_list(&config, limit, Clock::system())?
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { config }) => {
            let config = config_or_default(config.as_ref())?;
            let (report, intact) = store::cli::audit_verify(&config, Clock::system())?;
            print!("{report}");
            anyhow::ensure!(intact, "the audit trail failed verification");
            Ok(())
        }
        Command::Unblock(UnblockCommand::Request {
            name,
            group,
            period,
            reason,
            config,
        }) => {
            let config = config_or_default(config.as_ref())?;
            let period = hedgerow::civil::parse_period(&period).map_err(anyhow::Error::msg)?;
            let (_, summary) = hedgerow::unblock::request(
                &config,
                &name,
                &group,
                period,
                &reason,
                Clock::system(),
            )?;
            print!("{summary}");
            Ok(())
        }
        Command::Unblock(UnblockCommand::List { status, config }) => {
            let config = config_or_default(config.as_ref())?;
            let status = match status {
                Some(s) => Some(store::RequestStatus::parse(&s).with_context(|| {
                    format!("`{s}` is not a request status: use pending, approved or refused")
                })?),
                None => None,
            };
            print!(
                "{}",
                hedgerow::unblock::list_requests(&config, status, Clock::system())?
            );
            Ok(())
        }
        Command::Unblock(UnblockCommand::Approve {
            id,
            group,
            period,
            note,
            config,
        }) => {
            let config = config_or_default(config.as_ref())?;
            let period = period
                .as_deref()
                .map(hedgerow::civil::parse_period)
                .transpose()
                .map_err(anyhow::Error::msg)?;
            print!(
                "{}",
                hedgerow::unblock::approve(&config, id, &group, period, &note, Clock::system())?
            );
            Ok(())
        }
        Command::Unblock(UnblockCommand::Refuse { id, reason, config }) => {
            let config = config_or_default(config.as_ref())?;
            print!(
                "{}",
                hedgerow::unblock::refuse(&config, id, &reason, Clock::system())?
            );
            Ok(())
        }
        Command::Grants(GrantsCommand::List { config }) => {
            let config = config_or_default(config.as_ref())?;
            print!(
                "{}",
                hedgerow::unblock::list_grants(&config, Clock::system())?
            );
            Ok(())
        }
        Command::Grants(GrantsCommand::Add {
            name,
            group,
            period,
            note,
            config,
        }) => {
            let config = config_or_default(config.as_ref())?;
            let period = hedgerow::civil::parse_period(&period).map_err(anyhow::Error::msg)?;
            print!(
                "{}",
                hedgerow::unblock::add_grant(
                    &config,
                    &name,
                    &group,
                    period,
                    &note,
                    Clock::system()
                )?
            );
            Ok(())
        }
        Command::Grants(GrantsCommand::Revoke { id, reason, config }) => {
            let config = config_or_default(config.as_ref())?;
            print!(
                "{}",
                hedgerow::unblock::revoke(&config, id, &reason, Clock::system())?
            );
            Ok(())
        }
        Command::Report(ReportCommand::Weekly {
            week,
            format,
            config,
        }) => {
            let config = config_or_default(config.as_ref())?;
            let week = week
                .as_deref()
                .map(hedgerow::report::IsoWeek::parse)
                .transpose()?;
            let format = hedgerow::report::ReportFormat::parse(&format)?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let summary =
                hedgerow::report::weekly_command(&config, week, format, &mut out, Clock::system())?;
            eprintln!("{summary}");
            Ok(())
        }
        Command::Sessions(SessionsCommand::Import { file, config }) => {
            let config = config_or_default(config.as_ref())?;
            let report = hedgerow::sessions::import_csv(&config, &file, Clock::system())?;
            print!("{}", report.describe());
            anyhow::ensure!(
                report.errors.is_empty(),
                "{} line(s) of {} could not be used",
                report.errors.len(),
                file.display()
            );
            Ok(())
        }
        Command::User(command) => {
            print!("{}", user_command(command)?);
            Ok(())
        }
        Command::CheckFiltering { config } => {
            let config = config_or_default(config.as_ref())?;
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let done = runtime.block_on(app::check_filtering(config, Clock::system()))?;
            print!("{}", done.run.table());
            for d in &done.alerts {
                match &d.outcome {
                    Ok(()) => println!("alert sent by {}", d.channel),
                    Err(reason) => println!("alert NOT sent by {}: {reason}", d.channel),
                }
            }
            anyhow::ensure!(
                done.run.failed == 0,
                "{} check(s) failed (recorded as filtering check {})",
                done.run.failed,
                done.run.id
            );
            Ok(())
        }
        Command::Lists(ListsCommand::Keygen { path }) => {
            lists::generate_key_file(&path)?;
            println!("wrote a new key to {}", path.display());
            Ok(())
        }
    }
}

fn user_command(command: UserCommand) -> anyhow::Result<String> {
    let clock = Clock::system();
    Ok(match command {
        UserCommand::Add {
            name,
            roles,
            config,
        } => users::add(
            &config_or_default(config.as_ref())?,
            &name,
            roles.into_iter().collect(),
            clock,
        )?,
        UserCommand::Passwd { name, config } => {
            users::passwd(&config_or_default(config.as_ref())?, &name, clock)?
        }
        UserCommand::Disable { name, config } => {
            users::set_disabled(&config_or_default(config.as_ref())?, &name, true, clock)?
        }
        UserCommand::Enable { name, config } => {
            users::set_disabled(&config_or_default(config.as_ref())?, &name, false, clock)?
        }
        UserCommand::Roles {
            name,
            roles,
            config,
        } => users::set_roles(
            &config_or_default(config.as_ref())?,
            &name,
            roles.into_iter().collect(),
            clock,
        )?,
        UserCommand::List { config } => users::list(&config_or_default(config.as_ref())?, clock)?,
        UserCommand::Totp {
            name,
            remove,
            config,
        } => users::totp(&config_or_default(config.as_ref())?, &name, remove, clock)?,
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match term.as_mut() {
                Some(t) => { t.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
    }
}
