//! What forwarding still needs of the rotated files: retention asks here
//! before it removes one.
//!
//! Why in the store: retention is the store's, and it must never remove a
//! file a forward target has not passed without counting the rows it had
//! not sent (or, with `keep_unforwarded`, without waiting while the disk
//! budget allows). The forward targets (a layer above) keep their
//! positions here; the store only reads them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::sync::lock;

/// Where a target's cursor is, as retention needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// Not located yet (the target is starting): retention waits a round.
    Unknown,
    /// In the rotated file with this stem (`PREFIX-TIME`), at this byte of
    /// its uncompressed rows: that file and every later one are needed.
    Rotated { stem: String, offset: u64 },
    /// In the active file (`id`: its device and inode, which a rename
    /// keeps), at this byte: no rotated file is needed until the store
    /// rotates that file ([`Holds::rotated`] makes this `Rotated` then).
    Active { id: (u64, u64), offset: u64 },
    /// Retention removed the file the target was in (its rows counted
    /// lost): it goes on with the oldest file left, so it needs them all,
    /// from their start. Not the removed file's stem: the store may give
    /// that name to a file rotated later.
    Removed,
}

/// A hold's position and the store's last rotations (the renamed file's
/// identity and new stem), under one lock: a target that reports the
/// active file just rotated is moved to its rotated stem either way.
#[derive(Debug)]
struct Place {
    position: Position,
    /// The newest last: a target still reading an active file rotated a few
    /// times since (an outage, fast rotation) finds its name here.
    rotated: std::collections::VecDeque<((u64, u64), String)>,
    /// The rotation of the file the target was in when it was rotated:
    /// kept however many rotations follow (an outage of days), so the
    /// target's reports of that file (by inode) stay the rotated file.
    pinned: Option<((u64, u64), String)>,
}

impl Place {
    /// The stem the store gave the active file `id`, if known.
    fn renamed(&self, id: (u64, u64)) -> Option<String> {
        self.pinned
            .iter()
            .chain(self.rotated.iter().rev())
            .find(|(rotated, _)| *rotated == id)
            .map(|(_, stem)| stem.clone())
    }
}

/// Rotations a hold remembers.
const ROTATIONS_KEPT: usize = 16;

/// One target's hold on the files.
#[derive(Debug)]
pub struct Hold {
    pub name: String,
    place: Mutex<Place>,
    /// `keep_unforwarded`: rotated files (all of them, in bytes) may grow to
    /// this before a file this target needs is removed.
    pub keep_bytes: Option<u64>,
    /// Rows retention removed before this target sent them.
    pub lost_rows: AtomicU64,
    /// Files retention removed before this target was through them.
    pub lost_files: AtomicU64,
    /// When rows were last lost, for `/healthz`.
    last_loss: Mutex<Option<SystemTime>>,
    /// Set by retention when it removed the file the cursor is in, so the
    /// target moves on to the next file instead of reading the removed
    /// one through its open descriptor (those rows are counted lost).
    removed: Mutex<Option<String>>,
}

impl Hold {
    pub fn new(name: &str, keep_bytes: Option<u64>) -> Arc<Hold> {
        Arc::new(Hold {
            name: name.to_string(),
            place: Mutex::new(Place {
                position: Position::Unknown,
                rotated: std::collections::VecDeque::new(),
                pinned: None,
            }),
            keep_bytes,
            lost_rows: AtomicU64::new(0),
            lost_files: AtomicU64::new(0),
            last_loss: Mutex::new(None),
            removed: Mutex::new(None),
        })
    }

    /// Where the target is. A target reading the file the store has just
    /// rotated (it opened it as the active file) is in the rotated file.
    pub fn set(&self, position: Position) {
        let mut place = lock(&self.place);
        place.position = match position {
            Position::Active { id, offset } => match place.renamed(id) {
                Some(stem) => Position::Rotated { stem, offset },
                None => Position::Active { id, offset },
            },
            position => position,
        };
    }

    /// The target opened the active file `id`: whatever file had that inode
    /// before (rotated, compressed and removed since: inodes are reused) is
    /// not this one.
    pub fn opened_active(&self, id: (u64, u64)) {
        let mut place = lock(&self.place);
        place.rotated.retain(|(rotated, _)| *rotated != id);
        if place
            .pinned
            .as_ref()
            .is_some_and(|(pinned, _)| *pinned == id)
        {
            place.pinned = None;
        }
    }

    /// The rotated stem the store gave the active file `id`, if it rotated
    /// it lately.
    pub fn rotated_stem(&self, id: (u64, u64)) -> Option<String> {
        lock(&self.place).renamed(id)
    }

    pub fn position(&self) -> Position {
        lock(&self.place).position.clone()
    }

    /// The store renamed the active file `id` to `stem`.
    fn rotated(&self, id: (u64, u64), stem: &str) {
        let mut place = lock(&self.place);
        if place.rotated.len() == ROTATIONS_KEPT {
            place.rotated.pop_front();
        }
        place.rotated.push_back((id, stem.to_string()));
        if let Position::Active { id: at, offset } = place.position {
            if at == id {
                place.pinned = Some((id, stem.to_string()));
                place.position = Position::Rotated {
                    stem: stem.to_string(),
                    offset,
                };
            }
        }
    }

    /// Rows lost to retention (or otherwise gone before they were sent).
    pub fn lost(&self, rows: u64, files: u64) {
        self.lost_rows.fetch_add(rows, Relaxed);
        self.lost_files.fetch_add(files, Relaxed);
        *lock(&self.last_loss) = Some(SystemTime::now());
    }

    pub fn last_loss(&self) -> Option<SystemTime> {
        *lock(&self.last_loss)
    }

    /// The stem retention removed under the cursor, once.
    pub fn take_removed(&self) -> Option<String> {
        lock(&self.removed).take()
    }

    fn removed(&self, stem: &str) {
        *lock(&self.removed) = Some(stem.to_string());
        lock(&self.place).position = Position::Removed;
    }
}

/// The holds of every forward target of one output directory.
#[derive(Debug, Default)]
pub struct Holds {
    targets: Mutex<Vec<Arc<Hold>>>,
}

impl Holds {
    pub fn new() -> Arc<Holds> {
        Arc::new(Holds::default())
    }

    /// Replace the targets (at start and when a reload changes them).
    pub fn replace(&self, targets: Vec<Arc<Hold>>) {
        *lock(&self.targets) = targets;
    }

    pub fn targets(&self) -> Vec<Arc<Hold>> {
        lock(&self.targets).clone()
    }

    /// The store renamed the active file `id` (device, inode) to the
    /// rotated `stem`: a target reading it (even one stuck sending a batch
    /// of it through an outage) now needs that rotated file.
    pub fn rotated(&self, id: (u64, u64), stem: &str) {
        for hold in self.targets() {
            hold.rotated(id, stem);
        }
    }
}

/// Retention's question for one file about to be removed: which targets
/// still need it. `order` is the stems of the rotated files in the order
/// they were written, `at` the index of the file in it.
pub(super) struct Needs {
    /// Per target: the index in `order` from which it needs files (its
    /// cursor's file), `None` if it needs none.
    from: Vec<(Arc<Hold>, Option<usize>, u64)>,
    /// A target is not located yet.
    pub unknown: bool,
}

impl Needs {
    pub fn new(holds: &Holds, order: &[String]) -> Needs {
        let mut unknown = false;
        let from = holds
            .targets()
            .into_iter()
            .map(|h| {
                let (from, offset) = match h.position() {
                    Position::Unknown => {
                        unknown = true;
                        (None, 0)
                    }
                    Position::Active { .. } => (None, 0),
                    Position::Removed => (Some(0), 0),
                    // A cursor in a file no longer listed: the target moves to
                    // the oldest file there is, so it needs them all, from
                    // their start (its offset was in the file gone).
                    Position::Rotated { stem, offset } => {
                        match order.iter().position(|s| *s == stem) {
                            Some(at) => (Some(at), offset),
                            None => (Some(0), 0),
                        }
                    }
                };
                (h, from, offset)
            })
            .collect();
        Needs { from, unknown }
    }

    /// The targets that have not passed file `at`, with the offset their
    /// rows begin at in it (0 but for the cursor's own file).
    pub fn of(&self, at: usize) -> Vec<(&Arc<Hold>, u64)> {
        self.from
            .iter()
            .filter_map(|(h, from, offset)| match from {
                Some(f) if *f == at => Some((h, *offset)),
                Some(f) if *f < at => Some((h, 0)),
                _ => None,
            })
            .collect()
    }

    /// Whether any target has a disk budget (`keep_unforwarded`): only then
    /// does retention need the files' sizes.
    pub fn any_budget(&self) -> bool {
        self.from.iter().any(|(h, _, _)| h.keep_bytes.is_some())
    }

    /// The largest disk budget of the targets that need file `at`.
    pub fn budget(&self, at: usize) -> Option<u64> {
        self.of(at).iter().filter_map(|(h, _)| h.keep_bytes).max()
    }

    /// Before file `at` is removed: the rows each target that needs it had
    /// not sent (`rows(offset)` counts the file's rows from an offset).
    pub fn unsent(&self, at: usize, rows: &dyn Fn(u64) -> u64) -> Vec<(Arc<Hold>, u64)> {
        self.of(at)
            .into_iter()
            .map(|(h, offset)| (h.clone(), rows(offset)))
            .collect()
    }

    /// After file `at` (stem `stem`) was removed: count and log what each
    /// target lost ([`Needs::unsent`]), and tell the target whose cursor
    /// was in it.
    pub fn removed(&self, at: usize, stem: &str, unsent: Vec<(Arc<Hold>, u64)>) {
        for (hold, n) in unsent {
            hold.lost(n, 1);
            tracing::warn!(
                "retention removed {stem} before forward target `{}` sent it: {n} row(s) lost \
                 to that target (raise output.keep, or set keep_unforwarded)",
                hold.name
            );
            if self
                .from
                .iter()
                .any(|(h, from, _)| Arc::ptr_eq(h, &hold) && *from == Some(at))
            {
                hold.removed(stem);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEM: &str = "readings-20261205T080000Z";

    fn one(name: &str) -> (Arc<Holds>, Arc<Hold>) {
        let holds = Holds::new();
        let hold = Hold::new(name, None);
        holds.replace(vec![hold.clone()]);
        (holds, hold)
    }

    #[test]
    fn a_target_in_the_active_file_needs_it_once_it_is_rotated() {
        let (holds, hold) = one("vm");
        let active = |offset| Position::Active { id: (1, 7), offset };
        let rotated = |offset| Position::Rotated {
            stem: STEM.into(),
            offset,
        };
        hold.set(active(120));
        holds.rotated((1, 7), STEM);
        assert_eq!(hold.position(), rotated(120));
        let order = vec![STEM.to_string()];
        assert_eq!(Needs::new(&holds, &order).of(0).len(), 1);
        // A batch read before the rotation, acknowledged after it.
        hold.set(active(180));
        assert_eq!(hold.position(), rotated(180));
        // The next active file needs no rotated file.
        hold.set(Position::Active {
            id: (1, 8),
            offset: 0,
        });
        assert!(Needs::new(&holds, &order).of(0).is_empty());
    }

    #[test]
    fn a_cursor_in_a_removed_file_needs_the_others_from_their_start() {
        let (holds, hold) = one("vm");
        hold.set(Position::Rotated {
            stem: "readings-20261205T070000Z".into(),
            offset: 500,
        });
        let order = vec![STEM.to_string()];
        let needs = Needs::new(&holds, &order);
        let of = needs.of(0);
        assert_eq!((of.len(), of[0].1), (1, 0));
    }

    #[test]
    fn a_file_given_the_name_of_the_removed_one_is_not_the_cursors() {
        let (holds, hold) = one("vm");
        hold.set(Position::Rotated {
            stem: STEM.into(),
            offset: 0,
        });
        let order = vec![STEM.to_string(), "readings-20261205T080001Z".into()];
        let needs = Needs::new(&holds, &order);
        let unsent = needs.unsent(0, &|_| 15);
        needs.removed(0, STEM, unsent);
        assert_eq!(hold.lost_rows.load(Relaxed), 15);
        // The store rotates a file under the freed name: the target, still
        // on its way to the oldest file left, needs every file.
        let order = vec!["readings-20261205T080001Z".into(), STEM.to_string()];
        let needs = Needs::new(&holds, &order);
        assert_eq!(needs.of(0).len(), 1);
    }
}
