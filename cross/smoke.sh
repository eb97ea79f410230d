#!/usr/bin/env bash
# Smoke test of a cross-built binary under qemu-user: it serves simulated
# sensors, polls them, writes CSV, stops cleanly on SIGTERM, and replays the
# file back byte for byte.
#   cross/smoke.sh aarch64-unknown-linux-gnu
set -euo pipefail

target="${1:-aarch64-unknown-linux-gnu}"
case "$target" in
    aarch64-unknown-linux-gnu)     qemu=qemu-aarch64-static; sysroot=/usr/aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) qemu=qemu-arm-static;     sysroot=/usr/arm-linux-gnueabihf ;;
    *) echo "unsupported target $target" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."
bin="$PWD/target/$target/release/edge-agent"
[ -x "$bin" ] || { echo "$bin is missing: run cross/build.sh $target first" >&2; exit 1; }
agent() { "$qemu" -L "$sysroot" "$bin" "$@"; }

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

agent --version
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# Started without the function, so that $! is qemu's own pid.
"$qemu" -L "$sysroot" "$bin" simulate --listen "127.0.0.1:$port" --latency 5ms 2>"$work/simulate.log" &
pids+=($!)

cat > "$work/agent.yaml" <<YAML
interval: 1s
timeout: 800ms
output: { dir: $work/data }
groups:
  - name: json
    unit: celsius
    sensors:
      - { id: j1, url: "http://127.0.0.1:$port/json/j1", format: json, value: /temperature_f, unit: fahrenheit }
      - { id: j2, url: "http://127.0.0.1:$port/json/j2", format: json, value: /temperature_c }
  - name: text
    unit: kelvin
    sensors:
      - { id: t1, url: "http://127.0.0.1:$port/text/t1", format: text, unit: celsius }
YAML
agent check --config "$work/agent.yaml" >/dev/null

"$qemu" -L "$sysroot" "$bin" run --config "$work/agent.yaml" 2>"$work/run.log" &
run=$!
pids+=($run)
csv="$work/data/readings.csv"
for _ in $(seq 1 100); do
    rows=$( [ -f "$csv" ] && tail -n +2 "$csv" | wc -l || echo 0)
    if [ "$rows" -ge 6 ]; then break; fi
    sleep 0.2
done
kill -TERM "$run"
status=0
wait "$run" || status=$?
if [ "$status" -ne 0 ]; then
    echo "agent exited with $status" >&2
    cat "$work/run.log" >&2
    exit 1
fi

rows=$(tail -n +2 "$csv" | wc -l)
[ "$rows" -ge 6 ] || { echo "only $rows rows written" >&2; cat "$work/run.log" >&2; exit 1; }
head -1 "$csv" | grep -qx 'time,group,mean,min,max,unit,ok,failed'
# Every row has 8 fields, a plausible mean and no failed sensor.
awk -F, 'NR > 1 {
    if (NF != 8) { print "bad row: " $0; exit 1 }
    if ($2 == "json" && ($3 < 5 || $3 > 35 || $7 != 2 || $8 != 0)) { print "bad json row: " $0; exit 1 }
    if ($2 == "text" && ($3 < 278 || $3 > 308 || $7 != 1 || $8 != 0)) { print "bad text row: " $0; exit 1 }
}' "$csv"

agent replay --dir "$work/data" --output "$work/replayed.csv" 2>"$work/replay.log"
cmp "$csv" "$work/replayed.csv"
agent replay --dir "$work/data" --format influx --group text 2>/dev/null | grep -c '^temperature,group=text,unit=[a-z]* mean=' >/dev/null
echo "smoke test passed on $target under $qemu: $rows rows written and replayed"
