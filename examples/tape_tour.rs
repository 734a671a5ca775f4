//! A short tour of the tape: tracked leaves and constants, broadcasting, a
//! small two-layer network with a cross-entropy written from tape ops, one
//! backward sweep, and reading gradients with `wrt`.
//!
//! Run with `cargo run --example tape_tour`.

use tapeloss::ndarray::{ArrayD, array};
use tapeloss::{Error, Tape};

fn show(name: &str, a: &ArrayD<f64>) {
    let values: Vec<String> = a.iter().map(|v| format!("{v:.4}")).collect();
    println!("  {name:<10} shape {:?}: [{}]", a.shape(), values.join(", "));
}

fn main() -> tapeloss::Result<()> {
    println!("1. Leaves and constants");
    let tape = Tape::<f64>::new();
    let x = tape.var(array![[1.0, 2.0], [3.0, 4.0]].into_dyn()); // tracked: gets a gradient
    let t = tape.constant(array![[0.5, 2.0], [3.0, 3.0]].into_dyn()); // not tracked
    let loss = x.sub(t)?.square()?.mean()?; // every op is recorded as it runs
    let grads = tape.backward(loss)?; // one reverse sweep
    println!("  loss = mean((x - t)^2) = {}", loss.item()?);
    show("d loss/dx", grads.wrt(x).unwrap());
    println!(
        "  wrt(t) for a constant: {:?}",
        grads.wrt(t).map(|g| g.shape().to_vec())
    );

    println!("\n2. Broadcasting (NumPy rules: shapes aligned on the right)");
    let tape = Tape::<f64>::new();
    let m = tape.var(array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]].into_dyn()); // [2, 3]
    let row = tape.var(array![10.0, 20.0, 30.0].into_dyn()); // [3]: added to every row
    let col = tape.var(array![[1.0], [2.0]].into_dyn()); // [2, 1]: scales each row
    let y = m.add(row)?.mul(col)?;
    show("(m+row)*col", &y.value());
    let grads = tape.backward(y.sum()?)?;
    show("d/d row", grads.wrt(row).unwrap()); // summed back over the broadcast rows
    show("d/d col", grads.wrt(col).unwrap());
    match m.add(tape.constant(array![1.0, 2.0].into_dyn())) {
        Err(e @ Error::ShapeMismatch { .. }) => println!("  [2, 3] + [2] is refused: {e}"),
        other => println!("  unexpected: {other:?}"),
    }

    println!("\n3. A small two-layer network, cross-entropy written from tape ops");
    let tape = Tape::<f64>::new();
    let inputs = tape.constant(array![[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]].into_dyn()); // [N=2, 3]
    let w1 = tape.var(array![[0.1, -0.2, 0.3, 0.0], [0.4, 0.1, -0.1, 0.2], [-0.3, 0.2, 0.1, 0.1]].into_dyn());
    let b1 = tape.var(array![0.01, -0.02, 0.0, 0.03].into_dyn()); // broadcast over the batch
    let w2 = tape.var(array![[0.2, -0.1], [0.0, 0.3], [-0.2, 0.1], [0.1, 0.1]].into_dyn());
    let classes = array![[1_usize], [0]].into_dyn(); // one class index per sample, [N, 1]

    let hidden = inputs.matmul(w1)?.add(b1)?.tanh()?; // [2, 4]
    let logits = hidden.matmul(w2)?; // [2, 2]
    let log_p = logits.log_softmax(1)?; // stable for any logits
    let loss = log_p.gather(1, &classes)?.mean()?.neg()?; // mean negative log-likelihood
    let grads = tape.backward(loss)?;
    println!("  cross-entropy = {:.6}", loss.item()?);
    show("d/d b1", grads.wrt(b1).unwrap());
    show("d/d w2", grads.wrt(w2).unwrap());
    println!(
        "  (hidden is an intermediate value: wrt gives {:?})",
        grads.wrt(hidden).map(|_| ())
    );

    println!("\n4. Stability and kinks");
    let tape = Tape::<f64>::new();
    let z = tape.var(array![1000.0, -1000.0, 0.0].into_dyn());
    show("log_softmax", &z.log_softmax(0)?.value()); // exactly [0, -2000, -1000]
    let grads = tape.backward(z.max_axis(0, false)?.add(z.relu()?.sum()?)?)?;
    show("d(max+Σrelu)", grads.wrt(z).unwrap()); // relu'(0) = 0 and a single maximum

    println!("\n5. Values from two tapes do not mix");
    let other = Tape::<f64>::new();
    let foreign = other.var(array![1.0, 2.0, 3.0].into_dyn());
    if let Err(e) = z.add(foreign) {
        println!("  {e}");
    }
    Ok(())
}
