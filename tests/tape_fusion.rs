//! The tape's fused elementwise chains against slow, obvious references.
//!
//! Elementwise ops are evaluated lazily, a block of elements at a time, and
//! the backward sweep runs a whole chain forward and back per block. These
//! tests compare that machinery with plain loops over the elements (the value
//! and the gradient worked out by hand), on seeded inputs whose lengths cross
//! the block size (1024) and the size from which the chains use both cores, and
//! with values shared inside and outside a chain.

mod common;

use common::Rng;
use tapeloss::ndarray::{ArrayD, IxDyn, arr0};
use tapeloss::{Result, Tape};

/// Lengths around the register block (1024), the parallel leaf (32,768) and
/// the parallel threshold (2¹⁸).
const LENGTHS: [usize; 8] = [1, 7, 1023, 1024, 1025, 32_769, 40_000, 300_001];

fn assert_close_slices(actual: &[f64], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - e).abs() <= 1e-12 * (1.0 + e.abs()),
            "{what}: element {i} of {}: {a} against {e}",
            actual.len()
        );
    }
}

fn slice(x: &ArrayD<f64>) -> &[f64] {
    x.as_slice().expect("standard layout")
}

fn softplus(v: f64) -> f64 {
    v.max(0.0) + (-v.abs()).exp().ln_1p()
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// `Σ (o + z)·(½o)² + (y + y)` with `o = tanh(x)`, recorded in an order
/// that tempts the chain's register sharing into an error: `½o` passes its
/// gradient straight into `o`'s register (scaled by ½), so `(½o)²`, newer
/// than `o + z`, writes there before `o + z` runs; `o + z` must then not
/// keep its own gradient in that register, although it is the newest of
/// `o`'s direct consumers. `y + y`, older, asks for the first writers before
/// `½o` changes them (and shares nothing). Against the gradients worked by
/// hand: `∂/∂x = (¼o² + ½o(o + z))(1 − o²)`, `∂/∂y = 2`, `∂/∂z = ¼o²`.
#[test]
fn a_scaled_shared_register_is_not_also_taken_by_a_later_step() -> Result<()> {
    let mut rng = Rng::new(29);
    for n in [1, 5, 1025] {
        let (x0, y0, z0) = (
            rng.array(&[n], -2.0, 2.0),
            rng.array(&[n], -2.0, 2.0),
            rng.array(&[n], -2.0, 2.0),
        );
        let tape = Tape::<f64>::new();
        let (x, y, z) = (tape.var(x0.clone()), tape.var(y0.clone()), tape.var(z0.clone()));
        let o = x.tanh()?;
        let a = y.add(y)?;
        let half = o.mul_scalar(0.5)?;
        let k = o.add(z)?;
        let m = half.square()?;
        let loss = k.mul(m)?.add(a)?.sum()?;
        let grads = tape.backward(loss)?;
        let os: Vec<f64> = slice(&x0).iter().map(|v| v.tanh()).collect();
        let zs = slice(&z0);
        let dx: Vec<f64> = (os.iter().zip(zs))
            .map(|(&o, &z)| (0.25 * o * o + 0.5 * o * (o + z)) * (1.0 - o * o))
            .collect();
        let dz: Vec<f64> = os.iter().map(|&o| 0.25 * o * o).collect();
        assert_close_slices(slice(grads.wrt(x).expect("x")), &dx, &format!("n={n}: x"));
        assert_close_slices(slice(grads.wrt(y).expect("y")), &vec![2.0; n], &format!("n={n}: y"));
        assert_close_slices(slice(grads.wrt(z).expect("z")), &dz, &format!("n={n}: z"));
    }
    Ok(())
}

/// `Σ x·10²⁰·10²⁰·10⁻³⁰` in `f32`: each slope is finite and so is every
/// gradient on the way (`10⁻³⁰·10²⁰·10²⁰ = 10¹⁰`), but the product of the
/// two large slopes, 10⁴⁰, is not an `f32`: the chain must not fold them into
/// one scale.
#[test]
fn slopes_whose_product_overflows_are_not_folded() -> Result<()> {
    let x0 = ArrayD::from_elem(IxDyn(&[3]), 1e-10_f32);
    let tape = Tape::<f32>::new();
    let x = tape.var(x0);
    let loss = x.mul_scalar(1e20)?.mul_scalar(1e20)?.mul_scalar(1e-30)?.sum()?;
    let grads = tape.backward(loss)?;
    for &g in grads.wrt(x).expect("x").iter() {
        assert!((g - 1e10).abs() <= 1e10 * 1e-5, "{g} against 1e10");
    }
    Ok(())
}

/// `Σ ½(x − y)² + softplus(x)·y − 0.3·|x − y|`: one chain of eight ops in
/// which `d = x − y` is read three times, reduced by `sum` (so the chain's
/// gradient starts uniform and no array of it is ever made).
#[test]
fn a_chain_with_fan_out_matches_the_loop() -> Result<()> {
    let mut rng = Rng::new(11);
    for n in LENGTHS {
        let (x0, y0) = (rng.array(&[n], -3.0, 3.0), rng.array(&[n], -3.0, 3.0));
        let tape = Tape::<f64>::new();
        let (x, y) = (tape.var(x0.clone()), tape.var(y0.clone()));
        let d = x.sub(y)?;
        let terms = d
            .square()?
            .mul_scalar(0.5)?
            .add(x.softplus()?.mul(y)?)?
            .sub(d.abs()?.mul_scalar(0.3)?)?;
        let loss = terms.sum()?;
        let grads = tape.backward(loss)?;

        let (xs, ys) = (slice(&x0), slice(&y0));
        let value: f64 = (xs.iter().zip(ys))
            .map(|(&x, &y)| 0.5 * (x - y).powi(2) + softplus(x) * y - 0.3 * (x - y).abs())
            .sum();
        let sign = |v: f64| {
            if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            }
        };
        let dx: Vec<f64> = (xs.iter().zip(ys))
            .map(|(&x, &y)| (x - y) + sigmoid(x) * y - 0.3 * sign(x - y))
            .collect();
        let dy: Vec<f64> = (xs.iter().zip(ys))
            .map(|(&x, &y)| -(x - y) + softplus(x) + 0.3 * sign(x - y))
            .collect();
        assert_close_slices(&[loss.item()?], &[value], &format!("value, n = {n}"));
        assert_close_slices(slice(grads.wrt(x).expect("x")), &dx, &format!("dx, n = {n}"));
        assert_close_slices(slice(grads.wrt(y).expect("y")), &dy, &format!("dy, n = {n}"));
        // Reading the chain's values materialises them; they are the loop's.
        let expected_terms: Vec<f64> = (xs.iter().zip(ys))
            .map(|(&x, &y)| 0.5 * (x - y).powi(2) + softplus(x) * y - 0.3 * (x - y).abs())
            .collect();
        assert_close_slices(slice(&terms.value()), &expected_terms, &format!("terms, n = {n}"));
    }
    Ok(())
}

/// `e = exp(0.1·x)` feeds both the fused chain `Σ e²` and an op outside it
/// (`sum_axis`), so its gradient leaves the chain and is swept from `e`
/// itself: `∂/∂x = 0.1·e·(2e + 1)`.
#[test]
fn a_value_used_inside_and_outside_a_chain() -> Result<()> {
    let mut rng = Rng::new(12);
    for n in LENGTHS {
        let x0 = rng.array(&[n], -2.0, 2.0);
        let tape = Tape::<f64>::new();
        let x = tape.var(x0.clone());
        let e = x.mul_scalar(0.1)?.exp()?;
        let loss = e.square()?.sum()?.add(e.sum_axis(0, false)?)?;
        let grads = tape.backward(loss)?;
        let expected: Vec<f64> = slice(&x0)
            .iter()
            .map(|&x| {
                let e = (0.1 * x).exp();
                0.1 * e * (2.0 * e + 1.0)
            })
            .collect();
        assert_close_slices(slice(grads.wrt(x).expect("x")), &expected, &format!("n = {n}"));
    }
    Ok(())
}

/// A tracked one-element value broadcast against a chain: its gradient is
/// the sum over every element. `Σ (s·x + c)²` with `∂/∂s = Σ 2(s·x + c)·x`.
#[test]
fn a_broadcast_scalar_gets_the_summed_gradient() -> Result<()> {
    let mut rng = Rng::new(13);
    for n in LENGTHS {
        let x0 = rng.array(&[n], -1.0, 1.0);
        let tape = Tape::<f64>::new();
        let x = tape.var(x0.clone());
        let s = tape.var(arr0(1.5).into_dyn());
        let c = tape.constant(arr0(-0.25).into_dyn());
        let loss = x.mul(s)?.add(c)?.square()?.sum()?;
        let grads = tape.backward(loss)?;
        let ds: f64 = slice(&x0).iter().map(|&x| 2.0 * (1.5 * x - 0.25) * x).sum();
        let dx: Vec<f64> = slice(&x0).iter().map(|&x| 2.0 * (1.5 * x - 0.25) * 1.5).collect();
        let got_ds = grads.wrt(s).expect("s");
        assert_eq!(got_ds.shape(), &[] as &[usize]);
        assert_close_slices(&[got_ds.iter().copied().sum::<f64>()], &[ds], &format!("ds, n = {n}"));
        assert_close_slices(slice(grads.wrt(x).expect("x")), &dx, &format!("dx, n = {n}"));
    }
    Ok(())
}

/// A chain that ends in an array (not a reduction) and is differentiated
/// through `mean` of a broadcast product, so the gradient reaching the chain
/// is an array; and `backward` run twice gives the same gradients.
#[test]
fn a_chain_seeded_by_an_array_and_swept_twice() -> Result<()> {
    let mut rng = Rng::new(14);
    let (rows, cols) = (300, 97);
    let x0 = rng.array(&[rows, cols], -2.0, 2.0);
    let w0 = rng.array(&[cols], -1.0, 1.0);
    let tape = Tape::<f64>::new();
    let x = tape.var(x0.clone());
    let w = tape.constant(w0.clone());
    // tanh(x) is lazy; the product with the row `w` broadcasts, so it is
    // computed at once and sends tanh(x) an array of gradients.
    let loss = x.tanh()?.mul(w)?.mean()?;
    let first = tape.backward(loss)?;
    let second = tape.backward(loss)?;
    let n = (rows * cols) as f64;
    let expected: Vec<f64> = x0
        .indexed_iter()
        .map(|(i, &x)| {
            let t = x.tanh();
            (1.0 - t * t) * w0[i[1]] / n
        })
        .collect();
    assert_close_slices(slice(first.wrt(x).expect("x")), &expected, "first sweep");
    assert_eq!(first.wrt(x), second.wrt(x), "second sweep");
    Ok(())
}

/// Asserts that `run` gives the same result on pools of 2 and 3 threads as
/// on one.
fn assert_same_on_any_number_of_threads<R: PartialEq + Send>(run: impl Fn() -> Result<R> + Sync) {
    let on = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        pool.install(&run).expect("the tape")
    };
    let one = on(1);
    for threads in [2, 3] {
        assert!(on(threads) == one, "{threads} threads differ from one");
    }
}

/// Sums of long chains and their gradients have the same bits on one thread
/// and on several: blocks are combined along a fixed tree.
#[test]
fn fused_chains_give_the_same_bits_on_any_number_of_threads() {
    let mut rng = Rng::new(15);
    let n = 700_001;
    let (x0, y0) = (rng.array(&[n], -3.0, 3.0), rng.array(&[n], -3.0, 3.0));
    assert_same_on_any_number_of_threads(|| -> Result<(u64, Vec<u64>, Vec<u64>)> {
        let tape = Tape::<f64>::new();
        let (x, y) = (tape.var(x0.clone()), tape.constant(y0.clone()));
        let chain = x.sub(y)?.softplus()?.mul(x)?;
        let loss = chain.mean()?;
        let grads = tape.backward(loss)?;
        let bits = |a: &ArrayD<f64>| a.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        Ok((
            loss.item()?.to_bits(),
            bits(grads.wrt(x).expect("x")),
            bits(&chain.value()),
        ))
    });
}

/// An empty chain: values and gradients of shape `[0]`, and `sum` gives 0.
#[test]
fn an_empty_chain() -> Result<()> {
    let tape = Tape::<f64>::new();
    let x = tape.var(ArrayD::zeros(IxDyn(&[0])));
    let y = x.exp()?.mul(x)?;
    assert_eq!(y.value().shape(), &[0]);
    let loss = y.sum()?;
    assert_eq!(loss.item()?, 0.0);
    assert_eq!(tape.backward(loss)?.wrt(x).expect("x").shape(), &[0]);
    Ok(())
}

/// Reductions along the last axis stream a lazy chain row by row, and seed
/// its gradient with one factor per row: `Σ_r (‖a_r − b_r‖ +
/// w_r·mean_r(a·b) + sum_r(eᵃ))` against the loop, for rows narrower and wider than a block
/// and with a trailing axis of size 1.
#[test]
fn row_reductions_of_a_chain_match_the_loop() -> Result<()> {
    let mut rng = Rng::new(16);
    for (rows, width, trailing_one) in [(5, 3, false), (9, 700, false), (40, 128, true), (3000, 130, false)] {
        let shape: Vec<usize> = if trailing_one {
            vec![rows, width, 1]
        } else {
            vec![rows, width]
        };
        let (a0, b0) = (rng.array(&shape, -2.0, 2.0), rng.array(&shape, -2.0, 2.0));
        let w0 = rng.array(&[rows], -1.0, 1.0);
        let tape = Tape::<f64>::new();
        let (a, b) = (tape.var(a0.clone()), tape.var(b0.clone()));
        let w = tape.constant(w0.clone());
        let norms = a.sub(b)?.norm_axis(1, false)?;
        let means = a.mul(b)?.mean_axis(1, false)?;
        let sums = a.exp()?.sum_axis(1, false)?;
        let (norms, means, sums) = if trailing_one {
            (norms.reshape(&[rows])?, means.reshape(&[rows])?, sums.reshape(&[rows])?)
        } else {
            (norms, means, sums)
        };
        let loss = norms.add(means.mul(w)?)?.add(sums)?.sum()?;
        let grads = tape.backward(loss)?;

        let (da_tape, db_tape) = (grads.wrt(a).expect("a").clone(), grads.wrt(b).expect("b").clone());
        let (a, b, w) = (slice(&a0), slice(&b0), slice(&w0));
        let mut value = 0.0;
        let (mut da, mut db) = (vec![0.0; rows * width], vec![0.0; rows * width]);
        for (r, &w_r) in w.iter().enumerate() {
            let row = r * width..(r + 1) * width;
            let norm = row.clone().map(|i| (a[i] - b[i]).powi(2)).sum::<f64>().sqrt();
            let mean = row.clone().map(|i| a[i] * b[i]).sum::<f64>() / width as f64;
            value += norm + mean * w_r + row.clone().map(|i| a[i].exp()).sum::<f64>();
            for i in row {
                let unit = (a[i] - b[i]) / norm;
                da[i] = unit + w_r * b[i] / width as f64 + a[i].exp();
                db[i] = -unit + w_r * a[i] / width as f64;
            }
        }
        let what = format!("{rows}×{width}");
        assert_close_slices(&[loss.item()?], &[value], &format!("value, {what}"));
        assert_close_slices(slice(&da_tape), &da, &format!("da, {what}"));
        assert_close_slices(slice(&db_tape), &db, &format!("db, {what}"));
    }
    Ok(())
}

/// Tapes built one after another on a thread reuse each other's large
/// buffers (the tape's buffer pool): each result must be its own inputs'
/// alone, and a gradient handed out must not change when later tapes run.
#[test]
fn tapes_in_a_row_reuse_buffers_without_stale_values() -> Result<()> {
    use tapeloss::losses::{HuberLoss, Loss, MeanSquaredError, value_and_grad_on_tape};
    let mut rng = Rng::new(29);
    let n = 100_000; // 800 KB per f64 array: pooled
    let mut kept = Vec::new();
    for round in 0..4 {
        let (p, t) = (rng.array(&[n], -2.0, 2.0), rng.array(&[n], -2.0, 2.0));
        let (ps, ts) = (slice(&p), slice(&t));
        let (value, grad) = value_and_grad_on_tape(&MeanSquaredError::new(), &p, &t)?;
        let expected: f64 = ps.iter().zip(ts).map(|(a, b)| (a - b) * (a - b)).sum::<f64>() / n as f64;
        assert!(
            (value - expected).abs() <= 1e-12 * expected,
            "round {round}: {value} against {expected}"
        );
        let slopes: Vec<f64> = ps.iter().zip(ts).map(|(a, b)| 2.0 * (a - b) / n as f64).collect();
        assert_close_slices(slice(&grad), &slopes, "MSE gradient");
        // A second loss on a different shape in between, through `forward`.
        let half = rng.array(&[n / 2], -2.0, 2.0);
        let huber = HuberLoss::new(1.0).forward(&half, &half.mapv(|v| v + 0.5))?;
        assert!((huber - 0.125).abs() < 1e-12, "round {round}: Huber {huber}");
        kept.push((grad, slopes));
    }
    for (grad, slopes) in &kept {
        assert_close_slices(slice(grad), slopes, "a gradient kept across later tapes");
    }
    Ok(())
}

/// `sum` and `mean` of a chain that leads to a tracked leaf differentiate it
/// while summing it, and the sweep sends those gradients: for the root (the
/// same bits as a second sweep, which recomputes them), scaled when the
/// reduction's own gradient is not 1 (and 0 when it is 0; on both cores for
/// long chains), and not at all when a value of the chain was used elsewhere
/// after the reduction.
#[test]
fn reductions_differentiate_their_chain_with_its_value() -> Result<()> {
    let mut rng = Rng::new(31);
    // The last length is past the point (2¹⁹) where scaling the gradients
    // splits over the cores.
    for n in LENGTHS.into_iter().chain([600_001]) {
        let (x0, t0) = (rng.array(&[n], -2.0, 2.0), rng.array(&[n], -2.0, 2.0));
        let (xs, ts) = (slice(&x0), slice(&t0));
        let tape = Tape::<f64>::new();
        let (x, t) = (tape.var(x0.clone()), tape.constant(t0.clone()));
        let what = |case: &str| format!("{case}, n = {n}");

        // The root: a mean of a chain; the second sweep recomputes it.
        let mse = x.sub(t)?.square()?.mean()?;
        let (first, second) = (tape.backward(mse)?, tape.backward(mse)?);
        let slopes: Vec<f64> = xs.iter().zip(ts).map(|(x, t)| 2.0 * (x - t) / n as f64).collect();
        assert_close_slices(slice(first.wrt(x).expect("x")), &slopes, &what("mean"));
        assert_eq!(first.wrt(x), second.wrt(x), "{}", what("second sweep"));

        // A sum whose own gradient is 3, then one whose gradient is 0.
        let scaled = x.mul_scalar(0.5)?.exp()?.sum()?.mul_scalar(3.0)?;
        let grads = tape.backward(scaled)?;
        let slopes: Vec<f64> = xs.iter().map(|x| 1.5 * (0.5 * x).exp()).collect();
        assert_close_slices(slice(grads.wrt(x).expect("x")), &slopes, &what("scaled"));
        let muted = x.mul_scalar(1e3)?.exp()?.sum()?.mul_scalar(0.0)?.add(x.sum()?)?;
        let grads = tape.backward(muted)?;
        assert!(grads.wrt(x).expect("x").iter().all(|&g| g == 1.0), "{}", what("muted"));

        // A value of the chain used again after the reduction.
        let d = x.sub(t)?;
        let squares = d.square()?.sum()?;
        let both = squares.add(d.abs()?.sum()?)?;
        let grads = tape.backward(both)?;
        let slopes: Vec<f64> = xs
            .iter()
            .zip(ts)
            .map(|(x, t)| 2.0 * (x - t) + (x - t).signum())
            .collect();
        assert_close_slices(slice(grads.wrt(x).expect("x")), &slopes, &what("used again"));
    }
    Ok(())
}

/// Fills this thread's buffer pool with arrays of NaN (two of each length),
/// so that an element a kernel reads before it writes it shows as NaN.
fn poison_buffer_pool(lengths: &[usize]) {
    let tape = Tape::<f64>::new();
    for &n in lengths.iter().chain(lengths) {
        tape.var(ArrayD::from_elem(IxDyn(&[n]), f64::NAN));
    }
}

/// Arrays the tape writes whole (chain values and gradients, copies, slices,
/// `log_softmax`, `softmax`) reuse pooled buffers without zeroing them first: with a
/// pool full of NaN, every result must still be its inputs' alone, on one
/// thread and on both (300,001 elements), and the part of a slice's input
/// that no slice covers must get exact zeros.
#[test]
fn buffers_full_of_stale_values_are_overwritten() -> Result<()> {
    use tapeloss::losses::{MeanSquaredError, value_and_grad_on_tape};
    let mut rng = Rng::new(37);
    let lengths = [40_000, 300_001, 45_000, 153_600, 51_200];

    // A chain whose inner value `d` is also used outside it (its gradient
    // leaves the chain), and `d`'s value made in full.
    for n in [40_000, 300_001] {
        let (x0, y0) = (rng.array(&[n], -2.0, 2.0), rng.array(&[n], -2.0, 2.0));
        let (xs, ys) = (slice(&x0), slice(&y0));
        poison_buffer_pool(&lengths);
        let tape = Tape::<f64>::new();
        let (x, y) = (tape.var(x0.clone()), tape.var(y0.clone()));
        let d = x.sub(y)?;
        let loss = d.square()?.mul(x)?.sum()?.add(d.mean()?)?;
        let differences: Vec<f64> = xs.iter().zip(ys).map(|(x, y)| x - y).collect();
        assert_close_slices(slice(&d.value()), &differences, "a chain's value");
        let grads = tape.backward(loss)?;
        let wrt_x: Vec<f64> = (xs.iter().zip(&differences))
            .map(|(x, d)| 2.0 * d * x + d * d + 1.0 / n as f64)
            .collect();
        let wrt_y: Vec<f64> = (xs.iter().zip(&differences))
            .map(|(x, d)| -2.0 * d * x - 1.0 / n as f64)
            .collect();
        assert_close_slices(slice(grads.wrt(x).expect("x")), &wrt_x, "a chain's gradient, x");
        assert_close_slices(slice(grads.wrt(y).expect("y")), &wrt_y, "a chain's gradient, y");

        // The tape's copies of a loss's inputs.
        poison_buffer_pool(&lengths);
        let (value, grad) = value_and_grad_on_tape(&MeanSquaredError::new(), &x0, &y0)?;
        let mse = differences.iter().map(|d| d * d).sum::<f64>() / n as f64;
        assert!(
            (value - mse).abs() <= 1e-12 * mse,
            "MSE on the tape: {value} against {mse}"
        );
        let slopes: Vec<f64> = differences.iter().map(|d| 2.0 * d / n as f64).collect();
        assert_close_slices(slice(&grad), &slopes, "MSE's gradient on the tape");
    }

    // `log_softmax` along rows: Σ w ⊙ log_softmax(x) has the gradient
    // w − softmax(x)·Σ w per row.
    let (rows, width) = (300, 150);
    let (x0, w0) = (
        rng.array(&[rows, width], -3.0, 3.0),
        rng.array(&[rows, width], 0.0, 1.0),
    );
    poison_buffer_pool(&lengths);
    let tape = Tape::<f64>::new();
    let x = tape.var(x0.clone());
    let log_p = x.log_softmax(1)?;
    let loss = log_p.mul(tape.constant(w0.clone()))?.sum()?;
    let grads = tape.backward(loss)?;
    let (xs, ws) = (slice(&x0), slice(&w0));
    let (mut expected_log_p, mut expected_grad) = (Vec::new(), Vec::new());
    for (row, w) in xs.chunks(width).zip(ws.chunks(width)) {
        let lse = row.iter().map(|v| v.exp()).sum::<f64>().ln();
        let w_sum: f64 = w.iter().sum();
        expected_log_p.extend(row.iter().map(|v| v - lse));
        expected_grad.extend(row.iter().zip(w).map(|(v, w)| w - (v - lse).exp() * w_sum));
    }
    assert_close_slices(slice(&log_p.value()), &expected_log_p, "log_softmax");
    assert_close_slices(
        slice(grads.wrt(x).expect("x")),
        &expected_grad,
        "log_softmax's gradient",
    );

    // `softmax` along the same rows (split over both cores alike):
    // Σ w ⊙ softmax(x) has the gradient p ⊙ (w − Σ w ⊙ p) per row.
    poison_buffer_pool(&lengths);
    let tape = Tape::<f64>::new();
    let x = tape.var(x0.clone());
    let probabilities = x.softmax(1)?;
    let loss = probabilities.mul(tape.constant(w0.clone()))?.sum()?;
    let grads = tape.backward(loss)?;
    let expected_p: Vec<f64> = expected_log_p.iter().map(|v| v.exp()).collect();
    assert_close_slices(slice(&probabilities.value()), &expected_p, "softmax");
    let mut expected_softmax_grad = Vec::new();
    for (p, w) in expected_p.chunks(width).zip(ws.chunks(width)) {
        let w_dot_p: f64 = p.iter().zip(w).map(|(p, w)| p * w).sum();
        expected_softmax_grad.extend(p.iter().zip(w).map(|(p, w)| p * (w - w_dot_p)));
    }
    assert_close_slices(
        slice(grads.wrt(x).expect("x")),
        &expected_softmax_grad,
        "softmax's gradient",
    );

    // Slices along the middle axis; the third is never used, so its part of
    // the gradient is exactly zero.
    let (n, d) = (400, 128);
    let x0 = rng.array(&[n, 3, d], -1.0, 1.0);
    poison_buffer_pool(&lengths);
    let tape = Tape::<f64>::new();
    let x = tape.var(x0.clone());
    let (a, p) = (x.index_axis(1, 0)?, x.index_axis(1, 1)?);
    let loss = a.sub(p)?.square()?.sum()?.add(a.mul_scalar(2.0)?.sum()?)?;
    let grads = tape.backward(loss)?;
    let xs = slice(&x0);
    let (mut firsts, mut expected) = (Vec::new(), Vec::new());
    for triple in xs.chunks(3 * d) {
        let (a, p) = (&triple[..d], &triple[d..2 * d]);
        firsts.extend_from_slice(a);
        expected.extend(a.iter().zip(p).map(|(a, p)| 2.0 * (a - p) + 2.0));
        expected.extend(a.iter().zip(p).map(|(a, p)| -2.0 * (a - p)));
        expected.extend(std::iter::repeat_n(0.0, d));
    }
    assert_close_slices(slice(&a.value()), &firsts, "index_axis");
    assert_close_slices(slice(grads.wrt(x).expect("x")), &expected, "index_axis' gradient");
    Ok(())
}

/// The elements of `x` (row-major, `[outer, n, inner]` around an axis) at
/// `index` along that axis: one row of `inner` per index before it.
fn rows_at(x: &[f64], (n, inner): (usize, usize), index: usize) -> Vec<f64> {
    x.chunks(n * inner)
        .flat_map(|block| block[index * inner..][..inner].to_vec())
        .collect()
}

/// Adds `g` (the elements at `index` along the axis) into `into`.
fn add_rows_at(into: &mut [f64], (n, inner): (usize, usize), index: usize, g: &[f64]) {
    for (block, g) in into.chunks_mut(n * inner).zip(g.chunks(inner)) {
        block[index * inner..][..inner]
            .iter_mut()
            .zip(g)
            .for_each(|(d, g)| *d += g);
    }
}

/// Triplet-style distances over slices that chains read by rows straight
/// from their input, whose gradients go straight back into its gradient:
/// `Σₒ ‖a − p‖ − ‖a − n‖ + ½ Σ a + Σ x²`, with `a` read by two chains and a
/// reduction, and `x` itself by another. Rows of 1, of 700 (longer than a
/// register block), of 128 past the size from which chains use both cores,
/// and of 20,000 (longer than a parallel leaf: their gradients leave the
/// chains as arrays).
#[test]
fn slices_read_by_rows_match_the_loop() -> Result<()> {
    let mut rng = Rng::new(41);
    for (outer, d) in [(7, 1), (5, 700), (300, 128), (2_100, 128), (15, 20_000)] {
        let x0 = rng.array(&[outer, 3, d], -1.0, 1.0);
        let tape = Tape::<f64>::new();
        let x = tape.var(x0.clone());
        let (a, p, n) = (x.index_axis(1, 0)?, x.index_axis(1, 1)?, x.index_axis(1, 2)?);
        let to_p = a.sub(p)?.norm_axis(1, false)?;
        let to_n = a.sub(n)?.norm_axis(1, false)?;
        let loss = (to_p.sub(to_n)?.sum()?)
            .add(a.mul_scalar(0.5)?.sum()?)?
            .add(x.square()?.sum()?)?;
        let grads = tape.backward(loss)?;

        let xs = slice(&x0);
        let (av, pv, nv) = (rows_at(xs, (3, d), 0), rows_at(xs, (3, d), 1), rows_at(xs, (3, d), 2));
        let norm = |u: &[f64], v: &[f64]| u.iter().zip(v).map(|(u, v)| (u - v) * (u - v)).sum::<f64>().sqrt();
        let mut expected: Vec<f64> = xs.iter().map(|x| 2.0 * x).collect();
        let (mut da, mut dp, mut dn) = (Vec::new(), Vec::new(), Vec::new());
        for ((a, p), n) in av.chunks(d).zip(pv.chunks(d)).zip(nv.chunks(d)) {
            let (np, nn) = (norm(a, p), norm(a, n));
            for ((a, p), n) in a.iter().zip(p).zip(n) {
                da.push((a - p) / np - (a - n) / nn + 0.5);
                dp.push(-(a - p) / np);
                dn.push((a - n) / nn);
            }
        }
        add_rows_at(&mut expected, (3, d), 0, &da);
        add_rows_at(&mut expected, (3, d), 1, &dp);
        add_rows_at(&mut expected, (3, d), 2, &dn);
        let what = format!("x of [{outer}, 3, {d}]");
        assert_close_slices(slice(grads.wrt(x).expect("x")), &expected, &what);
        assert_close_slices(slice(&a.value()), &av, "the anchors' value");
    }
    Ok(())
}

/// Overlapping slices of one input and a slice of another input, sliced
/// with a different distance between rows, in one chain:
/// `Σ u ⊙ v + w ⊙ u` with `u = x[:, 0..3]`, `v = x[:, 1..4]` and
/// `w = z[:, 2..5]`, summed at once (the chain is differentiated with its
/// value) or row by row first (by the sweep, which adds the slices'
/// gradients straight into those of `x` and `z`). Past the parallel
/// threshold too (270,000 elements).
#[test]
fn overlapping_slices_of_two_inputs_in_one_chain() -> Result<()> {
    let mut rng = Rng::new(43);
    for ((m, k), by_rows) in [(3, 1), (200, 7), (30_000, 3)]
        .into_iter()
        .flat_map(|s| [(s, false), (s, true)])
    {
        let (x0, z0) = (rng.array(&[m, 4, k], -2.0, 2.0), rng.array(&[m, 5, k], -2.0, 2.0));
        let tape = Tape::<f64>::new();
        let (x, z) = (tape.var(x0.clone()), tape.var(z0.clone()));
        let (u, v, w) = (x.slice_axis(1, 0, 3)?, x.slice_axis(1, 1, 4)?, z.slice_axis(1, 2, 5)?);
        let terms = u.mul(v)?.add(w.mul(u)?)?;
        let loss = if by_rows {
            terms.sum_axis(2, false)?.sum()?
        } else {
            terms.sum()?
        };
        let grads = tape.backward(loss)?;

        let (xs, zs) = (slice(&x0), slice(&z0));
        let (mut dx, mut dz) = (vec![0.0; xs.len()], vec![0.0; zs.len()]);
        for j in 0..4 {
            let mut g = vec![0.0; m * k];
            if j < 3 {
                let (next, w) = (rows_at(xs, (4, k), j + 1), rows_at(zs, (5, k), j + 2));
                g.iter_mut()
                    .zip(next.iter().zip(&w))
                    .for_each(|(g, (v, w))| *g += v + w);
            }
            if j >= 1 {
                let previous = rows_at(xs, (4, k), j - 1);
                g.iter_mut().zip(&previous).for_each(|(g, u)| *g += u);
            }
            add_rows_at(&mut dx, (4, k), j, &g);
        }
        for j in 2..5 {
            add_rows_at(&mut dz, (5, k), j, &rows_at(xs, (4, k), j - 2));
        }
        assert_close_slices(slice(grads.wrt(x).expect("x")), &dx, &format!("x of [{m}, 4, {k}]"));
        assert_close_slices(slice(grads.wrt(z).expect("z")), &dz, &format!("z of [{m}, 5, {k}]"));
    }
    Ok(())
}

/// A chain seeded by a gradient array (through `reshape` and `matmul`) over
/// a column read by rows of one element and a column whose value was made
/// in full first: `Σ (x[:, 2] ⊙ x[:, 4]) · w`.
#[test]
fn a_column_read_by_rows_of_one_element() -> Result<()> {
    let mut rng = Rng::new(47);
    for m in [1, 513, 300_001] {
        let (x0, w0) = (rng.array(&[m, 5], -2.0, 2.0), rng.array(&[m, 1], -1.0, 1.0));
        let tape = Tape::<f64>::new();
        let x = tape.var(x0.clone());
        let (a, b) = (x.index_axis(1, 2)?, x.index_axis(1, 4)?);
        let bv = b.value(); // made in full: the chain reads it as an array
        let c = a.mul(b)?;
        let loss = c.reshape(&[1, m])?.matmul(tape.constant(w0.clone()))?.sum()?;
        let grads = tape.backward(loss)?;

        let (xs, ws) = (slice(&x0), slice(&w0));
        let mut expected = vec![0.0; xs.len()];
        for ((row, d), &w) in xs.chunks(5).zip(expected.chunks_mut(5)).zip(ws) {
            d[2] = w * row[4];
            d[4] = w * row[2];
        }
        assert_close_slices(slice(&bv), &rows_at(xs, (5, 1), 4), "a column's value");
        assert_close_slices(slice(grads.wrt(x).expect("x")), &expected, &format!("x of [{m}, 5]"));
    }
    Ok(())
}

/// Gradients scattered from slices have the same bits on one thread and on
/// several (the chain is cut between rows; each element's gradient is
/// added in the same order whatever the cut).
#[test]
fn scattered_slices_give_the_same_bits_on_any_number_of_threads() {
    use tapeloss::losses::{Loss, TripletLoss, value_and_grad_on_tape};
    let mut rng = Rng::new(53);
    let x0 = rng.array(&[2_100, 3, 128], -1.0, 1.0);
    let targets = ArrayD::zeros(IxDyn(&[0]));
    assert_same_on_any_number_of_threads(|| -> Result<(u64, Vec<u64>)> {
        let loss = TripletLoss::new(0.5);
        let (value, grad) = value_and_grad_on_tape(&loss, &x0, &targets)?;
        let (closed, _) = loss.value_and_grad(&x0, &targets)?;
        assert!((value - closed).abs() <= 1e-12 * closed.abs().max(1.0));
        Ok((value.to_bits(), grad.iter().map(|v| v.to_bits()).collect()))
    });
}

/// The first two of `[N, 2, D]` pairs (whose rows cover their input exactly
/// once) or of `[N, 3, D]` triples (whose third rows no slice reads),
/// scattered into a new gradient taken from a pool full of NaN: every
/// element must be the slices' gradient alone (0 in the third rows), and,
/// when the input already had a gradient pending (from `Σ x²`, swept first),
/// that gradient plus theirs.
#[test]
fn slices_covering_their_input_on_a_stale_pool() -> Result<()> {
    let mut rng = Rng::new(59);
    let shapes = [(3, 2, 5), (700, 2, 128), (3, 3, 5), (700, 3, 128)];
    for ((m, parts, k), square_too) in shapes.into_iter().flat_map(|s| [(s, false), (s, true)]) {
        let x0 = rng.array(&[m, parts, k], -1.0, 1.0);
        poison_buffer_pool(&[m * parts * k, m * k]);
        let tape = Tape::<f64>::new();
        let x = tape.var(x0.clone());
        let (u, v) = (x.index_axis(1, 0)?, x.index_axis(1, 1)?);
        let distances = u.sub(v)?.norm_axis(1, false)?.sum()?;
        let loss = if square_too {
            distances.add(x.square()?.sum()?)?
        } else {
            distances
        };
        let grads = tape.backward(loss)?;

        let xs = slice(&x0);
        let mut expected: Vec<f64> = xs.iter().map(|x| if square_too { 2.0 * x } else { 0.0 }).collect();
        for (pair, d) in xs.chunks(parts * k).zip(expected.chunks_mut(parts * k)) {
            let (u, v) = (&pair[..k], &pair[k..2 * k]);
            let norm = u.iter().zip(v).map(|(u, v)| (u - v) * (u - v)).sum::<f64>().sqrt();
            for i in 0..k {
                d[i] += (u[i] - v[i]) / norm;
                d[k + i] -= (u[i] - v[i]) / norm;
            }
        }
        let what = format!("x of [{m}, {parts}, {k}], Σ x² too: {square_too}");
        assert_close_slices(slice(grads.wrt(x).expect("x")), &expected, &what);
    }
    Ok(())
}

/// A chain swept first overwrites the rows of its slices in a new gradient
/// (from a pool full of NaN) and leaves the other rows for later: they must
/// end as exact zeros, or as what a later use adds. Three orders, each with
/// `[M, 3, K]` triples, `dᵢⱼ = x[:, i] − x[:, j]` and row norms `‖·‖`:
/// - `Σ x² + Σ‖d₀₂‖`: the slices first, then a whole gradient added;
/// - `Σ (3·x[:, 1..3])² + Σ x[:, 0..2]²` (both by rows): rows `0..2` first,
///   then a slice that overlaps them only in part;
/// - `Σ‖d₀₁‖ + Σ‖d₀₂‖`: `x[:, 0]` written, then added to by a second chain.
#[test]
fn slices_swept_before_the_other_uses_of_their_input() -> Result<()> {
    let mut rng = Rng::new(61);
    for ((m, k), order) in [(3, 5), (700, 128)].into_iter().flat_map(|s| [(s, 0), (s, 1), (s, 2)]) {
        let x0 = rng.array(&[m, 3, k], -1.0, 1.0);
        poison_buffer_pool(&[m * 3 * k, m * k]);
        let tape = Tape::<f64>::new();
        let x = tape.var(x0.clone());
        let row_norms = |i: usize, j: usize| -> Result<_> {
            x.index_axis(1, i)?.sub(x.index_axis(1, j)?)?.norm_axis(1, false)?.sum()
        };
        let loss = match order {
            0 => x.square()?.sum()?.add(row_norms(0, 2)?)?,
            1 => {
                let squares = |start: usize, c: f64| -> Result<_> {
                    let rows = x.slice_axis(1, start, start + 2)?.mul_scalar(c)?.square()?;
                    rows.sum_axis(2, false)?.sum()
                };
                squares(1, 3.0)?.add(squares(0, 1.0)?)?
            }
            _ => row_norms(0, 1)?.add(row_norms(0, 2)?)?,
        };
        let grads = tape.backward(loss)?;

        let xs = slice(&x0);
        let mut expected = vec![0.0; xs.len()];
        let mut add_norm = |i: usize, j: usize| {
            let (u, v) = (rows_at(xs, (3, k), i), rows_at(xs, (3, k), j));
            let mut du = Vec::new();
            for (u, v) in u.chunks(k).zip(v.chunks(k)) {
                let norm = u.iter().zip(v).map(|(u, v)| (u - v) * (u - v)).sum::<f64>().sqrt();
                du.extend(u.iter().zip(v).map(|(u, v)| (u - v) / norm));
            }
            add_rows_at(&mut expected, (3, k), i, &du);
            add_rows_at(&mut expected, (3, k), j, &du.iter().map(|g| -g).collect::<Vec<_>>());
        };
        // Rows whose gradient from squares is `slope·x`.
        let squares: &[(usize, f64)] = match order {
            0 => {
                add_norm(0, 2);
                &[(0, 2.0), (1, 2.0), (2, 2.0)]
            }
            1 => &[(0, 2.0), (1, 2.0), (1, 18.0), (2, 18.0)],
            _ => {
                add_norm(0, 1);
                add_norm(0, 2);
                &[]
            }
        };
        for &(i, slope) in squares {
            let g: Vec<f64> = rows_at(xs, (3, k), i).iter().map(|x| slope * x).collect();
            add_rows_at(&mut expected, (3, k), i, &g);
        }
        let what = format!("x of [{m}, 3, {k}], order {order}");
        assert_close_slices(slice(grads.wrt(x).expect("x")), &expected, &what);
    }
    Ok(())
}

/// A step of a random elementwise program: a leaf, or an op on earlier steps.
#[derive(Clone, Copy, Debug)]
enum Gen {
    Leaf(usize),
    Neg(usize),
    Tanh(usize),
    Sigmoid(usize),
    Square(usize),
    Exp(usize),
    Relu(usize),
    AddScalar(usize, f64),
    MulScalar(usize, f64),
    Add(usize, usize),
    Sub(usize, usize),
    Mul(usize, usize),
    Maximum(usize, usize),
}

/// A value and its derivative along one direction (forward mode): the
/// reference, which shares nothing with the tape's reverse sweep.
#[derive(Clone, Copy)]
struct Dual(f64, f64);

fn eval(step: Gen, at: &[Dual], leaves: &[Dual]) -> Dual {
    let sigmoid_of = |v: f64| 1.0 / (1.0 + (-v).exp());
    match step {
        Gen::Leaf(l) => leaves[l],
        Gen::Neg(a) => Dual(-at[a].0, -at[a].1),
        Gen::Tanh(a) => {
            let y = at[a].0.tanh();
            Dual(y, (1.0 - y * y) * at[a].1)
        }
        Gen::Sigmoid(a) => {
            let y = sigmoid_of(at[a].0);
            Dual(y, y * (1.0 - y) * at[a].1)
        }
        Gen::Square(a) => Dual(at[a].0 * at[a].0, 2.0 * at[a].0 * at[a].1),
        Gen::Exp(a) => Dual(at[a].0.exp(), at[a].0.exp() * at[a].1),
        Gen::Relu(a) => Dual(at[a].0.max(0.0), if at[a].0 > 0.0 { at[a].1 } else { 0.0 }),
        Gen::AddScalar(a, c) => Dual(at[a].0 + c, at[a].1),
        Gen::MulScalar(a, c) => Dual(at[a].0 * c, at[a].1 * c),
        Gen::Add(a, b) => Dual(at[a].0 + at[b].0, at[a].1 + at[b].1),
        Gen::Sub(a, b) => Dual(at[a].0 - at[b].0, at[a].1 - at[b].1),
        Gen::Mul(a, b) => Dual(at[a].0 * at[b].0, at[a].1 * at[b].0 + at[a].0 * at[b].1),
        // A tie splits the gradient, as the tape (and PyTorch) do.
        Gen::Maximum(a, b) => {
            let (x, y) = (at[a], at[b]);
            let d = if x.0 == y.0 {
                0.5 * (x.1 + y.1)
            } else if x.0 > y.0 {
                x.1
            } else {
                y.1
            };
            Dual(x.0.max(y.0), d)
        }
    }
}

fn record<'t>(
    step: Gen,
    vars: &[tapeloss::Var<'t, f64>],
    leaves: &[tapeloss::Var<'t, f64>],
) -> Result<tapeloss::Var<'t, f64>> {
    match step {
        Gen::Leaf(l) => Ok(leaves[l]),
        Gen::Neg(a) => vars[a].neg(),
        Gen::Tanh(a) => vars[a].tanh(),
        Gen::Sigmoid(a) => vars[a].sigmoid(),
        Gen::Square(a) => vars[a].square(),
        Gen::Exp(a) => vars[a].exp(),
        Gen::Relu(a) => vars[a].relu(),
        Gen::AddScalar(a, c) => vars[a].add_scalar(c),
        Gen::MulScalar(a, c) => vars[a].mul_scalar(c),
        Gen::Add(a, b) => vars[a].add(vars[b]),
        Gen::Sub(a, b) => vars[a].sub(vars[b]),
        Gen::Mul(a, b) => vars[a].mul(vars[b]),
        Gen::Maximum(a, b) => vars[a].maximum(vars[b]),
    }
}

/// Random chains of elementwise ops, heavy in the ones whose gradient passes
/// unchanged (`+`, `−`, `+ c`, whose steps share their operand's register),
/// with fan-out (`x + x` among it), a broadcast scalar, leaves that are
/// constants, and steps also used outside the chain (a second sum, and a
/// row sum squared, whose gradient reaches the chain as an array of rows):
/// value and every leaf's gradient against forward-mode duals per element.
#[test]
fn random_chains_match_forward_mode_duals() -> Result<()> {
    let mut rng = Rng::new(61);
    for case in 0..300 {
        let (rows, cols) = [(1, 7), (3, 171), (40, 50), (2, 600)][case % 4];
        let n = rows * cols;
        // Leaves 0, 1 and 2 are [rows, cols]; leaf 3 is a [1, 1] scalar,
        // broadcast. Some are constants (leaf 2 always needs a gradient).
        let constant = [rng.below(4) == 0, rng.below(4) == 0, false, rng.below(2) == 0];
        let inputs: Vec<ArrayD<f64>> = (0..4)
            .map(|l| {
                if l < 3 {
                    rng.array(&[rows, cols], -1.5, 1.5)
                } else {
                    rng.array(&[1, 1], -1.0, 1.0)
                }
            })
            .collect();
        let mut program: Vec<Gen> = (0..4).map(Gen::Leaf).collect();
        // Reference values of every step at every element (leaf 3 broadcast).
        let leaf_value = |l: usize, e: usize| {
            if l < 3 {
                inputs[l].as_slice().expect("row-major")[e]
            } else {
                inputs[3][[0, 0]]
            }
        };
        let mut values: Vec<Vec<f64>> = (0..4).map(|l| (0..n).map(|e| leaf_value(l, e)).collect()).collect();
        for _ in 0..2 + rng.below(12) {
            let pick = |rng: &mut Rng| {
                if rng.below(3) == 0 {
                    rng.below(program.len())
                } else {
                    program.len() - 1 - rng.below(program.len().min(3))
                }
            };
            let (kind, mut a, b) = (rng.below(16), pick(&mut rng), pick(&mut rng));
            // Every step has the full shape: the scalar leaf is only ever
            // broadcast against a full operand.
            if a == 3 && (kind < 9 || b == 3) {
                a = rng.below(3);
            }
            let c = rng.uniform(-1.5, 1.5);
            let step = match kind {
                0 => Gen::Neg(a),
                1 => Gen::Tanh(a),
                2 => Gen::Sigmoid(a),
                3 => Gen::Square(a),
                4 => Gen::Exp(a),
                5 => Gen::Relu(a),
                6 | 7 => Gen::AddScalar(a, c),
                8 => Gen::MulScalar(a, c),
                9..=11 => Gen::Add(a, b),
                12 | 13 => Gen::Sub(a, b),
                14 => Gen::Mul(a, b),
                _ => Gen::Maximum(a, b),
            };
            let mut next: Vec<f64> = (0..n)
                .map(|e| eval(step, &values.iter().map(|v| Dual(v[e], 0.0)).collect::<Vec<_>>(), &[]).0)
                .collect();
            let mut step = step;
            if next.iter().any(|v| v.abs() > 20.0) {
                // Keep values small enough that no op overflows.
                let squashed = Gen::Tanh(program.len());
                program.push(step);
                values.push(next);
                step = squashed;
                next = values[values.len() - 1].iter().map(|v| v.tanh()).collect();
            }
            program.push(step);
            values.push(next);
        }
        let root = program.len() - 1;
        let full_step = |rng: &mut Rng| match rng.below(program.len() - 1) {
            3 => 0,
            s => s,
        };
        let (extra, other) = (full_step(&mut rng), full_step(&mut rng));

        let tape = Tape::<f64>::new();
        let leaves: Vec<_> = (inputs.iter().zip(constant))
            .map(|(x, c)| {
                if c {
                    tape.constant(x.clone())
                } else {
                    tape.var(x.clone())
                }
            })
            .collect();
        let mut vars = Vec::new();
        for &step in &program {
            let var = record(step, &vars, &leaves)?;
            vars.push(var);
        }
        let loss = vars[root]
            .sum()?
            .add(vars[extra].mul_scalar(0.3)?.sum()?)?
            .add(vars[other].sum_axis(1, false)?.square()?.sum()?.mul_scalar(0.1)?)?;
        let grads = tape.backward(loss)?;

        // The reference: forward mode along each leaf's element e, and the
        // rows' sums of `other` for the last term.
        let at = |s: usize, e: usize| values[s][e];
        let row_sum: Vec<f64> = (0..rows)
            .map(|r| (0..cols).map(|c| at(other, r * cols + c)).sum())
            .collect();
        let value: f64 = (0..n).map(|e| at(root, e) + 0.3 * at(extra, e)).sum::<f64>()
            + 0.1 * row_sum.iter().map(|s| s * s).sum::<f64>();
        let what = format!("case {case}, [{rows}, {cols}], {program:?}, extra {extra}, other {other}");
        let scale: f64 = 1.0
            + (0..n)
                .map(|e| at(root, e).abs() + 0.3 * at(extra, e).abs())
                .sum::<f64>()
            + 0.1 * row_sum.iter().map(|s| s * s).sum::<f64>();
        assert!(
            (loss.item()? - value).abs() <= 1e-12 * scale,
            "{what}: value {} against {value}",
            loss.item()?
        );
        for l in (0..4).filter(|&l| !constant[l]) {
            let mut expected = vec![0.0; n];
            let mut magnitude = vec![0.0; n];
            for (e, (g, m)) in expected.iter_mut().zip(&mut magnitude).enumerate() {
                let seeds: Vec<Dual> = (0..4)
                    .map(|k| Dual(leaf_value(k, e), if k == l { 1.0 } else { 0.0 }))
                    .collect();
                let mut duals: Vec<Dual> = Vec::new();
                for &step in &program {
                    let d = eval(step, &duals, &seeds);
                    duals.push(d);
                }
                let terms = [
                    duals[root].1,
                    0.3 * duals[extra].1,
                    0.2 * row_sum[e / cols] * duals[other].1,
                ];
                *g = terms.iter().sum();
                *m = terms.iter().map(|t| t.abs()).sum();
            }
            let actual = grads.wrt(leaves[l]).expect("a tracked leaf");
            if l == 3 {
                let (sum, size): (f64, f64) = (expected.iter().sum(), magnitude.iter().sum());
                let got = actual[[0, 0]];
                assert!(
                    (got - sum).abs() <= 1e-10 * (1.0 + size),
                    "{what}: scalar leaf: {got} against {sum}"
                );
            } else {
                for (e, ((&a, &x), &m)) in slice(actual).iter().zip(&expected).zip(&magnitude).enumerate() {
                    assert!(
                        (a - x).abs() <= 1e-10 * (1.0 + m),
                        "{what}: leaf {l}, element {e}: {a} against {x}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// A loss made of its `record` alone, from a closure over the predictions.
struct Recorded<G>(G);

impl<G> tapeloss::Loss<f64> for Recorded<G>
where
    G: for<'t> Fn(tapeloss::Var<'t, f64>) -> Result<tapeloss::Var<'t, f64>>,
{
    fn record<'t>(
        &self,
        _tape: &'t Tape<f64>,
        x: tapeloss::Var<'t, f64>,
        _t: &ArrayD<f64>,
    ) -> Result<tapeloss::Var<'t, f64>> {
        (self.0)(x)
    }
}

/// [`Recorded`], with the closure's lifetimes pinned down.
fn recorded<G>(record: G) -> Recorded<G>
where
    G: for<'t> Fn(tapeloss::Var<'t, f64>) -> Result<tapeloss::Var<'t, f64>>,
{
    Recorded(record)
}

/// Fails unless `loss` on `x` is a `NonFinite` error naming the gradient's
/// element `at`.
fn assert_gradient_not_finite_at(loss: &dyn tapeloss::Loss<f64>, x: &ArrayD<f64>, at: &[usize], what: &str) {
    let t = ArrayD::zeros(IxDyn(&[x.shape()[0]]));
    let err = tapeloss::losses::value_and_grad_on_tape(loss, x, &t).expect_err(what);
    assert!(
        matches!(&err, tapeloss::Error::NonFinite { arg: "gradient", index, .. } if index == at),
        "{what}: {err:?}"
    );
}

#[test]
fn a_finite_chain_gradient_scaled_past_the_largest_float_is_caught_on_the_tape() {
    // `3·sum(ln x)`: at x = 1e-308 the chain's slope for a sum, 1/x = 1e308,
    // is finite; scaled by the 3 after the sum, it is not.
    let loss = recorded(|x| x.ln()?.sum()?.mul_scalar(3.0));
    for &n in &LENGTHS {
        let t = ArrayD::zeros(IxDyn(&[n]));
        let mut x = ArrayD::from_elem(IxDyn(&[n]), 2.0);
        let (_, grad) = tapeloss::losses::value_and_grad_on_tape(&loss, &x, &t).expect("slopes of 1.5");
        assert!(grad.iter().all(|&g| g == 1.5), "n = {n}");
        x[[n - 1]] = 1e-308;
        assert_gradient_not_finite_at(&loss, &x, &[n - 1], &format!("n = {n}: 3e308 overflows"));
    }
}

#[test]
fn a_chain_that_writes_an_infinite_slope_anywhere_is_caught_on_the_tape() {
    // `√x` summed, or averaged and scaled: finite where x = 0, its slope
    // 1/(2√x) is not. The gradient of each form comes whole out of one chain
    // (a sum or mean differentiated with its value, or a chain seeded by a
    // scale after the reduction), which checks it as it writes it, sparing a
    // pass over it: an infinity in any block, on either core, must still
    // make `value_and_grad_on_tape` fail, and the same inputs without the
    // zero must pass with the slope worked by hand.
    let forms: [(&dyn tapeloss::Loss<f64>, f64, f64); 4] = [
        (&recorded(|x| x.sqrt()?.sum()), 1.0, 0.0),
        (&recorded(|x| x.sqrt()?.mean()), 0.0, 0.0),
        (&recorded(|x| x.sqrt()?.add(x)?.sum()?.mul_scalar(3.0)), 3.0, 1.0),
        (&recorded(|x| x.sqrt()?.sum()?.mul_scalar(0.5)), 0.5, 0.0),
    ];
    for &n in &LENGTHS {
        let t = ArrayD::zeros(IxDyn(&[n]));
        for at in [0, n / 2, n - 1] {
            for (form, &(loss, scale, plus_one)) in forms.iter().enumerate() {
                // The mean's scale is 1/n.
                let scale = if form == 1 { 1.0 / n as f64 } else { scale };
                let mut x = ArrayD::from_shape_fn(IxDyn(&[n]), |i| 1.0 + (i[0] % 5) as f64);
                let (_, grad) = tapeloss::losses::value_and_grad_on_tape(loss, &x, &t).expect("finite slopes");
                let expected: Vec<f64> = (slice(&x).iter())
                    .map(|&v| scale * (0.5 / v.sqrt() + plus_one))
                    .collect();
                assert_close_slices(slice(&grad), &expected, &format!("form {form}, n = {n}"));
                x[[at]] = 0.0;
                let what = format!("form {form}, n = {n}, zero at {at}: 1/(2√0) is infinite");
                assert_gradient_not_finite_at(loss, &x, &[at], &what);
            }
        }
    }
}

#[test]
fn scattered_rows_that_overflow_when_added_or_copied_are_caught_on_the_tape() {
    // A chain that scatters into its input's rows checks what it wrote
    // there, so the tape's final pass can be skipped; an infinity it writes,
    // or one that its addition into another chain's rows makes, must still
    // fail `value_and_grad_on_tape` with the element's index.
    //
    // Triplet's distances over rows of one element, scaled after the sum:
    // the anchor's slope s·(sign(a − p) + sign(a − n)) is written by one
    // chain and added into by the other.
    let scale = 1e308;
    let distances = recorded(|x| {
        let (a, p, n) = (x.index_axis(1, 0)?, x.index_axis(1, 1)?, x.index_axis(1, 2)?);
        let to_positive = a.sub(p)?.norm_axis(1, false)?;
        let to_negative = a.sub(n)?.norm_axis(1, false)?;
        to_positive.add(to_negative)?.sum()?.mul_scalar(scale)
    });
    // Σ√a over the first of two slices, through a row sum: the chain behind
    // the row sum copies 1/(2√a) over the rows of `a`.
    let root_of_first = recorded(|x| x.index_axis(1, 0)?.sqrt()?.sum_axis(1, false)?.sum());
    for &rows in &LENGTHS {
        let t = ArrayD::zeros(IxDyn(&[rows]));
        // a = 0, p = 1e-100, n = −1e-100: the anchor's slopes cancel, p's and
        // n's are ∓s. Then in one row p and n on the same side: 2s overflows.
        let mut x = ArrayD::from_shape_fn(IxDyn(&[rows, 3, 1]), |i| [0.0, 1e-100, -1e-100][i[1]]);
        let (_, grad) = tapeloss::losses::value_and_grad_on_tape(&distances, &x, &t).expect("slopes of ±s and 0");
        for (i, (&g, expected)) in grad.iter().zip([0.0, scale, -scale].iter().cycle()).enumerate() {
            assert!((g - expected).abs() <= 1e-12 * scale, "rows = {rows}, element {i}: {g}");
        }
        let at = rows / 2;
        x[[at, 2, 0]] = 1e-100;
        assert_gradient_not_finite_at(&distances, &x, &[at, 0, 0], &format!("rows = {rows}: 2s overflows"));

        // Rows of 3 in the first slice, √ of 1, 4, 9, …: slopes 1/(2√a), and
        // 0 in the second slice; then a zero in the last row.
        let mut x = ArrayD::from_shape_fn(IxDyn(&[rows, 2, 3]), |i| ((i[0] * 3 + i[2]) % 7 + 1).pow(2) as f64);
        let (_, grad) = tapeloss::losses::value_and_grad_on_tape(&root_of_first, &x, &t).expect("finite slopes");
        for ((i, &g), &v) in grad.indexed_iter().zip(x.iter()) {
            let expected = if i[1] == 0 { 0.5 / v.sqrt() } else { 0.0 };
            assert!((g - expected).abs() <= 1e-15, "rows = {rows}, {i:?}: {g}");
        }
        x[[rows - 1, 0, 2]] = 0.0;
        let what = format!("rows = {rows}: 1/(2√0) is infinite");
        assert_gradient_not_finite_at(&root_of_first, &x, &[rows - 1, 0, 2], &what);
    }
}
