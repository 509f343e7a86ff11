#!/usr/bin/env bash
# Builds every guest plugin from source into dist/: the .wasm files, their manifests (with the
# SHA-256 of the bytes filled in) and SHA256SUMS. The host binary embeds dist/, so only people who
# change a plugin need a wasm toolchain.
#
# Toolchains, in order of preference:
#  - rustup's wasm32-unknown-unknown target, if installed (the usual laptop);
#  - Debian's rustc 1.63 + libstd-rust-dev-wasm32 (this project's build machines), driven by
#    Debian's cargo 0.66 offline, with dependencies vendored by the modern cargo first.
# Set SCAIVAULT_PLUGINS_INSTALL_TOOLCHAIN=1 to let the script apt-get install the Debian one.
#
# Builds are reproducible: paths are remapped so the bytes do not depend on the checkout folder.
# `build.sh --check` rebuilds and fails if the result differs from what dist/ holds (CI runs it).
set -euo pipefail
cd "$(dirname "$0")"
here="$PWD"
check=0
[ "${1:-}" = "--check" ] && check=1

plugins=(types generators)
crate_of() { echo "scaivault_${1//-/_}"; }

export RUSTFLAGS="--remap-path-prefix=$here=/build"
out=target/wasm32-unknown-unknown/release

if rustup target list --installed 2>/dev/null | grep -q '^wasm32-unknown-unknown$'; then
  echo "plugins: building with rustup's wasm32 target" >&2
  cargo build --locked --offline --release --target wasm32-unknown-unknown 2>/dev/null \
    || cargo build --locked --release --target wasm32-unknown-unknown
else
  if [ ! -x /usr/bin/rustc ] || [ ! -d /usr/lib/rustlib/wasm32-unknown-unknown ]; then
    if [ "${SCAIVAULT_PLUGINS_INSTALL_TOOLCHAIN:-0}" = 1 ]; then
      apt-get update -qq && apt-get install -y -qq rustc cargo libstd-rust-dev-wasm32 >/dev/null
    else
      echo "plugins: no wasm32 toolchain (rustup target or Debian's libstd-rust-dev-wasm32);" >&2
      echo "         rerun with SCAIVAULT_PLUGINS_INSTALL_TOOLCHAIN=1 to install Debian's" >&2
      exit 2
    fi
  fi
  echo "plugins: building with Debian's rustc $(/usr/bin/rustc --version | cut -d' ' -f2)" >&2
  # The modern cargo vendors (it can reach the registry); Debian's cargo 0.66 builds offline
  # and reads only lockfile format 3, which the committed Cargo.lock is kept in.
  mkdir -p .cargo
  cargo vendor --locked vendor 2>/dev/null > .cargo/config.toml
  RUSTC=/usr/bin/rustc /usr/bin/cargo build --offline --release --target wasm32-unknown-unknown
fi

dest=dist
[ "$check" = 1 ] && dest=$(mktemp -d)
mkdir -p "$dest"
for p in "${plugins[@]}"; do
  install -m 0644 "$out/$(crate_of "$p").wasm" "$dest/$p.wasm"
  sum=$(sha256sum "$dest/$p.wasm" | cut -d' ' -f1)
  sed "s/\"wasm_sha256\": \"[0-9a-f]*\"/\"wasm_sha256\": \"$sum\"/" "manifests/$p.json" > "$dest/$p.json"
done
(cd "$dest" && sha256sum ./*.wasm | sed 's| \./| |' > SHA256SUMS)

if [ "$check" = 1 ]; then
  if diff -r "$dest" dist >/dev/null; then
    echo "plugins: dist/ matches a rebuild from source"
  else
    echo "plugins: dist/ differs from a rebuild from source:" >&2
    diff -r "$dest" dist >&2 || true
    exit 1
  fi
else
  cat dist/SHA256SUMS
fi
