//! What the config check asks the file system: whether the output dir can be
//! written, a small file's bytes, whether a file is readable by every user.
//!
//! Kept apart from the rules so the rules read as rules; each probe answers
//! with a message fit for a [`super::Problem`], never a panic, whatever the
//! path turns out to be (missing, a directory, a FIFO, /dev/zero).

use std::path::Path;

/// Name prefix of the file made and removed to try `output.dir` for write
/// access; the store removes one a killed start left behind.
pub const WRITE_PROBE_PREFIX: &str = ".edge-agent-probe-";

/// Whether the agent can create files in `dir`, or create `dir` itself: a
/// file is made and removed in the nearest directory that exists. Asking the
/// file system is the only sure way (root, read-only mounts, ACLs).
pub(super) fn can_write_in(dir: &Path) -> Result<(), String> {
    let mut at = dir;
    while !at.exists() {
        match at.parent() {
            Some(p) if !p.as_os_str().is_empty() => at = p,
            _ => {
                at = Path::new(".");
                break;
            }
        }
    }
    if !at.is_dir() {
        return Err(format!("{} is not a directory", at.display()));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let probe = at.join(format!(
        "{}{}-{nanos}",
        WRITE_PROBE_PREFIX,
        std::process::id()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) if at == dir => Err(format!(
            "cannot write in {}: {e}; the user the agent runs as needs write access there",
            at.display()
        )),
        Err(e) => Err(cannot_create(dir, at, &e)),
    }
}

/// The directory the shipped unit (`systemd/edge-agent.service`) has systemd
/// create for the agent with `StateDirectory=edge-agent`.
const STATE_DIRECTORY: &str = "/var/lib/edge-agent";

/// Why `dir`, missing, cannot be made by this user (`at`, the nearest
/// directory that exists, refused the probe with `e`), and what to do. Not
/// "give the user write access to `at`": that is never the fix for
/// /var/lib. The unit's state directory is made by systemd when the service
/// starts, owned by the service user, before its `check` runs; a `check`
/// before the first start finds it missing.
fn cannot_create(dir: &Path, at: &Path, e: &std::io::Error) -> String {
    let create = |user: &str, group: &str| {
        format!(
            "sudo install -d -o {user} -g {group} -m 0750 {}",
            dir.display()
        )
    };
    if dir == Path::new(STATE_DIRECTORY) {
        format!(
            "{} does not exist yet, and this user cannot create it (cannot write in {}: {e}); \
             systemd creates it, owned by the service user, when edge-agent.service starts \
             (StateDirectory=edge-agent), before the unit's own `check`; the edge-agent package \
             creates it at install. Start the service, or create it to check first: {}",
            dir.display(),
            at.display(),
            create("edge-agent", "edge-agent")
        )
    } else {
        format!(
            "{} does not exist, and this user cannot create it (cannot write in {}: {e}); \
             create it for the user the agent runs as: {}",
            dir.display(),
            at.display(),
            create("USER", "GROUP")
        )
    }
}

/// A small file the config names (a password, CA certificates): a regular
/// file of at most `limit` bytes, so a path such as /dev/zero or a FIFO can
/// never hang `check` or a reload.
pub(super) fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    if !std::fs::metadata(path).map_err(cannot)?.is_file() {
        return Err(format!("{} is not a regular file", path.display()));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{} is larger than {}; is it the right file?",
            path.display(),
            super::values::HumanSize(limit)
        ));
    }
    Ok(bytes)
}

/// Whether users other than the owner and group may read `path`.
pub(super) fn readable_by_all(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o004 != 0)
}
