//! Buffers kept for reuse: the read pieces' and the output blocks'.
//!
//! Why: buffers of a few hundred KiB allocated on one thread and freed on
//! another scatter over malloc's per-thread arenas, and RSS grows with
//! them; a fresh buffer also costs a page fault per page. Each pool keeps a
//! few for the next user, whatever thread that is.

use std::sync::Mutex;

use crate::sync::lock;

/// A bounded pool of byte buffers.
pub(crate) struct Pool {
    bufs: Mutex<Vec<Vec<u8>>>,
    /// Buffers kept at most; more are freed.
    max: usize,
}

impl Pool {
    pub(crate) const fn new(max: usize) -> Pool {
        Pool {
            bufs: Mutex::new(Vec::new()),
            max,
        }
    }

    /// A kept buffer for which `fits` holds, if there is one.
    pub(crate) fn take(&self, fits: impl Fn(&Vec<u8>) -> bool) -> Option<Vec<u8>> {
        let mut bufs = lock(&self.bufs);
        let at = bufs.iter().position(fits);
        at.map(|i| bufs.swap_remove(i))
    }

    /// Keep `buf` for the next user, unless the pool is full.
    pub(crate) fn give(&self, buf: Vec<u8>) {
        let mut bufs = lock(&self.bufs);
        if bufs.len() < self.max {
            bufs.push(buf);
        }
    }
}

/// Written blocks kept for the next ones.
const SPARE_MAX: usize = 8;

/// Buffers of written blocks, for the next ones: allocated on the blocking
/// pool and freed by the writing task, buffers of a MiB would scatter over
/// malloc's per-thread arenas, and RSS would grow with them. A buffer's
/// length is what of it is initialized, whatever its last lines were.
static SPARE: Pool = Pool::new(SPARE_MAX);

/// A written buffer of at least `capacity`, if the pool has one.
fn pooled(capacity: usize) -> Option<Vec<u8>> {
    SPARE.take(|b| b.capacity() >= capacity)
}

/// A buffer of at least `len` initialized bytes (rounded up, so that
/// buffers for blocks a row longer or shorter fit each other), a written
/// one if there is one: room to write lines over, with no need to zero it
/// first (only what no block ever used gets zeroed).
pub(crate) fn room(len: usize) -> Vec<u8> {
    let len = len.next_multiple_of(64 * 1024);
    match pooled(len) {
        Some(mut buf) => {
            if buf.len() < len {
                buf.resize(len, 0);
            }
            buf
        }
        None => vec![0; len],
    }
}

/// An empty buffer of at least `capacity` (rounded up as for [`room`]),
/// a written one if there is one: for lines that are appended.
pub(crate) fn spare(capacity: usize) -> Vec<u8> {
    let capacity = capacity.next_multiple_of(64 * 1024);
    match pooled(capacity) {
        Some(mut buf) => {
            buf.clear();
            buf
        }
        None => Vec::with_capacity(capacity),
    }
}

pub(crate) fn give_back(buf: Vec<u8>) {
    SPARE.give(buf);
}
