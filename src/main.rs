//! The `edge-agent` command line: parse flags, set up logging, call into the
//! library, and turn errors into messages and exit codes.
//!
//! Exit codes: 0 success, 1 the agent failed while running, 2 bad usage or
//! an invalid configuration. Each command returns a [`CliError`] that says
//! which; [`exit`] alone turns it into the message and the code.

#![deny(unsafe_code)]

use std::fmt;
use std::io::IsTerminal;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Parser, Subcommand};

use edge_agent::config::{Config, ConfigError};
use edge_agent::{plan, poll, replay, rlimit, run, schedule, shutdown, simulate, tail};

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
        /// The config file; relative paths in it are taken from its directory.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
        /// Also serve simulated sensors for every loopback address in the config (no hardware needed).
        #[arg(long)]
        simulate: bool,
    },
    /// Validate the config and print the resolved plan (secrets redacted, paths absolute).
    Check {
        /// The config file; relative paths in it are taken from its directory.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
        /// Errors and warnings only, no plan (for systemd's ExecStartPre).
        #[arg(long, short)]
        quiet: bool,
    },
    /// Show each forward target's cursor and lag, from the files (the agent may be running).
    Forward {
        /// The config file; relative paths in it are taken from its directory.
        #[arg(long, short, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
        /// Print each target's cursor and the rows after it.
        #[arg(long)]
        status: bool,
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
    fn resolve(&self) -> Result<(PathBuf, String), CliError> {
        if let Some(dir) = &self.dir {
            let prefix = self.prefix.clone().unwrap_or_else(|| "readings".into());
            return Ok((dir.clone(), prefix));
        }
        let c = Config::load(&self.config).map_err(|error| CliError::Config {
            error,
            hint: Some("pass --dir DIR, or --config FILE naming the agent's configuration"),
        })?;
        Ok((c.output.dir, self.prefix.clone().unwrap_or(c.output.prefix)))
    }
}

#[derive(clap::Args)]
struct ReplayArgs {
    #[command(flatten)]
    files: Files,
    /// Rows at or after this time: RFC 3339 with `Z` or an offset (2026-11-24T10:00:00Z,
    /// 2026-11-24T11:00:00+01:00), a date (2026-11-24 = midnight UTC) or an age (2h, 7days: that long ago);
    /// a time without an offset is refused.
    #[arg(long, value_parser = replay::parse_when, value_name = "T")]
    since: Option<SystemTime>,
    /// Rows before this time; written as for --since.
    #[arg(long, value_parser = replay::parse_when, value_name = "T")]
    until: Option<SystemTime>,
    /// Only this group; repeat for several. A group no row read has is an error that names the
    /// groups found.
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// Output format [default: csv; influx for a URL, which takes nothing else].
    #[arg(long, value_enum)]
    format: Option<replay::Format>,
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
    /// A file must be outside the data directory and new (see --force, --append); it is written
    /// under a temporary name and renamed when the replay is complete.
    #[arg(long, short, default_value = "-", value_name = "-|PATH|URL")]
    output: String,
    /// Replace an existing --output file (once the replay is complete).
    #[arg(long, conflicts_with = "append")]
    force: bool,
    /// Add the rows after an existing --output file's own (a CSV replay adds no second header,
    /// and appends only to a file that starts with its header).
    #[arg(long)]
    append: bool,
    /// Rows per HTTP batch at most.
    #[arg(long, default_value_t = 5000, value_name = "N")]
    batch_rows: u64,
    /// Bytes per HTTP batch at most.
    #[arg(long, value_parser = parse_size, default_value = "1MiB", value_name = "SIZE")]
    batch_size: u64,
    /// HTTP: how long one request may wait for its acknowledgement.
    #[arg(long, value_parser = parse_duration, default_value = "30s", value_name = "DURATION")]
    timeout: Duration,
    /// HTTP: sends of one batch at most before the replay gives up.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..), value_name = "N")]
    attempts: u32,
    /// HTTP: give a batch up this long after its first send (attempts and pauses together).
    #[arg(long, value_parser = parse_duration, default_value = "5m", value_name = "DURATION")]
    give_up_after: Duration,
    /// HTTP: after the last batch, ask the engine (InfluxDB or VictoriaMetrics) what it stored
    /// of the replayed range and compare with what was sent; exit 1 with figures when they differ.
    #[arg(long)]
    verify: bool,
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
    /// Keep printing rows as they are written, across rotations. On a directory that is empty or
    /// not there yet, wait for the agent's first file (saying so on stderr).
    #[arg(short, long)]
    follow: bool,
    /// Only this group; repeat for several. A group no row read has is an error that names the
    /// groups found.
    #[arg(long = "group", value_name = "NAME")]
    groups: Vec<String>,
    /// Only rows at or after this time (the last --lines of them); written as for `replay --since`:
    /// 2026-11-24T10:00:00Z, 2026-11-24T11:00:00+01:00, 2026-11-24 (midnight UTC) or 2h.
    #[arg(long, value_parser = replay::parse_when, value_name = "T")]
    since: Option<SystemTime>,
}

fn parse_speed(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if x > 0.0 && x.is_finite() => Ok(x),
        _ => Err(format!(
            "`{s}` is not a positive number (1 = real time, 60 = sixty times faster)"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err(format!(
            "`{s}` is not a positive duration such as 500ms, 30s or 5m"
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

/// Why a command failed: what goes to stderr, and the exit code.
#[derive(Debug)]
enum CliError {
    /// Bad usage or a configuration the agent refused (exit 2).
    Usage(String),
    /// The command failed while running (exit 1).
    Failed(String),
    /// Stopped by a signal (exit 128 + its number, as a shell shows it).
    Interrupted { message: String, code: u8 },
    /// A configuration that cannot be loaded (exit 2): its problems as they
    /// are (each names file, line and key), then what to try.
    Config {
        error: ConfigError,
        hint: Option<&'static str>,
    },
}

impl CliError {
    fn usage(e: impl fmt::Display) -> CliError {
        CliError::Usage(e.to_string())
    }

    fn failed(e: impl fmt::Display) -> CliError {
        CliError::Failed(e.to_string())
    }

    fn code(&self) -> u8 {
        match self {
            CliError::Failed(_) => 1,
            CliError::Interrupted { code, .. } => *code,
            CliError::Usage(_) | CliError::Config { .. } => 2,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Usage(m) | CliError::Failed(m) => write!(f, "error: {m}"),
            CliError::Interrupted { message, .. } => write!(f, "{message}"),
            CliError::Config { error, hint } => {
                write!(f, "{error}")?;
                match hint {
                    Some(hint) => write!(f, "\nhint: {hint}"),
                    None => Ok(()),
                }
            }
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_level);
    let runtime = match runtime_for(&cli.command) {
        Ok(r) => r,
        Err(e) => return exit(Err(e)),
    };
    // The message goes out before the runtime is dropped (which waits for
    // its blocking threads).
    exit(runtime.block_on(run(cli)))
}

/// The one place where an outcome becomes a message and an exit code.
fn exit(outcome: Result<(), CliError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(e.code())
        }
    }
}

/// A runtime sized for `command`.
fn runtime_for(command: &Command) -> Result<tokio::runtime::Runtime, CliError> {
    // Replay does its heavy work on the blocking pool (reading, encoding,
    // writing); its one async task hands blocks between them, and with two
    // workers it moved between them and woke the idle one, a wake-up per
    // block: with one worker a csv replay of 1 GiB ran at 0.73-0.83 of
    // `cat` instead of 0.60-0.75 (four interleaved runs) and influx --since
    // at 0.24 instead of 0.22 (a current-thread runtime: 0.70 for csv).
    //
    // `run` polls on one worker too. Its work is I/O-bound (10,000 sensors
    // take about a quarter of one core), and with a second worker each
    // finished request could wake the other thread and move tasks between
    // them; each worker also gets its own glibc malloc arena, which keeps
    // the memory it freed (the config's parse, connection buffers) apart
    // from the other's. Files are written and compressed on the blocking
    // pool, so a rotation does not hold up polling.
    let workers = match command {
        Command::Replay(_) | Command::Run { .. } => 1,
        _ => 2,
    };
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(4)
        .enable_all()
        .build()
        .map_err(|e| CliError::failed(format!("cannot start the async runtime: {e}")))
}

/// Run the command of `cli`.
async fn run(cli: Cli) -> Result<(), CliError> {
    // The work runs in a spawned task, on the worker threads: driven from
    // `block_on` it would sit on the main thread and every finished request
    // would have to wake it (measured: ~13% more CPU per cycle).
    let work = tokio::spawn(async move {
        match cli.command {
            Command::Check { config, quiet } => check(&config, quiet),
            Command::Forward { config, status } => forward_status(&config, status),
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
    work.await.unwrap_or_else(|e| Err(CliError::failed(e)))
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

fn load(path: &Path) -> Result<Config, CliError> {
    let config = Config::load_to_run(path).map_err(|error| {
        let hint = (path == Path::new(DEFAULT_CONFIG) && !path.exists()).then_some(
            "pass --config FILE; try the demo with `edge-agent run --config agent.yaml --simulate`",
        );
        CliError::Config { error, hint }
    })?;
    config.log_warnings();
    Ok(config)
}

fn check(path: &Path, quiet: bool) -> Result<(), CliError> {
    let config = load(path)?;
    // What `run` would fail on at start: a CA bundle missing for https
    // sensors, an unreadable `ca_file`.
    poll::Clients::build(&config).map_err(CliError::failed)?;
    for target in &config.forward {
        edge_agent::forward::client(target).map_err(CliError::failed)?;
    }
    if !quiet {
        print!("{}", plan::describe(&config));
    }
    Ok(())
}

fn forward_status(path: &Path, status: bool) -> Result<(), CliError> {
    if !status {
        return Err(CliError::usage(
            "forwarding runs inside `edge-agent run` (the config's forward: section); \
             `edge-agent forward --status` shows where each target stands",
        ));
    }
    let config = load(path)?;
    let standings = edge_agent::forward::status::standings(&config);
    print!("{}", edge_agent::forward::status::render(&standings));
    Ok(())
}

fn listen_for_signals() -> Result<tokio::sync::mpsc::Receiver<shutdown::Control>, CliError> {
    shutdown::listen().map_err(|e| CliError::failed(format!("cannot install signal handlers: {e}")))
}

async fn run_agent(path: &Path, with_simulator: bool) -> Result<(), CliError> {
    // Before the config's open-file warning is worked out against it.
    rlimit::raise_open_files();
    let config = load(path)?;
    if with_simulator {
        simulate::serve_site(&config)
            .await
            .map_err(CliError::usage)?;
    }
    let control = listen_for_signals()?;
    match run::run(config, path.to_path_buf(), control, schedule::Clock::System).await {
        Ok(_) => Ok(()),
        Err(e @ run::RunError::Config(_)) => Err(CliError::usage(e)),
        Err(e) => Err(CliError::failed(e)),
    }
}

async fn serve_simulator(
    listen: &[SocketAddr],
    latency: Duration,
    fail_rate: f64,
) -> Result<(), CliError> {
    let behaviour = simulate::Behaviour { latency, fail_rate };
    let bound = simulate::start(listen, behaviour)
        .await
        .map_err(CliError::failed)?;
    for a in &bound {
        tracing::info!("serving simulated sensors on http://{a}/json/ID, /prometheus/ID, /text/ID");
    }
    let mut control = listen_for_signals()?;
    while let Some(c) = control.recv().await {
        if c == shutdown::Control::Shutdown {
            break;
        }
    }
    Ok(())
}

async fn replay_files(args: ReplayArgs) -> Result<(), CliError> {
    let (dir, prefix) = args.files.resolve()?;
    let destination = args
        .output
        .parse::<replay::Destination>()
        .map_err(CliError::usage)?;
    let format = destination.format(args.format).map_err(CliError::usage)?;
    let opts = replay::Options {
        dir,
        prefix,
        since: args.since,
        until: args.until,
        groups: args.groups,
        format,
        measurement: args.measurement,
        speed: args.speed,
        chunk_size: args.chunk_size as usize,
    };
    opts.check_range().map_err(CliError::usage)?;
    // Nothing to read is said before a file is made.
    replay::files_of(&opts.dir, &opts.prefix).map_err(CliError::failed)?;
    let batches = replay::Batches {
        rows: args.batch_rows,
        bytes: args.batch_size as usize,
    };
    let patience = replay::Patience {
        timeout: args.timeout,
        attempts: args.attempts,
        give_up_after: args.give_up_after,
    };
    let existing = match (args.force, args.append) {
        (true, _) => replay::Existing::Replace,
        (_, true) => replay::Existing::Append,
        _ => replay::Existing::Refuse,
    };
    if existing != replay::Existing::Refuse && !matches!(destination, replay::Destination::File(_))
    {
        return Err(CliError::usage(
            "--force and --append are for an --output file, not stdout or a URL",
        ));
    }
    // A file is written under a temporary name until the replay is complete.
    let (mut sink, file) = match &destination {
        replay::Destination::File(path) => {
            let file = replay::OutputFile::create(path, &opts.dir, existing, opts.format)
                .map_err(CliError::usage)?;
            (file.sink().map_err(CliError::failed)?, Some(file))
        }
        other => (
            other
                .open(opts.format, batches, patience)
                .map_err(CliError::usage)?,
            None,
        ),
    };
    if args.verify {
        let replay::Sink::Http(pusher) = &mut sink else {
            return Err(CliError::usage(
                "--verify asks the engine what it stored: it needs --output URL (InfluxDB or VictoriaMetrics)",
            ));
        };
        pusher.begin_verify().await.map_err(CliError::usage)?;
    }
    let outcome = match &file {
        // Interrupted, the replay is dropped and so is the file, which
        // removes its temporary name.
        Some(file) => {
            let stop = stop_signal().map_err(CliError::failed)?;
            tokio::select! {
                outcome = replay::replay(&opts, &mut sink) => outcome,
                signal = stop => {
                    let temp = file.temp().map(|t| format!(" (its partial copy {} is removed)", t.display()));
                    return Err(CliError::Interrupted {
                        message: format!(
                            "{signal}: replay stopped; {} is as it was{}",
                            args.output,
                            temp.unwrap_or_default()
                        ),
                        code: if signal == "SIGINT" { 130 } else { 143 },
                    });
                }
            }
        }
        None => replay::replay(&opts, &mut sink).await,
    };
    match outcome {
        Ok(summary) => {
            if let Some(file) = file {
                file.commit().map_err(CliError::failed)?;
            }
            eprintln!("{}", replay::Report::new(&summary, &sink));
            if let (true, replay::Sink::Http(pusher)) = (args.verify, &mut sink) {
                let verdict = pusher
                    .verify(&opts.measurement)
                    .await
                    .map_err(CliError::failed)?;
                if !verdict.complete() {
                    return Err(CliError::failed(verdict));
                }
                eprintln!("{verdict}");
            }
            if args.strict && summary.skipped > 0 {
                let skipped = summary.skipped;
                return Err(CliError::failed(format!(
                    "--strict: {skipped} line(s) were skipped"
                )));
            }
            Ok(())
        }
        // The reader went away (`| head`): not an error, as for `tail`.
        Err(replay::ReplayError::Output(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failed(e)),
    }
}

/// The first SIGINT or SIGTERM, by name; the handlers are installed now.
fn stop_signal() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    })
}

async fn tail_files(args: TailArgs) -> Result<(), CliError> {
    let (dir, prefix) = args.files.resolve()?;
    match replay::files_of(&dir, &prefix) {
        Ok(()) => {}
        // Following a directory the agent has not written yet (it creates
        // it and its first file when it starts) is waiting, not an error;
        // a wrong prefix (other prefixes' files are there) is.
        Err(e) if args.follow && e.not_written_yet().is_some() => {
            let state = e.not_written_yet().unwrap_or_default();
            eprintln!(
                "{} {state} yet: waiting for the agent to write {} (Ctrl-C to stop)",
                dir.display(),
                dir.join(format!("{prefix}.csv")).display()
            );
        }
        Err(e) => return Err(CliError::failed(e)),
    }
    let opts = tail::TailOptions {
        dir,
        prefix,
        lines: args.lines,
        follow: args.follow,
        groups: args.groups,
        since: args.since,
        poll: Duration::from_millis(250),
    };
    let mut out = tokio::io::stdout();
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match tail::tail(&opts, &mut out, stop).await {
        Ok(()) => Ok(()),
        // The reader went away (`| head`): not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(CliError::failed(e)),
    }
}
