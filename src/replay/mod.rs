//! `edge-agent replay`: stream recorded history back out, in time order
//! across files, in bounded memory.
//!
//! ```text
//! discover (files by name; active and clock-named files always) -> read (chunks -> gzip? -> csv-async) -> filter -> pace -> format -> sink
//! ```
//!
//! The sink is a writer (stdout or a file) or an HTTP endpoint fed in
//! batches ([`http`]). Damaged lines are skipped with a warning naming file
//! and line and counted; `--strict` turns any skip into an error at the end.
//! A file whose name a wrong clock made is read whole, its rows selected by
//! their times, and named in a warning ([`discover`]).

mod block;
mod chunks;
mod destination;
mod discover;
pub mod engine;
mod error;
pub mod format;
mod found;
pub mod http;
mod lanes;
mod options;
mod output_file;
mod pool;
mod range;
pub mod read;
mod report;
mod sink;
mod turns;
pub mod verify;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

pub use block::{Block, Prepare, Prepared, Written};
pub use destination::{Batches, Destination, DestinationError};
pub use discover::{Source, WrongName, sources, sources_at};
pub use error::ReplayError;
pub use format::{Encoded, Encoder, Format};
pub use found::{NothingToRead, UnknownGroups, files_of, prefixes_in};
pub use http::Patience;
pub use options::Options;
pub use output_file::{Existing, OutputFile, OutputFileError};
pub use range::{EmptyRange, WhenError, parse_when};
pub use read::{FileReader, Next, Skip};
pub use report::{Pushed, Report, Summary};
pub use sink::{FileWriter, Sink};

use found::{Groups, Tally};

use crate::history::index::Index;
use crate::history::parse::BlockRows;
use crate::history::row::View;

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
const OUTPUT_BATCH: usize = 64 * 1024;

/// Which rows are wanted; with `--group`, also which groups the rows
/// looked at have (to name them when a group asked for has no rows).
#[derive(Debug)]
struct Filter {
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    groups: Vec<String>,
    seen: Groups,
}

impl Filter {
    fn wants(&self, row: &View, tally: &mut Tally) -> bool {
        self.wants_noting(row.time, row.fields[1], tally)
    }

    /// [`Filter::wants_at`], noting the row's group in `tally` when
    /// groups are asked for.
    fn wants_noting(&self, time: SystemTime, group: &[u8], tally: &mut Tally) -> bool {
        if !self.groups.is_empty() {
            tally.note(group);
        }
        self.wants_at(time, group)
    }

    /// Whether a row of this time and group is wanted.
    fn wants_at(&self, time: SystemTime, group: &[u8]) -> bool {
        self.since.is_none_or(|s| time >= s)
            && self.until.is_none_or(|u| time < u)
            && (self.groups.is_empty() || self.groups.iter().any(|g| g.as_bytes() == group))
    }

    /// False when no row of `b` can be wanted (by its times).
    fn may_want(&self, b: &Block) -> bool {
        !(self.since.is_some_and(|s| b.max < s) || self.until.is_some_and(|u| b.min >= u))
    }

    /// True when every row of `b` is wanted.
    fn wants_all(&self, b: &Block) -> bool {
        self.since.is_none_or(|s| b.min >= s)
            && self.until.is_none_or(|u| b.max < u)
            && self.groups.is_empty()
    }
}

/// What becomes of a verified block: nothing when no row of it can be
/// wanted, the block as it is when every row is wanted as CSV, else its
/// wanted rows encoded.
fn prepare(b: &Block, filter: &Filter, format: Format, encoder: &Encoder) -> Prepared {
    if !filter.may_want(b) {
        Prepared::Nothing
    } else if format == Format::Csv && filter.wants_all(b) {
        Prepared::Whole
    } else {
        Prepared::Lines(encode_block(b, filter, encoder.clone()))
    }
}

/// Encode the wanted rows of a verified block.
fn encode_block(b: &Block, filter: &Filter, mut encoder: Encoder) -> Encoded {
    // Line protocol takes about twice the bytes of a CSV row.
    let capacity = b.piece.len() * 2;
    let mut bad_lines = Vec::new();
    if encoder.format() == Format::Influx {
        let mut bytes = pool::room(capacity);
        let tally = std::cell::RefCell::new(Tally::default());
        let wants = |time, group: &[u8]| filter.wants_noting(time, group, &mut tally.borrow_mut());
        let wants: Option<format::Wants> = if filter.wants_all(b) {
            None
        } else {
            Some(&wants)
        };
        let (rows, len) =
            encoder.influx_block(&b.piece, b.first_line, wants, &mut bytes, 0, &mut bad_lines);
        filter.seen.merge(tally.into_inner());
        return Encoded {
            bytes,
            len,
            rows,
            bad_lines,
        };
    }
    let mut bytes = pool::spare(capacity);
    let (mut rows, mut lines, mut view) = (0, BlockRows::default(), View::default());
    let mut tally = Tally::default();
    for (line_no, line) in b.lines() {
        if !lines.fill(line, &mut view) {
            bad_lines.push(line_no);
        } else if filter.wants(&view, &mut tally) {
            encoder.encode(&view, &mut bytes);
            rows += 1;
        }
    }
    filter.seen.merge(tally);
    Encoded {
        len: bytes.len(),
        bytes,
        rows,
        bad_lines,
    }
}

/// Where selected rows go: filtered, paced, encoded, gathered into blocks.
struct Emit {
    filter: Arc<Filter>,
    format: Format,
    encoder: Encoder,
    pacer: Option<Pacer>,
    /// Lines go out one by one (pacing; an HTTP sink counts rows).
    per_row: bool,
    block: Vec<u8>,
    block_rows: u64,
    summary: Summary,
    /// Groups of the rows looked at here (merged into the filter's at the end).
    tally: Tally,
}

impl Emit {
    /// Encode `row` if it is wanted; true when the block should go out
    /// now. Plain code, no future: this runs for every row.
    fn take(&mut self, row: &View) -> bool {
        if !self.filter.wants(row, &mut self.tally) {
            return false;
        }
        self.encoder.encode(row, &mut self.block);
        self.block_rows += 1;
        self.summary.rows += 1;
        self.per_row || self.block.len() >= OUTPUT_BATCH
    }

    async fn row(&mut self, row: &View<'_>, sink: &mut Sink) -> Result<(), ReplayError> {
        let wanted = self.filter.wants_at(row.time, row.fields[1]);
        if let (Some(p), true) = (self.pacer.as_mut(), wanted) {
            p.wait(row.time).await;
        }
        if self.take(row) {
            self.flush(sink).await?;
        }
        Ok(())
    }

    /// A verified block, as the reader's thread prepared it
    /// ([`Emit::prepare`]; here when it did not): skipped whole when it lies
    /// outside the range, passed through as it is when every row is wanted
    /// as CSV, its wanted rows encoded, or row by row (pacing, HTTP).
    async fn block(
        &mut self,
        mut b: Block,
        sink: &mut Sink,
        path: &Path,
    ) -> Result<(), ReplayError> {
        let prepared = match b.prepared.take() {
            Some(p) => p,
            None if self.per_row => {
                if !self.filter.may_want(&b) {
                    return Ok(());
                }
                return self.paced_block(b, sink, path).await;
            }
            None => prepare(&b, &self.filter, self.format, &self.encoder),
        };
        match prepared {
            Prepared::Nothing => Ok(()),
            Prepared::Whole => {
                self.flush(sink).await?;
                self.summary.rows += b.rows;
                sink.write_piece(b.piece, b.rows).await
            }
            Prepared::Lines(done) => {
                self.flush(sink).await?;
                self.bad_lines(path, &done.bad_lines);
                self.summary.rows += done.rows;
                if done.rows == 0 {
                    return Ok(());
                }
                sink.write_room(done.bytes, done.len, done.rows).await
            }
        }
    }

    /// A verified block that the reader's thread wrote itself.
    async fn written(
        &mut self,
        w: Written,
        sink: &mut Sink,
        path: &Path,
    ) -> Result<(), ReplayError> {
        self.bad_lines(path, &w.bad_lines);
        self.summary.rows += w.rows;
        sink.check().await
    }

    /// What the reading threads do with each verified block (see
    /// [`prepare`]); `None` when its rows go one at a time (pacing, HTTP).
    fn prepare(&self) -> Option<Prepare> {
        if self.per_row {
            return None;
        }
        let (filter, encoder, format) = (self.filter.clone(), self.encoder.clone(), self.format);
        Some(Arc::new(move |b: &Block| {
            prepare(b, &filter, format, &encoder)
        }))
    }

    /// The rows of a verified block one at a time (pacing, HTTP batches).
    async fn paced_block(
        &mut self,
        b: Block,
        sink: &mut Sink,
        path: &Path,
    ) -> Result<(), ReplayError> {
        let mut rows = BlockRows::default();
        let mut view = View::default();
        for (line_no, line) in b.lines() {
            if rows.fill(line, &mut view) {
                self.row(&view, sink).await?;
            } else {
                self.bad_lines(path, &[line_no]);
            }
        }
        Ok(())
    }

    fn bad_lines(&mut self, path: &Path, lines: &[u64]) {
        for line in lines {
            tracing::warn!(
                "{}:{line}: not a row, though its index said so; skipped",
                path.display()
            );
        }
        self.summary.skipped += lines.len() as u64;
    }

    /// Write what is gathered.
    async fn flush(&mut self, sink: &mut Sink) -> Result<(), ReplayError> {
        if !self.block.is_empty() {
            let full = std::mem::replace(&mut self.block, Vec::with_capacity(OUTPUT_BATCH + 512));
            sink.write(full, self.block_rows, self.pacer.is_some())
                .await?;
            self.block_rows = 0;
        }
        Ok(())
    }
}

/// Replay the rows selected by `opts` into `sink`.
///
/// Fails before writing anything when there is nothing to read (no
/// directory, no files of the prefix: [`NothingToRead`]), and at the end
/// when a group asked for has no rows among those read ([`UnknownGroups`]).
pub async fn replay(opts: &Options, sink: &mut Sink) -> Result<Summary, ReplayError> {
    files_of(&opts.dir, &opts.prefix)?;
    let files = sources(&opts.dir, &opts.prefix, opts.since, opts.until).map_err(|source| {
        ReplayError::Dir {
            path: opts.dir.clone(),
            source,
        }
    })?;
    if files.is_empty() {
        tracing::warn!(
            "no recorded files of `{}` in {} hold rows of this range (--since/--until); \
             nothing replayed",
            opts.prefix,
            opts.dir.display()
        );
        return Ok(Summary::default());
    }
    for note in files.iter().filter_map(Source::wrong_name_note) {
        tracing::warn!("{note}; its rows are read by their times");
    }
    let pacer = opts.speed.map(Pacer::new);
    // Lines are gathered into blocks for a writer (one write per block, not
    // per row); an HTTP sink counts rows, so it gets them one by one.
    let per_row = pacer.is_some() || matches!(sink, Sink::Http(_));
    let mut emit = Emit {
        filter: Arc::new(Filter {
            since: opts.since,
            until: opts.until,
            groups: opts.groups.clone(),
            seen: Groups::default(),
        }),
        format: opts.format,
        encoder: Encoder::new(opts.format, &opts.measurement),
        pacer,
        per_row,
        block: Vec::with_capacity(OUTPUT_BATCH + 512),
        block_rows: 0,
        summary: Summary::default(),
        tally: Tally::default(),
    };
    let (prepare, output) = (emit.prepare(), sink.output());
    // Not when appending to a file that has it.
    if let Some(h) = opts.format.header().filter(|_| sink.header()) {
        // Only if there are rows.
        match &output {
            Some(output) => output.preamble(h.as_bytes()),
            None => emit.block.extend_from_slice(h.as_bytes()),
        }
    }
    for source in &files {
        let index = Index::load(&source.path);
        let (path, gzip, chunk) = (&source.path, source.gzip, opts.chunk_size);
        // The reader's threads may write this file's blocks to the output
        // themselves: what goes before them must be on its way first.
        if output.is_some() {
            emit.flush(sink).await?;
        }
        let (prepare, output) = (prepare.clone(), output.clone());
        let opened = FileReader::open_indexed(path, gzip, chunk, index, prepare, output).await;
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
                // Plain code for a row, unless it must wait (pacing).
                Next::Row(record) if emit.pacer.is_none() => {
                    if emit.take(&record.view()) {
                        emit.flush(sink).await?;
                    }
                }
                Next::Row(record) => emit.row(&record.view(), sink).await?,
                Next::Block(block) => emit.block(block, sink, &source.path).await?,
                Next::Written(w) => emit.written(w, sink, &source.path).await?,
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
    if !opts.groups.is_empty() {
        emit.filter.seen.merge(std::mem::take(&mut emit.tally));
        let (found, rows) = emit.filter.seen.found();
        UnknownGroups::check(&opts.groups, found, rows)?;
    }
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
