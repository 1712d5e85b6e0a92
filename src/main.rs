//! The `hedgerow` command: parses arguments and calls the library.

use std::{net::IpAddr, net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hedgerow::{app, config::Config, lists};

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
        tracing_subscriber::EnvFilter::new(
            "info,hickory_server=warn,hickory_resolver=warn,hickory_net=warn",
        )
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
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
            let mut options = lists::UpdateOptions::new(
                lists::Manifest::load(&config.lists.manifest)?
                    .with_cache_dir(&config.lists.download_dir),
            );
            options.shrink_threshold = config.lists.shrink_threshold;
            let report = lists::update(&options)?;
            print!("{report}");
            let compiled = lists::configured::compile_guarded(&config, force)?;
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
        Command::Lists(ListsCommand::Keygen { path }) => {
            lists::generate_key_file(&path)?;
            println!("wrote a new key to {}", path.display());
            Ok(())
        }
    }
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
