//! The benchmark harness: see `src/bin/` and `scripts/bench-compare`, `scripts/bench-e2e`.
