//! Every tape op in `f64`: its forward value against a plain-loop reference,
//! and its tape gradient against central finite differences, on seeded random
//! inputs. Then broadcasting, `keepdims`, kink conventions, fan-out, a long
//! chain, numerical stability and which values receive gradients.

mod common;

use common::{Rng, assert_close, finite_difference_grad};
use tapeloss::ndarray::{ArrayD, Dimension, IxDyn, array};
use tapeloss::{Result, Tape, Var};

/// Finite-difference step: inputs are kept much further than this from kinks.
const H: f64 = 1e-6;

/// Checks the tape gradient of `Σ w ⊙ op(inputs)` against central finite
/// differences for every input. The random weights `w` give every output
/// element's gradient its own factor, so a wrong element cannot hide.
fn check_grad<Op>(what: &str, rng: &mut Rng, inputs: &[ArrayD<f64>], op: Op)
where
    Op: for<'t> Fn(&[Var<'t, f64>]) -> Result<Var<'t, f64>>,
{
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.var(x.clone())).collect();
    let out = op(&vars).unwrap_or_else(|e| panic!("{what}: {e}"));
    let w = rng.array(&out.shape(), -1.0, 1.0);
    let loss = out.mul(tape.constant(w.clone())).unwrap().sum().unwrap();
    let grads = tape.backward(loss).unwrap();

    for (k, x) in inputs.iter().enumerate() {
        let loss_at = |xk: &ArrayD<f64>| -> f64 {
            let tape = Tape::new();
            let vars: Vec<_> = inputs
                .iter()
                .enumerate()
                .map(|(j, x)| tape.constant(if j == k { xk.clone() } else { x.clone() }))
                .collect();
            let out = op(&vars).unwrap();
            out.mul(tape.constant(w.clone()))
                .unwrap()
                .sum()
                .unwrap()
                .item()
                .unwrap()
        };
        let numeric = finite_difference_grad(loss_at, x, H);
        let tape_grad = grads
            .wrt(vars[k])
            .unwrap_or_else(|| panic!("{what}: no gradient for input {k}"));
        assert_close(tape_grad, &numeric, 1e-6, 1e-7, &format!("{what}: d/d input {k}"));
    }
}

/// The op's forward value on fresh constants.
fn forward<Op>(inputs: &[ArrayD<f64>], op: Op) -> ArrayD<f64>
where
    Op: for<'t> Fn(&[Var<'t, f64>]) -> Result<Var<'t, f64>>,
{
    let tape = Tape::new();
    let vars: Vec<_> = inputs.iter().map(|x| tape.constant(x.clone())).collect();
    op(&vars).unwrap().value()
}

/// Magnitudes in `[lo, hi)` with random signs: away from a kink at 0.
fn signed(rng: &mut Rng, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
    rng.array(shape, lo, hi)
        .mapv_into(|v| v * if rng_sign(v) { 1.0 } else { -1.0 })
}

/// A sign that depends on the value's low digits: deterministic and mixed.
fn rng_sign(v: f64) -> bool {
    ((v * 1e6) as u64).is_multiple_of(2)
}

/// Distinct values (multiples of 0.1 in a shuffled order), so no two elements
/// of a slice tie or nearly tie.
fn distinct(rng: &mut Rng, shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    ArrayD::from_shape_vec(IxDyn(shape), order.into_iter().map(|k| k as f64 * 0.1 - 1.0).collect()).unwrap()
}

/// The shape NumPy broadcasting gives, worked out here independently.
fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    let pad = |s: &[usize]| -> Vec<usize> { std::iter::repeat_n(1, n - s.len()).chain(s.iter().copied()).collect() };
    pad(a)
        .iter()
        .zip(pad(b))
        .map(|(&x, y)| if x == 1 { y } else { x })
        .collect()
}

/// Where output index `idx` reads an operand of shape `shape` under broadcasting.
fn source_index(idx: &[usize], shape: &[usize]) -> Vec<usize> {
    let offset = idx.len() - shape.len();
    shape
        .iter()
        .enumerate()
        .map(|(d, &s)| if s == 1 { 0 } else { idx[offset + d] })
        .collect()
}

/// The values along `axis` through index `idx` (whose `axis` entry is ignored).
fn lane(x: &ArrayD<f64>, idx: &[usize], axis: usize) -> Vec<f64> {
    (0..x.shape()[axis])
        .map(|k| {
            let mut at = idx.to_vec();
            at[axis] = k;
            x[IxDyn(&at)]
        })
        .collect()
}

/// A reduction along `axis` worked out with plain loops.
fn reduce_reference(x: &ArrayD<f64>, axis: usize, keepdims: bool, f: fn(&[f64]) -> f64) -> ArrayD<f64> {
    let mut kept = x.shape().to_vec();
    kept[axis] = 1;
    let out = ArrayD::from_shape_fn(IxDyn(&kept), |idx| f(&lane(x, idx.slice(), axis)));
    if keepdims {
        out
    } else {
        let mut shape = x.shape().to_vec();
        shape.remove(axis);
        out.into_shape_with_order(IxDyn(&shape)).unwrap()
    }
}

type UnaryOp = for<'t> fn(Var<'t, f64>) -> Result<Var<'t, f64>>;

/// One unary op: its name, the op, a scalar reference and the input range.
struct UnaryCase {
    name: &'static str,
    op: UnaryOp,
    reference: fn(f64) -> f64,
    inputs: fn(&mut Rng, &[usize]) -> ArrayD<f64>,
}

fn unary_cases() -> Vec<UnaryCase> {
    fn any(rng: &mut Rng, s: &[usize]) -> ArrayD<f64> {
        rng.array(s, -2.0, 2.0)
    }
    fn positive(rng: &mut Rng, s: &[usize]) -> ArrayD<f64> {
        rng.array(s, 0.2, 3.0)
    }
    fn above_minus_one(rng: &mut Rng, s: &[usize]) -> ArrayD<f64> {
        rng.array(s, -0.5, 2.0)
    }
    fn off_zero(rng: &mut Rng, s: &[usize]) -> ArrayD<f64> {
        signed(rng, s, 0.1, 2.0)
    }
    fn off_clamp_bounds(rng: &mut Rng, s: &[usize]) -> ArrayD<f64> {
        // Nudge values within 0.01 of a bound (−0.5, 0.8) away from it.
        rng.array(s, -2.0, 2.0).mapv_into(|v| {
            [-0.5, 0.8]
                .iter()
                .fold(v, |v, &b| if (v - b).abs() < 0.01 { b + 0.02 } else { v })
        })
    }
    vec![
        UnaryCase {
            name: "neg",
            op: |v| v.neg(),
            reference: |x| -x,
            inputs: any,
        },
        UnaryCase {
            name: "exp",
            op: |v| v.exp(),
            reference: f64::exp,
            inputs: any,
        },
        UnaryCase {
            name: "ln",
            op: |v| v.ln(),
            reference: f64::ln,
            inputs: positive,
        },
        UnaryCase {
            name: "log1p",
            op: |v| v.log1p(),
            reference: f64::ln_1p,
            inputs: above_minus_one,
        },
        UnaryCase {
            name: "sqrt",
            op: |v| v.sqrt(),
            reference: f64::sqrt,
            inputs: positive,
        },
        UnaryCase {
            name: "square",
            op: |v| v.square(),
            reference: |x| x * x,
            inputs: any,
        },
        UnaryCase {
            name: "powf(2.5)",
            op: |v| v.powf(2.5),
            reference: |x| x.powf(2.5),
            inputs: positive,
        },
        UnaryCase {
            name: "powf(-1.3)",
            op: |v| v.powf(-1.3),
            reference: |x| x.powf(-1.3),
            inputs: positive,
        },
        UnaryCase {
            name: "powf(3)",
            op: |v| v.powf(3.0),
            reference: |x| x * x * x,
            inputs: any,
        },
        UnaryCase {
            name: "abs",
            op: |v| v.abs(),
            reference: f64::abs,
            inputs: off_zero,
        },
        UnaryCase {
            name: "relu",
            op: |v| v.relu(),
            reference: |x| if x > 0.0 { x } else { 0.0 },
            inputs: off_zero,
        },
        UnaryCase {
            name: "sigmoid",
            op: |v| v.sigmoid(),
            reference: |x| 1.0 / (1.0 + (-x).exp()),
            inputs: any,
        },
        UnaryCase {
            name: "tanh",
            op: |v| v.tanh(),
            reference: f64::tanh,
            inputs: any,
        },
        UnaryCase {
            name: "softplus",
            op: |v| v.softplus(),
            reference: |x| (1.0 + x.exp()).ln(),
            inputs: any,
        },
        UnaryCase {
            name: "log_sigmoid",
            op: |v| v.log_sigmoid(),
            reference: |x| -(1.0 + (-x).exp()).ln(),
            inputs: any,
        },
        UnaryCase {
            name: "clamp(-0.5, 0.8)",
            op: |v| v.clamp(-0.5, 0.8),
            reference: |x| x.clamp(-0.5, 0.8),
            inputs: off_clamp_bounds,
        },
        UnaryCase {
            name: "add_scalar(1.7)",
            op: |v| v.add_scalar(1.7),
            reference: |x| x + 1.7,
            inputs: any,
        },
        UnaryCase {
            name: "mul_scalar(-2.3)",
            op: |v| v.mul_scalar(-2.3),
            reference: |x| -2.3 * x,
            inputs: any,
        },
    ]
}

const UNARY_SHAPES: [&[usize]; 4] = [&[], &[5], &[3, 4], &[2, 3, 2]];

#[test]
fn unary_ops_match_reference_and_finite_differences() {
    let mut rng = Rng::new(11);
    for case in unary_cases() {
        for shape in UNARY_SHAPES {
            let x = (case.inputs)(&mut rng, shape);
            let what = format!("{} {shape:?}", case.name);
            let op = case.op;
            let value = forward(std::slice::from_ref(&x), |v| op(v[0]));
            assert_close(&value, &x.mapv(case.reference), 1e-13, 1e-15, &what);
            check_grad(&what, &mut rng, &[x], |v| op(v[0]));
        }
    }
}

type BinaryOp = for<'t> fn(Var<'t, f64>, Var<'t, f64>) -> Result<Var<'t, f64>>;

/// Shape pairs covering every broadcasting pattern: equal, scalar with
/// matrix, row with matrix (`[1, n]` and `[n]`), column with matrix, different
/// ranks, both operands broadcast, each in both orders.
const BROADCAST_PAIRS: [(&[usize], &[usize]); 17] = [
    (&[3, 4], &[3, 4]),
    (&[], &[3, 4]),
    (&[3, 4], &[]),
    (&[1, 4], &[3, 4]),
    (&[3, 4], &[1, 4]),
    (&[4], &[3, 4]),
    (&[3, 4], &[4]),
    (&[3, 1], &[3, 4]),
    (&[3, 4], &[3, 1]),
    (&[3], &[2, 4, 3]),
    (&[2, 4, 3], &[3]),
    (&[2, 1, 3], &[4, 1]),
    (&[1], &[2, 3]),
    (&[3, 1], &[1, 4]),
    // A middle axis broadcast, against the full shape and against a column.
    (&[2, 1, 3], &[2, 4, 3]),
    (&[2, 4, 3], &[2, 1, 3]),
    (&[2, 4, 1], &[2, 1, 3]),
];

#[test]
fn binary_ops_broadcast_and_match_finite_differences() {
    type Reference = fn(f64, f64) -> f64;
    let cases: [(&str, BinaryOp, Reference); 6] = [
        ("add", |a, b| a.add(b), |a, b| a + b),
        ("sub", |a, b| a.sub(b), |a, b| a - b),
        ("mul", |a, b| a.mul(b), |a, b| a * b),
        ("div", |a, b| a.div(b), |a, b| a / b),
        ("maximum", |a, b| a.maximum(b), f64::max),
        ("minimum", |a, b| a.minimum(b), f64::min),
    ];
    let mut rng = Rng::new(12);
    for (name, op, reference) in cases {
        for (sa, sb) in BROADCAST_PAIRS {
            let (a, b) = match name {
                // Divisors away from zero.
                "div" => (rng.array(sa, -2.0, 2.0), signed(&mut rng, sb, 0.5, 2.0)),
                // Operands on interleaved grids never tie: |a − b| ≥ 0.05.
                "maximum" | "minimum" => (
                    rng.array(sa, -2.0, 2.0).mapv_into(|v| (v * 10.0).round() / 10.0),
                    rng.array(sb, -2.0, 2.0).mapv_into(|v| (v * 10.0).round() / 10.0 + 0.05),
                ),
                _ => (rng.array(sa, -2.0, 2.0), rng.array(sb, -2.0, 2.0)),
            };
            let what = format!("{name} {sa:?} with {sb:?}");
            let shape = broadcast(sa, sb);
            let expected = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
                reference(
                    a[IxDyn(&source_index(idx.slice(), sa))],
                    b[IxDyn(&source_index(idx.slice(), sb))],
                )
            });
            let value = forward(&[a.clone(), b.clone()], |v| op(v[0], v[1]));
            assert_close(&value, &expected, 1e-15, 0.0, &what);
            check_grad(&what, &mut rng, &[a, b], |v| op(v[0], v[1]));
        }
    }
}

#[test]
fn binary_ops_accept_non_standard_layouts() {
    // A transposed (column-major) operand and a broadcast one.
    let mut rng = Rng::new(13);
    let a = rng.array(&[4, 3], -2.0, 2.0).reversed_axes(); // [3, 4], not row-major
    let b = rng.array(&[3, 1], 0.5, 2.0);
    let expected = ArrayD::from_shape_fn(IxDyn(&[3, 4]), |idx| a[&idx] / b[IxDyn(&[idx[0], 0])]);
    assert_close(
        &forward(&[a.clone(), b.clone()], |v| v[0].div(v[1])),
        &expected,
        1e-15,
        0.0,
        "div",
    );
    check_grad("div transposed", &mut rng, &[a.clone(), b], |v| v[0].div(v[1]));
    check_grad("mul transposed fan-out", &mut rng, &[a], |v| {
        v[0].mul(v[0])?.reshape(&[12])
    });
}

/// Broadcasts past the size at which the forward pass and the reduction of
/// a repeated operand's gradient spread over both cores (2¹⁹ elements, runs
/// of at least 64), and one of short runs that stays on one thread: the
/// values against the elementwise formula, and the gradients of `Σ w ⊙ y`
/// against sums over plain loops.
#[test]
fn large_broadcasts_match_plain_loops() {
    let mut rng = Rng::new(30);
    let pairs: [(&[usize], &[usize]); 5] = [
        (&[700, 800], &[700, 1]),
        // Runs of two elements, walked on one thread.
        (&[300_000, 2], &[300_000, 1]),
        (&[700, 800], &[800]),
        (&[700, 1], &[1, 800]),
        (&[2, 350, 800], &[2, 1, 800]),
    ];
    let ops: [(&str, BinaryOp); 2] = [("sub", |a, b| a.sub(b)), ("mul", |a, b| a.mul(b))];
    for (sa, sb) in pairs {
        let shape = broadcast(sa, sb);
        let (a, b, w) = (
            rng.array(sa, -2.0, 2.0),
            rng.array(sb, -2.0, 2.0),
            rng.array(&shape, -1.0, 1.0),
        );
        for (name, op) in ops {
            let what = format!("{name} {sa:?} with {sb:?}");
            let tape = Tape::new();
            let (va, vb) = (tape.var(a.clone()), tape.var(b.clone()));
            let y = op(va, vb).unwrap();
            let loss = y.mul(tape.constant(w.clone())).unwrap().sum().unwrap();
            let grads = tape.backward(loss).unwrap();
            let (mut ga, mut gb) = (ArrayD::zeros(IxDyn(sa)), ArrayD::zeros(IxDyn(sb)));
            let mut expected = ArrayD::zeros(IxDyn(&shape));
            for (idx, &wi) in w.indexed_iter() {
                let (ia, ib) = (source_index(idx.slice(), sa), source_index(idx.slice(), sb));
                let (x, z) = (a[IxDyn(&ia)], b[IxDyn(&ib)]);
                let (value, da, db) = if name == "sub" {
                    (x - z, 1.0, -1.0)
                } else {
                    (x * z, z, x)
                };
                expected[&idx] = value;
                ga[IxDyn(&ia)] += wi * da;
                gb[IxDyn(&ib)] += wi * db;
            }
            assert_eq!(y.value(), expected, "{what}: value");
            assert_close(
                grads.wrt(va).unwrap(),
                &ga,
                1e-12,
                1e-12,
                &format!("{what}: gradient of a"),
            );
            assert_close(
                grads.wrt(vb).unwrap(),
                &gb,
                1e-12,
                1e-12,
                &format!("{what}: gradient of b"),
            );
        }
    }
}

#[test]
fn whole_reductions_match_finite_differences() {
    let mut rng = Rng::new(14);
    for shape in UNARY_SHAPES {
        let x = rng.array(shape, -2.0, 2.0);
        let n = x.len() as f64;
        let sum: f64 = x.iter().sum();
        let s = forward(std::slice::from_ref(&x), |v| v[0].sum());
        let m = forward(std::slice::from_ref(&x), |v| v[0].mean());
        assert_eq!(s.shape(), &[] as &[usize], "sum is zero-dimensional");
        assert_close(&s, &ArrayD::from_elem(IxDyn(&[]), sum), 1e-14, 0.0, "sum");
        assert_close(&m, &ArrayD::from_elem(IxDyn(&[]), sum / n), 1e-14, 0.0, "mean");
        check_grad(&format!("sum {shape:?}"), &mut rng, std::slice::from_ref(&x), |v| {
            v[0].sum()
        });
        check_grad(&format!("mean {shape:?}"), &mut rng, &[x], |v| v[0].mean());
    }
}

type AxisOp = for<'t> fn(Var<'t, f64>, usize, bool) -> Result<Var<'t, f64>>;

#[test]
fn axis_reductions_every_axis_with_and_without_keepdims() {
    type Reference = fn(&[f64]) -> f64;
    let cases: [(&str, AxisOp, Reference); 5] = [
        ("sum_axis", |v, a, k| v.sum_axis(a, k), |l| l.iter().sum()),
        (
            "mean_axis",
            |v, a, k| v.mean_axis(a, k),
            |l| l.iter().sum::<f64>() / l.len() as f64,
        ),
        (
            "max_axis",
            |v, a, k| v.max_axis(a, k),
            |l| l.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        ),
        (
            "logsumexp_axis",
            |v, a, k| v.logsumexp_axis(a, k),
            |l| l.iter().map(|v| v.exp()).sum::<f64>().ln(),
        ),
        (
            "norm_axis",
            |v, a, k| v.norm_axis(a, k),
            |l| l.iter().map(|v| v * v).sum::<f64>().sqrt(),
        ),
    ];
    let mut rng = Rng::new(15);
    for (name, op, reference) in cases {
        for shape in [&[5][..], &[3, 4], &[2, 3, 4]] {
            for axis in 0..shape.len() {
                for keepdims in [false, true] {
                    let x = distinct(&mut rng, shape); // no ties for max_axis
                    let what = format!("{name} {shape:?} axis {axis} keepdims {keepdims}");
                    let value = forward(std::slice::from_ref(&x), |v| op(v[0], axis, keepdims));
                    let expected = reduce_reference(&x, axis, keepdims, reference);
                    assert_close(&value, &expected, 1e-13, 1e-15, &what);
                    check_grad(&what, &mut rng, &[x], |v| op(v[0], axis, keepdims));
                }
            }
        }
    }
}

#[test]
fn norm_axis_gradient_is_finite_where_the_gradient_over_the_norm_overflows() -> Result<()> {
    // In f32, a 3-4-5 triangle scaled by 2⁻⁶⁰ has the norm 5·2⁻⁶⁰, and with a
    // weight g = 2¹⁰⁰ the quotient g/‖y‖ overflows; g·(y/‖y‖) = g·(3/5, 4/5)
    // does not. Row 1, (2⁻⁶⁰, 0) with g = 1, gets (1, 0). Materialised (`x`
    // itself) and fused (a chain behind the norm) alike.
    let (tiny, huge) = (2f32.powi(-60), 2f32.powi(100));
    let xs = array![[3.0 * tiny, -4.0 * tiny], [tiny, 0.0]].into_dyn();
    let expected = array![[0.6 * huge, -0.8 * huge], [1.0, 0.0]].into_dyn();
    for fused in [false, true] {
        let tape = Tape::<f32>::new();
        let x = tape.var(xs.clone());
        let w = tape.constant(array![huge, 1.0].into_dyn());
        let input = if fused { x.neg()?.neg()? } else { x };
        let grads = tape.backward(input.norm_axis(1, false)?.mul(w)?.sum()?)?;
        let got = grads.wrt(x).unwrap();
        for (g, e) in got.iter().zip(expected.iter()) {
            assert!(
                (g - e).abs() <= 1e-6 * e.abs(),
                "fused {fused}: {got} against {expected}"
            );
        }
    }
    Ok(())
}

#[test]
fn norm_axis_passes_no_gradient_where_the_norm_is_zero() -> Result<()> {
    // Row 0 is a 3-4-5 triangle, row 1 is all zeros: the norm has no
    // derivative there, and the gradient is 0 (PyTorch's choice), not NaN.
    let tape = Tape::new();
    let x = tape.var(array![[3.0, -4.0], [0.0, 0.0]].into_dyn());
    let w = tape.constant(array![2.0, 7.0].into_dyn());
    let y = x.norm_axis(1, false)?;
    assert_eq!(y.value(), array![5.0, 0.0].into_dyn());
    let grads = tape.backward(y.mul(w)?.sum()?)?;
    let expected = array![[2.0 * 3.0 / 5.0, 2.0 * -4.0 / 5.0], [0.0, 0.0]].into_dyn();
    assert_close(grads.wrt(x).unwrap(), &expected, 1e-15, 0.0, "norm_axis by hand");
    assert!(
        grads
            .wrt(x)
            .unwrap()
            .slice(tapeloss::ndarray::s![1, ..])
            .iter()
            .all(|&g| g == 0.0)
    );
    // Along an empty axis the norm is 0, like the sum.
    let empty = tape.var(ArrayD::zeros(IxDyn(&[2, 0])));
    assert_eq!(empty.norm_axis(1, true)?.value(), ArrayD::<f64>::zeros(IxDyn(&[2, 1])));
    Ok(())
}

#[test]
fn softmax_pair_on_every_axis() {
    type SoftOp = for<'t> fn(Var<'t, f64>, usize) -> Result<Var<'t, f64>>;
    let cases: [(&str, SoftOp, bool); 2] = [
        ("log_softmax", |v, a| v.log_softmax(a), true),
        ("softmax", |v, a| v.softmax(a), false),
    ];
    let mut rng = Rng::new(16);
    for (name, op, log) in cases {
        for shape in [&[5][..], &[3, 4], &[2, 3, 4]] {
            for axis in 0..shape.len() {
                let x = rng.array(shape, -3.0, 3.0);
                let what = format!("{name} {shape:?} axis {axis}");
                let expected = ArrayD::from_shape_fn(x.raw_dim(), |idx| {
                    let lse = lane(&x, idx.slice(), axis).iter().map(|v| v.exp()).sum::<f64>().ln();
                    let log_p = x[&idx] - lse;
                    if log { log_p } else { log_p.exp() }
                });
                let value = forward(std::slice::from_ref(&x), |v| op(v[0], axis));
                assert_close(&value, &expected, 1e-13, 1e-15, &what);
                check_grad(&what, &mut rng, &[x], |v| op(v[0], axis));
            }
        }
    }
}

#[test]
fn matmul_matches_loops_and_finite_differences() {
    let mut rng = Rng::new(17);
    for (m, k, n) in [(3, 4, 2), (1, 3, 1), (2, 1, 3), (4, 4, 4)] {
        let a = rng.array(&[m, k], -2.0, 2.0);
        let b = rng.array(&[k, n], -2.0, 2.0);
        let expected = ArrayD::from_shape_fn(IxDyn(&[m, n]), |idx| {
            (0..k).map(|j| a[IxDyn(&[idx[0], j])] * b[IxDyn(&[j, idx[1]])]).sum()
        });
        let what = format!("matmul [{m}, {k}] x [{k}, {n}]");
        assert_close(
            &forward(&[a.clone(), b.clone()], |v| v[0].matmul(v[1])),
            &expected,
            1e-14,
            1e-15,
            &what,
        );
        check_grad(&what, &mut rng, &[a, b], |v| v[0].matmul(v[1]));
    }
    // Fan-out through matmul: a · aᵀ-like use of one value on both sides.
    let a = rng.array(&[3, 3], -1.0, 1.0);
    check_grad("matmul a·a", &mut rng, &[a], |v| v[0].matmul(v[0]));
}

#[test]
fn reshape_keeps_row_major_order_and_passes_gradients_back() {
    let mut rng = Rng::new(18);
    let x = rng.array(&[2, 3, 4], -2.0, 2.0);
    for shape in [&[6, 4][..], &[24], &[4, 1, 6], &[2, 12]] {
        let value = forward(std::slice::from_ref(&x), |v| v[0].reshape(shape));
        assert_eq!(value.shape(), shape);
        assert!(value.iter().eq(x.iter()), "reshape {shape:?} keeps row-major order");
        check_grad(
            &format!("reshape to {shape:?}"),
            &mut rng,
            std::slice::from_ref(&x),
            |v| v[0].reshape(shape),
        );
    }
    // A transposed input is read in its logical (row-major) order.
    let t = array![[1.0, 2.0], [3.0, 4.0]].into_dyn().reversed_axes();
    let flat = forward(std::slice::from_ref(&t), |v| v[0].reshape(&[4]));
    assert_eq!(flat, array![1.0, 3.0, 2.0, 4.0].into_dyn());
    check_grad("reshape of transposed", &mut rng, &[t], |v| {
        v[0].reshape(&[4])?.mul_scalar(2.0)
    });
}

#[test]
fn gather_picks_by_index_and_scatters_gradients_back() {
    let mut rng = Rng::new(19);
    let x = rng.array(&[3, 4], -2.0, 2.0);
    // Class-index style, with a repeated index so gradients must add up.
    let cases: Vec<(usize, ArrayD<usize>)> = vec![
        (1, array![[2], [0], [3]].into_dyn()),
        (1, array![[1, 1, 3], [0, 2, 0], [3, 3, 3]].into_dyn()),
        (0, array![[2, 0, 1, 1], [0, 0, 2, 1]].into_dyn()),
    ];
    for (axis, indices) in cases {
        let what = format!("gather axis {axis} indices {:?}", indices.shape());
        let expected = ArrayD::from_shape_fn(indices.raw_dim(), |idx| {
            let mut src = idx.slice().to_vec();
            src[axis] = indices[&idx];
            x[IxDyn(&src)]
        });
        let value = forward(std::slice::from_ref(&x), |v| v[0].gather(axis, &indices));
        assert_close(&value, &expected, 0.0, 0.0, &what);
        check_grad(&what, &mut rng, std::slice::from_ref(&x), |v| {
            v[0].gather(axis, &indices)
        });
    }
    let x3 = rng.array(&[2, 3, 4], -2.0, 2.0);
    let idx3 = ArrayD::from_shape_fn(IxDyn(&[2, 2, 4]), |i| (i[0] + 2 * i[1] + i[2]) % 3);
    check_grad("gather 3-D axis 1", &mut rng, &[x3], |v| v[0].gather(1, &idx3));
}

#[test]
fn slice_and_index_axis_take_blocks_and_scatter_gradients_back() {
    let mut rng = Rng::new(24);
    let x = rng.array(&[2, 3, 4], -2.0, 2.0);
    for axis in 0..3 {
        let size = x.shape()[axis];
        for (start, end) in [(0, size), (1, size), (0, 1), (1, 2), (size - 1, size)] {
            let what = format!("slice_axis axis {axis} {start}..{end}");
            let mut shape = x.shape().to_vec();
            shape[axis] = end - start;
            let expected = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
                let mut at = idx.slice().to_vec();
                at[axis] += start;
                x[IxDyn(&at)]
            });
            let value = forward(std::slice::from_ref(&x), |v| v[0].slice_axis(axis, start, end));
            assert_close(&value, &expected, 0.0, 0.0, &what);
            check_grad(&what, &mut rng, std::slice::from_ref(&x), |v| {
                v[0].slice_axis(axis, start, end)
            });
        }
        for index in 0..size {
            let what = format!("index_axis axis {axis} index {index}");
            let mut shape = x.shape().to_vec();
            shape.remove(axis);
            let expected = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
                let mut at = idx.slice().to_vec();
                at.insert(axis, index);
                x[IxDyn(&at)]
            });
            let value = forward(std::slice::from_ref(&x), |v| v[0].index_axis(axis, index));
            assert_close(&value, &expected, 0.0, 0.0, &what);
            check_grad(&what, &mut rng, std::slice::from_ref(&x), |v| {
                v[0].index_axis(axis, index)
            });
        }
    }
    // The parts of one value, combined: their gradients add up in one buffer
    // (the triplet pattern, with overlapping slices too).
    check_grad("three parts of one value", &mut rng, std::slice::from_ref(&x), |v| {
        let (a, p, n) = (v[0].index_axis(1, 0)?, v[0].index_axis(1, 1)?, v[0].index_axis(1, 2)?);
        a.sub(p)?
            .square()?
            .add(a.sub(n)?.mul(v[0].slice_axis(1, 1, 2)?.reshape(&[2, 4])?)?)
    });
    check_grad("overlapping slices", &mut rng, std::slice::from_ref(&x), |v| {
        v[0].slice_axis(2, 0, 3)?.mul(v[0].slice_axis(2, 1, 4)?)
    });
    // An empty slice has no elements, and its branch gives zeros.
    let tape = Tape::new();
    let xv = tape.var(x.clone());
    let empty = xv.slice_axis(1, 2, 2).unwrap();
    assert_eq!(empty.shape(), vec![2, 0, 4]);
    let grads = tape.backward(empty.sum().unwrap()).unwrap();
    assert_eq!(grads.wrt(xv).unwrap(), &ArrayD::<f64>::zeros(x.raw_dim()));
}

#[test]
fn where_mask_selects_and_broadcasts() {
    let mut rng = Rng::new(20);
    let cases: [(&[usize], &[usize], &[usize]); 6] = [
        (&[3, 4], &[3, 4], &[3, 4]),
        (&[4], &[], &[3, 4]),
        (&[3, 4], &[3, 4], &[3, 1]),
        (&[3, 1], &[1, 4], &[4]),
        (&[2, 3], &[3], &[]),
        (&[2, 1, 3], &[2, 4, 1], &[1, 4, 3]),
    ];
    for (sa, sb, sm) in cases {
        let a = rng.array(sa, -2.0, 2.0);
        let b = rng.array(sb, -2.0, 2.0);
        let mask = ArrayD::from_shape_simple_fn(IxDyn(sm), || rng.below(2) == 1);
        let shape = broadcast(&broadcast(sa, sb), sm);
        let expected = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
            let i = idx.slice();
            if mask[IxDyn(&source_index(i, sm))] {
                a[IxDyn(&source_index(i, sa))]
            } else {
                b[IxDyn(&source_index(i, sb))]
            }
        });
        let what = format!("where_mask a {sa:?} b {sb:?} mask {sm:?}");
        let value = forward(&[a.clone(), b.clone()], |v| v[0].where_mask(&mask, v[1]));
        assert_close(&value, &expected, 0.0, 0.0, &what);
        check_grad(&what, &mut rng, &[a, b], |v| v[0].where_mask(&mask, v[1]));
    }
}

/// Past the size where `where_mask` splits its select over both cores
/// (2¹⁹ elements, same shapes), against an element-by-element reference.
#[test]
fn where_mask_on_a_large_input_matches_the_plain_definition() -> Result<()> {
    let mut rng = Rng::new(41);
    let n = (1 << 19) + 3;
    let a = rng.array(&[n], -1.0, 1.0);
    let b = rng.array(&[n], -1.0, 1.0);
    let mask = ArrayD::from_shape_simple_fn(IxDyn(&[n]), || rng.uniform(0.0, 1.0) < 0.5);
    let tape = Tape::<f64>::new();
    let (va, vb) = (tape.var(a.clone()), tape.var(b.clone()));
    let y = va.where_mask(&mask, vb)?;
    let value = y.value();
    for i in 0..n {
        assert_eq!(value[i], if mask[i] { a[i] } else { b[i] }, "value {i}");
    }
    let grads = tape.backward(y.mul(y)?.sum()?)?;
    let (ga, gb) = (grads.wrt(va).unwrap(), grads.wrt(vb).unwrap());
    for i in 0..n {
        let (da, db) = if mask[i] { (2.0 * a[i], 0.0) } else { (0.0, 2.0 * b[i]) };
        assert_eq!((ga[i], gb[i]), (da, db), "gradient {i}");
    }
    Ok(())
}

#[test]
fn where_mask_keeps_the_untaken_branch_out_of_the_gradient() -> Result<()> {
    // ln and sqrt of a negative are NaN, sqrt′(0) and d(1/x)/dx at 0 are
    // infinite, but only where the mask picks the other side: the gradient
    // there is 0, not 0·NaN = NaN.
    let tape = Tape::new();
    let x = tape.var(array![-1.0, 0.0, 4.0].into_dyn());
    let mask = array![false, false, true].into_dyn();
    let zero = tape.scalar(0.0);
    let safe_ln = x.ln()?.where_mask(&mask, zero)?;
    let safe_sqrt = x.sqrt()?.where_mask(&mask, zero)?;
    let safe_recip = tape.scalar(1.0).div(x)?.where_mask(&mask, zero)?;
    let loss = safe_ln.add(safe_sqrt)?.add(safe_recip)?.sum()?;
    let grads = tape.backward(loss)?;
    // At 4: 1/4 + 1/(2·2) − 1/16.
    assert_eq!(
        grads.wrt(x).unwrap(),
        &array![0.0, 0.0, 0.25 + 0.25 - 0.0625].into_dyn()
    );
    // The same through a zero weight instead of a mask.
    let weighted = x.sqrt()?.mul(tape.constant(array![0.0, 0.0, 1.0].into_dyn()))?.sum()?;
    assert_eq!(
        tape.backward(weighted)?.wrt(x).unwrap(),
        &array![0.0, 0.0, 0.25].into_dyn()
    );
    Ok(())
}

// --- kink conventions (PyTorch's), checked by hand ---

/// The gradient of `Σ op(x)` with respect to `x`.
fn grad_of_sum(x: ArrayD<f64>, op: UnaryOp) -> ArrayD<f64> {
    let tape = Tape::new();
    let v = tape.var(x);
    let grads = tape.backward(op(v).unwrap().sum().unwrap()).unwrap();
    grads.wrt(v).unwrap().clone()
}

#[test]
fn relu_and_abs_have_zero_slope_at_zero() {
    let x = array![-1.0, 0.0, -0.0, 2.0].into_dyn();
    assert_eq!(
        grad_of_sum(x.clone(), |v| v.relu()),
        array![0.0, 0.0, 0.0, 1.0].into_dyn()
    );
    assert_eq!(grad_of_sum(x, |v| v.abs()), array![-1.0, 0.0, 0.0, 1.0].into_dyn());
}

#[test]
fn clamp_passes_the_gradient_strictly_inside_its_bounds() -> Result<()> {
    // Expected values from torch 2.15: torch.clamp(x, -0.5, 0.8).sum().backward()
    // gives [0, 0, 1, 0, 0]; at a bound the gradient is 0.
    let x = array![-1.0, -0.5, 0.0, 0.8, 1.0].into_dyn();
    assert_eq!(
        grad_of_sum(x.clone(), |v| v.clamp(-0.5, 0.8)),
        array![0.0, 0.0, 1.0, 0.0, 0.0].into_dyn()
    );
    let tape = Tape::new();
    let y = tape.constant(x).clamp(-0.5, 0.8)?;
    assert_eq!(y.value(), array![-0.5, -0.5, 0.0, 0.8, 0.8].into_dyn());
    // min == max is allowed: a constant, with no gradient anywhere (torch: [0, 0]).
    assert_eq!(
        grad_of_sum(array![0.5, 1.0].into_dyn(), |v| v.clamp(1.0, 1.0)),
        array![0.0, 0.0].into_dyn()
    );
    Ok(())
}

#[test]
fn maximum_and_minimum_split_ties_evenly() -> Result<()> {
    let tape = Tape::new();
    let a = tape.var(array![1.0, 2.0, 3.0].into_dyn());
    let b = tape.var(array![1.0, 5.0, 0.0].into_dyn());
    let loss = a.maximum(b)?.sum()?.add(a.minimum(b)?.mul_scalar(10.0)?.sum()?)?;
    let grads = tape.backward(loss)?;
    // max: tie → ½ each; b wins; a wins.   min (×10): tie → 5 each; a wins; b wins.
    assert_eq!(grads.wrt(a).unwrap(), &array![5.5, 10.0, 1.0].into_dyn());
    assert_eq!(grads.wrt(b).unwrap(), &array![5.5, 1.0, 10.0].into_dyn());
    // A broadcast scalar tied with several elements collects each half.
    let tape = Tape::new();
    let s = tape.var(ndarray_scalar(2.0));
    let m = tape.var(array![2.0, 2.0, 1.0].into_dyn());
    let grads = tape.backward(s.maximum(m)?.sum()?)?;
    assert_eq!(grads.wrt(s).unwrap(), &ndarray_scalar(2.0));
    assert_eq!(grads.wrt(m).unwrap(), &array![0.5, 0.5, 0.0].into_dyn());
    Ok(())
}

/// With a NaN on either side, PyTorch's `maximum` and `minimum` pass the
/// whole gradient to both operands (no comparison holds); so do these.
#[test]
fn maximum_and_minimum_pass_a_nan_pair_the_whole_gradient() -> Result<()> {
    let tape = Tape::new();
    let a = tape.var(array![f64::NAN, 1.0, 3.0].into_dyn());
    let b = tape.var(array![0.0, f64::NAN, 2.0].into_dyn());
    let loss = a
        .maximum(b)?
        .mul_scalar(3.0)?
        .add(a.minimum(b)?)?
        .mul_scalar(0.5)?
        .sum()?;
    let grads = tape.backward(loss)?;
    // NaN pairs: (3 + 1)/2 each; 3 vs 2: max to a (1.5), min to b (0.5).
    assert_eq!(grads.wrt(a).unwrap(), &array![2.0, 2.0, 1.5].into_dyn());
    assert_eq!(grads.wrt(b).unwrap(), &array![2.0, 2.0, 0.5].into_dyn());
    Ok(())
}

fn ndarray_scalar(v: f64) -> ArrayD<f64> {
    ArrayD::from_elem(IxDyn(&[]), v)
}

#[test]
fn max_axis_shares_the_gradient_among_ties() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(array![[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [0.0, -1.0, 4.0]].into_dyn());
    for keepdims in [false, true] {
        let weights = if keepdims {
            array![[1.0], [3.0], [5.0]].into_dyn()
        } else {
            array![1.0, 3.0, 5.0].into_dyn()
        };
        let loss = x.max_axis(1, keepdims)?.mul(tape.constant(weights))?.sum()?;
        let grads = tape.backward(loss)?;
        let expected = array![[0.0, 0.5, 0.5], [1.0, 1.0, 1.0], [0.0, 0.0, 5.0]].into_dyn();
        assert_eq!(grads.wrt(x).unwrap(), &expected, "keepdims {keepdims}");
    }
    Ok(())
}

#[test]
fn nan_propagates_through_max_min_relu_and_clamp() -> Result<()> {
    // Nothing silently turns a NaN into a number (PyTorch propagates it too).
    let tape = Tape::new();
    let x = tape.constant(array![f64::NAN, 1.0].into_dyn());
    let one = tape.scalar(1.0);
    for (name, y) in [
        ("maximum", x.maximum(one)?),
        ("maximum swapped", one.maximum(x)?),
        ("minimum", x.minimum(one)?),
        ("minimum swapped", one.minimum(x)?),
        ("relu", x.relu()?),
        ("clamp", x.clamp(0.0, 2.0)?),
        ("max_axis", x.max_axis(0, false)?.reshape(&[1])?),
    ] {
        assert!(
            y.value()[0].is_nan(),
            "{name} of NaN should be NaN, got {:?}",
            y.value()
        );
    }
    Ok(())
}

// --- composition ---

#[test]
fn fan_out_accumulates_gradients() -> Result<()> {
    // f(x) = x·x + eˣ·x + x: x is used five times.
    let mut rng = Rng::new(21);
    let x0 = rng.array(&[2, 3], -1.5, 1.5);
    check_grad("fan-out", &mut rng, std::slice::from_ref(&x0), |v| {
        let x = v[0];
        x.mul(x)?.add(x.exp()?.mul(x)?)?.add(x)
    });
    // And against the derivative by hand: 2x + eˣ(1 + x) + 1.
    let tape = Tape::new();
    let x = tape.var(x0.clone());
    let y = x.mul(x)?.add(x.exp()?.mul(x)?)?.add(x)?.sum()?;
    let grads = tape.backward(y)?;
    let expected = x0.mapv(|v| 2.0 * v + v.exp() * (1.0 + v) + 1.0);
    assert_close(grads.wrt(x).unwrap(), &expected, 1e-14, 0.0, "fan-out by hand");
    Ok(())
}

#[test]
fn a_chain_of_more_than_twenty_ops() {
    let mut rng = Rng::new(22);
    let x = rng.array(&[3, 4], -1.0, 1.0);
    let y = rng.array(&[4], -1.0, 1.0);
    check_grad("chain", &mut rng, &[x, y], |v| {
        let (x, y) = (v[0], v[1]);
        let a = x.mul_scalar(0.5)?.add_scalar(0.1)?.tanh()?; // 3 ops
        a.add(y)? // 4
            .sigmoid()? // 5
            .ln()? // 6
            .neg()? // 7
            .sqrt()? // 8
            .exp()? // 9
            .log1p()? // 10
            .softplus()? // 11
            .powf(1.5)? // 12
            .mul(a)? // 13: a is used twice
            .log_softmax(1)? // 14
            .exp()? // 15
            .sub(x)? // 16: x is used twice
            .square()? // 17
            .mean_axis(0, true)? // 18
            .div(y.square()?.add_scalar(1.0)?)? // 19, 20, 21
            .logsumexp_axis(1, false)? // 22
            .add(y.max_axis(0, false)?)? // 23, 24
            .sum() // 25
    });
}

// --- numerical stability ---

#[test]
fn log_softmax_of_huge_logits_is_exact() -> Result<()> {
    let tape = Tape::<f64>::new();
    let x = tape.var(array![1000.0, -1000.0, 0.0].into_dyn());
    let y = x.log_softmax(0)?;
    assert_eq!(y.value(), array![0.0, -2000.0, -1000.0].into_dyn());
    let grads = tape.backward(y.sum()?)?;
    // d Σ log_softmax / dx = 1 − 3·softmax = [−2, 1, 1] to rounding.
    assert_close(
        grads.wrt(x).unwrap(),
        &array![-2.0, 1.0, 1.0].into_dyn(),
        0.0,
        1e-15,
        "grad",
    );
    // softmax too: no overflow, exact one-hot to rounding.
    assert_eq!(x.softmax(0)?.value(), array![1.0, 0.0, 0.0].into_dyn());

    let tape = Tape::<f32>::new();
    let x = tape.var(array![1000.0_f32, -1000.0, 0.0].into_dyn());
    assert_eq!(x.log_softmax(0)?.value(), array![0.0_f32, -2000.0, -1000.0].into_dyn());
    assert_eq!(x.softmax(0)?.value(), array![1.0_f32, 0.0, 0.0].into_dyn());
    Ok(())
}

/// A slice holding `+∞` has no softmax (`∞ − ∞`): PyTorch gives NaN for the
/// whole slice, and so does the tape, along a contiguous axis (rows) and
/// across one (columns); the gradient is NaN there too. A `−∞` logit is an
/// ordinary class of probability 0. Other slices are untouched.
#[test]
fn log_softmax_and_softmax_of_a_slice_holding_infinity() -> Result<()> {
    let inf = f64::INFINITY;
    let tape = Tape::<f64>::new();
    let rows = tape.var(array![[inf, 1.0, 2.0], [0.0, -inf, 0.0]].into_dyn());
    let columns = tape.var(array![[inf, 0.0], [1.0, -inf], [2.0, 0.0]].into_dyn());
    let half = 0.5_f64.ln();
    type Slice = fn(&ArrayD<f64>, usize, usize) -> f64;
    let along_rows: Slice = |a, k, i| a[[k, i]];
    let along_columns: Slice = |a, k, i| a[[i, k]];
    for (axis, x, slice) in [(1, rows, along_rows), (0, columns, along_columns)] {
        let log_p = x.log_softmax(axis)?;
        let p = x.softmax(axis)?;
        let (log_p_value, p_value) = (log_p.value(), p.value());
        for i in 0..3 {
            assert!(
                slice(&log_p_value, 0, i).is_nan(),
                "axis {axis}: log_softmax {log_p_value}"
            );
            assert!(slice(&p_value, 0, i).is_nan(), "axis {axis}: softmax {p_value}");
        }
        let expected_log = [half, f64::NEG_INFINITY, half];
        let expected = [0.5, 0.0, 0.5];
        for i in 0..3 {
            assert_eq!(slice(&log_p_value, 1, i), expected_log[i], "axis {axis}: {log_p_value}");
            assert_eq!(slice(&p_value, 1, i), expected[i], "axis {axis}: {p_value}");
        }
        let grads = tape.backward(p.sum()?)?;
        let g = grads.wrt(x).unwrap();
        assert!((0..3).all(|i| slice(g, 0, i).is_nan()), "axis {axis}: {g}");
        // Σ softmax is 1 whatever the logits: no gradient in the finite slice.
        assert!((0..3).all(|i| slice(g, 1, i) == 0.0), "axis {axis}: {g}");
    }
    Ok(())
}

/// In `f32`, `x − logsumexp(x)` at logits near 1e4 carries the rounding of
/// the logsumexp (an ulp there is 1e-3); `log_softmax` takes
/// `(x − max) − ln Σ exp(x − max)` instead, as PyTorch does. The reference is
/// worked in f64: `ln(1 + e⁻¹ + e⁻²⁰⁰⁰⁰)` is `ln(1 + e⁻¹)` there.
#[test]
fn log_softmax_and_softmax_keep_f32_precision_at_large_logits() -> Result<()> {
    let lse = (1.0 + (-1.0_f64).exp()).ln();
    let log_p = [-lse, -1.0 - lse, -20000.0 - lse];
    let tape = Tape::<f32>::new();
    // Along a contiguous axis (rows) and across one (columns).
    let rows = tape.var(array![[10000.0_f32, 9999.0, -10000.0]].into_dyn());
    let columns = tape.var(array![[10000.0_f32, 1.0], [9999.0, 2.0], [-10000.0, 3.0]].into_dyn());
    let row = |a: ArrayD<f32>| (0..3).map(|k| f64::from(a[[0, k]])).collect::<Vec<_>>();
    let column = |a: ArrayD<f32>| (0..3).map(|k| f64::from(a[[k, 0]])).collect::<Vec<_>>();
    for (name, y, p) in [
        ("rows", row(rows.log_softmax(1)?.value()), row(rows.softmax(1)?.value())),
        (
            "columns",
            column(columns.log_softmax(0)?.value()),
            column(columns.softmax(0)?.value()),
        ),
    ] {
        for (k, &expected) in log_p.iter().enumerate() {
            let (got, prob) = (y[k], p[k]);
            let tolerance = 1e-6 * expected.abs().max(1.0);
            assert!(
                (got - expected).abs() <= tolerance,
                "{name} log_softmax[{k}]: {got} vs {expected}"
            );
            let expected = expected.exp();
            assert!(
                (prob - expected).abs() <= 1e-6 * expected,
                "{name} softmax[{k}]: {prob} vs {expected}"
            );
        }
    }
    Ok(())
}

#[test]
fn softplus_log_sigmoid_and_logsumexp_are_finite_at_extremes() -> Result<()> {
    fn run<F: tapeloss::Float>() -> Result<()> {
        let big = F::from_f64(1e4);
        let tape = Tape::<F>::new();
        let x = tape.var(ArrayD::from_shape_vec(IxDyn(&[2]), vec![big, -big]).unwrap());
        let cases = [
            ("softplus", x.softplus()?, [1e4, 0.0], [1.0, 0.0]),
            ("log_sigmoid", x.log_sigmoid()?, [0.0, -1e4], [0.0, 1.0]),
        ];
        for (name, y, value, slope) in cases {
            let grads = tape.backward(y.sum()?)?;
            let v: Vec<f64> = y.value().iter().map(|v| v.as_f64()).collect();
            let g: Vec<f64> = grads.wrt(x).unwrap().iter().map(|v| v.as_f64()).collect();
            assert_eq!(v, value, "{} {name} value", F::NAME);
            assert_eq!(g, slope, "{} {name} gradient", F::NAME);
        }
        let lse = x.logsumexp_axis(0, false)?;
        assert_eq!(lse.item()?.as_f64(), 1e4, "{} logsumexp", F::NAME);
        let g: Vec<f64> = tape.backward(lse)?.wrt(x).unwrap().iter().map(|v| v.as_f64()).collect();
        assert_eq!(g, [1.0, 0.0], "{} logsumexp gradient", F::NAME);
        // Every element −1e4: the shift keeps exp from underflowing to ln 0.
        let low = tape
            .constant(ArrayD::from_elem(IxDyn(&[3]), -big))
            .logsumexp_axis(0, true)?;
        let expected = -1e4 + 3.0_f64.ln();
        assert!((low.item()?.as_f64() - expected).abs() <= 1e-3 * if F::NAME == "f32" { 1.0 } else { 1e-8 });
        Ok(())
    }
    run::<f64>()?;
    run::<f32>()
}

// --- which values get gradients ---

#[test]
fn untouched_leaf_gets_zeros_constant_and_foreign_get_none() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(array![1.0, 2.0].into_dyn());
    let unused = tape.var(array![[1.0, 2.0, 3.0]].into_dyn());
    let c = tape.constant(array![3.0, 4.0].into_dyn());
    let hidden = x.mul(c)?;
    let loss = hidden.sum()?;
    let late = tape.var(array![7.0].into_dyn()); // recorded after the loss
    let grads = tape.backward(loss)?;

    assert_eq!(grads.wrt(x).unwrap(), &array![3.0, 4.0].into_dyn());
    assert_eq!(grads.wrt(unused).unwrap(), &ArrayD::<f64>::zeros(IxDyn(&[1, 3])));
    assert_eq!(grads.wrt(late).unwrap(), &ArrayD::<f64>::zeros(IxDyn(&[1])));
    assert!(grads.wrt(c).is_none(), "a constant has no gradient");
    assert!(grads.wrt(hidden).is_none(), "an intermediate value has no gradient");

    let other = Tape::new();
    let foreign = other.var(array![1.0, 2.0].into_dyn());
    assert!(
        grads.wrt(foreign).is_none(),
        "a Var of another tape has no gradient here"
    );

    assert!(x.requires_grad() && hidden.requires_grad() && loss.requires_grad());
    assert!(!c.requires_grad() && !c.exp()?.requires_grad());
    Ok(())
}

#[test]
fn loss_of_constants_only_gives_zero_gradients() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(array![1.0, 2.0].into_dyn());
    let c = tape.constant(array![3.0, 4.0].into_dyn());
    let grads = tape.backward(c.square()?.sum()?)?;
    assert_eq!(grads.wrt(x).unwrap(), &array![0.0, 0.0].into_dyn());
    // A tracked leaf can be the loss itself.
    let s = tape.var(ndarray_scalar(3.0));
    assert_eq!(tape.backward(s)?.wrt(s).unwrap(), &ndarray_scalar(1.0));
    Ok(())
}

#[test]
fn backward_can_run_twice_and_take_moves_the_gradient_out() -> Result<()> {
    let tape = Tape::new();
    let x = tape.var(array![1.0, -2.0].into_dyn());
    let loss = x.square()?.sum()?;
    let first = tape.backward(loss)?;
    let mut second = tape.backward(loss)?;
    assert_eq!(first.wrt(x), second.wrt(x));
    assert_eq!(second.take(x).unwrap(), array![2.0, -4.0].into_dyn());
    assert!(second.take(x).is_none(), "taken once");
    Ok(())
}

// --- f32 and threads ---

/// A composition touching broadcasting, reductions, softmax, matmul and gather.
fn mixed<'t, F: tapeloss::Float>(x: Var<'t, F>, w: Var<'t, F>, b: Var<'t, F>) -> Result<Var<'t, F>> {
    let classes = array![[1_usize], [0], [2]].into_dyn();
    let h = x.matmul(w)?.add(b)?.sigmoid()?; // [3, 3]
    let ce = h.log_softmax(1)?.gather(1, &classes)?.mean()?.neg()?;
    let reg = w.square()?.sum_axis(0, true)?.max_axis(1, false)?.sum()?;
    ce.add(reg.mul_scalar(F::from_f64(0.1))?)?
        .add(h.logsumexp_axis(0, false)?.mean()?)
}

#[test]
fn f32_gradients_agree_with_f64() -> Result<()> {
    let mut rng = Rng::new(23);
    let (x, w, b) = (
        rng.array(&[3, 4], -1.0, 1.0),
        distinct(&mut rng, &[4, 3]),
        rng.array(&[3], -1.0, 1.0),
    );
    let tape = Tape::<f64>::new();
    let (x64, w64, b64) = (tape.var(x.clone()), tape.var(w.clone()), tape.var(b.clone()));
    let loss64 = mixed(x64, w64, b64)?;
    let g64 = tape.backward(loss64)?;

    let to32 = |a: &ArrayD<f64>| a.mapv(|v| v as f32);
    let tape32 = Tape::<f32>::new();
    let (x32, w32, b32) = (tape32.var(to32(&x)), tape32.var(to32(&w)), tape32.var(to32(&b)));
    let loss32 = mixed(x32, w32, b32)?;
    let g32 = tape32.backward(loss32)?;

    assert!((f64::from(loss32.item()?) - loss64.item()?).abs() < 1e-5);
    for (name, v64, v32) in [("x", x64, x32), ("w", w64, w32), ("b", b64, b32)] {
        let widened = g32.wrt(v32).unwrap().mapv(f64::from);
        assert_close(
            &widened,
            g64.wrt(v64).unwrap(),
            1e-4,
            1e-5,
            &format!("f32 vs f64 d/d{name}"),
        );
    }
    Ok(())
}

#[test]
fn tapes_move_between_threads_and_gradients_are_shareable() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<Tape<f32>>();
    send_sync::<tapeloss::Gradients<f64>>();
}

/// Found by the fuzz target: axis ops and their backward rules on arrays with
/// an empty dimension (before, after or on the reduced axis) must neither
/// panic nor produce a wrong shape. Expected shapes follow NumPy's reductions.
#[test]
fn axis_ops_on_empty_dimensions() -> Result<()> {
    for shape in [vec![0, 3], vec![3, 0], vec![2, 3, 0], vec![0, 2, 3], vec![2, 0, 3]] {
        for axis in 0..shape.len() {
            let mut reduced = shape.clone();
            reduced.remove(axis);
            let tape = Tape::<f64>::new();
            let x = tape.var(ArrayD::zeros(shape.clone()));
            let s = x.sum_axis(axis, false)?;
            assert_eq!(s.shape(), reduced, "sum_axis {shape:?} axis {axis}");
            assert!(s.value().iter().all(|&v| v == 0.0));
            let n = x.norm_axis(axis, false)?;
            assert_eq!(n.shape(), reduced, "norm_axis {shape:?} axis {axis}");
            let ls = x.log_softmax(axis)?;
            let sm = x.softmax(axis)?;
            assert_eq!(ls.shape(), shape);
            let total = s.sum()?.add(n.sum()?)?.add(ls.sum()?)?.add(sm.sum()?)?;
            if shape[axis] > 0 {
                for v in [
                    x.mean_axis(axis, true)?,
                    x.max_axis(axis, true)?,
                    x.logsumexp_axis(axis, true)?,
                ] {
                    assert_eq!(v.value().len(), 0, "{shape:?} axis {axis}");
                }
            }
            let grads = tape.backward(total)?;
            assert_eq!(grads.wrt(x).map(|g| g.shape().to_vec()), Some(shape.clone()));
        }
    }
    Ok(())
}

/// `powf` with an integer exponent runs as products; values and slopes
/// match `f64::powf`'s, negative bases included, and `x⁰` has slope 0 even
/// at 0 (PyTorch's `pow(x, 0)` too).
#[test]
fn powf_with_integer_exponents() -> Result<()> {
    let xs = [-2.0, -0.5, 0.0, 0.5, 3.0];
    for p in [0.0, 1.0, 2.0, 3.0, 5.0, -1.0, -2.0] {
        let tape = Tape::<f64>::new();
        let x = tape.var(ArrayD::from_shape_vec(IxDyn(&[5]), xs.to_vec()).expect("five elements"));
        let y = x.powf(p)?;
        let grads = tape.backward(y.sum()?)?;
        let (values, slopes) = (y.value(), grads.wrt(x).expect("x").clone());
        for (i, &v) in xs.iter().enumerate() {
            let (value, slope) = (v.powf(p), if p == 0.0 { 0.0 } else { p * v.powf(p - 1.0) });
            let close = |a: f64, b: f64| a == b || (a - b).abs() <= 1e-14 * b.abs();
            assert!(close(values[i], value), "{v}^{p}: {} against {value}", values[i]);
            assert!(close(slopes[i], slope), "d/dx {v}^{p}: {} against {slope}", slopes[i]);
        }
    }
    Ok(())
}
