//! `edge-agent replay`: stream recorded history back out, in time order
//! across files, in bounded memory.
//!
//! ```text
//! discover (files by name) -> read (chunks -> gzip? -> csv-async) -> filter -> pace -> format -> sink
//! ```
//!
//! The sink is a writer (stdout or a file) or an HTTP endpoint fed in
//! batches ([`http`]). Damaged lines are skipped with a warning naming file
//! and line and counted; `--strict` turns any skip into an error at the end.

mod chunks;
mod discover;
pub mod format;
pub mod http;
pub mod read;
mod sink;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use discover::{Source, sources};
pub use format::{Encoder, Format};
pub use read::{Block, BlockRows, FileReader, Next, Record, Skip, View};
pub use sink::{FileWriter, Sink};

use crate::store::index::Index;

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub dir: PathBuf,
    pub prefix: String,
    /// Rows at or after this time.
    pub since: Option<SystemTime>,
    /// Rows before this time.
    pub until: Option<SystemTime>,
    /// Only these groups (all when empty).
    pub groups: Vec<String>,
    pub format: Format,
    /// Measurement name of the influx format.
    pub measurement: String,
    /// `None`: as fast as possible; `Some(x)`: x times the recorded pace.
    pub speed: Option<f64>,
    /// Bytes read from a file at a time.
    pub chunk_size: usize,
}

/// Counts printed at the end of a replay.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub rows: u64,
    pub skipped: u64,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the output: {0}")]
    Output(#[source] std::io::Error),
    #[error(transparent)]
    Http(#[from] http::PushError),
}

/// Keeps replayed rows at `speed` times their recorded spacing.
pub struct Pacer {
    speed: f64,
    origin: Option<(SystemTime, Instant)>,
}

impl Pacer {
    pub fn new(speed: f64) -> Pacer {
        Pacer {
            speed,
            origin: None,
        }
    }

    /// Wait until the row recorded at `t` is due.
    pub async fn wait(&mut self, t: SystemTime) {
        let (t0, start) = *self.origin.get_or_insert((t, Instant::now()));
        if let Ok(offset) = t.duration_since(t0) {
            let due = start + Duration::from_secs_f64(offset.as_secs_f64() / self.speed);
            tokio::time::sleep_until(due).await;
        }
    }
}

/// Bytes of output gathered before one write to a file or stdout.
const BLOCK: usize = 64 * 1024;

/// Where selected rows go: filtered, paced, encoded, gathered into blocks.
struct Emit<'a> {
    opts: &'a Options,
    encoder: Encoder,
    pacer: Option<Pacer>,
    /// Lines go out one by one (pacing; an HTTP sink counts rows).
    per_row: bool,
    block: Vec<u8>,
    block_rows: u64,
    summary: Summary,
}

impl Emit<'_> {
    fn wanted(&self, row: &View) -> bool {
        let o = self.opts;
        o.since.is_none_or(|s| row.time >= s)
            && o.until.is_none_or(|u| row.time < u)
            && (o.groups.is_empty() || o.groups.iter().any(|g| g.as_bytes() == row.fields[1]))
    }

    async fn row(&mut self, row: &View<'_>, sink: &mut Sink) -> Result<(), ReplayError> {
        if !self.wanted(row) {
            return Ok(());
        }
        if let Some(p) = self.pacer.as_mut() {
            p.wait(row.time).await;
        }
        self.encoder.encode(row, &mut self.block);
        self.block_rows += 1;
        self.summary.rows += 1;
        if self.per_row || self.block.len() >= BLOCK {
            self.flush(sink).await?;
        }
        Ok(())
    }

    /// A verified block: skipped whole when it lies outside the range,
    /// passed through as it is when every row is wanted as CSV, else row
    /// by row.
    async fn block(&mut self, b: Block, sink: &mut Sink, path: &Path) -> Result<(), ReplayError> {
        let o = self.opts;
        if o.since.is_some_and(|s| b.max < s) || o.until.is_some_and(|u| b.min >= u) {
            return Ok(());
        }
        let all = o.since.is_none_or(|s| b.min >= s)
            && o.until.is_none_or(|u| b.max < u)
            && o.groups.is_empty();
        if all && o.format == Format::Csv && !self.per_row {
            self.flush(sink).await?;
            self.summary.rows += b.rows;
            return sink.write_piece(b.piece, b.rows).await;
        }
        let mut rows = BlockRows::default();
        let lines = b.piece.strip_suffix(b"\n").unwrap_or(&b.piece);
        for (i, line) in lines.split(|&c| c == b'\n').enumerate() {
            match rows.view(line) {
                Some(view) => self.row(&view, sink).await?,
                None => {
                    tracing::warn!(
                        "{}:{}: not a row, though its index said so; skipped",
                        path.display(),
                        b.first_line + i as u64
                    );
                    self.summary.skipped += 1;
                }
            }
        }
        Ok(())
    }

    async fn flush(&mut self, sink: &mut Sink) -> Result<(), ReplayError> {
        if !self.block.is_empty() {
            sink.write(&mut self.block, self.block_rows, self.pacer.is_some())
                .await?;
            self.block_rows = 0;
        }
        Ok(())
    }
}

/// Replay the rows selected by `opts` into `sink`.
pub async fn replay(opts: &Options, sink: &mut Sink) -> Result<Summary, ReplayError> {
    let files = sources(&opts.dir, &opts.prefix, opts.since, opts.until).map_err(|source| {
        ReplayError::Dir {
            path: opts.dir.clone(),
            source,
        }
    })?;
    if files.is_empty() {
        tracing::warn!(
            "no recorded files of `{}` in {} for this range",
            opts.prefix,
            opts.dir.display()
        );
        return Ok(Summary::default());
    }
    let pacer = opts.speed.map(Pacer::new);
    // Lines are gathered into blocks for a writer (one write per block, not
    // per row); an HTTP sink counts rows, so it gets them one by one.
    let per_row = pacer.is_some() || matches!(sink, Sink::Http(_));
    let mut emit = Emit {
        opts,
        encoder: Encoder::new(opts.format, &opts.measurement),
        pacer,
        per_row,
        block: Vec::with_capacity(BLOCK + 512),
        block_rows: 0,
        summary: Summary::default(),
    };
    if let Some(h) = opts.format.header() {
        emit.block.extend_from_slice(h.as_bytes());
    }
    for source in &files {
        let index = Index::load(&source.path);
        let opened =
            FileReader::open_indexed(&source.path, source.gzip, opts.chunk_size, index).await;
        let mut reader = match opened {
            Ok(r) => r,
            // Rotated away (or compressed) between listing and opening.
            Err(e) => {
                tracing::warn!("{}: cannot open, skipped: {e}", source.path.display());
                emit.summary.skipped += 1;
                continue;
            }
        };
        emit.summary.files += 1;
        while let Some(next) = reader.next().await {
            match next {
                Next::Row(record) => emit.row(&record.view(), sink).await?,
                Next::Block(block) => emit.block(block, sink, &source.path).await?,
                Next::Skip(skip) => {
                    tracing::warn!("{skip}");
                    emit.summary.skipped += 1;
                }
            }
        }
    }
    if emit.summary.rows > 0 {
        emit.flush(sink).await?;
    }
    sink.finish().await?;
    Ok(emit.summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[tokio::test(start_paused = true)]
    async fn pacing_follows_recorded_spacing_at_speed() {
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(1_000 + s);
        let mut pacer = Pacer::new(60.0);
        let start = Instant::now();
        pacer.wait(t(0)).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        pacer.wait(t(60)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
        pacer.wait(t(600)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        // An earlier row (another group's long window) does not wait.
        pacer.wait(t(300)).await;
        assert_eq!(start.elapsed(), Duration::from_secs(10));
    }
}
