//! Whether the open-file limit fits the config: the warning `check` (and
//! `run`, and each reload) gives when the agent may need more open files
//! than `RLIMIT_NOFILE` allows, before a connection fails with "Too many
//! open files".
//!
//! What the agent may hold open is counted from the config, not taken as
//! `limit`: each host's connections stay open between cycles for reuse,
//! up to `limit_per_host` (the idle pool's cap), so 1,000 hosts with one
//! sensor each keep 1,000 connections even under `limit: 100`. Per host
//! (and TLS setting, one client each) that is at most as many as it has
//! sensors or `limit_per_host`, whichever is fewer; `limit` caps only how
//! many of them are busy at once, a subset. To that come the agent's own
//! files, [`OWN_FILES`].

use std::collections::HashMap;

use super::model::Config;
use crate::rlimit::OpenFiles;

/// The agent's own open files, counted generously: stdin, stdout, stderr
/// (3); the async runtime's epoll, waker and signal sockets (6); the store's
/// lock, active file, index, rotation journal, a compression's source and
/// target, a directory listing and the start-up read of the newest rows
/// (8); the metrics listener and two scrapes (3); name lookups on the four
/// blocking threads, a socket and /etc/hosts or resolv.conf each (8); and
/// a reload's config file, `ca_file`, password file and write probe (4).
pub(super) const OWN_FILES: u64 = 32;

/// Connections the agent may keep open for `config`'s sensors.
pub(super) fn connections(config: &Config) -> u64 {
    let mut per_host: HashMap<_, u64> = HashMap::new();
    for (_, sensor) in config.sensors() {
        *per_host.entry((sensor.host(), sensor.tls())).or_default() += 1;
    }
    let cap = config.limit_per_host as u64;
    per_host.values().map(|&n| n.min(cap)).sum()
}

/// The warning for `config` under `limits`, if it may need more open files
/// than the soft limit.
pub(super) fn warning(config: &Config, limits: OpenFiles) -> Option<String> {
    let connections = connections(config);
    let need = connections + OWN_FILES;
    if limits.soft.fits(need) {
        return None;
    }
    let mut text = format!(
        "open files: this config may hold up to {need} files open, more than the open-file \
         limit (RLIMIT_NOFILE) of {soft}: {connections} connection(s) to sensors (each host's \
         stay open between cycles, up to limit_per_host = {per_host}; at most limit = {limit} \
         busy at once) and {OWN_FILES} of the agent's own (log, data file, index, lock, \
         metrics listener, runtime, name lookups); the hard limit is {hard}, and `run` raises \
         the soft limit to it at start",
        soft = limits.soft,
        per_host = config.limit_per_host,
        limit = config.limit,
        hard = limits.hard,
    );
    if limits.hard.fits(need) {
        text.push_str(", which is enough");
    } else {
        text.push_str(
            ", which is still too few: connections past it fail with \"Too many open files\"; \
             raise the hard limit (LimitNOFILE= in the systemd unit, `ulimit -n` as root)",
        );
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rlimit::Limit;
    use std::path::Path;

    /// A config of `hosts` hosts with `per_host` sensors each.
    fn site(hosts: usize, per_host: usize, limit: usize, limit_per_host: usize) -> Config {
        let mut sensors = String::new();
        for h in 0..hosts {
            for s in 0..per_host {
                sensors.push_str(&format!(
                    "      - {{ id: s{h}-{s}, url: 'http://10.0.{}.{}/{s}', format: text }}\n",
                    h / 250,
                    h % 250 + 1
                ));
            }
        }
        let text = format!(
            "interval: 10s\ntimeout: 1s\nlimit: {limit}\nlimit_per_host: {limit_per_host}\n\
             output:\n  dir: /nonexistent\ngroups:\n  - name: g\n    unit: celsius\n    sensors:\n{sensors}"
        );
        Config::parse(&text, Path::new("agent.yaml")).unwrap()
    }

    fn limits(soft: u64, hard: u64) -> OpenFiles {
        OpenFiles {
            soft: Limit(Some(soft)),
            hard: Limit(Some(hard)),
        }
    }

    #[test]
    fn connections_are_capped_per_host_not_by_limit() {
        // One host: limit_per_host caps it.
        assert_eq!(connections(&site(1, 300, 100, 25)), 25);
        // Many hosts of one sensor each: every one stays open, past `limit`.
        assert_eq!(connections(&site(1000, 1, 100, 25)), 1000);
        assert_eq!(connections(&site(10, 3, 100, 25)), 30);
    }

    #[test]
    fn warns_past_the_soft_limit_and_says_whether_the_hard_one_is_enough() {
        let config = site(1000, 1, 100, 25);
        assert_eq!(warning(&config, limits(2048, 2048)), None);
        let enough = warning(&config, limits(1024, 4096)).unwrap();
        assert!(enough.contains("up to 1032 files open"), "{enough}");
        assert!(enough.contains("of 1024"), "{enough}");
        assert!(enough.contains("the hard limit is 4096"), "{enough}");
        assert!(enough.ends_with("which is enough"), "{enough}");
        let short = warning(&config, limits(1024, 1024)).unwrap();
        assert!(short.contains("still too few"), "{short}");
        let unlimited = OpenFiles {
            soft: Limit(None),
            hard: Limit(None),
        };
        assert_eq!(warning(&config, unlimited), None);
    }
}
