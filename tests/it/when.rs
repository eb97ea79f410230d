//! One rule for a point in time on the command line (`replay --since`,
//! `--until`, `tail --since`): RFC 3339 with `Z` or any offset, a date alone (midnight
//! UTC), an age; a time without an offset is refused with both forms shown.

use crate::support;
use support::edge_agent;

use edge_agent::history::HEADER;

fn row(t: &str) -> String {
    format!("2026-11-24T{t}.000Z,a,1.000,1.000,1.000,celsius,1,0\n")
}

fn replay(dir: &str, since: &str, until: &str) -> (i32, String, String) {
    edge_agent(&["replay", "--dir", dir, "--since", since, "--until", until])
}

#[test]
fn offsets_dates_and_ages_mean_the_same_moments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    std::fs::write(
        tmp.path().join("readings-20261123T230000Z.csv"),
        format!(
            "{HEADER}{}{}",
            row("23:00:00").replace("-24T", "-23T"),
            row("00:00:00")
        ),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("readings.csv"),
        format!(
            "{HEADER}{}{}{}",
            row("09:59:59"),
            row("10:00:00"),
            row("10:30:00")
        ),
    )
    .unwrap();
    let want = format!("{HEADER}{}", row("10:00:00"));
    for (since, until) in [
        ("2026-11-24T10:00:00Z", "2026-11-24T10:30:00Z"),
        ("2026-11-24T11:00:00+01:00", "2026-11-24T05:30:00-05:00"),
        ("2026-11-24 10:00:00z", "2026-11-24T10:30:00+00:00"),
    ] {
        let (code, out, err) = replay(dir, since, until);
        assert_eq!(code, 0, "{since} {until}: {err}");
        assert_eq!(out, want, "{since} {until}");
    }
    // A date alone is midnight UTC.
    let (code, out, err) = replay(dir, "2026-11-24", "2026-11-24T09:00:00Z");
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, format!("{HEADER}{}", row("00:00:00")));
    // Ages: everything recorded is more than a day old... or in the future
    // of a wrong clock; `--until 0s` is now.
    let (code, out, err) = replay(dir, "2026-11-24T10:00:00+00:00", "0s");
    assert_eq!(code, 0, "{err}");
    assert!(out.ends_with(&row("10:30:00")) || out.is_empty(), "{out}");
}

#[test]
fn a_time_without_an_offset_is_refused_with_examples() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    for flag in ["--since", "--until"] {
        let (code, out, err) = edge_agent(&["replay", "--dir", dir, flag, "2026-11-24T10:00:00"]);
        assert_eq!(code, 2, "{err}");
        assert_eq!(out, "");
        assert!(
            err.contains(
                "`2026-11-24T10:00:00` has no UTC offset, so it could be any time zone's: write \
                 it in UTC with `Z` (2026-11-24T10:00:00Z) or with its offset \
                 (2026-11-24T10:00:00+01:00)"
            ),
            "{err}"
        );
    }
}

#[test]
fn tail_since_reads_times_by_the_same_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().unwrap();
    std::fs::write(
        tmp.path().join("readings-20261124T095959Z.csv"),
        format!("{HEADER}{}{}", row("09:59:59"), row("10:00:00")),
    )
    .unwrap();
    std::fs::write(
        tmp.path().join("readings.csv"),
        format!("{HEADER}{}", row("10:30:00")),
    )
    .unwrap();
    for since in [
        "2026-11-24T10:00:00Z",
        "2026-11-24T11:00:00+01:00",
        "2026-11-24T04:00:00-06:00",
    ] {
        let (code, out, err) = edge_agent(&["tail", "--dir", dir, "--since", since]);
        assert_eq!(code, 0, "{since}: {err}");
        assert_eq!(
            out,
            format!("{HEADER}{}{}", row("10:00:00"), row("10:30:00")),
            "{since}"
        );
    }
    let (code, out, err) = edge_agent(&["tail", "--dir", dir, "--since", "2026-11-24"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 4, "{out}");
    let (code, _, err) = edge_agent(&["tail", "--dir", dir, "--since", "2026-11-24T10:00:00"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("has no UTC offset"), "{err}");
}
