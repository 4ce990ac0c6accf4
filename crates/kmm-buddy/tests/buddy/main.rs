//! API-level tests of `kmm-buddy`: one suite run against every backend, the
//! misuse cases, and model-based property tests.

mod common;
mod model;
mod suite;
