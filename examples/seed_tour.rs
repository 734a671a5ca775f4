//! Every example of the seed module documentation (`losses-module-doc.txt`), run
//! with only the crate path changed, plus a contrastive example. Each section
//! prints its numbers next to the value worked out by hand.
//!
//! `cargo run --example seed_tour`

use tapeloss::losses::{ContrastiveLoss, CrossEntropyLoss, FocalLoss, Loss, MeanSquaredError, TripletLoss};
use tapeloss::ndarray::Array;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    regression()?;
    classification()?;
    focal()?;
    triplet()?;
    contrastive()?;
    Ok(())
}

/// §Regression with Mean Squared Error
fn regression() -> Result<(), Box<dyn std::error::Error>> {
    println!("== Regression with mean squared error");
    let mse = MeanSquaredError::new();
    // Predictions and targets for regression
    let predictions = Array::from_vec(vec![1.5, 2.3, 0.8]).into_dyn();
    let targets = Array::from_vec(vec![1.0, 2.0, 1.0]).into_dyn();
    // Calculate loss
    let loss_value = mse.forward(&predictions, &targets)?;
    println!("MSE Loss: {:.4}", loss_value);
    // Calculate gradients for backpropagation
    let gradients = mse.backward(&predictions, &targets)?;
    println!("Gradients: {:?}", gradients);
    println!(
        "by hand: (0.25 + 0.09 + 0.04) / 3 = {:.4}; gradient 2(p - t)/3",
        0.38 / 3.0
    );
    Ok(())
}

/// §Classification with Cross Entropy
fn classification() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Classification with cross-entropy");
    let ce_loss = CrossEntropyLoss::default();
    // Logits (raw predictions) for 3-class classification
    let logits = Array::from_shape_vec(
        (2, 3),
        vec![
            1.0, 2.0, 0.5, // Sample 1
            0.8, 0.2, 1.5, // Sample 2
        ],
    )?
    .into_dyn();
    // One-hot encoded targets
    let targets = Array::from_shape_vec(
        (2, 3),
        vec![
            0.0, 1.0, 0.0, // Sample 1: class 1
            0.0, 0.0, 1.0, // Sample 2: class 2
        ],
    )?
    .into_dyn();
    // Calculate cross-entropy loss
    let loss_value = ce_loss.forward(&logits, &targets)?;
    println!("Cross-Entropy Loss: {:.4}", loss_value);
    // Get gradients for backpropagation
    let gradients = ce_loss.backward(&logits, &targets)?;
    println!("Gradients: {:?}", gradients);
    let by_hand = |row: [f64; 3], class: usize| -> f64 {
        let lse = row.iter().map(|x| x.exp()).sum::<f64>().ln();
        lse - row[class]
    };
    println!(
        "by hand: mean of (logsumexp - logit of the target) = {:.4}",
        (by_hand([1.0, 2.0, 0.5], 1) + by_hand([0.8, 0.2, 1.5], 2)) / 2.0
    );
    Ok(())
}

/// §Handling Class Imbalance with Focal Loss
fn focal() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Class imbalance with focal loss");
    // Focal loss with gamma=2.0, alpha=0.25 (typical values)
    let focal_loss = FocalLoss::new(2.0, Some(0.25), 1e-10);
    let predictions = Array::from_shape_vec(
        (2, 2),
        vec![
            0.9, 0.1, // High confidence prediction
            0.6, 0.4, // Lower confidence prediction
        ],
    )?
    .into_dyn();
    let targets = Array::from_shape_vec(
        (2, 2),
        vec![
            1.0, 0.0, // Correct prediction
            1.0, 0.0, // Incorrect prediction (will get higher loss)
        ],
    )?
    .into_dyn();
    let loss_value = focal_loss.forward(&predictions, &targets)?;
    // Focal loss will be higher for the incorrect, hard example
    println!("Focal Loss: {:.4}", loss_value);
    let term = |p: f64| -0.25 * (1.0 - p).powi(2) * p.ln();
    println!(
        "by hand: per sample {:.5} (confident) and {:.5} (hard); mean {:.4}",
        term(0.9),
        term(0.6),
        (term(0.9) + term(0.6)) / 2.0
    );
    Ok(())
}

/// §Metric Learning with Triplet Loss
fn triplet() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Metric learning with triplet loss");
    let triplet_loss = TripletLoss::new(1.0); // margin = 1.0
    // Embeddings: [anchor, positive, negative]
    let anchor = Array::from_vec(vec![1.0, 0.0, 0.0]).into_dyn();
    let positive = Array::from_vec(vec![0.9, 0.1, 0.0]).into_dyn(); // Similar to anchor
    let negative = Array::from_vec(vec![0.0, 0.0, 1.0]).into_dyn(); // Different from anchor
    println!("anchor {anchor}, positive {positive}, negative {negative}");
    // Stack into batch format
    let embeddings = Array::from_shape_vec(
        (3, 3),
        vec![
            1.0, 0.0, 0.0, // anchor
            0.9, 0.1, 0.0, // positive
            0.0, 0.0, 1.0, // negative
        ],
    )?
    .into_dyn();
    // Dummy targets (not used in triplet loss)
    let targets = Array::zeros((3,)).into_dyn();
    let loss_value = triplet_loss.forward(&embeddings, &targets)?;
    println!("Triplet Loss: {:.4}", loss_value);
    println!(
        "by hand: max(0, sqrt(0.02) - sqrt(2) + 1) = {:.4}",
        (0.02_f64.sqrt() - 2.0_f64.sqrt() + 1.0).max(0.0)
    );
    Ok(())
}

/// Not in the seed: contrastive loss on two pairs, one similar and one not.
fn contrastive() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Embeddings from pairs with contrastive loss");
    let contrastive_loss = ContrastiveLoss::new(1.0); // margin = 1.0
    // Pairs [N, 2, D]: (x1, x2) per row
    let pairs = Array::from_shape_vec(
        (2, 2, 2),
        vec![
            0.0, 0.0, 0.3, 0.4, // similar pair at distance 0.5
            0.0, 0.0, 0.6, 0.0, // dissimilar pair at distance 0.6
        ],
    )?
    .into_dyn();
    let labels = Array::from_vec(vec![1.0, 0.0]).into_dyn(); // 1 = similar
    let loss_value = contrastive_loss.forward(&pairs, &labels)?;
    println!("Contrastive Loss: {:.4}", loss_value);
    println!("Gradients: {:?}", contrastive_loss.backward(&pairs, &labels)?);
    println!("by hand: (0.5^2 + (1 - 0.6)^2) / 2 = {:.4}", (0.25 + 0.16) / 2.0);
    Ok(())
}
