//! Property tests over random shapes, ranks, values and hyperparameters for
//! every loss and every tape op, with a seeded generator: nothing panics,
//! every `Ok` is finite with the right shape, valid cases succeed and cases
//! with a planted defect fail. The cases are decoded from random bytes by
//! `tests/common/exercise.rs`, which the fuzz target in `fuzz/` shares.
//!
//! The default is 2048 cases per test with a fixed seed; set `PROPTEST_CASES`
//! for more and `PROPTEST_RNG_SEED` for another seed (both are read by
//! proptest itself).

#[path = "common/exercise.rs"]
mod exercise;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed};

/// proptest's defaults and environment overrides, with a fixed seed unless
/// `PROPTEST_RNG_SEED` is set, and no regression files (the seed reproduces
/// every failure).
fn config() -> Config {
    let mut config = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 2048; // about half a second for the file at opt-level 1
    }
    if std::env::var_os("PROPTEST_RNG_SEED").is_none() {
        config.rng_seed = RngSeed::Fixed(0x7a9e_1055);
    }
    config.failure_persistence = None;
    config
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..400)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn regression_losses(kind in 0usize..4, f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(kind, f32_case, &data);
    }

    #[test]
    fn binary_cross_entropy(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(4, f32_case, &data);
    }

    #[test]
    fn focal(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(6, f32_case, &data);
    }

    #[test]
    fn cross_entropy(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(7, f32_case, &data);
    }

    #[test]
    fn contrastive(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(9, f32_case, &data);
    }

    #[test]
    fn triplet(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(10, f32_case, &data);
    }

    #[test]
    fn margin_losses(kind in 11usize..13, f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(kind, f32_case, &data);
    }

    #[test]
    fn kl_divergence(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(13, f32_case, &data);
    }

    #[test]
    fn poisson_nll(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(14, f32_case, &data);
    }

    #[test]
    fn nll(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(15, f32_case, &data);
    }

    #[test]
    fn multi_margin(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_loss(16, f32_case, &data);
    }

    #[test]
    fn tape_ops(f32_case in any::<bool>(), data in bytes()) {
        exercise::run_tape(f32_case, &data);
    }

    #[test]
    fn anything(data in bytes()) {
        exercise::run(&data);
    }
}
