#!/usr/bin/env bash
# Regenerates completions/ from the CLI definitions (tests/completions.rs fails when they are stale).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
bin=target/debug/faultline
"$bin" completions bash > completions/faultline.bash
"$bin" completions zsh > completions/_faultline
"$bin" completions fish > completions/faultline.fish
echo "completions/ updated"
