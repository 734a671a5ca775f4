//! A loss of your own, and how to know its gradient is right.
//!
//! 1. Log-cosh written only as tape ops (`record`): `forward`, `backward` and
//!    `value_and_grad` come for free, and the gradient checker confirms them.
//! 2. The same loss with a hand-written `backward` that forgets one chain-rule
//!    factor: the checker catches it and shows where.
//!
//! Run with `cargo run --example custom_loss`.

use tapeloss::gradcheck::{GradCheckConfig, check_loss};
use tapeloss::ndarray::{ArrayD, Zip, array};
use tapeloss::{Loss, Result, Tape, Var};

/// Log-cosh, mean over elements: ln cosh(d) with d = p − t, written stably as
/// d + softplus(−2d) − ln 2. Its gradient is tanh(d)/n.
struct LogCosh;

impl Loss<f64> for LogCosh {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        let d = p.sub(tape.constant_from(t))?;
        d.add(d.mul_scalar(-2.0)?.softplus()?)?
            .add_scalar(-std::f64::consts::LN_2)?
            .mean()
    }
}

/// Log-cosh again, with a closed form written by hand. The derivative of
/// d + softplus(−2d) is 1 − 2σ(−2d) (= tanh d); this `backward` drops the 2
/// that the chain rule brings out of softplus(−2d).
struct LogCoshByHand;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

impl Loss<f64> for LogCoshByHand {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        LogCosh.record(tape, p, t)
    }

    fn forward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<f64> {
        let sum = Zip::from(p).and(t).fold(0.0, |acc, &p, &t| {
            let d: f64 = p - t;
            acc + d.abs() + (-2.0 * d.abs()).exp().ln_1p() - std::f64::consts::LN_2
        });
        Ok(sum / p.len() as f64)
    }

    fn backward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        let n = p.len() as f64;
        // The slip: should be 1 − 2σ(−2d).
        Ok(Zip::from(p)
            .and(t)
            .map_collect(|&p, &t| (1.0 - sigmoid(-2.0 * (p - t))) / n))
    }
}

fn main() -> Result<()> {
    let predictions = array![[0.5, -1.2, 2.0], [0.1, 3.0, -0.4]].into_dyn();
    let targets = array![[0.0, -1.0, 1.0], [0.3, 0.5, -0.4]].into_dyn();
    let config = GradCheckConfig::default();

    let (value, grad) = LogCosh.value_and_grad(&predictions, &targets)?;
    println!("log-cosh from `record` alone: value {value:.6}, gradient\n{grad:.6}\n");
    let report = check_loss(&LogCosh, &predictions, &targets, &config)?;
    println!("{report}");
    assert!(report.passed());

    println!("The same loss with a hand-written backward that drops a chain-rule factor:\n");
    let report = check_loss(&LogCoshByHand, &predictions, &targets, &config)?;
    println!("{report}");
    assert!(!report.passed());
    Ok(())
}
