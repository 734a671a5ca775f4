//! Drives every loss and the tape ops with shapes, values and hyperparameters
//! decoded from the fuzzer's bytes; any panic is a crash. The decoder and the
//! checks are `tests/common/exercise.rs`, shared with `tests/properties.rs`:
//! besides "no panic", every `Ok` must be finite with the right shape, valid
//! cases must succeed and cases with a planted defect must fail.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)] // run_loss and run_tape serve the property tests
#[path = "../../tests/common/exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| {
    exercise::run(data);
});
