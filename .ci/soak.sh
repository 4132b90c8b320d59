#!/usr/bin/env bash
# Soak test: tens of thousands of inferences (LEVIT_SOAK_INFERENCES, default 30000 in
# the main phase; about two minutes on two cores). Fails if resident memory grows
# after warm-up, if an inference allocates, or if any output drifts from its
# reference. See crates/levit/tests/robustness_soak.rs and docs/robustness.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export LEVIT_SOAK_INFERENCES=${LEVIT_SOAK_INFERENCES:-30000}
cargo test -p levit --test robustness_soak --locked -- --ignored --nocapture --test-threads=1
