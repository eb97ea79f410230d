//! Rules for the `output` section: where rows go, the file name prefix,
//! rotation, retention, fsync policy, decimals and queue length.

use std::time::Duration;

use super::checker::Checker;
use super::model::{Fsync, Output};
use super::probe::can_write_in;
use super::raw::RawOutput;
use crate::history::row::is_name;

/// Resolve the `output` section (a relative `dir` is taken from the config
/// file's directory); with `try_dir`, `output.dir` is also tried
/// for write access.
pub(super) fn resolve(c: &mut Checker, mut o: RawOutput, try_dir: bool) -> Output {
    o.dir = c.path(&o.dir);
    if o.dir.as_os_str().is_empty() {
        c.fail("output.dir", "must not be empty");
    } else if o.dir.exists() && !o.dir.is_dir() {
        c.fail(
            "output.dir",
            format!("{} exists and is not a directory", o.dir.display()),
        );
    } else if let Some(Err(message)) = try_dir.then(|| can_write_in(&o.dir)) {
        c.fail("output.dir", message);
    }
    if !is_name(&o.prefix) || o.prefix.starts_with('.') {
        c.fail(
            "output.prefix",
            format!(
                "`{}` is not a usable file name prefix; use letters, digits, `_`, `-`, `.`",
                o.prefix
            ),
        );
    }
    let max_size = o
        .rotate
        .max_size
        .as_ref()
        .and_then(|s| c.size("output.rotate.max_size", s));
    if max_size.is_some_and(|s| s < 256) {
        c.fail(
            "output.rotate.max_size",
            "must be at least 256 bytes (one header and a row)",
        );
    }
    let every = o
        .rotate
        .every
        .as_deref()
        .and_then(|e| c.duration("output.rotate.every", e));
    if every.is_some_and(|e| e < Duration::from_secs(1)) {
        c.fail("output.rotate.every", "must be at least 1s");
    }
    if o.keep == 0 {
        c.fail("output.keep", "must be at least 1 (rotated files kept)");
    }
    let fsync = match o.fsync.trim() {
        "rotate" => Fsync::Rotate,
        "always" => Fsync::Always,
        other => match humantime::parse_duration(other) {
            Ok(d) if !d.is_zero() => Fsync::Every(d),
            _ => {
                c.fail(
                    "output.fsync",
                    format!("`{other}` is not `rotate`, `always` or a duration such as 30s"),
                );
                Fsync::Rotate
            }
        },
    };
    if o.decimals > 12 {
        c.fail("output.decimals", "must be at most 12");
    }
    if o.queue == 0 {
        c.fail("output.queue", "must be at least 1");
    }
    Output {
        dir: o.dir,
        prefix: o.prefix,
        max_size,
        every,
        keep: o.keep,
        compress: o.compress,
        fsync,
        decimals: o.decimals,
        queue: o.queue,
    }
}
