#!/usr/bin/env bash
# Regenerates the rendered examples in deploy/kubernetes/ from deploy/kubernetes/experiment.yaml
# (tests/kube.rs fails when they are stale, and renders with the same flags).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet
target/debug/faultline kube manifests deploy/kubernetes/experiment.yaml \
  --workers 4 --namespace faultline --image registry.example/faultline:0.1.0 \
  --start-at 2026-12-01T10:00:00Z --gpu runtime-class --out deploy/kubernetes
echo "deploy/kubernetes/ updated"
