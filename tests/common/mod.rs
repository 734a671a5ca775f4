//! Helpers shared by the integration tests: a seeded generator, the PyTorch
//! fixtures, and tolerance assertions. Expected values never come from the code
//! under test: they come from PyTorch, from closed forms worked by hand, or
//! from finite differences.
#![allow(dead_code)]

use std::path::PathBuf;

use tapeloss::Loss;
use tapeloss::gradcheck::{GradCheckConfig, check_loss};
use tapeloss::ndarray::{ArrayD, IxDyn};

/// The library's seeded generator: every test input is reproducible.
#[allow(unused_imports)] // not every test binary draws random inputs
pub use tapeloss::gradcheck::SplitMix64 as Rng;

/// A fixture's `reduction` option (`"mean"`, the default, or `"sum"`).
pub fn reduction(options: &serde_json::Value) -> tapeloss::Reduction {
    match options["reduction"].as_str() {
        Some("sum") => tapeloss::Reduction::Sum,
        _ => tapeloss::Reduction::Mean,
    }
}

/// One case of a PyTorch fixture file.
pub struct Fixture {
    pub name: String,
    pub loss: String,
    pub options: serde_json::Value,
    pub predictions: ArrayD<f64>,
    pub targets: ArrayD<f64>,
    pub value: f64,
    pub grad: ArrayD<f64>,
}

/// Reads `tests/fixtures/<family>.json`, written by `scripts/make_fixtures.py`.
pub fn fixtures(family: &str) -> Vec<Fixture> {
    let path: PathBuf = [
        env!("CARGO_MANIFEST_DIR"),
        "tests",
        "fixtures",
        &format!("{family}.json"),
    ]
    .iter()
    .collect();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let doc: serde_json::Value = serde_json::from_str(&text).expect("fixture JSON");
    let cases = doc["cases"].as_array().expect("cases");
    assert!(!cases.is_empty(), "{family}: no cases");
    cases
        .iter()
        .map(|c| Fixture {
            name: c["name"].as_str().expect("name").to_string(),
            loss: c["loss"].as_str().expect("loss").to_string(),
            options: c["options"].clone(),
            predictions: array_from_json(&c["predictions"]),
            targets: array_from_json(&c["targets"]),
            value: number(&c["value"]),
            grad: array_from_json(&c["grad"]),
        })
        .collect()
}

fn number(v: &serde_json::Value) -> f64 {
    match v {
        serde_json::Value::String(s) if s == "nan" => f64::NAN,
        serde_json::Value::String(s) if s == "inf" => f64::INFINITY,
        serde_json::Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        other => other.as_f64().expect("number"),
    }
}

/// `{shape, data}` as an array.
pub fn array_from_json(v: &serde_json::Value) -> ArrayD<f64> {
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .expect("shape")
        .iter()
        .map(|d| d.as_u64().expect("dim") as usize)
        .collect();
    let data: Vec<f64> = v["data"].as_array().expect("data").iter().map(number).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("fixture shape and data agree")
}

/// Option `key` of a fixture as f64, if present.
pub fn opt_f64(options: &serde_json::Value, key: &str) -> Option<f64> {
    options.get(key).and_then(|v| v.as_f64())
}

/// `|a − b| ≤ atol + rtol·|b|` elementwise, with a message naming the worst element.
pub fn assert_close(actual: &ArrayD<f64>, expected: &ArrayD<f64>, rtol: f64, atol: f64, what: &str) {
    assert_eq!(actual.shape(), expected.shape(), "{what}: shapes differ");
    for ((i, &a), &e) in actual.indexed_iter().zip(expected.iter()) {
        assert!(
            (a - e).abs() <= atol + rtol * e.abs() || (a == e),
            "{what}: at {i:?} got {a:e}, expected {e:e} (rtol {rtol:e}, atol {atol:e})"
        );
    }
}

/// Scalar version of [`assert_close`].
pub fn assert_close_scalar(actual: f64, expected: f64, rtol: f64, atol: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= atol + rtol * expected.abs() || actual == expected,
        "{what}: got {actual:e}, expected {expected:e} (rtol {rtol:e}, atol {atol:e})"
    );
}

/// Absolute gradient tolerances for [`assert_matches_fixture`] (beside the
/// relative 1e-10): of the closed form, and of the tape, or `None` to compare
/// only the tape's value (where its gradient is meant to differ at the edges).
pub struct GradAtol {
    pub closed: f64,
    pub tape: Option<f64>,
}

/// `loss` on one PyTorch fixture case: `value_and_grad`, `forward` and the
/// tape's `value_and_grad_on_tape` against PyTorch's value and gradient, to
/// 1e-10 relative.
pub fn assert_matches_fixture<L: Loss<f64> + ?Sized>(loss: &L, case: &Fixture, atol: GradAtol) {
    let what = &case.name;
    let (value, grad) = loss
        .value_and_grad(&case.predictions, &case.targets)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close_scalar(value, case.value, 1e-10, 0.0, what);
    assert_close(&grad, &case.grad, 1e-10, atol.closed, what);
    let forward = loss
        .forward(&case.predictions, &case.targets)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_close_scalar(forward, case.value, 1e-10, 0.0, what);
    let (tape_value, tape_grad) = tapeloss::losses::value_and_grad_on_tape(loss, &case.predictions, &case.targets)
        .unwrap_or_else(|e| panic!("{what}: tape: {e}"));
    assert_close_scalar(tape_value, case.value, 1e-10, 0.0, &format!("{what}: tape"));
    if let Some(tape_atol) = atol.tape {
        assert_close(&tape_grad, &case.grad, 1e-10, tape_atol, &format!("{what}: tape"));
    }
}

/// Checks a loss's three gradient derivations against each other with the
/// public checker ([`tapeloss::gradcheck::check_loss`]): the closed-form
/// `backward`, the tape-derived gradient of `record`, and central finite
/// differences of `forward`, element by element, plus `forward` against the
/// tape's value; and that `value_and_grad` equals `forward` with `backward`.
/// Inputs should be away from kinks (elements at a kink are skipped by the
/// checker, not compared).
pub fn assert_gradients_agree<L: Loss<f64> + ?Sized>(
    loss: &L,
    predictions: &ArrayD<f64>,
    targets: &ArrayD<f64>,
    what: &str,
) {
    let value = loss
        .forward(predictions, targets)
        .unwrap_or_else(|e| panic!("{what}: forward: {e}"));
    let closed = loss
        .backward(predictions, targets)
        .unwrap_or_else(|e| panic!("{what}: backward: {e}"));
    let (fused_value, fused_grad) = loss
        .value_and_grad(predictions, targets)
        .unwrap_or_else(|e| panic!("{what}: value_and_grad: {e}"));
    assert_close_scalar(
        fused_value,
        value,
        1e-12,
        0.0,
        &format!("{what}: value_and_grad value vs forward"),
    );
    assert_close(
        &fused_grad,
        &closed,
        1e-12,
        1e-300,
        &format!("{what}: value_and_grad grad vs backward"),
    );

    let report = check_loss(loss, predictions, targets, &suite_gradcheck_config())
        .unwrap_or_else(|e| panic!("{what}: gradient check: {e}"));
    assert!(report.passed(), "{what}:\n{report}");
}

/// The suite's gradient-check configuration: every element probed, with
/// tolerances 100 times tighter than `torch.autograd.gradcheck`'s
/// (rtol 1e-5, atol 1e-7) at the same step 1e-6.
pub fn suite_gradcheck_config() -> GradCheckConfig {
    GradCheckConfig::elementwise().with_rtol(1e-5).with_atol(1e-7)
}

/// Sharding: `loss` (built with `Reduction::Sum`) over shards of the batch
/// (axis 0, cut at `cuts`) adds back to the whole batch's value, and the
/// shards' gradients, put side by side, are the whole batch's gradient. This is
/// what lets data-parallel training split a batch across machines.
pub fn assert_shards_add_up<L: Loss<f64> + ?Sized>(
    loss: &L,
    predictions: &ArrayD<f64>,
    targets: &ArrayD<f64>,
    cuts: &[usize],
    what: &str,
) {
    use tapeloss::ndarray::{Axis, Slice};
    let (whole_value, whole_grad) = loss
        .value_and_grad(predictions, targets)
        .unwrap_or_else(|e| panic!("{what}: whole batch: {e}"));
    let n = predictions.shape()[0];
    let mut bounds = vec![0];
    bounds.extend(cuts.iter().copied().filter(|&c| c > 0 && c < n));
    bounds.push(n);
    assert!(bounds.len() > 2, "{what}: the cuts {cuts:?} must split a batch of {n}");
    let mut value = 0.0;
    let mut grad = ArrayD::zeros(predictions.raw_dim());
    for w in bounds.windows(2) {
        let range = Slice::from(w[0]..w[1]);
        let p = predictions.slice_axis(Axis(0), range).to_owned();
        let t = targets.slice_axis(Axis(0), range).to_owned();
        let (v, g) = loss
            .value_and_grad(&p, &t)
            .unwrap_or_else(|e| panic!("{what}: shard {w:?}: {e}"));
        value += v;
        grad.slice_axis_mut(Axis(0), range).assign(&g);
    }
    assert_close_scalar(value, whole_value, 1e-12, 0.0, &format!("{what}: sum of shard values"));
    assert_close(&grad, &whole_grad, 1e-12, 0.0, &format!("{what}: shard gradients"));
}

/// `f32` against `f64`: on the same inputs (rounded to `f32` first, so only the
/// arithmetic differs) the `f32` value lies within `1e-5` relative of the `f64`
/// one, and each gradient element within `1e-5` relative, or `1e-5` of the
/// gradient's largest element. For well-conditioned inputs.
pub fn assert_f32_agrees<L: Loss<f32> + Loss<f64>>(
    loss: &L,
    predictions: &ArrayD<f64>,
    targets: &ArrayD<f64>,
    what: &str,
) {
    let (p32, t32) = (predictions.mapv(|v| v as f32), targets.mapv(|v| v as f32));
    let (p64, t64) = (p32.mapv(f64::from), t32.mapv(f64::from));
    let (v64, g64) = Loss::<f64>::value_and_grad(loss, &p64, &t64).unwrap_or_else(|e| panic!("{what}: f64: {e}"));
    let (v32, g32) = Loss::<f32>::value_and_grad(loss, &p32, &t32).unwrap_or_else(|e| panic!("{what}: f32: {e}"));
    assert_close_scalar(f64::from(v32), v64, 1e-5, 0.0, &format!("{what}: f32 value"));
    let scale = g64.iter().fold(0.0_f64, |m, g| m.max(g.abs()));
    assert_close(
        &g32.mapv(f64::from),
        &g64,
        1e-5,
        1e-5 * scale,
        &format!("{what}: f32 gradient"),
    );
}

/// Central finite differences of a scalar function: `(f(x + h·eᵢ) − f(x − h·eᵢ)) / 2h`
/// for every element `i` of `x`. An independent check on any gradient; keep
/// inputs at least `h` away from kinks.
pub fn finite_difference_grad(f: impl Fn(&ArrayD<f64>) -> f64, x: &ArrayD<f64>, h: f64) -> ArrayD<f64> {
    let mut probe = x.clone();
    let mut grad = ArrayD::zeros(x.raw_dim());
    for (i, slot) in grad.indexed_iter_mut() {
        let original = probe[&i];
        probe[&i] = original + h;
        let plus = f(&probe);
        probe[&i] = original - h;
        let minus = f(&probe);
        probe[&i] = original;
        *slot = (plus - minus) / (2.0 * h);
    }
    grad
}

/// Predictions and targets.
pub type Pair = (ArrayD<f64>, ArrayD<f64>);

/// A loss's options and its seeded inputs, for the checks every elementwise
/// loss takes: `variants` lists the options (with a name) under a reduction,
/// `inputs` draws valid predictions and targets for one of them.
pub struct Family<L> {
    pub variants: fn(tapeloss::Reduction) -> Vec<(String, L)>,
    pub inputs: fn(&mut Rng, &L, &[usize]) -> Pair,
}

impl<L: Loss<f32> + Loss<f64>> Family<L> {
    /// [`assert_gradients_agree`] for every option, on three shapes and both
    /// reductions.
    pub fn gradients_agree(&self, seed: u64) {
        let mut rng = Rng::new(seed);
        for shape in [&[7][..], &[3, 4], &[2, 3, 2]] {
            for r in [tapeloss::Reduction::Mean, tapeloss::Reduction::Sum] {
                for (name, loss) in (self.variants)(r) {
                    let (p, t) = (self.inputs)(&mut rng, &loss, shape);
                    assert_gradients_agree(&loss, &p, &t, &format!("{name} {shape:?} {r:?}"));
                }
            }
        }
    }

    /// [`assert_f32_agrees`] for every option under both reductions.
    pub fn f32_agrees(&self, seed: u64) {
        let mut rng = Rng::new(seed);
        for r in [tapeloss::Reduction::Mean, tapeloss::Reduction::Sum] {
            for (name, loss) in (self.variants)(r) {
                let (p, t) = (self.inputs)(&mut rng, &loss, &[5, 8]);
                assert_f32_agrees(&loss, &p, &t, &name);
            }
        }
    }

    /// [`assert_shards_add_up`] for every option with `Reduction::Sum`.
    pub fn shards_add_up(&self, seed: u64) {
        let mut rng = Rng::new(seed);
        for (name, loss) in (self.variants)(tapeloss::Reduction::Sum) {
            let (p, t) = (self.inputs)(&mut rng, &loss, &[10, 3]);
            assert_shards_add_up(&loss, &p, &t, &[1, 4, 8], &name);
        }
    }
}

/// `value_and_grad_into`, into a buffer of NaN, returns `value_and_grad`'s
/// value and writes its gradient, bit for bit.
pub fn assert_into_agrees<L: Loss<f64> + ?Sized>(loss: &L, case: &Fixture) {
    let what = &case.name;
    let (value, grad) = loss.value_and_grad(&case.predictions, &case.targets).unwrap();
    let mut buffer = ArrayD::from_elem(case.predictions.raw_dim(), f64::NAN);
    let into = loss
        .value_and_grad_into(&case.predictions, &case.targets, &mut buffer)
        .unwrap();
    assert_eq!(into, value, "{what}: value_and_grad_into");
    assert_eq!(buffer, grad, "{what}: value_and_grad_into grad");
}

/// The largest errors of `loss` on a fixture case, closed form and tape:
/// the value's relative error (absolute where PyTorch's is 0) and the
/// gradient's absolute error, for the report a test prints.
pub fn fixture_errors<L: Loss<f64> + ?Sized>(loss: &L, case: &Fixture) -> (f64, f64) {
    let closed = loss.value_and_grad(&case.predictions, &case.targets).unwrap();
    let tape = tapeloss::losses::value_and_grad_on_tape(loss, &case.predictions, &case.targets).unwrap();
    let (mut value_err, mut grad_err) = (0.0_f64, 0.0_f64);
    for (v, g) in [closed, tape] {
        let err = (v - case.value).abs();
        value_err = value_err.max(if case.value == 0.0 { err } else { err / case.value.abs() });
        grad_err = (g.iter().zip(&case.grad)).fold(grad_err, |m, (a, e)| m.max((a - e).abs()));
    }
    (value_err, grad_err)
}

/// `loss` in `f32` on a fixture case (its inputs rounded to `f32`), closed
/// form and tape: the value within 1e-5 relative (or `value_atol`) of
/// PyTorch's `f64` one, each gradient element within 1e-5 relative or 1e-6
/// of the largest.
pub fn assert_f32_matches_fixture<L: Loss<f32> + ?Sized>(loss: &L, case: &Fixture, value_atol: f64) {
    let what = &case.name;
    let (p, t) = (case.predictions.mapv(|v| v as f32), case.targets.mapv(|v| v as f32));
    let largest = case.grad.iter().fold(0.0_f64, |m, g| m.max(g.abs()));
    let closed = loss.value_and_grad(&p, &t).unwrap_or_else(|e| panic!("{what}: {e}"));
    let tape = tapeloss::losses::value_and_grad_on_tape(loss, &p, &t).unwrap_or_else(|e| panic!("{what}: tape: {e}"));
    for (route, (value, grad)) in [("closed form", closed), ("tape", tape)] {
        let what = format!("{what}: {route}");
        assert_close_scalar(f64::from(value), case.value, 1e-5, value_atol, &what);
        assert_close(&grad.mapv(f64::from), &case.grad, 1e-5, 1e-6 * largest, &what);
    }
}
