//! The `edge-agent` command line: parse flags, set up logging, call into the
//! library, and turn errors into messages and exit codes.
//!
//! Exit codes: 0 success, 1 the agent failed while running, 2 bad usage or
//! an invalid configuration.

use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};

use edge_agent::config::Config;
use edge_agent::{plan, replay, run, schedule, shutdown, simulate, tail};

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
    /// Stream recorded rows back out, in time order across files.
    Replay(ReplayArgs),
    /// Print the last rows; with -f, keep printing new rows across rotations.
    Tail(TailArgs),
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

/// Where the recorded files are: `--dir` (and `--prefix`), or the output
/// settings of `--config`.
#[derive(clap::Args)]
struct Files {
    /// Directory of the recorded files [default: output.dir of --config].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// File name prefix [default: output.prefix of --config, else `readings`].
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    config: PathBuf,
}

impl Files {
    fn resolve(&self) -> Result<(PathBuf, String), ExitCode> {
        if let Some(dir) = &self.dir {
            let prefix = self.prefix.clone().unwrap_or_else(|| "readings".into());
            return Ok((dir.clone(), prefix));
        }
        match Config::load(&self.config) {
            Ok(c) => Ok((c.output.dir, self.prefix.clone().unwrap_or(c.output.prefix))),
            Err(e) => {
                eprintln!("{e}");
                eprintln!(
                    "hint: pass --dir DIR, or --config FILE naming the agent's configuration"
                );
                Err(ExitCode::from(2))
            }
        }
    }
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    files: Files,
    /// Rows at or after this time: RFC 3339 (2026-11-24T10:00:00Z) or an age (2h, 7days).
    #[arg(long, value_parser = parse_when, value_name = "T")]
    since: Option<SystemTime>,
    /// Rows before this time: RFC 3339 or an age.
    #[arg(long, value_parser = parse_when, value_name = "T")]
    until: Option<SystemTime>,
    /// Only this group; repeat for several.
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    #[arg(long, value_enum, default_value = "csv")]
    format: replay::Format,
    /// Measurement name of the influx format.
    #[arg(long, default_value = "temperature")]
    measurement: String,
    /// Replay at this multiple of the recorded pace (1 = real time) [default: as fast as possible].
    #[arg(long, value_parser = parse_speed)]
    speed: Option<f64>,
    /// Bytes read from a file at a time.
    #[arg(long, value_parser = parse_size, default_value = "64KiB", value_name = "SIZE")]
    chunk_size: u64,
    /// `-` for stdout, a file path, or an http(s) URL to POST batches to (e.g. InfluxDB's /write?db=NAME).
    #[arg(long, short, default_value = "-", value_name = "-|PATH|URL")]
    output: String,
    /// Rows per HTTP batch at most.
    #[arg(long, default_value_t = 5000, value_name = "N")]
    batch_rows: u64,
    /// Bytes per HTTP batch at most.
    #[arg(long, value_parser = parse_size, default_value = "1MiB", value_name = "SIZE")]
    batch_size: u64,
    /// Exit non-zero if any line was skipped.
    #[arg(long)]
    strict: bool,
}

#[derive(clap::Args)]
struct TailArgs {
    #[command(flatten)]
    files: Files,
    /// Rows to show.
    #[arg(short = 'n', long = "lines", default_value_t = 10)]
    lines: usize,
    /// Keep printing rows as they are written, across rotations.
    #[arg(short, long)]
    follow: bool,
    /// Only this group; repeat for several.
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
}

/// RFC 3339, or a humantime age meaning that long ago.
fn parse_when(s: &str) -> Result<SystemTime, String> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        return Ok(t);
    }
    match humantime::parse_duration(s) {
        Ok(age) => SystemTime::now()
            .checked_sub(age)
            .ok_or_else(|| format!("`{s}` reaches before 1970")),
        Err(_) => Err(format!(
            "`{s}` is neither an RFC 3339 time (2026-11-24T10:00:00Z) nor an age (2h, 7days)"
        )),
    }
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!(
            "`{s}` is not a positive number (1 = real time, 60 = sixty times faster)"
        )),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    match s.parse::<bytesize::ByteSize>() {
        Ok(b) if b.as_u64() > 0 => Ok(b.as_u64()),
        _ => Err(format!("`{s}` is not a size such as 64KiB or 1MiB")),
    }
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
    // Replay does its heavy work on the blocking pool (reading, encoding,
    // writing); its one async task hands blocks between them, and with two
    // workers it moved between them and woke the idle one, a wake-up per
    // block: with one worker a csv replay of 1 GiB ran at 0.73-0.83 of
    // `cat` instead of 0.60-0.75 (four interleaved runs) and influx --since
    // at 0.24 instead of 0.22 (a current-thread runtime: 0.70 for csv).
    let workers = match cli.command {
        Command::Replay(_) => 1,
        _ => 2,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        // Two workers are plenty for I/O-bound polling and keep RSS small on a Pi.
        .worker_threads(workers)
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
    // The work runs in a spawned task, on the worker threads: driven from
    // `block_on` it would sit on the main thread and every finished request
    // would have to wake it (measured: ~13% more CPU per cycle).
    runtime.block_on(async {
        let work = tokio::spawn(async move {
            match cli.command {
                Command::Check { config } => check(&config),
                Command::Run { config, simulate } => run_agent(&config, simulate).await,
                Command::Replay(args) => replay_files(args).await,
                Command::Tail(args) => tail_files(args).await,
                Command::Simulate {
                    listen,
                    latency,
                    fail_rate,
                } => serve_simulator(&listen, latency, fail_rate).await,
            }
        });
        work.await.unwrap_or_else(|e| {
            eprintln!("error: {e}");
            ExitCode::from(1)
        })
    })
}

fn init_logging(level: tracing::Level) {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        // The HTTP libraries log request URLs at debug level, and a URL may
        // carry a token: each stays at info unless RUST_LOG names it.
        Ok(mut spec) => {
            let named: Vec<String> = spec
                .split(',')
                .filter_map(|d| d.split(['=', '[']).next())
                .map(|t| t.trim().to_string())
                .collect();
            for lib in ["reqwest", "hyper", "hyper_util"] {
                let own = |t: &String| t == lib || t.starts_with(&format!("{lib}::"));
                if !named.iter().any(own) {
                    spec.push_str(&format!(",{lib}=info"));
                }
            }
            EnvFilter::new(spec)
        }
        Err(_) => EnvFilter::new(format!("warn,edge_agent={level}")),
    };
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
    let config = Config::load_to_run(path).map_err(|e| {
        eprintln!("{e}");
        if path == Path::new(DEFAULT_CONFIG) && !path.exists() {
            eprintln!(
                "hint: pass --config FILE; try the demo with `edge-agent run --config agent.yaml --simulate`"
            );
        }
        ExitCode::from(2)
    })?;
    config.log_warnings();
    Ok(config)
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
                tracing::info!(
                    "serving simulated sensors on http://{a}/json/ID, /prometheus/ID, /text/ID"
                );
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

async fn replay_files(args: ReplayArgs) -> ExitCode {
    let (dir, prefix) = match args.files.resolve() {
        Ok(f) => f,
        Err(code) => return code,
    };
    if let (Some(s), Some(u)) = (args.since, args.until) {
        if s >= u {
            eprintln!("error: --since must be before --until");
            return ExitCode::from(2);
        }
    }
    let opts = replay::Options {
        dir,
        prefix,
        since: args.since,
        until: args.until,
        groups: args.groups.clone(),
        format: args.format,
        measurement: args.measurement.clone(),
        speed: args.speed,
        chunk_size: args.chunk_size as usize,
    };
    let mut sink = match open_sink(&args.output, &args, opts.format).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match replay::replay(&opts, &mut sink).await {
        Ok(summary) => {
            let mut line = format!(
                "replayed {} row(s) from {} file(s), skipped {} line(s)",
                summary.rows, summary.files, summary.skipped
            );
            if let replay::Sink::Http(p) = &sink {
                line.push_str(&format!(
                    "; {} row(s) acknowledged in {} batch(es), {} retried",
                    p.acknowledged(),
                    p.batches_sent,
                    p.retries
                ));
            }
            eprintln!("{line}");
            if args.strict && summary.skipped > 0 {
                eprintln!("error: --strict: {} line(s) were skipped", summary.skipped);
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        // The reader went away (`| head`): not an error, as for `tail`.
        Err(replay::ReplayError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn open_sink(
    output: &str,
    args: &ReplayArgs,
    format: replay::Format,
) -> Result<replay::Sink, String> {
    if output == "-" {
        let out = Box::new(std::io::stdout());
        return Ok(replay::Sink::File(replay::FileWriter::new(out)));
    }
    if output.starts_with("http://") || output.starts_with("https://") {
        let url = output
            .parse()
            .map_err(|e| format!("--output {output}: {e}"))?;
        let opts = replay::http::PushOptions {
            max_rows: args.batch_rows.max(1),
            max_bytes: args.batch_size as usize,
            content_type: format.content_type(),
            ..Default::default()
        };
        return replay::http::Pusher::new(url, opts)
            .map(|p| replay::Sink::Http(Box::new(p)))
            .map_err(|e| e.to_string());
    }
    let file = std::fs::File::create(output).map_err(|e| format!("cannot create {output}: {e}"))?;
    Ok(replay::Sink::File(replay::FileWriter::new(Box::new(file))))
}

async fn tail_files(args: TailArgs) -> ExitCode {
    let (dir, prefix) = match args.files.resolve() {
        Ok(f) => f,
        Err(code) => return code,
    };
    let opts = tail::TailOptions {
        dir,
        prefix,
        lines: args.lines,
        follow: args.follow,
        groups: args.groups,
        poll: Duration::from_millis(250),
    };
    let mut out = tokio::io::stdout();
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tail::tail(&opts, &mut out, stop).await {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`| head`): not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
