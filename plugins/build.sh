#!/usr/bin/env bash
# Builds every guest plugin from source into dist/: the .wasm files, their manifests (with the
# SHA-256 of the bytes filled in) and SHA256SUMS. The host binary embeds dist/, so only people who
# change a plugin need a wasm toolchain.
#
# The toolchain is chosen by wasm-build.sh (rustup's wasm32 target, else Debian's rustc 1.63).
#
set -euo pipefail
cd "$(dirname "$0")"
here="$PWD"
check=0
[ "${1:-}" = "--check" ] && check=1

plugins=(types generators webhook postgres)
crate_of() { echo "scaivault_${1//-/_}"; }

out=target/wasm32-unknown-unknown/release
./wasm-build.sh "$here"

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
