//! Crash safety: the real binary writing fast (short interval, several
//! groups, a tiny `max_size` so it rotates every few cycles, gzip on in some
//! runs) is killed with SIGKILL at random moments, hundreds of times, and
//! restarted each time. Then every file is checked.
//!
//! What "durable" means here: SIGKILL keeps the page cache, so whatever a
//! `read` saw in the files is what a later start finds. The test reads every
//! complete row just before each kill; each of them must still be there
//! after all restarts (repair must never cut a complete row, recovery of
//! interrupted compression must never lose a file). With `fsync: always`
//! the writer fsyncs before it takes the next batch, so the rows it has
//! written are a subset of what the test read. A power cut (which loses the
//! page cache) is not simulated.
//!
//! The seed of the random delays is printed; `CRASH_SEED=N` replays a run,
//! `CRASH_KILLS=N` changes the number of kills (default 220).

use crate::support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use edge_agent::history::index::{self, Index};
use edge_agent::history::order::Order;
use edge_agent::history::{HEADER, names};
use support::{Agent, Reply, TestServer, read_text};

const GROUPS: usize = 5;

/// Start-up clean-ups the agent logs, counted to show the kills hit
/// interesting moments.
const LEFTOVERS: [(&str, &str); 3] = [
    ("torn tail cut", "left by an interrupted write"),
    (".gz.tmp removed", "removing unfinished compression"),
    (
        "plain copy of a .gz removed",
        "its compressed copy is complete",
    ),
];

/// splitmix64: enough randomness for delays, reproducible from the seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config(server: &TestServer, data: &Path, gzip: bool, fsync: &str) -> String {
    let mut text = format!(
        "interval: 40ms\ntimeout: 30ms\nlimit: 20\nlimit_per_host: 20\n\
         output:\n  dir: {}\n  rotate:\n    max_size: 700\n  keep: 100000\n  \
         compress: {}\n  fsync: {fsync}\ngroups:\n",
        data.display(),
        if gzip { "gzip" } else { "none" }
    );
    for g in 0..GROUPS {
        text += &format!(
            "  - name: g{g}\n    unit: celsius\n    sensors:\n      \
             - {{ id: s{g}, url: '{}', format: text }}\n",
            server.url(0, &format!("/v{g}"))
        );
    }
    text
}

/// Complete data lines of `text` (after the header), ignoring a partial
/// last line.
fn complete_rows(text: &str) -> impl Iterator<Item = &str> {
    let end = text.rfind('\n').map_or(0, |i| i + 1);
    text[..end]
        .lines()
        .filter(|l| !l.is_empty() && *l != HEADER.trim_end())
}

/// What the test has seen in the files while the agent ran. Rotated files
/// never change once they have their name, so each is read once.
#[derive(Default)]
struct Seen {
    rows: HashSet<String>,
    /// Stems of rotated files already read.
    stems: HashSet<String>,
}

impl Seen {
    fn snapshot(&mut self, data: &Path) {
        let Ok(entries) = std::fs::read_dir(data) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().into_string().unwrap();
            let rotated = names::parse_rotated("readings", &name);
            let stem = rotated.as_ref().map(|r| r.stem("readings"));
            if name != "readings.csv" && stem.as_ref().is_none_or(|s| self.stems.contains(s)) {
                continue; // .gz.tmp, or a rotated file already read
            }
            // A file may be renamed or removed (compressed) meanwhile.
            let text = match std::fs::read(entry.path()) {
                Ok(bytes) if rotated.as_ref().is_some_and(|r| r.gzip) => {
                    let mut s = String::new();
                    use std::io::Read;
                    flate2::read::GzDecoder::new(&bytes[..])
                        .read_to_string(&mut s)
                        .expect("a .gz file is complete once it has its name");
                    s
                }
                Ok(bytes) => String::from_utf8(bytes).expect("files are UTF-8"),
                Err(_) => continue,
            };
            self.rows.extend(complete_rows(&text).map(str::to_string));
            if let Some(s) = stem {
                self.stems.insert(s);
            }
        }
    }
}

/// Check every file of `data` and return all rows in file order.
fn check_files(data: &Path) -> Vec<String> {
    let mut rotated = Vec::new();
    let mut has_active = false;
    let mut indexes = Vec::new();
    for name in support::all_names(data) {
        if let Some(of) = index::data_name(&name) {
            indexes.push(of.to_string());
        } else if support::is_journal(&name) {
            // The order journal: checked below.
        } else if name == edge_agent::store::LOCK_FILE {
            // The output directory's lock: kept for good.
        } else if name == "readings.csv" {
            has_active = true;
        } else if let Some(r) = names::parse_rotated("readings", &name) {
            rotated.push((r, name));
        } else {
            panic!("unexpected file {name} left in {}", data.display());
        }
    }
    rotated.sort();
    let stems: HashSet<String> = rotated.iter().map(|(r, _)| r.stem("readings")).collect();
    assert_eq!(
        stems.len(),
        rotated.len(),
        "a file exists plain and gzipped"
    );
    // The order journal, recorded before each rotation's rename, lists
    // every rotated file whatever the kills interrupted, and (the clock
    // being right) in the order of their names.
    let journal = Order::load(data, "readings").unwrap();
    let mut written = rotated.clone();
    journal.sort("readings", &mut written);
    assert_eq!(written, rotated, "order of writing is not the names' order");
    for (r, name) in &rotated {
        assert!(
            journal.key("readings", r).0.is_some(),
            "{name} is missing from the order journal"
        );
    }
    let mut order: Vec<String> = rotated.into_iter().map(|(_, n)| n).collect();
    assert!(has_active, "no active file");
    order.push("readings.csv".into());

    // No index is left without its file.
    for of in &indexes {
        let stem = of.strip_suffix(".csv").unwrap_or(of);
        assert!(
            order
                .iter()
                .any(|n| n.strip_suffix(".gz").unwrap_or(n).strip_suffix(".csv") == Some(stem)),
            "index of {of} left without its file"
        );
    }
    let mut indexed = 0;
    let mut all = Vec::new();
    let mut last: HashMap<String, SystemTime> = HashMap::new();
    for name in &order {
        let text = read_text(&data.join(name));
        assert!(
            text.starts_with(HEADER),
            "{name} does not start with the header: {:?}",
            &text[..text.len().min(60)]
        );
        assert!(text.ends_with('\n'), "{name} ends mid-line");
        // Whatever the kills interrupted, every block the index lists is
        // the file's bytes (so replay may pass it through unchecked).
        let plain = name.strip_suffix(".gz").unwrap_or(name);
        if let Some(ix) = Index::load(&data.join(name)) {
            assert!(indexes.iter().any(|i| i == plain));
            for e in &ix.entries {
                let bytes = text
                    .as_bytes()
                    .get(e.offset as usize..(e.offset + e.len) as usize);
                let bytes =
                    bytes.unwrap_or_else(|| panic!("{name}: index block {e:?} past the end"));
                assert_eq!(
                    crc32(bytes),
                    e.crc,
                    "{name}: index block {e:?} does not match"
                );
                assert_eq!(bytes.iter().filter(|b| **b == b'\n').count() as u64, e.rows);
            }
            indexed += usize::from(ix.covered_end() == text.len() as u64);
        }
        for (n, line) in text.lines().enumerate().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let at = format!("{name}:{}: {line}", n + 1);
            assert_eq!(f.len(), 8, "{at}");
            let time = humantime::parse_rfc3339(f[0]).unwrap_or_else(|_| panic!("{at}"));
            assert!(f[1].starts_with('g'), "{at}");
            assert_eq!(f[5], "celsius", "{at}");
            // A sensor may miss a cycle on a busy machine: then the row is empty.
            match (f[6], f[7]) {
                ("1", "0") => {
                    for v in &f[2..5] {
                        v.parse::<f64>().unwrap_or_else(|_| panic!("{at}"));
                    }
                }
                ("0", "1") => assert_eq!(&f[2..5], ["", "", ""], "{at}"),
                _ => panic!("{at}: bad counts"),
            }
            if let Some(prev) = last.insert(f[1].to_string(), time) {
                assert!(
                    time > prev,
                    "{at}: duplicate or out of order in group {} (previous {})",
                    f[1],
                    humantime::format_rfc3339_millis(prev)
                );
            }
            all.push(line.to_string());
        }
    }
    println!("{indexed} of {} files indexed to their end", order.len());
    all
}

/// CRC-32 as gzip (and the index) computes it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut h = flate2::Crc::new();
    h.update(bytes);
    h.sum()
}

#[test]
fn sigkill_at_random_moments_loses_tears_and_repeats_nothing() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let kills: usize = std::env::var("CRASH_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(220);
    println!("crash test seed: {seed} (CRASH_SEED={seed} replays it), {kills} kills");
    let mut rng = Rng(seed);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(TestServer::start(&["127.0.0.1"]));
    for g in 0..GROUPS {
        server.route(&format!("/v{g}"), Reply::ok(format!("{}.5", 10 + g)));
    }
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config_path = dir.path().join("agent.yaml");
    let args = ["run", "--config", config_path.to_str().unwrap()];

    let started = Instant::now();
    let mut seen = Seen::default();
    let mut modes: BTreeMap<String, usize> = BTreeMap::new();
    let mut repairs: BTreeMap<&str, usize> = BTreeMap::new();
    for kill in 0..kills {
        let gzip = rng.below(2) == 0;
        let fsync = ["always", "rotate", "100ms"][rng.below(3) as usize];
        *modes
            .entry(format!("gzip={gzip} fsync={fsync}"))
            .or_default() += 1;
        std::fs::write(&config_path, config(&server, &data, gzip, fsync)).unwrap();
        let mut agent = Agent::start(&args, dir.path());
        // The behaviour under test: a kill at a random moment of the
        // agent's life, from its start-up repair to writing and rotating.
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        if let Some(status) = agent.child.try_wait().unwrap() {
            panic!(
                "kill {kill} (seed {seed}): the agent exited by itself with {status}:\n{}",
                agent.log_text()
            );
        }
        seen.snapshot(&data);
        agent.signal(libc::SIGKILL);
        agent.child.wait().unwrap();
        let log = agent.log_text();
        assert!(!log.contains("panicked"), "kill {kill}: {log}");
        for (what, needle) in LEFTOVERS {
            *repairs.entry(what).or_default() += log.matches(needle).count();
        }
    }
    let killing = started.elapsed();

    // One clean start and stop: repair, finish compression, then check.
    std::fs::write(&config_path, config(&server, &data, true, "rotate")).unwrap();
    let mut agent = Agent::start(&args, dir.path());
    // Started once it says it polls: repair is done and SIGTERM is handled.
    rt.block_on(agent.wait_log(Duration::from_secs(20), |l| l.contains("polling every")));
    agent.signal(libc::SIGTERM);
    let status = agent.wait(Duration::from_secs(20));
    assert!(status.success(), "{}", agent.log_text());

    let rows = check_files(&data);
    let all: HashSet<&str> = rows.iter().map(String::as_str).collect();
    let lost: Vec<&String> = seen
        .rows
        .iter()
        .filter(|r| !all.contains(r.as_str()))
        .collect();
    assert!(
        lost.is_empty(),
        "seed {seed}: {} row(s) seen before a kill are gone, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let files = support::file_names(&data).len();
    println!(
        "{kills} kills in {killing:.1?}; {} rows in {files} files; {} rows seen before kills; \
         modes {modes:?}; clean-ups at start {repairs:?}",
        rows.len(),
        seen.rows.len()
    );
    assert!(
        seen.rows.len() > kills,
        "too few rows to prove anything: the agent hardly wrote"
    );
}
