//! No (time, group) written twice, whatever the wall clock does.
//!
//! Why: a row's time is its window's start on the wall clock. When the
//! clock is set back (NTP correcting a board without a real-time clock, by
//! hand), the windows of the repeated period come round again and the
//! agent would write a second row for each (time, group) already in the
//! files; every reader would then count that period twice.
//!
//! The rule: a row whose (time, group) was already written is skipped,
//! and counted (`rows_repeated`). The first skip of an episode is logged
//! with the size of the step, and the end of the episode with the number
//! of rows skipped. Only times already written are skipped: after a
//! forward step that is later corrected, the rows of real time go on being
//! written; when real time reaches the times written under the wrong clock,
//! those (and only those) are skipped, so each (time, group) is in the
//! files once.
//!
//! How, cheaply: per group, the times written form a few *runs*, each
//! `first, first + step, ..., last` (a group's rows come one window apart).
//! A row extends the run it continues, or starts a new one (after a gap: a
//! skipped tick, a restart, a clock step). So membership is exact (a time
//! in a gap of the history is not "written"), and a row costs one hash
//! lookup of its group and a look at its group's runs, of which there are
//! one or two in normal running. At most [`MAX_RUNS`] are kept per group;
//! beyond, the run that ends earliest is forgotten.
//!
//! At start the runs are learned from the last [`LOAD_BUDGET`] bytes written:
//! the active file's tail and, if that is shorter, the tail of the newest
//! rotated file (in the order of writing, see [`crate::history::order`]),
//! so a restart during a repeated period does not write it twice either. A
//! step back further than that reaches, across a restart, is not caught.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::history::parse;
use crate::history::row::{Row, is_name};

/// Runs kept per group.
pub const MAX_RUNS: usize = 32;

/// Bytes of the newest rows read at start to learn the times written
/// (about 280,000 rows: minutes to days of history, by the number of groups).
pub const LOAD_BUDGET: u64 = 16 * 1024 * 1024;

/// Times `first, first + step, ..., last` (ms since 1970), all written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    first: u64,
    last: u64,
    /// 0 while the run holds one time.
    step: u64,
}

impl Run {
    fn holds(&self, t: u64) -> bool {
        t >= self.first && t <= self.last && (self.step == 0 || (t - self.first) % self.step == 0)
    }
}

/// The runs of one group.
#[derive(Debug, Default, Clone)]
struct Runs {
    runs: Vec<Run>,
    /// The run the last time written went into.
    current: Option<usize>,
}

impl Runs {
    /// Record `t` as written if it is new (true); false if it was written.
    fn admit(&mut self, t: u64) -> bool {
        if self.runs.iter().any(|r| r.holds(t)) {
            return false;
        }
        let i = match self
            .runs
            .iter()
            .rposition(|r| r.step > 0 && r.last + r.step == t)
        {
            Some(i) => i,
            None => match self.current {
                // The second time of a run sets its step.
                Some(i) if self.runs[i].step == 0 && self.runs[i].last < t => {
                    self.runs[i].step = t - self.runs[i].last;
                    i
                }
                _ => {
                    self.runs.push(Run {
                        first: t,
                        last: t,
                        step: 0,
                    });
                    self.runs.len() - 1
                }
            },
        };
        self.runs[i].last = t;
        self.current = Some(i);
        self.join_next(i);
        self.forget_oldest();
        true
    }

    /// Run `i` now ends one step before another run of the same step
    /// starts: one run.
    fn join_next(&mut self, i: usize) {
        let Run { last, step, .. } = self.runs[i];
        if step == 0 {
            return;
        }
        let next = self
            .runs
            .iter()
            .position(|r| r.first == last + step && (r.step == step || r.step == 0));
        if let Some(j) = next {
            self.runs[i].last = self.runs[j].last;
            self.runs.swap_remove(j);
            // swap_remove moved the last run into `j`.
            let moved = self.runs.len();
            let i = if i == moved { j } else { i };
            self.current = Some(i);
        }
    }

    /// Keep at most [`MAX_RUNS`]: forget the one that ends earliest (never
    /// the current one).
    fn forget_oldest(&mut self) {
        if self.runs.len() <= MAX_RUNS {
            return;
        }
        let current = self.current;
        let oldest = (0..self.runs.len())
            .filter(|i| Some(*i) != current)
            .min_by_key(|i| self.runs[*i].last)
            .expect("more than one run");
        self.runs.swap_remove(oldest);
        let moved = self.runs.len();
        if current == Some(moved) {
            self.current = Some(oldest);
        }
    }

    /// The last time written, and the step of its run.
    fn latest(&self) -> Option<(u64, u64)> {
        self.current.map(|i| (self.runs[i].last, self.runs[i].step))
    }
}

/// The (time, group) pairs written, as runs per group, and the episode of
/// skipped rows in progress.
#[derive(Debug, Default)]
pub struct Written {
    groups: HashMap<String, Runs>,
    /// Rows skipped since the episode began, if one is in progress.
    episode: Option<u64>,
}

impl Written {
    /// Drop the rows of `rows` whose (time, group) is already written and
    /// record the others as written (the writer writes them next; if it
    /// gives them up at shutdown, they are not in the files but nothing
    /// doubles). Returns how many were dropped; logs the start and the end
    /// of an episode.
    pub fn admit(&mut self, rows: &mut Vec<Row>) -> u64 {
        let mut skipped = 0u64;
        let mut first_skip = None;
        rows.retain(|row| {
            let t = millis(row.time);
            let runs = match self.groups.get_mut(row.group.as_str()) {
                Some(runs) => runs,
                None => self.groups.entry(row.group.clone()).or_default(),
            };
            let latest = runs.latest();
            if runs.admit(t) {
                return true;
            }
            skipped += 1;
            if first_skip.is_none() {
                first_skip = Some((row.group.clone(), row.time, latest));
            }
            false
        });
        match (self.episode.as_mut(), first_skip) {
            (None, Some((group, time, latest))) => {
                self.episode = Some(skipped);
                let at = humantime::format_rfc3339_millis(time);
                let how = match latest {
                    Some((last, step)) if last + step > millis(time) => format!(
                        "the clock went back by about {}",
                        humantime::format_duration(Duration::from_millis(
                            last + step - millis(time)
                        ))
                    ),
                    // The row follows the last one written: real time has
                    // reached times written earlier under a clock that was
                    // ahead.
                    _ => "the clock has reached times written while it was ahead".to_string(),
                };
                tracing::warn!(
                    "{how} (group {group}: a row for {at} is already in the files); rows for \
                     times already written are skipped, never written twice: {skipped} so far \
                     (rows_repeated)"
                );
            }
            (Some(n), Some(_)) => *n += skipped,
            (Some(_), None) => {
                let n = self.episode.take().unwrap_or_default();
                let from = rows
                    .iter()
                    .map(|r| r.time)
                    .min()
                    .map(|t| humantime::format_rfc3339_millis(t).to_string())
                    .unwrap_or_default();
                tracing::info!(
                    "rows are new again from {from}: {n} row(s) for times already in the files \
                     were skipped"
                );
            }
            (None, None) => {}
        }
        skipped
    }

    /// At shutdown: an episode still in progress is summed up.
    pub fn close(&mut self) {
        if let Some(n) = self.episode.take() {
            tracing::info!(
                "{n} row(s) for times already in the files were skipped, and the clock has not \
                 yet passed the last time written"
            );
        }
    }

    /// Learn the times written from the last [`LOAD_BUDGET`] bytes of the
    /// history: `newest_rotated`'s tail (if any, plain or `.gz`), then
    /// `active`'s. Damaged lines and the header are passed over.
    pub fn load(active: &Path, newest_rotated: Option<&Path>) -> io::Result<Written> {
        let mut written = Written::default();
        let active_len = match std::fs::metadata(active) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        let left = LOAD_BUDGET.saturating_sub(active_len);
        if let (Some(rotated), true) = (newest_rotated, left > 0) {
            written.read_tail(rotated, left)?;
        }
        if active_len > 0 {
            written.read_tail(active, LOAD_BUDGET)?;
        }
        Ok(written)
    }

    /// Feed the lines of about the last `budget` bytes of `path`.
    fn read_tail(&mut self, path: &Path, budget: u64) -> io::Result<()> {
        let mut file = match File::open(path) {
            Ok(f) => f,
            // Retention or an operator got there first.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = file.metadata()?.len();
        if path.extension().is_some_and(|e| e == "gz") {
            // The uncompressed length (mod 4 GiB) ends a gzip file.
            let mut isize = [0u8; 4];
            let full = if len >= 4 {
                file.seek(SeekFrom::Start(len - 4))?;
                file.read_exact(&mut isize)?;
                u64::from(u32::from_le_bytes(isize))
            } else {
                0
            };
            file.seek(SeekFrom::Start(0))?;
            let gz = flate2::read::GzDecoder::new(BufReader::new(file));
            self.read_lines(BufReader::new(gz), full.saturating_sub(budget))
        } else {
            let start = len.saturating_sub(budget);
            file.seek(SeekFrom::Start(start))?;
            self.read_lines(BufReader::new(file), u64::from(start > 0))
        }
    }

    /// Feed the lines of `reader` that start at or after byte `from` (a
    /// line cut by `from` is passed over).
    fn read_lines(&mut self, mut reader: impl BufRead, from: u64) -> io::Result<()> {
        let mut line = Vec::with_capacity(128);
        let mut at = 0u64;
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line)?;
            if n == 0 {
                return Ok(());
            }
            if at >= from {
                self.feed(&line);
            }
            at += n as u64;
        }
    }

    /// Record one line's (time, group) as written, if it is a row.
    fn feed(&mut self, line: &[u8]) {
        let mut fields = line.splitn(3, |b| *b == b',');
        let (Some(time), Some(group), Some(_)) = (fields.next(), fields.next(), fields.next())
        else {
            return;
        };
        let (Some(time), Ok(group)) = (parse::time(time), std::str::from_utf8(group)) else {
            return;
        };
        if !is_name(group) {
            return;
        }
        let runs = match self.groups.get_mut(group) {
            Some(runs) => runs,
            None => self.groups.entry(group.to_string()).or_default(),
        };
        runs.admit(millis(time));
    }
}

/// A time as ms since 1970, as the files hold it.
fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::row::Record;

    /// A row of `group` at `ms`; only time and group matter here.
    fn row(ms: u64, group: &str) -> Row {
        Row {
            time: UNIX_EPOCH + Duration::from_millis(ms),
            group: group.into(),
            ..Record::default().row
        }
    }

    /// Admit `times` one by one; the ones admitted.
    fn admit_all(runs: &mut Runs, times: impl IntoIterator<Item = u64>) -> Vec<u64> {
        times.into_iter().filter(|t| runs.admit(*t)).collect()
    }

    #[test]
    fn a_step_back_skips_exactly_the_times_written() {
        let mut runs = Runs::default();
        let first: Vec<u64> = (0..20).map(|i| 1000 + i * 5).collect();
        assert_eq!(admit_all(&mut runs, first.clone()), first);
        assert_eq!(runs.runs.len(), 1, "one run: {:?}", runs.runs);
        // Back by 30 (six windows) and on past the last time written.
        let again: Vec<u64> = (0..12).map(|i| 1070 + i * 5).collect();
        assert_eq!(
            admit_all(&mut runs, again),
            vec![1100, 1105, 1110, 1115, 1120, 1125]
        );
        assert_eq!(runs.runs.len(), 1, "{:?}", runs.runs);
    }

    #[test]
    fn a_forward_step_then_correction_skips_nothing_until_real_time_gets_there() {
        let mut runs = Runs::default();
        const DAY: u64 = 86_400_000;
        // Real time 0.., then a day ahead, then corrected.
        let real: Vec<u64> = (0..10).map(|i| i * 1000).collect();
        let ahead: Vec<u64> = (0..5).map(|i| DAY + 10_000 + i * 1000).collect();
        let corrected: Vec<u64> = (0..10).map(|i| 15_000 + i * 1000).collect();
        assert_eq!(admit_all(&mut runs, real.clone()), real);
        assert_eq!(admit_all(&mut runs, ahead.clone()), ahead);
        assert_eq!(admit_all(&mut runs, corrected.clone()), corrected);
        // A day later real time reaches the rows written ahead: only those
        // are skipped, and the rows after them are written.
        let later: Vec<u64> = (0..8).map(|i| DAY + 12_000 + i * 1000).collect();
        assert_eq!(
            admit_all(&mut runs, later),
            vec![
                DAY + 15_000,
                DAY + 16_000,
                DAY + 17_000,
                DAY + 18_000,
                DAY + 19_000
            ]
        );
    }

    #[test]
    fn gaps_in_the_history_are_not_written_times() {
        let mut runs = Runs::default();
        // A restart left a gap from 50 to 100.
        admit_all(&mut runs, [10, 20, 30, 40, 50, 100, 110, 120]);
        assert_eq!(
            admit_all(&mut runs, [60, 70, 80, 90, 100, 110]),
            vec![60, 70, 80, 90]
        );
        // The filled gap joined the runs again.
        assert_eq!(runs.runs.len(), 1, "{:?}", runs.runs);
        assert_eq!(
            runs.runs[0],
            Run {
                first: 10,
                last: 120,
                step: 10
            }
        );
        assert_eq!(admit_all(&mut runs, [130]), vec![130]);
    }

    #[test]
    fn runs_per_group_are_bounded() {
        let mut runs = Runs::default();
        // Every other window skipped: a run per row.
        for i in 0..200u64 {
            assert!(runs.admit(i * 1000 + (i % 2) * 7));
        }
        assert!(runs.runs.len() <= MAX_RUNS);
        // The newest are kept.
        assert!(!runs.admit(199 * 1000 + 7));
        assert!(!runs.admit(198 * 1000));
    }

    #[test]
    fn admit_filters_a_batch_per_group_and_counts() {
        let mut w = Written::default();
        let mut rows = vec![row(1000, "a"), row(1000, "b"), row(2000, "a")];
        assert_eq!(w.admit(&mut rows), 0);
        assert_eq!(rows.len(), 3);
        let mut rows = vec![row(2000, "a"), row(2000, "b"), row(3000, "a")];
        assert_eq!(w.admit(&mut rows), 1);
        assert_eq!(rows, vec![row(2000, "b"), row(3000, "a")]);
        assert_eq!(w.episode, Some(1));
        let mut rows = vec![row(4000, "a")];
        assert_eq!(w.admit(&mut rows), 0);
        assert_eq!(w.episode, None, "a batch with nothing skipped ends it");
    }

    #[test]
    fn load_reads_the_tail_of_the_history_rotated_then_active() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let line = |ms: u64, g: &str| {
            let t = humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms));
            format!("{t},{g},20.000,20.000,20.000,celsius,1,0\n")
        };
        let header = "time,group,mean,min,max,unit,ok,failed\n";
        let mut rotated = header.to_string();
        for i in 0..100 {
            rotated += &line(1_000_000 + i * 1000, "g");
        }
        let gz_path = dir.path().join("r-x.csv.gz");
        let mut gz = flate2::write::GzEncoder::new(
            File::create(&gz_path).unwrap(),
            flate2::Compression::default(),
        );
        gz.write_all(rotated.as_bytes()).unwrap();
        gz.finish().unwrap();
        let active_path = dir.path().join("r.csv");
        let mut active = header.to_string();
        active += &line(1_100_000, "g");
        active += "torn,line\n";
        active += &line(1_100_000, "h");
        std::fs::write(&active_path, &active).unwrap();

        let mut w = Written::load(&active_path, Some(&gz_path)).unwrap();
        let g = &w.groups["g"];
        assert_eq!(
            g.runs,
            vec![Run {
                first: 1_000_000,
                last: 1_100_000,
                step: 1000
            }]
        );
        assert_eq!(w.groups["h"].runs.len(), 1);
        let mut rows = vec![
            row(1_050_000, "g"),
            row(1_101_000, "g"),
            row(1_100_000, "h"),
        ];
        assert_eq!(w.admit(&mut rows), 2);
        assert_eq!(rows, vec![row(1_101_000, "g")]);

        // Only the tail within the budget: a plain rotated file read from
        // its last bytes on, the cut line passed over.
        let plain = dir.path().join("r-y.csv");
        std::fs::write(&plain, &rotated).unwrap();
        let mut w = Written::default();
        w.read_tail(&plain, (line(0, "g").len() * 3 + 5) as u64)
            .unwrap();
        assert_eq!(w.groups["g"].runs[0].first, 1_097_000);
        let mut w = Written::default();
        w.read_tail(&gz_path, (line(0, "g").len() * 2) as u64)
            .unwrap();
        assert_eq!(w.groups["g"].runs[0].first, 1_098_000);
    }
}
