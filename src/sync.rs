//! Locks that outlive a panic.
//!
//! Why: the agent's mutexes guard plain data (counters, buffer pools, an
//! output's turn) that stays consistent even if a thread panicked while
//! holding one, and `panic = "abort"` in release makes that moot there
//! anyway. Taking the guard of a poisoned lock keeps one panic in a test or
//! debug build from cascading into every thread that shares the lock.

use std::sync::{Mutex, MutexGuard};

/// The guard of `m`, poisoned or not.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
