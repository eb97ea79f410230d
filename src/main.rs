//! The `edge-agent` command line: parse flags, set up logging, call into the
//! library, and turn errors into messages and exit codes.
//!
//! Exit codes: 0 success, 1 the agent failed while running, 2 bad usage or
//! an invalid configuration.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use edge_agent::config::Config;
use edge_agent::{plan, run, schedule, shutdown, simulate};

const DEFAULT_CONFIG: &str = "/etc/edge-agent/agent.yaml";

#[derive(Parser)]
#[command(
    name = "edge-agent",
    version,
    about = "Poll HTTP sensors, average them, append the averages to rotating CSV files"
)]
struct Cli {
    /// Log level: error, warn, info, debug or trace (RUST_LOG, if set, wins).
    #[arg(long, global = true, default_value = "info", value_name = "LEVEL")]
    log_level: tracing::Level,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Poll the sensors of the config and write rows until stopped (SIGTERM/SIGINT; SIGHUP reloads).
    Run {
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
        /// Also serve simulated sensors for every loopback address in the config (no hardware needed).
        #[arg(long)]
        simulate: bool,
    },
    /// Validate the config and print the resolved plan (secrets redacted).
    Check {
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
    },
    /// Serve simulated sensors: GET /json/ID, /prometheus/ID or /text/ID.
    Simulate {
        /// Address to listen on; repeat for several hosts (127.0.0.2:8080, ...).
        #[arg(long, value_name = "ADDR", default_values_t = [SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8080)])]
        listen: Vec<SocketAddr>,
        /// Delay of every answer (e.g. 20ms); `?latency=` overrides per request.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
        latency: Duration,
        /// Share of answers that are HTTP 500, 0.0 to 1.0; `?fail=` overrides.
        #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
        fail_rate: f64,
    },
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{s}` is not a number between 0.0 and 1.0")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Two workers are plenty for I/O-bound polling and keep RSS small on a Pi.
        .worker_threads(2)
        .max_blocking_threads(4)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Check { config } => check(&config),
            Command::Run { config, simulate } => run_agent(&config, simulate).await,
            Command::Simulate {
                listen,
                latency,
                fail_rate,
            } => serve_simulator(&listen, latency, fail_rate).await,
        }
    })
}

fn init_logging(level: tracing::Level) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,edge_agent={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    // journald stamps every line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}

fn load(path: &Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{e}");
        if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
            eprintln!(
                "hint: pass --config FILE; try the demo with `edge-agent run --config agent.yaml --simulate`"
            );
        }
        ExitCode::from(2)
    })
}

fn check(path: &Path) -> ExitCode {
    match load(path) {
        Ok(config) => {
            print!("{}", plan::describe(&config));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

async fn run_agent(path: &Path, with_simulator: bool) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if with_simulator {
        if let Err(e) = start_simulated_site(&config).await {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let control = match shutdown::listen() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    match run::run(config, path.to_path_buf(), control, schedule::Clock::System).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(match e {
                run::RunError::Config(_) => 2,
                _ => 1,
            })
        }
    }
}

/// Start simulated sensors on every host the config polls; all must be on
/// loopback, so `--simulate` never answers for a real device.
async fn start_simulated_site(config: &Config) -> Result<(), String> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for (_, s) in config.sensors() {
        let host = s.url.host_str().unwrap_or_default();
        let ip: IpAddr = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h.trim_matches(['[', ']']).parse().map_err(|_| {
                format!(
                    "--simulate needs sensors on loopback addresses; sensor {} is on {host}",
                    s.id
                )
            })?,
        };
        if !ip.is_loopback() {
            return Err(format!(
                "--simulate needs sensors on loopback addresses; sensor {} is on {ip}",
                s.id
            ));
        }
        if s.url.scheme() != "http" {
            return Err(format!(
                "--simulate serves plain http; sensor {} uses {}",
                s.id,
                s.url.scheme()
            ));
        }
        let addr = SocketAddr::new(ip, s.url.port_or_known_default().unwrap_or(80));
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    let bound = simulate::start(&addrs, simulate::Behaviour::default())
        .await
        .map_err(|e| e.to_string())?;
    let shown: Vec<String> = bound.iter().map(|a| a.to_string()).collect();
    tracing::info!("simulating the site's sensors on {}", shown.join(", "));
    Ok(())
}

async fn serve_simulator(listen: &[SocketAddr], latency: Duration, fail_rate: f64) -> ExitCode {
    let behaviour = simulate::Behaviour { latency, fail_rate };
    match simulate::start(listen, behaviour).await {
        Ok(bound) => {
            for a in &bound {
                tracing::info!("serving simulated sensors on http://{a}/json/ID, /prometheus/ID, /text/ID");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    }
    let mut control = match shutdown::listen() {
        Ok(rx) => rx,
        Err(e) => {
            eprintln!("error: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    while let Some(c) = control.recv().await {
        if c == shutdown::Control::Shutdown {
            break;
        }
    }
    ExitCode::SUCCESS
}
