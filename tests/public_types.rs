//! Every public value type is `Debug + Clone + Send + Sync + 'static`, so it can
//! live in a config, cross threads and show up in logs. `Tape` and `Var` are the
//! exceptions by design: the tape records through a `RefCell` (one tape per
//! thread), so it is `Send` but not `Sync`, and a `Var` borrows it.

use tapeloss::gradcheck::{GradCheckConfig, GradCheckReport, SplitMix64};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, Error, FocalLoss, Gradients, HingeEmbeddingLoss,
    HuberLoss, MeanAbsoluteError, MeanSquaredError, Reduction, SmoothL1Loss, SoftMarginLoss, Tape, TripletLoss,
};
use tapeloss::{KlDivLoss, MultiMarginLoss, NllLoss, PoissonNllLoss};

fn value_type<T: std::fmt::Debug + Clone + Send + Sync + 'static>() {}
fn sendable<T: Send>() {}

#[test]
fn public_value_types_are_debug_clone_send_sync() {
    value_type::<MeanSquaredError>();
    value_type::<MeanAbsoluteError>();
    value_type::<HuberLoss>();
    value_type::<SmoothL1Loss>();
    value_type::<CrossEntropyLoss>();
    value_type::<BinaryCrossEntropyLoss>();
    value_type::<FocalLoss>();
    value_type::<ContrastiveLoss>();
    value_type::<TripletLoss>();
    value_type::<SoftMarginLoss>();
    value_type::<HingeEmbeddingLoss>();
    value_type::<KlDivLoss>();
    value_type::<PoissonNllLoss>();
    value_type::<NllLoss>();
    value_type::<MultiMarginLoss>();
    value_type::<Reduction>();
    value_type::<Error>();
    value_type::<Gradients<f32>>();
    value_type::<Gradients<f64>>();
    value_type::<GradCheckConfig>();
    value_type::<GradCheckReport>();
    value_type::<SplitMix64>();
    sendable::<Tape<f64>>();
}

#[test]
fn losses_work_as_trait_objects_for_both_float_types() {
    // One loss value serves f32 and f64, and can be chosen at run time.
    let losses: Vec<Box<dyn tapeloss::Loss<f32> + Send + Sync>> =
        vec![Box::new(MeanSquaredError::new()), Box::new(HuberLoss::new(1.0))];
    let p = tapeloss::ndarray::array![1.0_f32, 2.0].into_dyn();
    let t = tapeloss::ndarray::array![0.0_f32, 2.0].into_dyn();
    // MSE: (1 + 0)/2; Huber δ=1: (0.5 + 0)/2.
    let values: Vec<f32> = losses.iter().map(|l| l.forward(&p, &t).unwrap()).collect();
    assert_eq!(values, vec![0.5, 0.25]);
}
