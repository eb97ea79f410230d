#!/usr/bin/env python3
"""Steady-state RSS of `edge-agent run` with the `cycle` bench's config (10,000
sensors on 10 loopback hosts, 20 ms latency, limit 200, limit_per_host 25, 3 s
interval), for comparing builds (BENCHMARKS.md, "Issue 16").

Usage: benches/steady_rss.py AGENT_BIN [runs=3] [cycles=5]
Prints per run VmHWM, and after `cycles` cycle lines VmRSS, RssAnon, RssFile
(kB, /proc/PID/status), then the medians. Environment: SIM=binary that runs
`simulate` (default: AGENT_BIN), SMAPS=FILE copies /proc/PID/smaps to FILE.N,
WRAP="heaptrack -o FILE" runs the agent under that command. Loopback only."""
import os, sys, socket, subprocess, tempfile, time, signal, statistics, re
agent = sys.argv[1]; runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
cycles = int(sys.argv[3]) if len(sys.argv) > 3 else 5
sim_bin = os.environ.get("SIM", agent)
def status(pid):
    d = {}
    for l in open(f"/proc/{pid}/status"):
        k, v = l.split(":", 1)
        if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"): d[k] = int(v.split()[0])
    return d
res = []
for r in range(runs):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    d = tempfile.mkdtemp(prefix="i16mem-")
    args = [sim_bin, "simulate", "--latency", "20ms"]
    for h in range(10): args += ["--listen", f"127.0.0.{h+1}:{port}"]
    sim = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(d+"/sim.log","w"))
    time.sleep(1.0)
    y = [f"interval: 3s\ntimeout: 2s\nlimit: 200\nlimit_per_host: 25\noutput:\n  dir: {d}/out\n  prefix: bench\ngroups:\n"]
    for g in range(100):
        y.append(f"  - name: g-{g}\n    unit: celsius\n    sensors:\n")
        for i in range(g*100, (g+1)*100):
            y.append(f"      - {{ id: s-{i}, url: \"http://127.0.0.{i%10+1}:{port}/text/s-{i}\", format: text }}\n")
    open(d+"/bench.yaml","w").write("".join(y))
    wrap = os.environ.get("WRAP","").split()
    p = subprocess.Popen(wrap + [agent, "run", "--config", d+"/bench.yaml", "--log-level", "debug"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    n = 0; after_start = None; lines = []
    for line in p.stderr:
        lines.append(line)
        if after_start is None and "cycle" in line: pass
        if re.search(r"ok=\d+ failed=\d+", line):
            n += 1
            m = re.search(r"ok=(\d+) failed=(\d+)", line)
            if n == 1: after_start = status(p.pid) if not wrap else {"VmRSS":0}
            if n >= cycles: break
    st = status(p.pid) if not wrap else {"VmHWM":0,"VmRSS":0,"RssAnon":0,"RssFile":0}
    if os.environ.get("SMAPS"):
        os.system(f"cp /proc/{p.pid}/smaps {os.environ['SMAPS']}.{r}")
    p.send_signal(signal.SIGTERM); p.wait(); sim.send_signal(signal.SIGTERM); sim.wait()
    print(f"run {r}: HWM {st['VmHWM']} RSS {st['VmRSS']} anon {st['RssAnon']} file {st['RssFile']} (after cycle1 RSS {after_start['VmRSS']}) last: {m.group(0)}", flush=True)
    res.append(st)
    subprocess.run(["rm", "-rf", d])
for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
    v = [x[k] for x in res]
    print(f"median {k}: {statistics.median(v)} kB = {statistics.median(v)/1024:.2f} MiB  {sorted(v)}")
