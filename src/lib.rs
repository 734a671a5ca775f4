//! # tapeloss
//!
//! Loss functions for neural networks, each with its value, its closed-form
//! gradient and both in one fused pass, for `f32` and `f64` [`ndarray`] arrays.
//! Every loss is also written as a composition of ops on a small reverse-mode
//! [`Tape`], so its gradient has a second, independent derivation, and
//! [`gradcheck`] compares the two with finite differences. A loss of your own
//! is a composition of tape ops: implement [`Loss::record`] and `forward`,
//! `backward` and `value_and_grad` come for free.
//!
//! ```
//! use tapeloss::{Loss, MeanSquaredError, Tape, ndarray::array};
//!
//! # fn main() -> tapeloss::Result<()> {
//! let predictions = array![1.5_f64, 2.3, 0.8].into_dyn();
//! let targets = array![1.0, 2.0, 1.0].into_dyn();
//!
//! // A built-in loss: value and gradient in one fused pass.
//! let (value, grad) = MeanSquaredError::new().value_and_grad(&predictions, &targets)?;
//!
//! // The same loss composed on the tape gives the same numbers.
//! let tape = Tape::new();
//! let p = tape.var(predictions.clone());
//! let loss = p.sub(tape.constant(targets.clone()))?.square()?.mean()?;
//! let grads = tape.backward(loss)?;
//! assert!((loss.item()? - value).abs() < 1e-15);
//! assert!(grads.wrt(p).unwrap().iter().zip(&grad).all(|(a, b)| (a - b).abs() < 1e-15));
//! # Ok(()) }
//! ```
//!
//! Only first derivatives are supported: the backward sweep is not itself
//! recorded, so higher-order gradients are out of scope.

// One small module, `tape/lent.rs`, allows it, with its soundness argument.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod float;
pub mod gradcheck;
mod kernels;
pub mod losses;
mod tape;

/// The `ndarray` the crate is built on (0.17), re-exported so that callers use
/// the same version of its array types.
pub use ndarray;

pub use error::{Error, Result};
pub use float::Float;
pub use losses::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, FocalLoss, HingeEmbeddingLoss, HuberLoss, Loss,
    MeanAbsoluteError, MeanSquaredError, Reduction, SmoothL1Loss, SoftMarginLoss, TripletLoss,
};
pub use losses::{KlDivLoss, PoissonNllLoss};
pub use losses::{MultiMarginLoss, NllLoss};
pub use tape::{Gradients, Tape, Var};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
