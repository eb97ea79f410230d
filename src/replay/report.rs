//! The line a replay ends with: rows replayed, files read and lines
//! skipped, and for an HTTP endpoint what it acknowledged and how many
//! sends were repeats (and of those, how many followed a send that got no
//! answer and may have been stored), so an operator can check a replay
//! against its source without counting rows.

use std::fmt;

use super::sink::Sink;

/// Counts printed at the end of a replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub rows: u64,
    pub skipped: u64,
}

/// What an HTTP endpoint made of a replay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Rows the endpoint acknowledged.
    pub acknowledged: u64,
    pub batches: u64,
    /// Sends of a batch after its first.
    pub retries: u64,
    /// Of those, sends after an earlier send got no answer (which may have
    /// been stored: only to engines that overwrite the same points).
    pub resent_unanswered: u64,
    /// Rows the engine dropped as older than its retention policy.
    pub dropped_by_retention: u64,
}

/// The end of a replay, shown as one line ([`fmt::Display`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub summary: Summary,
    /// `Some` when the rows went to an HTTP endpoint.
    pub pushed: Option<Pushed>,
}

impl Report {
    /// The report of a replay that gave `summary` into `sink`.
    pub fn new(summary: &Summary, sink: &Sink) -> Report {
        let pushed = match sink {
            Sink::Http(p) => Some(Pushed {
                acknowledged: p.acknowledged(),
                batches: p.batches_sent,
                retries: p.retries,
                resent_unanswered: p.resent_unanswered,
                dropped_by_retention: p.dropped_by_retention,
            }),
            _ => None,
        };
        Report {
            summary: summary.clone(),
            pushed,
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.summary;
        write!(
            f,
            "replayed {} row(s) from {} file(s), skipped {} line(s)",
            s.rows, s.files, s.skipped
        )?;
        if let Some(p) = &self.pushed {
            write!(
                f,
                "; {} row(s) acknowledged in {} batch(es), {} retried ({} resent after no answer)",
                p.acknowledged, p.batches, p.retries, p.resent_unanswered
            )?;
            if p.dropped_by_retention > 0 {
                write!(
                    f,
                    "; the engine dropped {} row(s) as older than its retention policy",
                    p.dropped_by_retention
                )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::http::{PushOptions, Pusher};

    const SUMMARY: Summary = Summary {
        files: 3,
        rows: 120,
        skipped: 5,
    };

    #[test]
    fn a_writer_gets_the_counts() {
        let report = Report {
            summary: SUMMARY,
            pushed: None,
        };
        assert_eq!(
            report.to_string(),
            "replayed 120 row(s) from 3 file(s), skipped 5 line(s)"
        );
        assert_eq!(
            Report::default().to_string(),
            "replayed 0 row(s) from 0 file(s), skipped 0 line(s)"
        );
    }

    #[test]
    fn an_endpoint_adds_what_it_acknowledged() {
        let pushed = Pushed {
            acknowledged: 720,
            batches: 15,
            retries: 1,
            resent_unanswered: 1,
            dropped_by_retention: 0,
        };
        let report = Report {
            summary: SUMMARY,
            pushed: Some(pushed),
        };
        assert_eq!(
            report.to_string(),
            "replayed 120 row(s) from 3 file(s), skipped 5 line(s); \
             720 row(s) acknowledged in 15 batch(es), 1 retried (1 resent after no answer)"
        );
    }

    #[test]
    fn the_counts_of_an_endpoint_come_from_its_sink() {
        let url = "http://127.0.0.1:9/write".parse().unwrap();
        let mut pusher = Pusher::new(url, PushOptions::default()).unwrap();
        pusher.batches_sent = 4;
        pusher.retries = 2;
        pusher.resent_unanswered = 1;
        let report = Report::new(&SUMMARY, &Sink::Http(Box::new(pusher)));
        let want = Pushed {
            acknowledged: 0,
            batches: 4,
            retries: 2,
            resent_unanswered: 1,
            dropped_by_retention: 0,
        };
        assert_eq!(report.pushed, Some(want));
        assert_eq!(report.summary, SUMMARY);
    }
}
