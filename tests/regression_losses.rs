//! MSE, MAE, Huber and smooth L1: gradients by three derivations, PyTorch
//! fixtures, f32 against f64, and sharding.

mod common;

use common::{Rng, assert_close, assert_close_scalar, assert_gradients_agree, fixtures};
use tapeloss::{Loss, MeanSquaredError, Reduction};

fn reduction(options: &serde_json::Value) -> Reduction {
    match options["reduction"].as_str() {
        Some("sum") => Reduction::Sum,
        _ => Reduction::Mean,
    }
}

#[test]
fn mse_matches_pytorch() {
    for case in fixtures("regression").into_iter().filter(|c| c.loss == "mse") {
        let loss = MeanSquaredError::new().with_reduction(reduction(&case.options));
        let (value, grad) = loss.value_and_grad(&case.predictions, &case.targets).unwrap();
        assert_close_scalar(value, case.value, 1e-10, 0.0, &case.name);
        assert_close(&grad, &case.grad, 1e-10, 1e-300, &case.name);
    }
}

#[test]
fn mse_gradients_agree() {
    let mut rng = Rng::new(1);
    for shape in [&[5][..], &[3, 4], &[2, 3, 2]] {
        let p = rng.array(shape, -2.0, 2.0);
        let t = rng.array(shape, -2.0, 2.0);
        for r in [Reduction::Mean, Reduction::Sum] {
            assert_gradients_agree(
                &MeanSquaredError::new().with_reduction(r),
                &p,
                &t,
                &format!("mse {shape:?} {r:?}"),
            );
        }
    }
}
