//! Settings for the tests: `groups:` entries of an agent.yaml, and store
//! settings for tests that open a `Store` directly.

use std::path::Path;

/// One entry of `groups:` in agent.yaml, sensors given as YAML flow maps.
pub fn group(name: &str, unit: &str, sensors: &[String]) -> String {
    let mut s = format!("  - name: {name}\n    unit: {unit}\n    sensors:\n");
    for sensor in sensors {
        s.push_str(&format!("      - {sensor}\n"));
    }
    s
}

/// Store settings for tests: `readings` files in `dir`, no rotation, no
/// compression, fsync on rotation.
pub fn output(dir: &Path) -> edge_agent::config::Output {
    use edge_agent::config::{Compress, Fsync, Output};
    Output {
        dir: dir.to_path_buf(),
        prefix: "readings".into(),
        max_size: None,
        every: None,
        keep: 100,
        compress: Compress::None,
        fsync: Fsync::Rotate,
        decimals: 3,
        queue: 1024,
    }
}
