//! The `hedgerow` command: parses arguments and calls the library.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use hedgerow::{app, config::Config};

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
    },
    /// Validate a configuration file and print what each group will get.
    CheckConfig {
        /// Configuration file.
        file: PathBuf,
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
            eprintln!("hedgerow: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve {
            config,
            listen,
            upstream,
            http,
        } => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let overrides = app::Overrides {
                listen,
                upstreams: upstream,
                http,
            };
            runtime.block_on(app::run(config, overrides, shutdown_signal()))?;
            Ok(())
        }
        Command::CheckConfig { file } => {
            let config = Config::from_file(&file)?;
            print!("{}", config.describe());
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
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
