#!/usr/bin/env bash
# Builds the guest workspace in directory $1 for wasm32-unknown-unknown, release, reproducibly.
# Used by plugins/build.sh and by plugin authors (examples/plugin/build.sh).
#
# Toolchains, in order of preference:
#  - rustup's wasm32-unknown-unknown target, if installed (the usual laptop);
#  - Debian's rustc 1.63 + libstd-rust-dev-wasm32 (this project's build machines), driven by
#    Debian's cargo 0.66 offline, with dependencies vendored by the modern cargo first (Debian's
#    cargo cannot read the registry index). Set SCAIVAULT_PLUGINS_INSTALL_TOOLCHAIN=1 to let
#    this script apt-get install it.
# Paths are remapped so the bytes do not depend on where the checkout is.
set -euo pipefail
cd "$1"
here="$PWD"
# A 256 KiB stack instead of the default 1 MiB keeps every instance small: the host resets
# each instance's memory between calls, and a small one is reset without unmapping pages.
export RUSTFLAGS="--remap-path-prefix=$here=/build -C link-arg=-zstack-size=262144"

if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  echo "wasm-build: $(basename "$here") with rustup's wasm32 target" >&2
  exec cargo build --locked --release --target wasm32-unknown-unknown
fi

if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/wasm32-unknown-unknown ] || [ ! -x /usr/bin/cargo ]; then
  if [ "${SCAIVAULT_PLUGINS_INSTALL_TOOLCHAIN:-0}" = 1 ]; then
    echo "wasm-build: installing Debian's rustc, cargo and libstd-rust-dev-wasm32" >&2
    apt-get update -qq && apt-get install -y -qq rustc cargo libstd-rust-dev-wasm32 >/dev/null
  else
    echo "wasm-build: no wasm32 toolchain (rustup's target or Debian's libstd-rust-dev-wasm32);" >&2
    echo "            rerun with SCAIVAULT_PLUGINS_INSTALL_TOOLCHAIN=1 to install Debian's" >&2
    exit 2
  fi
fi
echo "wasm-build: $(basename "$here") with Debian's rustc $(/usr/bin/rustc --version | cut -d' ' -f2)" >&2
mkdir -p .cargo
# The modern cargo (first on PATH) vendors; it also writes the source replacement config.
cargo vendor --locked vendor > .cargo/config.toml 2>/dev/null
RUSTC=/usr/bin/rustc /usr/bin/cargo build --offline --release --target wasm32-unknown-unknown
