//! The on-disk history: the one owner of what the files hold.
//!
//! Why a layer of its own: the writer ([`crate::store`]) and the readers
//! ([`crate::replay`], [`crate::tail`]) must agree on every byte on disk.
//! Everything both sides rely on lives here, once, and this module imports
//! nothing else from the crate, so neither side can reach into the other:
//!
//! - [`names`]: file names (the active file, time-stamped rotated files and
//!   their order) and the mode files are created with;
//! - [`row`]: the header, the columns, the [`Row`] type, a row's CSV form;
//! - [`parse`]: reading a row back (the one check every reader makes) and
//!   the fast readers of the agent's own number and time shapes;
//! - [`scan`]: cutting a verified block's rows at speed, over [`simd`]'s
//!   masks (the only `unsafe` code of the crate, beside its scalar
//!   reference);
//! - [`index`]: the checksum index beside each data file: its format, how
//!   it is built, and how it is checked;
//! - [`order`]: the order rotated files were written in (a journal beside
//!   them), which a wrong clock cannot disturb as it does their names.

pub mod index;
pub mod names;
pub mod order;
pub mod parse;
pub mod row;
pub mod scan;
#[allow(unsafe_code)]
mod simd;

pub use row::{COLUMNS, HEADER, Record, Row, Unit, View, is_name};
