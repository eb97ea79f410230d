//! `edge-agent check`: the resolved plan, as a person wants to read it
//! before starting the agent. Secrets are shown as `<redacted>`.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::config::{Config, Fsync, HumanSize, Selector};
use crate::history::names;

/// A multi-line description of what `run` would do with `config`.
pub fn describe(config: &Config) -> String {
    let mut out = String::new();
    let d = |d| humantime::format_duration(d).to_string();
    let _ = writeln!(out, "config {}: ok", config.source.display());
    let _ = writeln!(
        out,
        "every {} (ticks aligned to the clock), timeout {}, at most {} request(s) in flight, {} per host, bodies up to {}",
        d(config.interval),
        d(config.timeout),
        config.limit,
        config.limit_per_host,
        HumanSize(config.max_body)
    );
    let _ = match config.backoff {
        Some(b) => writeln!(
            out,
            "backoff: a sensor failing {} poll(s) in a row is polled less often, at most {} intervals ({}) apart, until it answers",
            b.after,
            b.max,
            d(config.interval * u32::from(b.max))
        ),
        None => writeln!(
            out,
            "backoff: off (failing sensors are polled every interval)"
        ),
    };
    let o = &config.output;
    let mut rotate = Vec::new();
    if let Some(s) = o.max_size {
        rotate.push(format!("at {}", HumanSize(s)));
    }
    if let Some(e) = o.every {
        rotate.push(format!("every {} (UTC-aligned)", d(e)));
    }
    let _ = writeln!(
        out,
        "output: {}",
        names::active(&o.dir, &o.prefix).display()
    );
    let _ = writeln!(
        out,
        "  rotate {}; keep {} rotated file(s); compress {}; fsync {}",
        if rotate.is_empty() {
            "never".to_string()
        } else {
            rotate.join(" or ")
        },
        o.keep,
        match o.compress {
            crate::config::Compress::None => "none",
            crate::config::Compress::Gzip => "gzip",
        },
        match o.fsync {
            Fsync::Rotate => "on rotation".to_string(),
            Fsync::Always => "after every write".to_string(),
            Fsync::Every(t) => format!("every {}", d(t)),
        }
    );
    let _ = writeln!(out, "groups:");
    for g in &config.groups {
        let _ = writeln!(
            out,
            "  {} ({}, one row per {}): {} sensor(s)",
            g.name,
            g.unit.as_str(),
            d(g.window),
            g.sensors.len()
        );
        for s in &g.sensors {
            let _ = write!(
                out,
                "    {} {} {} from {}",
                s.id(),
                s.format.as_str(),
                match &s.selector {
                    Selector::Text => "body".to_string(),
                    other => other.to_string(),
                },
                s.shown_url()
            );
            if s.unit != g.unit {
                let _ = write!(out, " in {}", s.unit.as_str());
            }
            if s.timeout != config.timeout {
                let _ = write!(out, ", timeout {}", d(s.timeout));
            }
            for (name, value) in s.headers() {
                let _ = write!(out, ", header {name}: {value}");
            }
            if let Some(auth) = s.basic_auth() {
                let _ = write!(
                    out,
                    ", basic auth {}:{}",
                    auth.username,
                    if auth.password.is_some() {
                        "<redacted>"
                    } else {
                        ""
                    }
                );
            }
            if s.tls().insecure {
                let _ = write!(out, ", TLS NOT VERIFIED");
            }
            if let Some(ca) = &s.tls().ca_file {
                let _ = write!(out, ", CA {}", ca.display());
            }
            let _ = writeln!(out);
        }
    }
    let mut hosts: BTreeMap<String, usize> = BTreeMap::new();
    for (_, s) in config.sensors() {
        *hosts.entry(s.host().to_string()).or_default() += 1;
    }
    let _ = writeln!(out, "hosts ({}):", hosts.len());
    for (host, n) in &hosts {
        let _ = writeln!(
            out,
            "  {host}: {n} sensor(s), up to {} at once",
            (*n).min(config.limit_per_host).min(config.limit)
        );
    }
    if !config.forward.is_empty() {
        let _ = writeln!(out, "forward ({}):", config.forward.len());
    }
    for f in &config.forward {
        let _ = writeln!(
            out,
            "  {} -> {} as `{}`: batches of up to {} rows / {} (sent after {} at most), up to {} rows/s, \
             timeout {}, retry waits up to {} (full jitter from {}), refused batches {}",
            f.name,
            f.shown_url,
            f.measurement,
            f.batch_rows,
            HumanSize(f.batch_bytes as u64),
            d(f.max_delay),
            f.max_rate,
            d(f.timeout),
            d(f.retry_max),
            d(f.retry_first),
            match f.on_refused {
                crate::config::OnRefused::Skip => "skipped",
                crate::config::OnRefused::Pause => "pause the target",
            }
        );
        let mut more = Vec::new();
        for (name, value) in &f.headers {
            more.push(format!("header {name}: {value}"));
        }
        if f.tls.insecure {
            more.push("TLS NOT VERIFIED".into());
        }
        if let Some(ca) = &f.tls.ca_file {
            more.push(format!("CA {}", ca.display()));
        }
        if let Some(l) = f.max_lag {
            more.push(format!("/healthz fails past {} of lag", d(l)));
        }
        match f.keep_unforwarded {
            Some(b) => more.push(format!(
                "retention keeps unsent files while rotated files stay within {}",
                HumanSize(b)
            )),
            None => {
                more.push("retention does not wait (unsent rows it removes are counted)".into())
            }
        }
        if f.start == crate::config::Start::Now {
            more.push("without a cursor, starts at the active file's end".into());
        }
        let _ = writeln!(out, "    {}", more.join("; "));
        let _ = writeln!(
            out,
            "    cursor {}",
            names::forward_cursor(&config.output.dir, &config.output.prefix, &f.name).display()
        );
    }
    out
}
