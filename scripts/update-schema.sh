#!/usr/bin/env bash
# Regenerates docs/experiment.schema.json from the experiment file's types (tests/schema.rs
# fails when it is stale).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
target/debug/faultline schema > docs/experiment.schema.json
echo "docs/experiment.schema.json updated"
