//! Turns a string of bytes into calls of every loss and every tape op, and
//! checks what comes back. Shared by `tests/properties.rs` (proptest feeds it
//! seeded random bytes) and the cargo-fuzz target in `fuzz/` (libFuzzer feeds
//! it mutated bytes), so both drive exactly the same cases.
//!
//! The oracle, for every call:
//! - nothing panics (a panic fails the test or is the fuzzer's crash);
//! - every `Ok` holds a finite loss and a finite gradient of the predictions'
//!   shape (tape ops, being IEEE primitives, only have their shapes checked);
//! - where the decoder built a case it knows to be valid (in-domain values of
//!   moderate size, valid hyperparameters and layout), every method returns
//!   `Ok`; where it planted one defect (a shape, an empty input, a NaN, an
//!   out-of-domain value or hyperparameter), every method returns `Err`.
//!
//! Bytes past the end read as 0, so every input decodes to some case.

use tapeloss::losses::value_and_grad_on_tape;
use tapeloss::ndarray::{ArrayD, IxDyn, ShapeBuilder};
use tapeloss::{
    BinaryCrossEntropyLoss, ContrastiveLoss, CrossEntropyLoss, Error, Float, FocalLoss, HingeEmbeddingLoss, HuberLoss,
    Loss, MeanAbsoluteError, MeanSquaredError, Reduction, SmoothL1Loss, SoftMarginLoss, Tape, TripletLoss, Var,
};
use tapeloss::{KlDivLoss, PoissonNllLoss};
use tapeloss::{MultiMarginLoss, NllLoss};

/// A cursor over the input bytes.
pub struct Bytes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }

    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    /// A number in `0..n` (0 for `n ≤ 1`).
    fn below(&mut self, n: usize) -> usize {
        if n <= 1 { 0 } else { usize::from(self.byte()) % n }
    }

    /// True with probability about `k/8`.
    fn eighths(&mut self, k: u8) -> bool {
        self.byte() % 8 < k
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.byte()))
    }

    /// A value of moderate size: exact small numbers, a grid on [−8, 8], and
    /// up to ±1e4.
    fn moderate(&mut self) -> f64 {
        const TABLE: [f64; 16] = [
            0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -3.0, 0.25, 10.0, -10.0, 1e-3, 0.1, 100.0, -100.0, 1e4, -1e4,
        ];
        match self.byte() % 3 {
            0 => self.pick(&TABLE),
            _ => (f64::from(self.byte()) - 128.0) / 16.0,
        }
    }

    /// Anything at all: specials, extremes, subnormals, raw bit patterns.
    fn wild(&mut self) -> f64 {
        const TABLE: [f64; 16] = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e300,
            -1e300,
            3.4028234663852886e38,
            -3.4028234663852886e38,
            1e38,
            1e-310,
            -0.0,
            1e-45,
            1e-40,
            f64::MIN_POSITIVE,
            5e-324,
            1.5,
            -1e-20,
        ];
        match self.byte() % 4 {
            0 => self.pick(&TABLE),
            1 => f64::from_bits(self.u64()),
            _ => self.moderate(),
        }
    }

    /// A probability: often exactly 0 or 1.
    fn probability(&mut self) -> f64 {
        match self.byte() % 4 {
            0 => 0.0,
            1 => 1.0,
            _ => f64::from(self.byte()) / 255.0,
        }
    }

    /// A shape of rank `rank` with sizes in `1..=3`.
    fn sizes(&mut self, rank: usize) -> Vec<usize> {
        (0..rank).map(|_| 1 + self.below(3)).collect()
    }

    /// A non-empty shape of rank 0 to 4.
    fn shape(&mut self) -> Vec<usize> {
        let rank = self.below(5);
        self.sizes(rank)
    }

    fn reduction(&mut self) -> Reduction {
        if self.eighths(4) {
            Reduction::Mean
        } else {
            Reduction::Sum
        }
    }
}

fn filled(shape: &[usize], mut value: impl FnMut() -> f64) -> ArrayD<f64> {
    ArrayD::from_shape_simple_fn(IxDyn(shape), &mut value)
}

/// The same values in column-major memory order.
fn column_major<F: Float>(a: &ArrayD<F>) -> ArrayD<F> {
    let mut f = ArrayD::from_elem(IxDyn(a.shape()).f(), F::zero());
    f.assign(a);
    f
}

/// What the decoder knows about a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Ok,
    Err,
    /// Wild values: anything but a panic or a non-finite `Ok`.
    Either,
}

/// Whether a case is valid, has one planted defect, or is wild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    Valid,
    Defect(u8),
    Wild,
}

impl Plan {
    fn decode(b: &mut Bytes<'_>) -> Plan {
        match b.byte() % 8 {
            0..=3 => Plan::Valid,
            4..=6 => Plan::Defect(b.byte()),
            _ => Plan::Wild,
        }
    }

    fn expect(self) -> Expect {
        match self {
            Plan::Valid => Expect::Ok,
            Plan::Defect(_) => Expect::Err,
            Plan::Wild => Expect::Either,
        }
    }
}

/// The number of loss kinds [`run_loss`] takes: 0–3 regression, 4–5 binary
/// cross-entropy, 6 focal, 7–8 cross-entropy, 9 contrastive, 10 triplet,
/// 11 soft margin, 12 hinge embedding, 13 KL divergence, 14 Poisson NLL,
/// 15 NLL, 16 multi-margin.
pub const LOSS_KINDS: usize = 17;

/// Runs one case: bytes in, panics on any broken promise. The first bytes
/// choose the precision and between the losses and the tape.
pub fn run(data: &[u8]) {
    let mut b = Bytes::new(data);
    let f32_case = b.eighths(3);
    let what = b.below(20);
    if what < LOSS_KINDS {
        run_loss_on(&mut b, what, f32_case);
    } else {
        run_tape_on(&mut b, f32_case);
    }
}

/// One case of loss kind `which` (see [`LOSS_KINDS`]) decoded from `data`.
pub fn run_loss(which: usize, f32_case: bool, data: &[u8]) {
    run_loss_on(&mut Bytes::new(data), which, f32_case);
}

/// One random program of tape ops decoded from `data`.
pub fn run_tape(f32_case: bool, data: &[u8]) {
    run_tape_on(&mut Bytes::new(data), f32_case);
}

fn run_loss_on(b: &mut Bytes<'_>, which: usize, f32_case: bool) {
    let case = loss_case(b, which);
    if f32_case {
        case.check::<f32>();
    } else {
        case.check::<f64>();
    }
}

fn run_tape_on(b: &mut Bytes<'_>, f32_case: bool) {
    if f32_case {
        tape_program::<f32>(b);
    } else {
        tape_program::<f64>(b);
    }
}

// ---------------------------------------------------------------------------
// Losses
// ---------------------------------------------------------------------------

/// Every built-in loss, behind one type.
#[derive(Debug, Clone)]
enum AnyLoss {
    Mse(MeanSquaredError),
    Mae(MeanAbsoluteError),
    Huber(HuberLoss),
    SmoothL1(SmoothL1Loss),
    Bce(BinaryCrossEntropyLoss),
    Focal(FocalLoss),
    Ce(CrossEntropyLoss),
    Contrastive(ContrastiveLoss),
    Triplet(TripletLoss),
    SoftMargin(SoftMarginLoss),
    HingeEmbedding(HingeEmbeddingLoss),
    Kl(KlDivLoss),
    Poisson(PoissonNllLoss),
    Nll(NllLoss),
    MultiMargin(MultiMarginLoss),
}

impl AnyLoss {
    fn with<F: Float, R>(&self, f: impl FnOnce(&dyn Loss<F>) -> R) -> R {
        match self {
            AnyLoss::Mse(l) => f(l),
            AnyLoss::Mae(l) => f(l),
            AnyLoss::Huber(l) => f(l),
            AnyLoss::SmoothL1(l) => f(l),
            AnyLoss::Bce(l) => f(l),
            AnyLoss::Focal(l) => f(l),
            AnyLoss::Ce(l) => f(l),
            AnyLoss::Contrastive(l) => f(l),
            AnyLoss::Triplet(l) => f(l),
            AnyLoss::SoftMargin(l) => f(l),
            AnyLoss::HingeEmbedding(l) => f(l),
            AnyLoss::Kl(l) => f(l),
            AnyLoss::Poisson(l) => f(l),
            AnyLoss::Nll(l) => f(l),
            AnyLoss::MultiMargin(l) => f(l),
        }
    }
}

/// A loss, its inputs (in f64, converted when checked) and what must happen.
#[derive(Debug)]
pub struct LossCase {
    loss: AnyLoss,
    predictions: ArrayD<f64>,
    targets: ArrayD<f64>,
    expect: Expect,
    /// A gradient buffer of another shape, for `value_and_grad_into`.
    wrong_buffer: Vec<usize>,
    /// Inputs and gradient buffer in column-major order (the copy paths for
    /// arrays that are not in standard layout).
    column_major: bool,
    /// Also run the public gradient checker (f64 only; it may fail, never panic).
    gradcheck: bool,
}

impl LossCase {
    /// A case whose outcome the plan decides, with a gradient buffer of
    /// another shape drawn for it.
    fn planned(b: &mut Bytes<'_>, plan: Plan, loss: AnyLoss, predictions: ArrayD<f64>, targets: ArrayD<f64>) -> Self {
        let wrong_buffer = other_shape(b, predictions.shape());
        LossCase {
            loss,
            predictions,
            targets,
            expect: plan.expect(),
            wrong_buffer,
            column_major: false,
            gradcheck: false,
        }
    }
}

/// A hyperparameter: from `valid` when the plan is valid (or the defect is
/// elsewhere), from `invalid` when this is the planted defect, anything when
/// wild.
fn param(b: &mut Bytes<'_>, plan: Plan, defect_here: bool, valid: &[f64], invalid: &[f64]) -> f64 {
    match plan {
        Plan::Wild if b.eighths(4) => b.wild(),
        Plan::Defect(_) if defect_here => b.pick(invalid),
        _ => b.pick(valid),
    }
}

const NON_FINITE: [f64; 3] = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY];

fn loss_case(b: &mut Bytes<'_>, which: usize) -> LossCase {
    let column_major = b.eighths(1);
    let gradcheck = b.byte().is_multiple_of(16);
    let mut case = loss_case_in_order(b, which);
    case.column_major = column_major;
    case.gradcheck = gradcheck;
    case
}

fn loss_case_in_order(b: &mut Bytes<'_>, which: usize) -> LossCase {
    let plan = Plan::decode(b);
    // Which part carries the defect; each builder maps it to one it has.
    let defect = match plan {
        Plan::Defect(d) => Some(d),
        _ => None,
    };
    let reduction = b.reduction();
    match which {
        0..=5 => elementwise_case(b, which, plan, defect, reduction),
        6 => focal_case(b, plan, defect, reduction),
        7 | 8 => cross_entropy_case(b, plan, defect, reduction),
        9 => contrastive_case(b, plan, defect, reduction),
        10 => triplet_case(b, plan, defect, reduction),
        11 | 12 => margin_case(b, which == 11, plan, defect, reduction),
        13 => kl_case(b, plan, defect, reduction),
        14 => poisson_case(b, plan, defect, reduction),
        15 => nll_case(b, plan, defect, reduction),
        _ => multi_margin_case(b, plan, defect, reduction),
    }
}

/// A value for an unbounded input (regression predictions and targets,
/// logits) under the plan.
fn unbounded(b: &mut Bytes<'_>, plan: Plan) -> f64 {
    if plan == Plan::Wild { b.wild() } else { b.moderate() }
}

/// A value for a probability input under the plan.
fn bounded(b: &mut Bytes<'_>, plan: Plan) -> f64 {
    if plan == Plan::Wild && b.eighths(3) {
        b.wild()
    } else {
        b.probability()
    }
}

/// A shape other than `shape` (never equal to it).
fn other_shape(b: &mut Bytes<'_>, shape: &[usize]) -> Vec<usize> {
    let mut other = b.shape();
    if other == shape {
        other.push(2);
    }
    other
}

/// `shape` with one size made 0.
fn emptied(b: &mut Bytes<'_>, shape: &[usize]) -> Vec<usize> {
    let mut s = shape.to_vec();
    if s.is_empty() {
        s.push(0);
    } else {
        let at = b.below(s.len());
        s[at] = 0;
    }
    s
}

/// Puts `value` at a random element of `array` (if it has one).
fn plant(b: &mut Bytes<'_>, array: &mut ArrayD<f64>, value: f64) {
    let n = array.len();
    if n > 0 {
        let at = b.below(n);
        if let Some(slot) = array.iter_mut().nth(at) {
            *slot = value;
        }
    }
}

/// MSE, MAE, Huber, smooth L1 and both forms of binary cross-entropy: any
/// shape, targets of the identical shape.
fn elementwise_case(b: &mut Bytes<'_>, which: usize, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes, 1 empty, 2 NaN/inf prediction, 3 NaN target,
    // 4 hyperparameter (or, where there is none, a domain defect), 5 domain.
    let kind = defect.map(|d| d % 6);
    let on_logits = b.eighths(4);
    let is_bce = which >= 4;
    let probabilities = is_bce && !on_logits;
    let loss = match which {
        0 => AnyLoss::Mse(MeanSquaredError::new().with_reduction(r)),
        1 => AnyLoss::Mae(MeanAbsoluteError::new().with_reduction(r)),
        2 => {
            let delta = param(
                b,
                plan,
                kind == Some(4),
                &[1e-3, 0.5, 1.0, 2.0, 1e4],
                &[0.0, -1.0, f64::NAN, f64::INFINITY],
            );
            AnyLoss::Huber(HuberLoss::new(delta).with_reduction(r))
        }
        3 => {
            let beta = param(
                b,
                plan,
                kind == Some(4),
                &[0.0, 1e-3, 0.5, 1.0, 1e4],
                &[-1e-3, -1.0, f64::NAN, f64::INFINITY],
            );
            AnyLoss::SmoothL1(SmoothL1Loss::new(beta).with_reduction(r))
        }
        _ => {
            let mut bce = if on_logits {
                BinaryCrossEntropyLoss::with_logits()
            } else {
                BinaryCrossEntropyLoss::new()
            };
            if on_logits && (b.eighths(4) || kind == Some(4)) {
                bce = bce.with_pos_weight(param(
                    b,
                    plan,
                    kind == Some(4),
                    &[0.0, 0.5, 1.0, 3.0],
                    &[-1.0, f64::NAN, f64::INFINITY],
                ));
            } else if !on_logits && kind == Some(4) {
                bce = bce.with_pos_weight(1.0); // no pos_weight on probabilities
            }
            AnyLoss::Bce(bce.with_reduction(r))
        }
    };
    let shape = b.shape();
    let mut p = filled(&shape, || {
        if probabilities {
            bounded(b, plan)
        } else {
            unbounded(b, plan)
        }
    });
    let mut t = filled(&shape, || if is_bce { bounded(b, plan) } else { unbounded(b, plan) });
    match kind {
        Some(0) => t = filled(&other_shape(b, &shape), || 0.5),
        Some(1) => {
            let empty = emptied(b, &shape);
            (p, t) = (ArrayD::zeros(IxDyn(&empty)), ArrayD::zeros(IxDyn(&empty)));
        }
        Some(2) => {
            let bad = b.pick(&[f64::NAN, f64::INFINITY, f64::NEG_INFINITY]);
            plant(b, &mut p, bad);
        }
        Some(3) => plant(b, &mut t, f64::NAN),
        // MSE and MAE have no hyperparameter: a NaN prediction instead.
        Some(4) if which < 2 => plant(b, &mut p, f64::NAN),
        Some(4) => {}
        Some(_) => {
            if is_bce {
                // A probability or target outside [0, 1].
                let bad = b.pick(&[-0.5, 1.5, -1e-9, 2.0]);
                if probabilities && b.eighths(4) {
                    plant(b, &mut p, bad);
                } else {
                    plant(b, &mut t, bad);
                }
            } else {
                plant(b, &mut t, f64::INFINITY);
            }
        }
        None => {}
    }
    LossCase::planned(b, plan, loss, p, t)
}

fn focal_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes, 1 empty, 2 NaN prediction, 3 NaN target, 4 gamma,
    // 5 alpha, 6 epsilon, 7 a probability or target outside [0, 1], 8 rank.
    let kind = defect.map(|d| d % 9);
    let gamma = param(
        b,
        plan,
        kind == Some(4),
        &[0.0, 0.5, 1.0, 2.0, 5.0],
        &[-1.0, f64::NAN, f64::INFINITY],
    );
    let alpha = if b.eighths(4) || kind == Some(5) {
        Some(param(
            b,
            plan,
            kind == Some(5),
            &[0.0, 0.25, 1.0],
            &[-0.25, 1.5, f64::NAN],
        ))
    } else {
        None
    };
    let epsilon = param(
        b,
        plan,
        kind == Some(6),
        &[1e-7, 1e-3, 0.1, 0.49],
        &[0.0, 0.5, -1e-7, 1.0, f64::NAN],
    );
    let loss = AnyLoss::Focal(FocalLoss::new(gamma, alpha, epsilon).with_reduction(r));
    let rank = 1 + b.below(2);
    let shape = b.sizes(rank);
    let mut p = filled(&shape, || bounded(b, plan));
    let mut t = filled(&shape, || bounded(b, plan));
    if plan == Plan::Valid && gamma > 0.0 && gamma < 1.0 {
        // (1 − p)^γ has an infinite slope at p = 1: a documented error.
        p.mapv_inplace(|v| if v == 1.0 { 0.5 } else { v });
    }
    match kind {
        Some(0) => t = filled(&other_shape(b, &shape), || 0.5),
        Some(1) => {
            let empty = emptied(b, &shape);
            (p, t) = (ArrayD::zeros(IxDyn(&empty)), ArrayD::zeros(IxDyn(&empty)));
        }
        Some(2) => plant(b, &mut p, f64::NAN),
        Some(3) => plant(b, &mut t, f64::NAN),
        Some(7) => {
            let bad = b.pick(&[-0.5, 1.5, f64::INFINITY]);
            if b.eighths(4) {
                plant(b, &mut p, bad);
            } else {
                plant(b, &mut t, bad);
            }
        }
        Some(8) => {
            let mut s = b.sizes(3);
            if b.eighths(2) {
                s.clear(); // rank 0
            }
            (p, t) = (filled(&s, || 0.5), filled(&s, || 0.5));
        }
        _ => {}
    }
    LossCase::planned(b, plan, loss, p, t)
}

fn cross_entropy_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes, 1 empty, 2 NaN/+inf logit, 3 NaN target,
    // 4 smoothing, 5 a weight, 6 the weights' length, 7 a class index out of
    // range, negative or fractional (probabilities: ignore_index).
    let kind = defect.map(|d| d % 8);
    let rank = 1 + b.below(4);
    let shape = b.sizes(rank);
    let axis = usize::from(rank > 1);
    let classes = shape[axis];
    let mut sample_shape = shape.clone();
    sample_shape.remove(axis);
    let indices = b.eighths(5);

    let mut loss = CrossEntropyLoss::new().with_reduction(r);
    if b.eighths(3) || kind == Some(4) {
        loss = loss.with_label_smoothing(param(
            b,
            plan,
            kind == Some(4),
            &[0.0, 0.1, 1.0],
            &[-0.1, 1.5, f64::NAN, f64::INFINITY],
        ));
    }
    let weights = class_weights(b, plan, classes, kind == Some(5), kind == Some(6));
    if let Some(w) = &weights {
        loss = loss.with_class_weights(w.clone());
    }
    let ignore = if indices && b.eighths(3) {
        let i = b.below(classes + 2);
        loss = loss.with_ignore_index(i);
        Some(i)
    } else {
        None
    };
    let mut x = filled(&shape, || unbounded(b, plan));
    let mut t = if indices {
        class_indices(b, plan, &sample_shape, classes, ignore)
    } else {
        filled(&shape, || bounded(b, plan))
    };
    // A NaN or +inf logit is an error even in an ignored or zero-weight
    // sample, and a NaN target even in a class of weight 0.
    let mut expect = plan.expect();
    match kind {
        Some(0) => {
            let mut other = other_shape(b, &shape);
            while other == shape || other == sample_shape {
                other.push(1);
            }
            t = filled(&other, || 0.0);
        }
        Some(1) => {
            let empty = emptied(b, &shape);
            let mut empty_samples = empty.clone();
            empty_samples.remove(axis);
            x = ArrayD::zeros(IxDyn(&empty));
            t = ArrayD::zeros(IxDyn(if indices { &empty_samples } else { &empty }));
        }
        Some(2) => {
            let bad = b.pick(&[f64::NAN, f64::INFINITY]);
            plant(b, &mut x, bad);
        }
        Some(3) => plant(b, &mut t, f64::NAN),
        Some(7) => {
            if indices {
                plant_bad_index(b, &mut t, classes);
            } else {
                loss = loss.with_ignore_index(0);
            }
        }
        _ => {}
    }
    if plan == Plan::Valid && indices && r == Reduction::Mean && nothing_kept(&t, ignore, weights.as_deref()) {
        expect = Expect::Err;
    }
    let wrong_buffer = other_shape(b, x.shape());
    LossCase {
        loss: AnyLoss::Ce(loss),
        predictions: x,
        targets: t,
        expect,
        wrong_buffer,
        column_major: false,
        gradcheck: false,
    }
}

fn contrastive_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 layout, 1 label count, 2 empty, 3 NaN point, 4 NaN label,
    // 5 label outside [0, 1], 6 margin.
    let kind = defect.map(|d| d % 7);
    let margin = param(
        b,
        plan,
        kind == Some(6),
        &[0.0, 0.5, 1.0, 10.0],
        &[-1.0, f64::NAN, f64::INFINITY],
    );
    let (n, d) = (1 + b.below(3), 1 + b.below(4));
    let mut x = filled(&[n, 2, d], || unbounded(b, plan));
    let label_shape = if b.eighths(4) { vec![n] } else { vec![n, 1] };
    let mut y = filled(&label_shape, || bounded(b, plan));
    match kind {
        Some(0) => {
            let k = b.pick(&[1, 3, 4]);
            x = filled(&[n, k, d], || 0.5);
            if b.eighths(2) {
                x = filled(&[n * 2 * d], || 0.5);
            }
        }
        Some(1) => y = filled(&[n + 1 + b.below(2)], || 1.0),
        Some(2) => {
            let empty = if b.eighths(4) { [0, 2, d] } else { [n, 2, 0] };
            x = ArrayD::zeros(IxDyn(&empty));
            y = ArrayD::zeros(IxDyn(&[empty[0]]));
        }
        Some(3) => plant(b, &mut x, f64::NAN),
        Some(4) => plant(b, &mut y, f64::NAN),
        Some(5) => {
            let bad = b.pick(&[-0.5, 1.5, f64::INFINITY]);
            plant(b, &mut y, bad);
        }
        _ => {}
    }
    LossCase::planned(
        b,
        plan,
        AnyLoss::Contrastive(ContrastiveLoss::new(margin).with_reduction(r)),
        x,
        y,
    )
}

/// Soft margin (`soft`) or hinge embedding: any shape, labels −1 or 1 of the
/// identical shape.
fn margin_case(b: &mut Bytes<'_>, soft: bool, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes, 1 empty, 2 NaN/inf prediction, 3 NaN label,
    // 4 margin (soft margin has none: a label not ±1), 5 label not ±1.
    let kind = defect.map(|d| d % 6);
    let margin = param(
        b,
        plan,
        kind == Some(4) && !soft,
        &[0.0, 0.5, 1.0, -1.0, 1e4],
        &NON_FINITE,
    );
    let loss = if soft {
        AnyLoss::SoftMargin(SoftMarginLoss::new().with_reduction(r))
    } else {
        AnyLoss::HingeEmbedding(HingeEmbeddingLoss::new(margin).with_reduction(r))
    };
    let shape = b.shape();
    let mut x = filled(&shape, || unbounded(b, plan));
    let mut y = filled(&shape, || {
        if plan == Plan::Wild && b.eighths(1) {
            b.wild()
        } else {
            b.pick(&[-1.0, 1.0])
        }
    });
    match kind {
        Some(0..=3) => same_shape_defect(b, kind, &shape, &mut x, &mut y),
        Some(4) if !soft => {}
        Some(_) => {
            let bad = b.pick(&[0.0, 0.5, -2.0, f64::INFINITY]);
            plant(b, &mut y, bad);
        }
        None => {}
    }
    LossCase::planned(b, plan, loss, x, y)
}

fn triplet_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 layout, 1 empty, 2 NaN point, 3 margin.
    let kind = defect.map(|d| d % 4);
    let margin = param(
        b,
        plan,
        kind == Some(3),
        &[0.0, 0.5, 1.0, 10.0],
        &[-1.0, f64::NAN, f64::INFINITY],
    );
    let (n, d) = (1 + b.below(3), 1 + b.below(4));
    let shape = if b.eighths(2) { vec![3, d] } else { vec![n, 3, d] };
    // Near-duplicates on purpose: identical points are where the slope is 0/0.
    let mut x = filled(&shape, || if b.eighths(2) { 0.0 } else { unbounded(b, plan) });
    match kind {
        Some(0) => {
            let k = b.pick(&[1, 2, 4]);
            x = if b.eighths(4) {
                filled(&[n, k, d], || 0.5)
            } else {
                filled(&[k, d, 1, 1], || 0.5)
            };
        }
        Some(1) => {
            let empty = b.pick(&[[0, 3, 2], [2, 3, 0], [1, 3, 0]]);
            x = ArrayD::zeros(IxDyn(&empty));
        }
        Some(2) => {
            let bad = b.pick(&NON_FINITE);
            plant(b, &mut x, bad);
        }
        _ => {}
    }
    // The targets are ignored, whatever they hold.
    let targets = filled(&b.shape(), || b.wild());
    LossCase::planned(
        b,
        plan,
        AnyLoss::Triplet(TripletLoss::new(margin).with_reduction(r)),
        x,
        targets,
    )
}

/// Plants defect `kind` (0 shapes, 1 empty, 2 a NaN or infinite prediction,
/// 3 a NaN target; anything else nothing) in predictions `p` and targets `t`
/// of identical `shape`.
fn same_shape_defect(b: &mut Bytes<'_>, kind: Option<u8>, shape: &[usize], p: &mut ArrayD<f64>, t: &mut ArrayD<f64>) {
    match kind {
        Some(0) => *t = filled(&other_shape(b, shape), || 0.5),
        Some(1) => {
            let empty = emptied(b, shape);
            (*p, *t) = (ArrayD::zeros(IxDyn(&empty)), ArrayD::zeros(IxDyn(&empty)));
        }
        Some(2) => {
            let bad = b.pick(&NON_FINITE);
            plant(b, p, bad);
        }
        Some(3) => plant(b, t, f64::NAN),
        _ => {}
    }
}

/// KL divergence on probability or log-probability targets: any shape
/// (0-d included), targets of the identical shape.
fn kl_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes, 1 empty, 2 NaN/inf prediction, 3 NaN target,
    // 4 a target outside the domain (negative or infinite; ±inf log target).
    let kind = defect.map(|d| d % 5);
    let log_target = b.eighths(4);
    let loss = if log_target {
        KlDivLoss::with_log_target()
    } else {
        KlDivLoss::new()
    };
    let shape = b.shape();
    let mut q = filled(&shape, || unbounded(b, plan));
    // Log targets up to 8, so that e^t·(t − q) stays finite in f32.
    let mut t = filled(&shape, || match (log_target, plan) {
        (true, Plan::Wild) => b.wild(),
        (true, _) => b.moderate().min(8.0),
        (false, _) => bounded(b, plan),
    });
    match kind {
        Some(0..=3) => same_shape_defect(b, kind, &shape, &mut q, &mut t),
        Some(_) => {
            let bad = if log_target {
                b.pick(&[f64::INFINITY, f64::NEG_INFINITY])
            } else {
                b.pick(&[-0.5, -1e-9, f64::INFINITY])
            };
            plant(b, &mut t, bad);
        }
        None => {}
    }
    LossCase::planned(b, plan, AnyLoss::Kl(loss.with_reduction(r)), q, t)
}

/// Poisson NLL on log-rates or rates, with or without the Stirling term:
/// any shape, counts of the identical shape.
fn poisson_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes, 1 empty, 2 NaN/inf prediction, 3 NaN target,
    // 4 eps, 5 a negative count (or, on rates, a negative rate).
    let kind = defect.map(|d| d % 6);
    let log_input = b.eighths(4);
    let mut loss = if log_input {
        PoissonNllLoss::new()
    } else {
        PoissonNllLoss::with_rates()
    };
    if b.eighths(4) {
        loss = loss.with_full();
    }
    if b.eighths(4) || kind == Some(4) {
        loss = loss.with_eps(param(
            b,
            plan,
            kind == Some(4),
            &[1e-8, 1e-3, 0.5, 1.0],
            &[0.0, -1e-8, f64::NAN, f64::INFINITY],
        ));
    }
    let shape = b.shape();
    // Log-rates up to 20, so that e^x stays finite in f32; rates and counts
    // are moderate magnitudes.
    let mut x = filled(&shape, || match (log_input, plan) {
        (_, Plan::Wild) => b.wild(),
        (true, _) => b.moderate().min(20.0),
        (false, _) => b.moderate().abs(),
    });
    let mut t = filled(&shape, || {
        if plan == Plan::Wild {
            b.wild()
        } else {
            b.moderate().abs()
        }
    });
    match kind {
        Some(0..=3) => same_shape_defect(b, kind, &shape, &mut x, &mut t),
        Some(5) => {
            let bad = b.pick(&[-1.0, -0.5, -1e-3, f64::INFINITY]);
            if !log_input && b.eighths(4) {
                plant(b, &mut x, bad);
            } else {
                plant(b, &mut t, bad);
            }
        }
        _ => {}
    }
    LossCase::planned(b, plan, AnyLoss::Poisson(loss.with_reduction(r)), x, t)
}

/// Class weights for `classes` classes, drawn when the bytes say so or a
/// defect is planted in them: `bad_value` puts a negative, NaN or infinite
/// weight among them, `bad_len` one too many or too few.
fn class_weights(b: &mut Bytes<'_>, plan: Plan, classes: usize, bad_value: bool, bad_len: bool) -> Option<Vec<f64>> {
    if !(b.eighths(3) || bad_value || bad_len) {
        return None;
    }
    let mut w: Vec<f64> = (0..classes)
        .map(|_| param(b, plan, false, &[0.0, 0.5, 1.0, 2.0], &[]))
        .collect();
    if bad_value {
        let at = b.below(classes);
        w[at] = b.pick(&[-0.5, f64::NAN, f64::INFINITY]);
    }
    if bad_len {
        if b.eighths(4) {
            w.push(1.0);
        } else {
            w.pop();
        }
    }
    Some(w)
}

/// Whether a weighted mean over valid class indices `t` has nothing to
/// divide by: every target ignored, or all of weight 0.
fn nothing_kept(t: &ArrayD<f64>, ignore: Option<usize>, weights: Option<&[f64]>) -> bool {
    let kept: f64 = t
        .iter()
        .filter(|&&y| ignore != Some(y as usize))
        .map(|&y| weights.map_or(1.0, |w| w[y as usize]))
        .sum();
    kept == 0.0
}

/// Class indices of `shape` under the plan: below `classes`, or the ignored
/// index now and then, or anything when wild.
fn class_indices(b: &mut Bytes<'_>, plan: Plan, shape: &[usize], classes: usize, ignore: Option<usize>) -> ArrayD<f64> {
    filled(shape, || match ignore {
        _ if plan == Plan::Wild && b.eighths(2) => b.wild(),
        Some(i) if b.eighths(2) => i as f64,
        _ => b.below(classes) as f64,
    })
}

/// A class index out of range, negative or fractional at a random target.
fn plant_bad_index(b: &mut Bytes<'_>, t: &mut ArrayD<f64>, classes: usize) {
    let bad = b.pick(&[-1.0, 0.5, (classes + 2) as f64, 1e30]);
    plant(b, t, bad);
}

/// The defect [`class_index_defect`] plants as a bad class index.
const BAD_INDEX: u8 = u8::MAX;

/// Plants defect `kind` in predictions `x` of `shape` (class axis `axis`) and
/// their class indices `t`: 0 targets of another shape, 1 empty, 2 a value
/// from `bad` at a random prediction, 3 a NaN target, [`BAD_INDEX`] a class
/// index out of range, negative or fractional; anything else nothing.
fn class_index_defect(
    b: &mut Bytes<'_>,
    kind: Option<u8>,
    shape: &[usize],
    axis: usize,
    (x, t): (&mut ArrayD<f64>, &mut ArrayD<f64>),
    bad: &[f64],
) {
    match kind {
        Some(0) => {
            let mut other = other_shape(b, shape);
            while other == without(shape, axis) {
                other.push(1);
            }
            *t = filled(&other, || 0.0);
        }
        Some(1) => {
            let empty = emptied(b, shape);
            *x = ArrayD::zeros(IxDyn(&empty));
            *t = ArrayD::zeros(IxDyn(&without(&empty, axis)));
        }
        Some(2) => {
            let value = b.pick(bad);
            plant(b, x, value);
        }
        Some(3) => plant(b, t, f64::NAN),
        Some(BAD_INDEX) => plant_bad_index(b, t, shape[axis]),
        _ => {}
    }
}

/// NLL on log-probabilities `[C]`, `[N, C]` or `[N, C, d…]` and class
/// indices, with weights and an ignored index.
fn nll_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes, 1 empty, 2 NaN/+inf prediction (anywhere), 3 NaN
    // target, 4 a weight, 5 the weights' length, 6 a class index out of
    // range, negative or fractional.
    let kind = defect.map(|d| d % 7);
    let rank = 1 + b.below(4);
    let shape = b.sizes(rank);
    let axis = usize::from(rank > 1);
    let classes = shape[axis];
    let sample_shape = without(&shape, axis);
    let mut loss = NllLoss::new().with_reduction(r);
    let weights = class_weights(b, plan, classes, kind == Some(4), kind == Some(5));
    if let Some(w) = &weights {
        loss = loss.with_class_weights(w.clone());
    }
    let ignore = b.eighths(3).then(|| b.below(classes + 2));
    if let Some(i) = ignore {
        loss = loss.with_ignore_index(i);
    }
    // Log-probabilities, or any moderate number (nll_loss takes any).
    let mut x = filled(&shape, || unbounded(b, plan).min(if b.eighths(4) { 0.0 } else { 1e4 }));
    let mut t = class_indices(b, plan, &sample_shape, classes, ignore);
    let planted = kind.map(|k| if k == 6 { BAD_INDEX } else { k });
    class_index_defect(b, planted, &shape, axis, (&mut x, &mut t), &[f64::NAN, f64::INFINITY]);
    let mut case = LossCase::planned(b, plan, AnyLoss::Nll(loss), x, t);
    if plan == Plan::Valid && r == Reduction::Mean && nothing_kept(&case.targets, ignore, weights.as_deref()) {
        case.expect = Expect::Err;
    }
    case
}

/// Multi-margin on scores `[C]` or `[N, C]` and class indices, with p,
/// margin and weights.
fn multi_margin_case(b: &mut Bytes<'_>, plan: Plan, defect: Option<u8>, r: Reduction) -> LossCase {
    // Defects: 0 shapes (targets of another shape, or scores of rank 3),
    // 1 empty, 2 NaN/inf score, 3 NaN target, 4 p, 5 margin, 6 a weight,
    // 7 the weights' length, 8 a class index out of range, negative or
    // fractional.
    let kind = defect.map(|d| d % 9);
    let rank = 1 + b.below(2);
    let shape = b.sizes(rank);
    let axis = usize::from(rank > 1);
    let classes = shape[axis];
    let sample_shape = without(&shape, axis);
    let p = param(b, plan, kind == Some(4), &[1.0, 2.0], &[0.0, 3.0, 4.0]);
    let margin = param(b, plan, kind == Some(5), &[1.0, 0.0, 0.5, 2.0, -1.0], &NON_FINITE);
    let mut loss = MultiMarginLoss::new()
        .with_p(if p.is_finite() { p.abs().min(8.0) as u32 } else { 3 })
        .with_margin(margin)
        .with_reduction(r);
    if let Some(w) = class_weights(b, plan, classes, kind == Some(6), kind == Some(7)) {
        loss = loss.with_class_weights(w);
    }
    let mut x = filled(&shape, || unbounded(b, plan));
    let mut t = class_indices(b, plan, &sample_shape, classes, None);
    if kind == Some(0) && b.eighths(4) {
        x = filled(&[shape[0], classes, 2], || 0.5);
        t = filled(&[shape[0], 2], || 0.0);
    } else {
        let planted = kind.map(|k| if k == 8 { BAD_INDEX } else { k });
        class_index_defect(b, planted, &shape, axis, (&mut x, &mut t), &NON_FINITE);
    }
    LossCase::planned(b, plan, AnyLoss::MultiMargin(loss), x, t)
}

/// `shape` without `axis`.
fn without(shape: &[usize], axis: usize) -> Vec<usize> {
    let mut out = shape.to_vec();
    out.remove(axis);
    out
}

impl LossCase {
    /// Runs every method in precision `F` and checks the oracle.
    pub fn check<F: Float>(&self) {
        let (mut p, mut t) = (self.predictions.mapv(F::from_f64), self.targets.mapv(F::from_f64));
        if self.column_major {
            (p, t) = (column_major(&p), column_major(&t));
        }
        if self.gradcheck && F::NAME == "f64" {
            self.loss.with::<f64, _>(|loss| {
                let config = tapeloss::gradcheck::GradCheckConfig::default();
                if let Ok(report) = tapeloss::gradcheck::check_loss(loss, &self.predictions, &self.targets, &config) {
                    assert!(!report.to_string().is_empty());
                }
            });
        }
        let expect = self.expect;
        self.loss.with::<F, _>(|loss| {
            let shape = p.shape();
            let ctx = || format!("{:?} in {} on {:?} with {:?}", self.loss, F::NAME, p, t);
            let check_value = |method: &str, v: F| {
                assert!(v.is_finite(), "{method} returned Ok({v}): {}", ctx());
            };
            let check_grad = |method: &str, g: &ArrayD<F>| {
                assert_eq!(g.shape(), shape, "{method}: gradient shape: {}", ctx());
                assert!(
                    g.iter().all(|g| g.is_finite()),
                    "{method} returned a non-finite gradient {g}: {}",
                    ctx()
                );
            };
            let mut outcomes: Vec<(&str, Option<Error>)> = Vec::new();
            match loss.forward(&p, &t) {
                Ok(v) => {
                    check_value("forward", v);
                    outcomes.push(("forward", None));
                }
                Err(e) => outcomes.push(("forward", Some(e))),
            }
            match loss.backward(&p, &t) {
                Ok(g) => {
                    check_grad("backward", &g);
                    outcomes.push(("backward", None));
                }
                Err(e) => outcomes.push(("backward", Some(e))),
            }
            match loss.value_and_grad(&p, &t) {
                Ok((v, g)) => {
                    check_value("value_and_grad", v);
                    check_grad("value_and_grad", &g);
                    outcomes.push(("value_and_grad", None));
                }
                Err(e) => outcomes.push(("value_and_grad", Some(e))),
            }
            let mut buffer = ArrayD::from_elem(p.raw_dim(), F::nan());
            if self.column_major {
                buffer = column_major(&buffer);
            }
            match loss.value_and_grad_into(&p, &t, &mut buffer) {
                Ok(v) => {
                    check_value("value_and_grad_into", v);
                    check_grad("value_and_grad_into", &buffer);
                    outcomes.push(("value_and_grad_into", None));
                }
                Err(e) => outcomes.push(("value_and_grad_into", Some(e))),
            }
            let tape = Tape::new();
            match loss.record(&tape, tape.var(p.clone()), &t) {
                Ok(out) => {
                    let v = out.item().unwrap_or_else(|e| panic!("record: {e}: {}", ctx()));
                    check_value("record", v);
                    outcomes.push(("record", None));
                }
                Err(e) => outcomes.push(("record", Some(e))),
            }
            match value_and_grad_on_tape(loss, &p, &t) {
                Ok((v, g)) => {
                    check_value("value_and_grad_on_tape", v);
                    check_grad("value_and_grad_on_tape", &g);
                    outcomes.push(("value_and_grad_on_tape", None));
                }
                Err(e) => outcomes.push(("value_and_grad_on_tape", Some(e))),
            }
            for (method, outcome) in &outcomes {
                match (expect, outcome) {
                    (Expect::Ok, Some(e)) => panic!("{method} failed on a valid case: {e}: {}", ctx()),
                    (Expect::Err, None) => panic!("{method} accepted a defective case: {}", ctx()),
                    _ => {}
                }
                if let Some(e) = outcome {
                    assert!(!e.to_string().is_empty());
                }
            }
            // A gradient buffer of another shape is always refused, untouched.
            let mut wrong = ArrayD::from_elem(IxDyn(&self.wrong_buffer), F::zero());
            match loss.value_and_grad_into(&p, &t, &mut wrong) {
                Ok(_) => panic!(
                    "value_and_grad_into accepted a buffer of shape {:?}: {}",
                    self.wrong_buffer,
                    ctx()
                ),
                Err(_) => assert!(wrong.iter().all(|&g| g == F::zero()), "the wrong buffer was written"),
            }
        });
    }
}

// ---------------------------------------------------------------------------
// Tape ops
// ---------------------------------------------------------------------------

/// A tape op of one value.
type UnaryOp<F> = for<'v> fn(Var<'v, F>) -> tapeloss::Result<Var<'v, F>>;
/// A tape op of two values.
type BinaryOp<F> = for<'v> fn(Var<'v, F>, Var<'v, F>) -> tapeloss::Result<Var<'v, F>>;

/// NumPy's broadcasting rule, written independently of the crate's, as the
/// model of which binary ops must succeed.
fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() < n { 1 } else { s[i + s.len() - n] };
    (0..n)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y => Some(x),
            (1, y) => Some(y),
            (x, 1) => Some(x),
            _ => None,
        })
        .collect()
}

/// A shape related to `shape` so that broadcasting often (not always) works:
/// the same, a suffix, some sizes set to 1, or unrelated.
fn partner_shape(b: &mut Bytes<'_>, shape: &[usize]) -> Vec<usize> {
    match b.byte() % 5 {
        0 => shape.to_vec(),
        1 => shape[b.below(shape.len() + 1)..].to_vec(),
        2 => shape.iter().map(|&s| if b.eighths(4) { 1 } else { s }).collect(),
        3 => Vec::new(),
        _ => {
            let rank = b.below(4);
            (0..rank).map(|_| b.below(4)).collect()
        }
    }
}

/// A random program of tape ops over a pool of values. Each op's success is
/// predicted from the shapes alone and checked; values are not (tape ops
/// follow IEEE arithmetic: `ln(−1)` is NaN by design). Then the gradient of
/// one value, summed, must have every leaf's shape; with in-domain values
/// and a single op it must be finite too.
fn tape_program<F: Float>(b: &mut Bytes<'_>) {
    let tape = Tape::<F>::new();
    let other = Tape::<F>::new();
    let wild = b.eighths(2);
    let value = |b: &mut Bytes<'_>| F::from_f64(if wild { b.wild() } else { b.moderate() });
    let mut pool: Vec<Var<'_, F>> = Vec::new();
    let mut leaves: Vec<Var<'_, F>> = Vec::new();
    let leaf_count = 1 + b.below(3);
    for _ in 0..leaf_count {
        let mut shape = b.shape();
        if b.eighths(1) {
            shape = emptied(b, &shape);
        }
        let x = ArrayD::from_shape_simple_fn(IxDyn(&shape), || value(b));
        let v = if b.eighths(6) { tape.var(x) } else { tape.constant(x) };
        if v.requires_grad() {
            leaves.push(v);
        }
        pool.push(v);
    }
    let steps = 1 + b.below(6);
    // One op on moderate values: the result and its gradient must be finite
    // unless the op is one whose domain the decoder does not respect.
    let single = steps == 1 && !wild;
    let mut finite_gradients = false;
    for _ in 0..steps {
        let a = pool[b.below(pool.len())];
        let shape = a.shape();
        let ndim = shape.len();
        let len: usize = shape.iter().product();
        let op = b.below(26);
        // Ops whose result or derivative can leave the finite numbers on
        // moderate inputs (exp, ln, log1p, sqrt, powf, div).
        let mut risky = matches!(op, 1..=4 | 13);
        // Each arm returns the op's result and whether it must succeed, with
        // the expected shape.
        let (result, expected): (tapeloss::Result<Var<'_, F>>, Option<Vec<usize>>) = match op {
            0..=15 => {
                let unary: [UnaryOp<F>; 13] = [
                    |v| v.neg(),
                    |v| v.exp(),
                    |v| v.ln(),
                    |v| v.log1p(),
                    |v| v.sqrt(),
                    |v| v.square(),
                    |v| v.abs(),
                    |v| v.relu(),
                    |v| v.sigmoid(),
                    |v| v.tanh(),
                    |v| v.softplus(),
                    |v| v.log_sigmoid(),
                    |v| v.sum(),
                ];
                // A NaN or infinite scalar argument is an error; a finite one
                // is fine. (`clamp` takes infinite bounds: one-sided.)
                let c = value(b);
                let scalar_ok = c.is_finite().then(|| shape.clone());
                match op {
                    13 => (a.powf(c), scalar_ok),
                    14 => {
                        let (lo, hi) = (value(b), value(b));
                        let ok = !(lo.is_nan() || hi.is_nan() || lo > hi);
                        (a.clamp(lo, hi), ok.then(|| shape.clone()))
                    }
                    15 => {
                        if b.eighths(4) {
                            (a.add_scalar(c), scalar_ok)
                        } else {
                            (a.mul_scalar(c), scalar_ok)
                        }
                    }
                    12 => (unary[12](a), Some(Vec::new())),
                    k => (unary[k](a), Some(shape.clone())),
                }
            }
            16 => {
                // A binary op, sometimes with an operand of another tape.
                let partner = partner_shape(b, &shape);
                let y = ArrayD::from_shape_simple_fn(IxDyn(&partner), || value(b));
                let foreign = b.eighths(1);
                let y = if foreign { other.var(y) } else { tape.var(y) };
                let binary: [BinaryOp<F>; 6] = [
                    |x, y| x.add(y),
                    |x, y| x.sub(y),
                    |x, y| x.mul(y),
                    |x, y| x.div(y),
                    |x, y| x.maximum(y),
                    |x, y| x.minimum(y),
                ];
                let k = b.below(6);
                risky |= k == 3;
                let f = binary[k];
                let (l, r) = if b.eighths(4) { (a, y) } else { (y, a) };
                let expected = if foreign {
                    None
                } else {
                    broadcast(&l.shape(), &r.shape())
                };
                if !foreign {
                    leaves.push(y);
                }
                (f(l, r), expected)
            }
            17 => (a.mean(), (len > 0).then(Vec::new)),
            18 => {
                // Axis reductions: sum, mean, max, logsumexp.
                let axis = if b.eighths(1) { usize::MAX } else { b.below(ndim + 2) };
                let keepdims = b.eighths(4);
                let which = b.below(4);
                let result = match which {
                    0 => a.sum_axis(axis, keepdims),
                    1 => a.mean_axis(axis, keepdims),
                    2 => a.max_axis(axis, keepdims),
                    _ => a.logsumexp_axis(axis, keepdims),
                };
                let ok = axis < ndim && (which == 0 || shape[axis] > 0);
                let expected = ok.then(|| {
                    let mut s = shape.clone();
                    if keepdims {
                        s[axis] = 1;
                    } else {
                        s.remove(axis);
                    }
                    s
                });
                (result, expected)
            }
            19 => {
                let axis = b.below(ndim + 2);
                let result = if b.eighths(4) {
                    a.softmax(axis)
                } else {
                    a.log_softmax(axis)
                };
                (result, (axis < ndim).then(|| shape.clone()))
            }
            20 => {
                // matmul with a partner that often fits.
                let partner = match b.byte() % 3 {
                    0 if ndim == 2 => vec![shape[1], 1 + b.below(3)],
                    1 => b.shape(),
                    _ => vec![b.below(4), b.below(4)],
                };
                let y = ArrayD::from_shape_simple_fn(IxDyn(&partner), || value(b));
                let y = tape.var(y);
                leaves.push(y);
                let ok = ndim == 2 && partner.len() == 2 && shape[1] == partner[0];
                (a.matmul(y), ok.then(|| vec![shape[0], partner[1]]))
            }
            21 => {
                // reshape: often to the same size.
                let target = if b.eighths(5) {
                    let mut t = vec![len];
                    if len.is_multiple_of(2) && len > 0 && b.eighths(4) {
                        t = vec![2, len / 2];
                    }
                    if b.eighths(2) {
                        t.push(1);
                    }
                    t
                } else if b.eighths(1) {
                    vec![usize::MAX, 2, b.below(3)] // a size that overflows usize
                } else {
                    b.shape()
                };
                let ok = target.iter().try_fold(1_usize, |acc, &d| acc.checked_mul(d)) == Some(len);
                (a.reshape(&target), ok.then(|| target.clone()))
            }
            22 => {
                // gather along an axis, with indices that may be out of range.
                let axis = b.below(ndim + 1);
                let mut ishape = shape.clone();
                if ishape.is_empty() {
                    ishape.push(1);
                }
                if axis < ishape.len() {
                    ishape[axis] = b.below(4);
                }
                if b.eighths(1) {
                    ishape.push(2);
                }
                let size = if axis < ndim { shape[axis] } else { 0 };
                let indices = ArrayD::from_shape_simple_fn(IxDyn(&ishape), || match b.byte() % 16 {
                    0 => usize::MAX,
                    1 | 2 => size + b.below(2),
                    _ if size > 0 => b.below(size),
                    _ => size,
                });
                let shape_ok =
                    axis < ndim && ishape.len() == ndim && (0..ndim).all(|d| d == axis || ishape[d] == shape[d]);
                let ok = shape_ok && indices.iter().all(|&i| i < size);
                (a.gather(axis, &indices), ok.then(|| ishape.clone()))
            }
            23 => {
                // Slices (lazy: chains read them by rows from the sliced
                // value), with arguments that may be out of range.
                let axis = b.below(ndim + 1);
                let size = if axis < ndim { shape[axis] } else { 0 };
                if b.eighths(4) {
                    let index = b.below(size + 2);
                    let ok = axis < ndim && index < size;
                    let expected = ok.then(|| {
                        let mut s = shape.clone();
                        s.remove(axis);
                        s
                    });
                    (a.index_axis(axis, index), expected)
                } else {
                    let (start, end) = (b.below(size + 2), b.below(size + 2));
                    let ok = axis < ndim && start <= end && end <= size;
                    let expected = ok.then(|| {
                        let mut s = shape.clone();
                        s[axis] = end - start;
                        s
                    });
                    (a.slice_axis(axis, start, end), expected)
                }
            }
            24 => {
                let axis = b.below(ndim + 1);
                let keepdims = b.eighths(4);
                let expected = (axis < ndim).then(|| {
                    let mut s = shape.clone();
                    if keepdims {
                        s[axis] = 1;
                    } else {
                        s.remove(axis);
                    }
                    s
                });
                (a.norm_axis(axis, keepdims), expected)
            }
            _ => {
                // where_mask with a mask and an alternative of related shapes.
                let mshape = partner_shape(b, &shape);
                let oshape = partner_shape(b, &shape);
                let mask = ArrayD::from_shape_simple_fn(IxDyn(&mshape), || b.eighths(4));
                let y = tape.var(ArrayD::from_shape_simple_fn(IxDyn(&oshape), || value(b)));
                leaves.push(y);
                let expected = broadcast(&shape, &oshape).and_then(|s| broadcast(&s, &mshape));
                (a.where_mask(&mask, y), expected)
            }
        };
        match (result, expected) {
            (Ok(v), Some(s)) => {
                assert_eq!(v.shape(), s, "op {op} on {shape:?}: result shape");
                if single && !risky {
                    let value = v.value();
                    assert!(value.iter().all(|x| x.is_finite()), "op {op} on {shape:?}: {value}");
                    finite_gradients = true;
                }
                pool.push(v);
            }
            (Ok(v), None) => panic!(
                "op {op} on {shape:?} succeeded with shape {:?}, expected an error",
                v.shape()
            ),
            (Err(e), Some(s)) => panic!("op {op} on {shape:?} failed, expected shape {s:?}: {e}"),
            (Err(e), None) => assert!(!e.to_string().is_empty()),
        }
    }
    // backward: of a value that is not one element is an error; of a sum it
    // gives every tracked leaf a gradient of its shape.
    let last = pool[pool.len() - 1];
    let n: usize = last.shape().iter().product();
    match (tape.backward(last), n == 1) {
        (Ok(_), true) | (Err(Error::NotScalar { .. }), false) => {}
        (other, _) => panic!("backward of shape {:?}: {:?}", last.shape(), other.map(|_| ())),
    }
    assert!(matches!(other.backward(last), Err(Error::ForeignVar { .. })));
    match (last.item(), n == 1) {
        (Ok(_), true) | (Err(Error::NotScalar { .. }), false) => {}
        (other, _) => panic!("item of shape {:?}: {other:?}", last.shape()),
    }
    let total = last.sum().expect("sum never fails");
    let grads = tape.backward(total).expect("backward of a sum");
    for leaf in &leaves {
        let g = grads.wrt(*leaf).expect("a tracked leaf has a gradient");
        assert_eq!(g.shape(), leaf.shape().as_slice(), "leaf gradient shape");
        if finite_gradients {
            assert!(g.iter().all(|x| x.is_finite()), "leaf gradient {g}");
        }
    }
    // Gradients of another tape's values are not there.
    let stranger = other.var(ArrayD::zeros(IxDyn(&[1])));
    assert!(grads.wrt(stranger).is_none());
}
