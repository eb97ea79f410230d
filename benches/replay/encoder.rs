//! The block encoder of line protocol timed alone, in this process, on one
//! rotated file of the large history in the blocks of its own index: ns
//! per row, beside a copy of the same bytes. It separates the encoder's
//! cost from reading, checking and writing, which the end-to-end replay
//! figures all include.

use crate::common::{Res, io_err};
use crate::generate::History;
use edge_agent::history::index;
use edge_agent::replay::format::{Encoder, Format};

use std::fs;
use std::time::Instant;

/// The block encoder of line protocol on its own, in this process: what
/// an influx replay costs per row once the bytes are in memory, with
/// nothing of reading, checking or writing around it.
pub struct EncoderResult {
    pub rows: u64,
    pub bytes: u64,
    /// Best of ENCODE_REPS: one pass of the encoder over the blocks.
    pub encode_secs: f64,
    /// Best of ENCODE_REPS: one copy of the same blocks (the baseline).
    pub copy_secs: f64,
}

impl EncoderResult {
    pub fn ns_per_row(&self) -> f64 {
        self.encode_secs * 1e9 / self.rows as f64
    }
}

pub const ENCODE_REPS: usize = 15;

/// Encode the rows of one rotated file of `h`, block by block as its
/// index (made by the store) cuts it.
pub fn bench_encoder(h: &History) -> Res<EncoderResult> {
    let f = h
        .files
        .iter()
        .find(|f| f.rotated)
        .ok_or("the history has no rotated file")?;
    let path = h.plain.join(&f.name);
    let data = fs::read(&path).map_err(io_err(&path))?;
    let entries = index::Index::load(&path)
        .ok_or_else(|| format!("{} has no index", path.display()))?
        .entries;
    // (first line number, block); the header is line 1.
    let (mut blocks, mut line) = (Vec::new(), 2);
    for e in &entries {
        let b = data
            .get(e.offset as usize..e.end() as usize)
            .ok_or_else(|| format!("{}: an index entry past the end", path.display()))?;
        blocks.push((line, b));
        line += e.rows;
    }
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    let mut copy = vec![0u8; blocks.iter().map(|(_, b)| b.len()).max().unwrap_or(0)];
    let (mut encode_secs, mut copy_secs, mut encoded) = (f64::MAX, f64::MAX, 0);
    for _ in 0..ENCODE_REPS {
        let mut encoder = Encoder::new(Format::Influx, "temperature");
        let started = Instant::now();
        encoded = 0;
        bad.clear();
        for &(first_line, b) in &blocks {
            let (n, len) = encoder.influx_block(b, first_line, None, &mut out, 0, &mut bad);
            encoded += n;
            std::hint::black_box(&out[..len]);
        }
        encode_secs = encode_secs.min(started.elapsed().as_secs_f64());
        let started = Instant::now();
        for &(_, b) in &blocks {
            copy[..b.len()].copy_from_slice(b);
            std::hint::black_box(&copy);
        }
        copy_secs = copy_secs.min(started.elapsed().as_secs_f64());
    }
    if !bad.is_empty() {
        return Err(format!(
            "the encoder found {} bad lines in {}",
            bad.len(),
            path.display()
        ));
    }
    Ok(EncoderResult {
        rows: encoded,
        bytes: blocks.iter().map(|(_, b)| b.len() as u64).sum(),
        encode_secs,
        copy_secs,
    })
}
