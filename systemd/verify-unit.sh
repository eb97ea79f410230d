#!/usr/bin/env bash
# Verify systemd/edge-agent.service from a checkout, before installing it:
#   systemd/verify-unit.sh [BINARY]
#
# `systemd-analyze verify systemd/edge-agent.service` alone fails in a
# checkout with "Command /usr/bin/edge-agent is not executable: No such file
# or directory" (once for ExecStartPre, once for ExecStart): verify checks
# that each program the unit runs exists, and /usr/bin/edge-agent exists only
# once the package (or `install`) put it there. The unit is right as it is;
# do not change its paths. Once installed, verify the installed unit:
#   systemd-analyze verify /lib/systemd/system/edge-agent.service
#
# Here: a copy of the unit whose /usr/bin/edge-agent is BINARY (default: the
# debug build, built now), every other line as checked in, is verified.
set -euo pipefail
cd "$(dirname "$0")/.."
unit=systemd/edge-agent.service
if [ $# -ge 1 ]; then
    binary=$(realpath "$1")
else
    cargo build --locked --quiet --bin edge-agent
    binary=$(realpath "${CARGO_TARGET_DIR:-target}")/debug/edge-agent
fi
[ -x "$binary" ] || { echo "verify-unit: $binary is not an executable file" >&2; exit 1; }
grep -q '^ExecStart=/usr/bin/edge-agent ' "$unit" ||
    { echo "verify-unit: $unit does not run /usr/bin/edge-agent; update this script" >&2; exit 1; }
copy=$(mktemp -d)
trap 'rm -rf "$copy"' EXIT
sed "s#/usr/bin/edge-agent#$binary#g" "$unit" > "$copy/edge-agent.service"
systemd-analyze verify "$copy/edge-agent.service"
echo "verify-unit: $unit ok (verified with ExecStart* at $binary)"
