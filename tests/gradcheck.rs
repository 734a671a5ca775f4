//! The public gradient checker: it passes correct gradients and catches wrong
//! ones (a wrong factor, a wrong sign, a missing term, the published focal
//! loss bug), skips kinks instead of failing them, scales to a million
//! elements in directional mode, and reports errors instead of panicking.

mod common;

use std::time::Instant;

use common::Rng;
use tapeloss::gradcheck::{CheckMode, GradCheckConfig, Pair, Probe, check_fn, check_loss};
use tapeloss::ndarray::{ArrayD, IxDyn, Zip, array};
use tapeloss::{Error, Loss, MeanSquaredError, Reduction, Result, Tape, Var};

/// A deliberate slip in a hand-written gradient.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slip {
    None,
    /// The whole gradient multiplied by this factor.
    Factor(f64),
    /// `+t` where the derivative has `−t`.
    Sign,
    /// The `−t` term left out.
    MissingTerm,
}

/// Poisson negative log-likelihood on log-rates, PyTorch's
/// `poisson_nll_loss(log_input=True)`: mean(exp(p) − t·p), gradient
/// (exp(p) − t)/n. Its `backward` is written by hand, with an optional slip.
struct PoissonNll(Slip);

impl Loss<f64> for PoissonNll {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        p.exp()?.sub(tape.constant(t.clone()).mul(p)?)?.mean()
    }

    fn forward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<f64> {
        let sum = Zip::from(p).and(t).fold(0.0, |acc, &p, &t| acc + p.exp() - t * p);
        Ok(sum / p.len() as f64)
    }

    fn backward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        let n = p.len() as f64;
        Ok(Zip::from(p).and(t).map_collect(|&p, &t| match self.0 {
            Slip::None => (p.exp() - t) / n,
            Slip::Factor(f) => f * (p.exp() - t) / n,
            Slip::Sign => (p.exp() + t) / n,
            Slip::MissingTerm => p.exp() / n,
        }))
    }
}

/// Log-rates in [−1, 1] and zero counts, except at [1, 2]: rate e^2.5 and
/// count 2. Every slip above is worst at [1, 2] (the sign and missing-term
/// slips are wrong only where t ≠ 0; a factor slip is worst where |gradient|
/// is largest).
fn poisson_inputs() -> (ArrayD<f64>, ArrayD<f64>) {
    let mut rng = Rng::new(41);
    let mut p = rng.array(&[3, 4], -1.0, 1.0);
    let mut t = ArrayD::zeros(IxDyn(&[3, 4]));
    p[[1, 2]] = 2.5;
    t[[1, 2]] = 2.0;
    (p, t)
}

#[test]
fn mse_passes_with_torch_defaults() {
    let mut rng = Rng::new(1);
    for shape in [&[7][..], &[3, 4], &[2, 3, 2]] {
        let p = rng.array(shape, -2.0, 2.0);
        let t = rng.array(shape, -2.0, 2.0);
        for r in [Reduction::Mean, Reduction::Sum] {
            let report = check_loss(
                &MeanSquaredError::new().with_reduction(r),
                &p,
                &t,
                &GradCheckConfig::default(),
            )
            .unwrap();
            assert!(report.passed(), "{report}");
            assert_eq!(report.mode(), CheckMode::Elementwise);
            assert_eq!(report.comparisons().len(), 3);
            assert!(report.skipped().is_empty(), "{report}");
            assert!(report.value().is_some_and(|v| v.passed));
            // f(x), then f(x ± h) per element: MSE is quadratic, never a suspected kink.
            assert_eq!(report.evaluations(), 1 + 2 * p.len());
        }
    }
}

#[test]
fn correct_hand_written_backward_passes() {
    let mut rng = Rng::new(2);
    let p = rng.array(&[4, 5], -1.5, 1.5);
    let t = ArrayD::from_shape_simple_fn(IxDyn(&[4, 5]), || rng.below(5) as f64);
    let report = check_loss(&PoissonNll(Slip::None), &p, &t, &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{report}");
    let (p, t) = poisson_inputs();
    let report = check_loss(&PoissonNll(Slip::None), &p, &t, &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{report}");
}

/// The slip is caught, blamed on the closed form (the tape agrees with the
/// finite differences) and located at [1, 2].
fn assert_caught(slip: Slip) {
    let (p, t) = poisson_inputs();
    let report = check_loss(&PoissonNll(slip), &p, &t, &GradCheckConfig::default()).unwrap();
    let text = report.to_string();
    assert!(!report.passed(), "{slip:?} was not caught:\n{text}");
    assert!(text.contains("FAILED"), "{text}");
    let worst_at = Probe::Element {
        input: None,
        index: vec![1, 2],
    };
    for pair in [Pair::ClosedVsTape, Pair::ClosedVsFiniteDifferences] {
        let row = report.comparison(pair).unwrap();
        assert!(row.failed > 0, "{slip:?}, {pair}:\n{text}");
        assert_eq!(
            row.worst.as_ref().map(|w| &w.at),
            Some(&worst_at),
            "{slip:?}, {pair}:\n{text}"
        );
    }
    assert!(
        report.comparison(Pair::TapeVsFiniteDifferences).unwrap().passed(),
        "{text}"
    );
    assert!(
        text.contains("[1, 2]"),
        "the table must name the worst element:\n{text}"
    );
}

#[test]
fn wrong_factor_is_caught() {
    assert_caught(Slip::Factor(12.0)); // the mean's 1/n forgotten
    assert_caught(Slip::Factor(1.01)); // 1 % off
}

#[test]
fn wrong_sign_is_caught() {
    assert_caught(Slip::Sign);
}

#[test]
fn missing_term_is_caught() {
    assert_caught(Slip::MissingTerm);
}

/// The seed's focal loss on probabilities, mean over the batch N of
/// Σ_c −α(1−p)^γ·t·ln(clamp(p, ε, 1−ε)). `record` is the composition;
/// `backward` is the closed form, either the true derivative
/// α·t·[γ(1−p)^(γ−1)·ln p − (1−p)^γ/p]/N or the published one whose
/// (1−p)^(γ−1)·ln p term has the wrong sign.
struct SeedFocal {
    gamma: f64,
    alpha: f64,
    epsilon: f64,
    published_bug: bool,
}

impl SeedFocal {
    fn new(published_bug: bool) -> Self {
        SeedFocal {
            gamma: 2.0,
            alpha: 0.25,
            epsilon: 1e-7,
            published_bug,
        }
    }
}

impl Loss<f64> for SeedFocal {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        let n = p.shape()[0] as f64;
        let weight = p.mul_scalar(-1.0)?.add_scalar(1.0)?.powf(self.gamma)?;
        let log_p = p.clamp(self.epsilon, 1.0 - self.epsilon)?.ln()?;
        weight
            .mul(log_p)?
            .mul(tape.constant(t.clone()))?
            .sum()?
            .mul_scalar(-self.alpha / n)
    }

    fn forward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<f64> {
        let n = p.shape()[0] as f64;
        let (lo, hi) = (self.epsilon, 1.0 - self.epsilon);
        let sum = Zip::from(p).and(t).fold(0.0, |acc, &p, &t| {
            acc - self.alpha * (1.0 - p).powf(self.gamma) * t * p.clamp(lo, hi).ln()
        });
        Ok(sum / n)
    }

    fn backward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        let n = p.shape()[0] as f64;
        let (g, a) = (self.gamma, self.alpha);
        let (lo, hi) = (self.epsilon, 1.0 - self.epsilon);
        Ok(Zip::from(p).and(t).map_collect(|&p, &t| {
            let q = p.clamp(lo, hi);
            let inside = if (lo..=hi).contains(&p) { 1.0 } else { 0.0 };
            let log_term = g * (1.0 - p).powf(g - 1.0) * q.ln();
            let log_term = if self.published_bug { -log_term } else { log_term };
            a * t * (log_term - (1.0 - p).powf(g) * inside / q) / n
        }))
    }
}

fn focal_inputs() -> (ArrayD<f64>, ArrayD<f64>) {
    let p = array![[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.25, 0.25, 0.5], [0.05, 0.15, 0.8]].into_dyn();
    let t = array![[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]].into_dyn();
    (p, t)
}

#[test]
fn published_focal_sign_bug_is_caught() {
    let (p, t) = focal_inputs();
    let report = check_loss(&SeedFocal::new(true), &p, &t, &GradCheckConfig::default()).unwrap();
    let text = report.to_string();
    assert!(!report.passed(), "{text}");
    let row = report.comparison(Pair::ClosedVsFiniteDifferences).unwrap();
    // Wrong at every target class (p ≥ 0.5 here), and with the wrong sign:
    // the buggy gradient says raising p raises the loss.
    assert_eq!(row.failed, 4, "{text}");
    let worst = row.worst.as_ref().unwrap();
    let (closed, fd) = (worst.closed.unwrap(), worst.finite_difference.unwrap());
    assert!(closed > 0.0 && fd < 0.0, "{text}");
    assert!(text.contains(&worst.at.to_string()), "{text}");
    assert!(
        report.comparison(Pair::TapeVsFiniteDifferences).unwrap().passed(),
        "{text}"
    );
}

#[test]
fn correct_focal_passes() {
    let (p, t) = focal_inputs();
    let report = check_loss(&SeedFocal::new(false), &p, &t, &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{report}");
    assert!(report.skipped().is_empty(), "{report}");
}

#[test]
fn abs_and_relu_at_zero_are_skipped_not_failed() {
    let x = array![-1.5, 0.0, 0.7, 2.0].into_dyn();
    let report = check_fn(|_, v| v[0].abs()?.sum(), &[x], &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.skipped().len(), 1, "{report}");
    let kink = &report.skipped()[0];
    assert_eq!(
        kink.sample.at,
        Probe::Element {
            input: Some(0),
            index: vec![1]
        }
    );
    assert!((kink.forward_difference - 1.0).abs() < 1e-9 && (kink.backward_difference + 1.0).abs() < 1e-9);
    assert_eq!(report.comparison(Pair::TapeVsFiniteDifferences).unwrap().compared, 3);
    assert!(report.to_string().contains("x0[1]"), "{report}");

    let x = array![[0.5, 0.0], [-0.3, 1.2]].into_dyn();
    let w = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
    let report = check_fn(
        |tape, v| v[0].relu()?.mul(tape.constant(w.clone()))?.sum(),
        &[x],
        &GradCheckConfig::default(),
    )
    .unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.skipped().len(), 1, "{report}");
    assert_eq!(report.comparison(Pair::TapeVsFiniteDifferences).unwrap().failed, 0);
}

/// Hinge loss mean(max(0, 1 − p·t)) for labels ±1, closed form by hand.
struct Hinge;

impl Loss<f64> for Hinge {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        p.mul(tape.constant(t.clone()))?
            .mul_scalar(-1.0)?
            .add_scalar(1.0)?
            .relu()?
            .mean()
    }

    fn forward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<f64> {
        Ok(Zip::from(p)
            .and(t)
            .fold(0.0, |acc, &p, &t| acc + (1.0 - p * t).max(0.0))
            / p.len() as f64)
    }

    fn backward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        let n = p.len() as f64;
        Ok(Zip::from(p)
            .and(t)
            .map_collect(|&p, &t| if 1.0 - p * t > 0.0 { -t / n } else { 0.0 }))
    }
}

#[test]
fn hinge_at_its_margin_is_skipped() {
    let p = array![0.3, 1.0, -2.0, -0.5, -1.0].into_dyn();
    let t = array![1.0, 1.0, -1.0, 1.0, -1.0].into_dyn(); // p·t = 1 at [1] and [4]
    let report = check_loss(&Hinge, &p, &t, &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{report}");
    let skipped: Vec<String> = report.skipped().iter().map(|s| s.sample.at.to_string()).collect();
    assert_eq!(skipped, ["[1]", "[4]"], "{report}");
    for row in report.comparisons() {
        assert_eq!(row.compared, 3, "{report}");
    }
}

/// sum(max(p, t)) with a hand-written gradient that gives a tie to `p`,
/// while the tape's `maximum` splits it evenly: the two disagree at a tie
/// and both are legitimate subgradients.
struct SumOfMax;

impl Loss<f64> for SumOfMax {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        p.maximum(tape.constant(t.clone()))?.sum()
    }

    fn forward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<f64> {
        Ok(Zip::from(p).and(t).fold(0.0, |acc, &p, &t| acc + p.max(t)))
    }

    fn backward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        Ok(Zip::from(p).and(t).map_collect(|&p, &t| if p >= t { 1.0 } else { 0.0 }))
    }
}

#[test]
fn a_tie_split_differently_by_closed_form_and_tape_is_skipped() {
    let p = array![0.5, 2.0, -1.0].into_dyn();
    let t = array![1.0, 2.0, -3.0].into_dyn();
    let report = check_loss(&SumOfMax, &p, &t, &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.skipped().len(), 1);
    let tie = &report.skipped()[0].sample;
    assert_eq!((tie.closed, tie.tape), (Some(1.0), Some(0.5)));
    assert_eq!(report.comparison(Pair::ClosedVsTape).unwrap().compared, 2);
}

#[test]
fn every_element_skipped_has_not_passed() {
    let x = ArrayD::zeros(IxDyn(&[3]));
    let report = check_fn(|_, v| v[0].abs()?.sum(), &[x], &GradCheckConfig::default()).unwrap();
    assert!(!report.passed(), "{report}");
    assert_eq!(report.failures(), 0);
    assert_eq!(report.skipped().len(), 3);
    assert!(report.to_string().contains("NOT PASSED"), "{report}");

    let (p, t) = (array![1.0, -2.0].into_dyn(), array![1.0, -2.0].into_dyn());
    let report = check_loss(&SumOfMax, &p, &t, &GradCheckConfig::default()).unwrap();
    assert!(!report.passed(), "{report}");
}

#[test]
fn directional_mode_checks_a_million_elements_quickly() {
    let n = 1_000_000;
    let mut rng = Rng::new(3);
    let p = rng.array(&[1000, 1000], -1.0, 1.0);
    let t = ArrayD::from_shape_simple_fn(IxDyn(&[1000, 1000]), || rng.below(4) as f64);
    assert_eq!(p.len(), n);

    let start = Instant::now();
    let report = check_loss(&MeanSquaredError::new(), &p, &t, &GradCheckConfig::default()).unwrap();
    let correct_mse = start.elapsed();
    assert!(report.passed(), "{report}");
    assert_eq!(
        report.mode(),
        CheckMode::Directional {
            directions: GradCheckConfig::AUTO_DIRECTIONS
        }
    );
    assert!(
        report.evaluations() <= 1 + 4 * GradCheckConfig::AUTO_DIRECTIONS,
        "{report}"
    );
    assert_eq!(report.comparison(Pair::ClosedVsTape).unwrap().compared, n);

    let start = Instant::now();
    let report = check_loss(&PoissonNll(Slip::None), &p, &t, &GradCheckConfig::directional(2)).unwrap();
    let correct_poisson = start.elapsed();
    assert!(report.passed(), "{report}");

    let start = Instant::now();
    let report = check_loss(&PoissonNll(Slip::Sign), &p, &t, &GradCheckConfig::directional(2)).unwrap();
    let wrong_poisson = start.elapsed();
    let text = report.to_string();
    assert!(!report.passed(), "{text}");
    // The directional finite differences catch it on their own, not only the
    // elementwise closed-versus-tape comparison.
    let row = report.comparison(Pair::ClosedVsFiniteDifferences).unwrap();
    assert_eq!((row.compared, row.failed), (2, 2), "{text}");
    assert!(text.contains("direction"), "{text}");
    // One disagreement was probed (not a kink: a failure); the rest are
    // counted as failures unprobed.
    assert!(report.evaluations() <= 1 + 4 * 2 + 2, "{text}");
    eprintln!(
        "1e6 elements: MSE {correct_mse:?}, Poisson {correct_poisson:?}, Poisson with a sign slip {wrong_poisson:?}\n{text}"
    );
}

#[test]
fn directional_mode_can_be_chosen_for_small_inputs() {
    let (p, t) = poisson_inputs();
    let config = GradCheckConfig::directional(4);
    let report = check_loss(&PoissonNll(Slip::None), &p, &t, &config).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.comparison(Pair::TapeVsFiniteDifferences).unwrap().compared, 4);
    let report = check_loss(&PoissonNll(Slip::Factor(1.01)), &p, &t, &config).unwrap();
    assert!(!report.passed(), "{report}");
    assert_eq!(
        report.comparison(Pair::ClosedVsFiniteDifferences).unwrap().failed,
        4,
        "{report}"
    );
    // The directions are seeded: the same seed gives the same report.
    let again = check_loss(&PoissonNll(Slip::Factor(1.01)), &p, &t, &config).unwrap();
    assert_eq!(report, again);
}

#[test]
fn directional_mode_skips_a_kink_on_the_line() {
    // |x| with an element at 0: every direction crosses the kink at t = 0.
    let x = array![0.0, 1.0, -2.0].into_dyn();
    let report = check_fn(|_, v| v[0].abs()?.sum(), &[x], &GradCheckConfig::directional(3)).unwrap();
    assert!(!report.passed(), "{report}");
    assert_eq!(report.skipped().len(), 3, "{report}");
    assert_eq!(report.failures(), 0);
}

fn three_inputs<'t>(tape: &'t Tape<f64>, v: &[Var<'t, f64>]) -> Result<Var<'t, f64>> {
    let _ = tape;
    let product = v[0].matmul(v[1])?.mul(v[2])?.sum()?; // [2,3]·[3,4], times a row [4]
    let smooth = v[0].square()?.mean()?.add(v[1].tanh()?.sum()?)?;
    product.add(smooth)?.add(v[2].exp()?.log1p()?.sum()?)
}

#[test]
fn check_fn_with_several_inputs() {
    let mut rng = Rng::new(4);
    let inputs = [
        rng.array(&[2, 3], -1.0, 1.0),
        rng.array(&[3, 4], -1.0, 1.0),
        rng.array(&[4], -1.0, 1.0),
    ];
    let report = check_fn(three_inputs, &inputs, &GradCheckConfig::default()).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.elements(), 6 + 12 + 4);
    let row = report.comparison(Pair::TapeVsFiniteDifferences).unwrap();
    assert_eq!(row.compared, 22);
    assert!(report.comparison(Pair::ClosedVsTape).is_none());
    assert!(report.value().is_none());
    assert!(report.to_string().contains("tape vs finite diff"));

    let report = check_fn(three_inputs, &inputs, &GradCheckConfig::directional(3)).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.evaluations(), 1 + 2 * 3);
}

#[test]
fn check_fn_catches_a_nan_instead_of_passing() {
    let x = array![-1.0, 4.0].into_dyn();
    let report = check_fn(|_, v| v[0].sqrt()?.sum(), &[x], &GradCheckConfig::default()).unwrap();
    assert!(!report.passed(), "{report}");
    // The sum is NaN wherever x is moved, so both elements fail.
    assert_eq!(report.failures(), 2, "{report}");
    assert!(report.comparisons()[0].max_abs_error.is_nan(), "{report}");
    assert!(report.skipped().is_empty(), "{report}");
}

/// A loss whose `backward` flattens its gradient.
struct FlatGradient;

impl Loss<f64> for FlatGradient {
    fn record<'t>(&self, tape: &'t Tape<f64>, p: Var<'t, f64>, t: &ArrayD<f64>) -> Result<Var<'t, f64>> {
        MeanSquaredError::new().record(tape, p, t)
    }

    fn backward(&self, p: &ArrayD<f64>, t: &ArrayD<f64>) -> Result<ArrayD<f64>> {
        let g = MeanSquaredError::new().backward(p, t)?;
        Ok(g.into_shape_with_order(IxDyn(&[p.len()]))?)
    }
}

#[test]
fn errors_are_returned_not_panicked() {
    let p = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
    let config = GradCheckConfig::default();
    let err = check_loss(&FlatGradient, &p, &p, &config).unwrap_err();
    assert!(
        matches!(&err, Error::ShapeMismatch { lhs, rhs, .. } if lhs == &[4] && rhs == &[2, 2]),
        "{err}"
    );
    assert!(err.to_string().contains("backward"), "{err}");

    // The loss's own errors propagate.
    let t = array![1.0, 2.0, 3.0].into_dyn();
    let err = check_loss(&MeanSquaredError::new(), &p, &t, &config).unwrap_err();
    assert!(
        matches!(
            err,
            Error::ShapeMismatch {
                op: "MeanSquaredError",
                ..
            }
        ),
        "{err}"
    );

    for (bad, name) in [
        (config.clone().with_eps(0.0), "eps"),
        (config.clone().with_atol(f64::NAN), "atol"),
        (config.clone().with_rtol(-1.0), "rtol"),
        (GradCheckConfig::directional(0), "directions"),
    ] {
        let err = check_loss(&MeanSquaredError::new(), &p, &p, &bad).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidParameter { name: n, .. } if n.contains(name)),
            "{err}"
        );
    }

    // A count, not a real number, is what the message asks for; and a count
    // so large the check would never end is refused too.
    let err = check_loss(&MeanSquaredError::new(), &p, &p, &GradCheckConfig::directional(0)).unwrap_err();
    assert!(err.to_string().contains("a count from 1 to"), "{err}");
    let too_many = GradCheckConfig::directional(GradCheckConfig::MAX_DIRECTIONS + 1);
    let err = check_loss(&MeanSquaredError::new(), &p, &p, &too_many).unwrap_err();
    assert!(err.to_string().contains("65537"), "{err}");
    let err = check_fn(
        |_, v| v[0].sum(),
        std::slice::from_ref(&p),
        &GradCheckConfig::directional(usize::MAX),
    );
    assert!(matches!(err, Err(Error::InvalidParameter { .. })), "{err:?}");

    // An input with no element has nothing to compare in either mode, so
    // neither passes.
    let empty = ArrayD::<f64>::zeros(IxDyn(&[0]));
    for mode in [GradCheckConfig::elementwise(), GradCheckConfig::directional(2)] {
        let report = check_fn(|_, v| v[0].sum(), std::slice::from_ref(&empty), &mode).unwrap();
        assert!(!report.passed(), "{report}");
    }

    let err = check_fn(|_, v| v[0].sum(), &[], &config).unwrap_err();
    assert!(matches!(err, Error::Empty { op: "check_fn", .. }), "{err}");
    let err = check_fn(|_, v| v[0].square(), std::slice::from_ref(&p), &config).unwrap_err();
    assert!(matches!(err, Error::NotScalar { .. }), "{err}");
    let err = check_fn(|_, v| v[0].add(v[1])?.sum(), &[p, t], &config).unwrap_err();
    assert!(matches!(err, Error::ShapeMismatch { op: "add", .. }), "{err}");
}
