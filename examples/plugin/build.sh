#!/usr/bin/env bash
# Builds the example plugin into dist/: acme-token.wasm and its manifest with the SHA-256 filled in.
#   ./build.sh                     # then: scaivault plugins install dist/acme-token.wasm --manifest dist/acme-token.json
set -euo pipefail
cd "$(dirname "$0")"
../../plugins/wasm-build.sh "$PWD"
mkdir -p dist
install -m 0644 target/wasm32-unknown-unknown/release/acme_token.wasm dist/acme-token.wasm
sum=$(sha256sum dist/acme-token.wasm | cut -d' ' -f1)
sed "s/\"wasm_sha256\": \"[0-9a-f]*\"/\"wasm_sha256\": \"$sum\"/" manifest.json > dist/acme-token.json
echo "built dist/acme-token.wasm (sha256 $sum)"
