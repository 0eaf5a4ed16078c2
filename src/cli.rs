//! The `reach` command line.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::{
    client::{ClientArgs, backup, commands, import},
    config::{Config, Overrides},
    server, telemetry,
};

/// Exit code for a bad configuration (EX_CONFIG would be 78; 64 is EX_USAGE,
/// what operators' tooling expects for "fix your flags").
const EXIT_BAD_CONFIG: u8 = 64;

#[derive(Parser, Debug)]
#[command(
    name = "reach",
    version,
    about = "Which channel will reach this contact? A reachability-scoring gRPC service."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gRPC server on the embedded store.
    Serve(ServeArgs),
    /// Load harness and data generator (see docs/performance.md).
    #[command(subcommand)]
    Bench(crate::bench::BenchCommand),
    /// Replay a simulated population through a fresh server and score its
    /// predictions against the hidden truth (see docs/evaluation.md).
    Eval(EvalArgs),
    /// Bearer tokens: make one for a tenant, or hash one for the config.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Write a simulated population's events as JSON lines of
    /// RecordEventRequest (grpcurl's format), and its hidden truth.
    Simulate(SimulateArgs),
    /// The best channel for a contact, ranked and explained.
    Best(ClientCall<commands::BestArgs>),
    /// Every channel's score for a contact.
    Reachability(ClientCall<commands::ReachabilityArgs>),
    /// Record one event.
    Record(ClientCall<commands::RecordArgs>),
    /// Delivery outcomes by channel, carrier, campaign, sender, day...
    Stats(ClientCall<commands::StatsArgs>),
    /// Backfill events from a JSON Lines or CSV file (or a provider's raw
    /// export), resumable, with a file of the rejected lines.
    Import(ClientCall<import::ImportArgs>),
    /// Take a consistent backup of a running server (admin token needed
    /// when authentication is on).
    Backup(ClientCall<backup::BackupArgs>),
    /// Restore a backup into a new data directory (server stopped).
    Restore(backup::RestoreArgs),
}

/// A client subcommand: its own arguments plus how to reach the server.
#[derive(Args, Debug)]
struct ClientCall<A: Args> {
    #[command(flatten)]
    args: A,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Subcommand, Debug)]
enum TokenCommand {
    /// Print a new random token for TENANT and the `[[auth.tokens]]` entry
    /// (with the token's hash only) to put in the config.
    New { tenant: String },
    /// Read a token on stdin and print its hash for `token_blake3`.
    Hash,
}

#[derive(Args, Debug)]
struct EvalArgs {
    #[arg(long, default_value_t = 100_000)]
    contacts: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mean messages per contact over the 120 simulated days.
    #[arg(long, default_value_t = 12.0)]
    messages_per_contact: f64,
    /// Effects of the simulated world to switch off, to measure what each
    /// costs the model: deaths, degradation, lost-receipts, compliance,
    /// named-routes (the international route then hides behind domestic
    /// carrier names).
    #[arg(long, value_delimiter = ',')]
    without: Vec<String>,
    /// Contacts replayed at once.
    #[arg(long, default_value_t = 64)]
    workers: usize,
    /// A reach config file for the server under evaluation (model parameters).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Where the server's temporary store goes.
    #[arg(long, default_value = "./reach-eval")]
    work_dir: PathBuf,
    /// Also write the markdown report here.
    #[arg(long)]
    report: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct SimulateArgs {
    #[arg(long, default_value_t = 1_000)]
    contacts: u64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The events, one RecordEventRequest per line.
    #[arg(long)]
    out: PathBuf,
    /// The hidden truth: one line per message with its true outcome.
    #[arg(long)]
    truth: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// TOML configuration file (see docs/configuration.md).
    #[arg(long, env = "REACH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:50051].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory of the embedded store [default: ./reach-data].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    print_config: bool,
    /// Allow serving without authentication on a non-loopback address.
    /// Without tokens configured reach otherwise refuses to start there.
    #[arg(long)]
    insecure: bool,
}

impl Cli {
    pub fn run(self) -> ExitCode {
        match self.command {
            Command::Serve(args) => serve(args),
            Command::Bench(command) => bench(command),
            Command::Eval(args) => eval(args),
            Command::Simulate(args) => simulate(args),
            Command::Token(command) => token(command),
            Command::Best(call) => client(commands::best(&call.client, call.args)),
            Command::Reachability(call) => client(commands::reachability(&call.client, call.args)),
            Command::Record(call) => client(commands::record(&call.client, call.args)),
            Command::Stats(call) => client(commands::stats(&call.client, call.args)),
            Command::Backup(call) => client(backup::backup(&call.client, call.args)),
            Command::Restore(args) => client(async move { backup::restore(args) }),
            Command::Import(call) => {
                client(async move { import::run(&call.client, call.args).await.map(drop) })
            }
        }
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let overrides = Overrides {
        listen: args.listen,
        data_dir: args.data_dir,
    };
    let config = match Config::load(args.config.as_deref(), &overrides) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("reach: bad configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if args.print_config {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = check_exposure(&config, args.insecure) {
        eprintln!("reach: {e}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    telemetry::init(config.log_format);
    if args.insecure && !config.auth.enabled() && !config.tls.mutual() {
        tracing::warn!(listen = %config.listen, "--insecure: serving without authentication; anyone who can reach the port can read and write every contact");
    }
    block_on(run_server(config))
}

/// Runs `work` on a multi-threaded runtime; an error is logged, reported
/// and exits 1.
fn block_on(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    run(tokio::runtime::Runtime::new(), work, true)
}

/// Runs one client subcommand on a small runtime; errors go to stderr
/// without log noise.
fn client(work: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    run(runtime, work, false)
}

fn run(
    runtime: std::io::Result<tokio::runtime::Runtime>,
    work: impl std::future::Future<Output = anyhow::Result<()>>,
    log: bool,
) -> ExitCode {
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("reach: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if log {
                tracing::error!(error = format!("{e:#}"), "failed");
            }
            eprintln!("reach: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(command: crate::bench::BenchCommand) -> ExitCode {
    telemetry::init(crate::config::LogFormat::Plain);
    block_on(crate::bench::main(command))
}

fn eval(args: EvalArgs) -> ExitCode {
    telemetry::init(crate::config::LogFormat::Plain);
    block_on(async move {
        let effects = crate::sim::population::Effects::default()
            .without(&args.without)
            .map_err(anyhow::Error::msg)?;
        let spec = crate::sim::eval::EvalSpec {
            effects,
            contacts: args.contacts,
            seed: args.seed,
            messages_per_contact: args.messages_per_contact,
            workers: args.workers,
            config: args.config,
            work_dir: args.work_dir,
        };
        std::fs::create_dir_all(&spec.work_dir)?;
        let figures = crate::sim::eval::run(&spec).await?;
        let report = crate::sim::eval::render(&spec, &figures);
        print!("{report}");
        if let Some(path) = args.report {
            std::fs::write(&path, &report)?;
        }
        Ok(())
    })
}

fn simulate(args: SimulateArgs) -> ExitCode {
    block_on(async move {
        crate::sim::export::write(args.contacts, args.seed, &args.out, args.truth.as_deref())
    })
}

/// Safe by default: without tokens, only a loopback address, unless the
/// operator says `--insecure`.
fn check_exposure(config: &Config, insecure: bool) -> Result<(), String> {
    let authenticated = config.auth.enabled() || config.tls.mutual();
    if authenticated || insecure || config.listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {} without authentication: configure [[auth.tokens]] (see `reach token new`), listen on loopback, or pass --insecure",
        config.listen
    ))
}

fn token(command: TokenCommand) -> ExitCode {
    match command {
        TokenCommand::New { tenant } => {
            if let Err(e) = crate::storage::Tenant::new(&tenant) {
                eprintln!("reach: {e}");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            let (token, hash) = crate::auth::new_token();
            println!("token: {token}");
            println!();
            println!("[[auth.tokens]]\ntenant = \"{tenant}\"\ntoken_blake3 = \"{hash}\"");
            ExitCode::SUCCESS
        }
        TokenCommand::Hash => {
            let mut line = String::new();
            if std::io::stdin().read_line(&mut line).is_err() || line.trim().is_empty() {
                eprintln!("reach: give the token on stdin");
                return ExitCode::from(EXIT_BAD_CONFIG);
            }
            println!("{}", blake3::hash(line.trim().as_bytes()).to_hex());
            ExitCode::SUCCESS
        }
    }
}

async fn run_server(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    let addr = listener.local_addr()?;
    let admin = match config.admin_addr().map_err(anyhow::Error::msg)? {
        Some(admin_addr) => {
            let admin = tokio::net::TcpListener::bind(admin_addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on admin_listen {admin_addr}: {e}"))?;
            tracing::info!(addr = %admin.local_addr()?, "admin port (metrics, livez, readyz)");
            Some(admin)
        }
        None => None,
    };
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "listening");
    // Machine-readable lines on stdout, for scripts and tests that ask for
    // port 0: the gRPC address first, then the admin port's if there is one.
    // One write, so that a reader that stops after the first line cannot
    // make the second fail on a closed pipe.
    let mut announce = format!("reach listening on {addr}\n");
    if let Some(admin) = &admin {
        announce.push_str(&format!("reach admin on {}\n", admin.local_addr()?));
    }
    print!("{announce}");
    let webhooks = match config.webhooks.listen.as_str() {
        "" => None,
        addr => {
            let webhooks = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on webhooks.listen {addr}: {e}"))?;
            tracing::info!(addr = %webhooks.local_addr()?, "webhook port");
            Some(webhooks)
        }
    };
    let listeners = server::Listeners {
        grpc: listener,
        admin,
        webhooks,
    };
    server::serve_with(config, listeners, shutdown_signal()).await
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}
