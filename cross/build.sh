#!/usr/bin/env bash
# Build a release edge-agent for an ARM gateway without Docker:
#   cross/build.sh aarch64-unknown-linux-gnu     (64-bit Raspberry Pi OS, Ubuntu on Pi 3/4/5)
#   cross/build.sh armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS on Pi 2/3/4)
#
# Uses Debian bookworm's rustc 1.85 (`rustc-web`, the crate's rust-version), the
# target's std from Debian's `libstd-rust-web-dev:<arch>` of the same version
# (downloaded and unpacked, since a multiarch install fails on a version skew),
# and Debian's cross gcc as the linker. Installs what a fresh Debian machine
# lacks (needs root). The binary lands in target/<TARGET>/release/edge-agent.
set -euo pipefail

RUST_VERSION="1.85.0+dfsg3-1~deb12u3"
target="${1:-aarch64-unknown-linux-gnu}"
case "$target" in
    aarch64-unknown-linux-gnu)     arch=arm64; gnu=aarch64-linux-gnu ;;
    armv7-unknown-linux-gnueabihf) arch=armhf; gnu=arm-linux-gnueabihf ;;
    *) echo "unsupported target $target (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
esac
cd "$(dirname "$0")/.."

have_pkg() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
# apt-get update exits 100 when any one index fails, e.g. a mirror caught
# mid-sync (seen on bookworm-security's armhf Packages). All this script
# fetches is pinned to bookworm main, so go on: the install or download below
# fails by itself if an index it needs is missing.
apt_update() { apt-get update -qq || echo "warning: apt-get update reported errors (above); going on" >&2; }

export DEBIAN_FRONTEND=noninteractive
need=()
[ "$(have_pkg rustc-web)" = "$RUST_VERSION" ] || need+=("rustc-web=$RUST_VERSION" "libstd-rust-web-dev=$RUST_VERSION" "libstd-rust-web-1.85=$RUST_VERSION")
[ "$(have_pkg cargo-web)" = "$RUST_VERSION" ] || need+=("cargo-web=$RUST_VERSION")
[ -n "$(have_pkg "gcc-$gnu")" ] || need+=("gcc-$gnu" "libc6-dev-$arch-cross")
[ -n "$(have_pkg qemu-user-static)" ] || need+=(qemu-user-static)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    apt_update
    apt-get install -y -qq --no-install-recommends --allow-downgrades "${need[@]}"
fi

# The target's standard library, from the Debian package of the same version.
sysroot=/usr/lib/rustlib/$target
if [ ! -d "$sysroot/lib" ]; then
    if ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        dpkg --add-architecture "$arch"
    fi
    # Not only right after add-architecture: a run stopped after it must not skip this.
    if ! apt-cache madison "libstd-rust-web-dev:$arch" | grep -qF "| $RUST_VERSION |"; then
        apt_update
    fi
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download "libstd-rust-web-dev:$arch=$RUST_VERSION" "libstd-rust-web-1.85:$arch=$RUST_VERSION")
    for deb in "$tmp"/*.deb; do dpkg -x "$deb" /; done
    rm -rf "$tmp"
fi

rustc=/usr/bin/rustc
cargo=/usr/bin/cargo
"$rustc" --version
linker_var="CARGO_TARGET_$(echo "$target" | tr 'a-z-' 'A-Z_')_LINKER"
export "$linker_var=$gnu-gcc"
# Debian's cargo and rustc, not rustup's (which cannot fetch other targets here).
RUSTC="$rustc" "$cargo" build --locked --release --target "$target" --bin edge-agent
bin="target/$target/release/edge-agent"
ls -l "$bin"
echo "built $bin ($(stat -c %s "$bin") bytes)"
