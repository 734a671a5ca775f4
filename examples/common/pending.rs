//! TEMPORARY stand-ins for losses not yet merged into this branch, with the
//! pinned constructors of issue 3 and only `record` (all the examples call).
//! Delete this file and import from `tapeloss` once `pointwise` and `metric`
//! are merged.

use tapeloss::ndarray::{ArrayD, IxDyn};
use tapeloss::{Loss, Result, Tape, Var};

pub struct FocalLoss {
    gamma: f64,
    alpha: Option<f64>,
    epsilon: f64,
}

impl FocalLoss {
    pub fn new(gamma: f64, alpha: Option<f64>, epsilon: f64) -> Self {
        FocalLoss { gamma, alpha, epsilon }
    }
}

impl Loss<f64> for FocalLoss {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, targets: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        let n = p.shape()[0] as f64;
        let log_p = p.clamp(self.epsilon, 1.0 - self.epsilon)?.ln()?;
        let w = p.neg()?.add_scalar(1.0)?.powf(self.gamma)?;
        let alpha = self.alpha.unwrap_or(1.0);
        w.mul(tape.constant(targets.clone()))?
            .mul(log_p)?
            .sum()?
            .mul_scalar(-alpha / n)
    }
}

pub struct BinaryCrossEntropyLoss {
    pos_weight: f64,
}

impl BinaryCrossEntropyLoss {
    pub fn with_logits() -> Self {
        BinaryCrossEntropyLoss { pos_weight: 1.0 }
    }
    pub fn with_pos_weight(self, pos_weight: f64) -> Self {
        BinaryCrossEntropyLoss { pos_weight }
    }
}

impl Loss<f64> for BinaryCrossEntropyLoss {
    fn record<'t>(&self, tape: &'t Tape<f64>, x: Var<'t, f64>, targets: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        let one_minus_t = tape.constant(targets.mapv(|t| 1.0 - t));
        let lw = tape.constant(targets.mapv(|t| 1.0 + (self.pos_weight - 1.0) * t));
        one_minus_t.mul(x)?.add(lw.mul(x.neg()?.softplus()?)?)?.mean()
    }
}

fn pick<'t>(x: Var<'t, f64>, k: usize) -> Result<Var<'t, f64>> {
    let s = x.shape();
    let idx = ArrayD::from_elem(IxDyn(&[s[0], 1, s[2]]), k);
    x.gather(1, &idx)?.reshape(&[s[0], s[2]])
}

fn distance<'t>(a: Var<'t, f64>, b: Var<'t, f64>) -> Result<Var<'t, f64>> {
    a.sub(b)?.square()?.sum_axis(1, false)?.add_scalar(1e-12)?.sqrt()
}

pub struct TripletLoss {
    margin: f64,
}

impl TripletLoss {
    pub fn new(margin: f64) -> Self {
        TripletLoss { margin }
    }
}

impl Loss<f64> for TripletLoss {
    fn record<'t>(&self, _tape: &'t Tape<f64>, x: Var<'t, f64>, _targets: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        let (a, p, n) = (pick(x, 0)?, pick(x, 1)?, pick(x, 2)?);
        distance(a, p)?
            .sub(distance(a, n)?)?
            .add_scalar(self.margin)?
            .relu()?
            .mean()
    }
}

pub struct ContrastiveLoss {
    margin: f64,
}

impl ContrastiveLoss {
    pub fn new(margin: f64) -> Self {
        ContrastiveLoss { margin }
    }
}

impl Loss<f64> for ContrastiveLoss {
    fn record<'t>(&self, tape: &'t Tape<f64>, x: Var<'t, f64>, targets: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        let d = distance(pick(x, 0)?, pick(x, 1)?)?;
        let y = tape.constant(targets.clone().into_shape_with_order(IxDyn(&[targets.len()]))?);
        let not_y = tape.constant(
            targets
                .mapv(|t| 1.0 - t)
                .into_shape_with_order(IxDyn(&[targets.len()]))?,
        );
        let similar = y.mul(d.square()?)?;
        let apart = not_y.mul(d.neg()?.add_scalar(self.margin)?.relu()?.square()?)?;
        similar.add(apart)?.mean()
    }
}
