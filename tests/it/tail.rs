//! `edge-agent tail`: the last rows reach into rotated files, and `-f`
//! follows the live file across rotations while the real agent writes,
//! printing every row once, whole, under a single header.

use crate::support;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_agent::history::HEADER;
use support::{Agent, Reply, TestServer};

fn row(t: &str, g: &str) -> String {
    format!("2026-11-24T10:{t}.000Z,{g},1.000,1.000,1.000,celsius,1,0\n")
}

#[test]
fn last_rows_reach_into_rotated_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("readings-20261124T100000Z.csv"),
        format!(
            "{HEADER}{}{}{}",
            row("00:00", "a"),
            row("00:10", "b"),
            row("00:20", "a")
        ),
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("{HEADER}{}{}", row("01:00", "a"), row("01:10", "b")).as_bytes())
        .unwrap();
    std::fs::write(
        d.join("readings-20261124T100100Z.csv.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    std::fs::write(
        d.join("readings.csv"),
        format!("{HEADER}{}2026-11-24T10:03", row("02:00", "a")),
    )
    .unwrap();

    let tail = |args: &[&str]| {
        let out = Command::new(support::binary())
            .arg("tail")
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let dir_arg = d.to_str().unwrap();
    assert_eq!(
        tail(&["--dir", dir_arg, "-n", "4"]),
        format!(
            "{HEADER}{}{}{}{}",
            row("00:20", "a"),
            row("01:00", "a"),
            row("01:10", "b"),
            row("02:00", "a")
        )
    );
    assert_eq!(
        tail(&["--dir", dir_arg, "-n", "3", "--group", "a"]),
        format!(
            "{HEADER}{}{}{}",
            row("00:20", "a"),
            row("01:00", "a"),
            row("02:00", "a")
        )
    );
    assert_eq!(
        tail(&["--dir", dir_arg, "-n", "1"]),
        format!("{HEADER}{}", row("02:00", "a"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_prints_every_row_once_across_rotations() {
    let server = TestServer::start(&["127.0.0.1"]).await;
    server.route("/v", Reply::ok("20.5"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = format!(
        "interval: 200ms\ntimeout: 100ms\noutput:\n  dir: {}\n  rotate: {{ max_size: 400 }}\n  keep: 1000\n  fsync: always\ngroups:\n  - name: a\n    unit: celsius\n    sensors: [{{ id: a, url: '{url}', format: text }}]\n  - name: b\n    unit: celsius\n    sensors: [{{ id: b, url: '{url}', format: text }}]\n",
        data.display(),
        url = server.url(0, "/v")
    );
    let config_path = dir.path().join("agent.yaml");
    std::fs::write(&config_path, config).unwrap();
    let mut agent = Agent::start(
        &["run", "--config", config_path.to_str().unwrap()],
        dir.path(),
    );
    let active = data.join("readings.csv");
    support::wait_rows(&active, 2, Duration::from_secs(20), |_| true).await;

    let mut tail = Command::new(support::binary())
        .args(["tail", "-f", "-n", "3", "--dir", data.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // What tail prints, collected as it comes.
    let (printed, reader) = support::collect_stdout(&mut tail);
    // Let at least three rotations happen while tail follows.
    let rotated = || {
        support::file_names(&data)
            .iter()
            .filter(|n| *n != "readings.csv")
            .count()
    };
    let before = rotated();
    support::wait_until(Duration::from_secs(30), "three rotations", || {
        rotated() >= before + 3
    })
    .await;
    agent.signal(libc::SIGTERM);
    assert!(agent.wait(Duration::from_secs(20)).success());

    // Everything the agent wrote, in file order.
    let mut files: Vec<_> = support::file_names(&data)
        .iter()
        .map(|n| data.join(n))
        .collect();
    files.sort();
    // `readings-<time>.csv` sorts before `readings.csv`: the active file comes last.
    assert!(files.last().unwrap().ends_with("readings.csv"));
    let all: Vec<String> = files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .unwrap()
                .lines()
                .skip(1)
                .map(|l| format!("{l}\n"))
                .collect::<Vec<_>>()
        })
        .collect();
    // Tail has printed the last row written, then stop it like a person would.
    let last = all.last().unwrap().clone();
    support::wait_until(
        Duration::from_secs(20),
        "tail to print the last row",
        || printed.lock().unwrap().ends_with(last.as_bytes()),
    )
    .await;
    unsafe { libc::kill(tail.id() as libc::pid_t, libc::SIGINT) };
    assert!(tail.wait().unwrap().success());
    reader.join().unwrap();
    let printed = String::from_utf8(printed.lock().unwrap().clone()).unwrap();

    let mut lines: Vec<String> = printed.lines().map(|l| format!("{l}\n")).collect();
    assert_eq!(lines.remove(0), HEADER, "one header first");
    assert!(
        !lines.contains(&HEADER.to_string()),
        "no second header:\n{printed}"
    );
    assert!(lines.len() >= 10, "followed rows:\n{printed}");
    let k = all
        .iter()
        .position(|l| *l == lines[0])
        .expect("first printed row was written");
    assert_eq!(
        lines[..],
        all[k..],
        "tail printed exactly the rows written, in order, once each"
    );
}
