//! Gradient checking: is a gradient right?
//!
//! A loss in this crate has up to three derivations of its gradient, and this
//! module compares them:
//!
//! - **closed**: the hand-written [`Loss::backward`];
//! - **tape**: the reverse sweep of the tape over [`Loss::record`]
//!   ([`crate::losses::value_and_grad_on_tape`]);
//! - **finite differences**: central differences `(f(x+h) − f(x−h)) / 2h` of
//!   [`Loss::forward`] (or of any function, for [`check_fn`]).
//!
//! [`check_loss`] compares all three, pair by pair; [`check_fn`] compares the
//! tape gradient of any composition of tape ops with finite differences. Both
//! return a [`GradCheckReport`]: [`GradCheckReport::passed`] for a test, and a
//! small table (its `Display`) for a person.
//!
//! ```
//! use tapeloss::gradcheck::{check_loss, GradCheckConfig};
//! use tapeloss::{MeanSquaredError, ndarray::array};
//!
//! # fn main() -> tapeloss::Result<()> {
//! let p = array![[0.3, -1.2], [2.0, 0.7]].into_dyn();
//! let t = array![[0.0, -1.0], [1.5, 1.0]].into_dyn();
//! let report = check_loss(&MeanSquaredError::new(), &p, &t, &GradCheckConfig::default())?;
//! assert!(report.passed(), "{report}");
//! println!("{report}");
//! # Ok(()) }
//! ```
//!
//! # The pass criterion
//! An element passes when `|a − n| ≤ atol + rtol·|n|`, where `n` is the
//! reference: the tape gradient when the closed form is compared with the
//! tape, the finite difference otherwise. The defaults are those of
//! `torch.autograd.gradcheck` (see [`GradCheckConfig`]). A NaN anywhere fails.
//! The report passes when every comparison compared at least one element and
//! none failed (and, for [`check_loss`], `forward` and the tape agree on the
//! value).
//!
//! `atol` is absolute: a gradient whose elements are all well below it cannot
//! fail, whatever is wrong with it. A loss with [`Reduction::Mean`] over `n`
//! elements has elements of about `1/n`, under the default `atol` of `1e-5`
//! from `n ≈ 10⁵`; check such a loss with [`Reduction::Sum`] (the same
//! gradient times `n`), or with `atol` scaled down by `n`.
//!
//! [`Reduction::Mean`]: crate::Reduction::Mean
//! [`Reduction::Sum`]: crate::Reduction::Sum
//!
//! # Kinks
//! At a kink (relu or abs at 0, a hinge at its margin, a tie of a maximum) the
//! derivative does not exist and a central difference averages the two
//! one-sided slopes, which no analytic gradient has to match. Every probe
//! also forms the one-sided differences `(f(x+h) − f(x))/h` and
//! `(f(x) − f(x−h))/h`. When they disagree beyond the tolerance, two more
//! evaluations at `x ± 2h` tell curvature from a kink: for a smooth function
//! the disagreement doubles with the step, at a kink it stays the size of the
//! jump. Elements at a kink are [skipped](GradCheckReport::skipped), never
//! failures, and are left out of **every** comparison, the closed-versus-tape
//! one included: at a tie the closed form and the tape may legitimately pick
//! different subgradients (PyTorch's `maximum` splits a tie evenly, a
//! hand-written `max` takes one side). A report with every element skipped
//! has not passed.
//!
//! # Large inputs
//! Checking element by element costs two evaluations per element, so a
//! million-element input would take two million evaluations of a
//! million-element loss. [`CheckMode::Directional`] instead checks a few
//! seeded random directions `v` (standard normal components, one per element
//! of every input), as `jax.test_util.check_grads` does: it compares
//! `(f(x+hv) − f(x−hv)) / 2h` with `⟨gradient, v⟩`, two evaluations per
//! direction. [`CheckMode::Auto`], the default, switches to it above
//! [`GradCheckConfig::AUTO_ELEMENTWISE_LIMIT`] elements. The closed form and
//! the tape are still compared element by element in that mode (it costs no
//! evaluation); an element where they disagree is probed for a kink, at most
//! [`GradCheckConfig::MAX_KINK_PROBES`] of them, the worst first.

use std::fmt;

use ndarray::{ArrayD, Dimension, IxDyn, Zip};

use crate::error::{Error, Result};
use crate::losses::validate::{self, Domain};
use crate::losses::{Loss, value_and_grad_on_tape};
use crate::tape::{Tape, Var};

/// How the gradient is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum CheckMode {
    /// [`CheckMode::Elementwise`] up to
    /// [`GradCheckConfig::AUTO_ELEMENTWISE_LIMIT`] elements in all the inputs
    /// together, [`CheckMode::Directional`] with
    /// [`GradCheckConfig::AUTO_DIRECTIONS`] directions above. The default.
    #[default]
    Auto,
    /// One central difference per element: two evaluations per element (four
    /// at a suspected kink). Finds the exact element that is wrong.
    Elementwise,
    /// Central differences along `directions` seeded random directions: two
    /// evaluations per direction (four at a suspected kink), whatever the
    /// input size. Finds that the gradient is wrong, not where.
    Directional {
        /// How many directions, from 1 to
        /// [`GradCheckConfig::MAX_DIRECTIONS`].
        directions: usize,
    },
}

/// Step and tolerances of a gradient check.
///
/// The defaults follow `torch.autograd.gradcheck`: step `eps = 1e-6`,
/// `atol = 1e-5`, `rtol = 1e-3`; an element passes when
/// `|a − n| ≤ atol + rtol·|n|`. They suit `f64` functions whose values and
/// gradients are of order one. Set the fields directly or chain the `with_`
/// methods.
///
/// ```
/// use tapeloss::gradcheck::{CheckMode, GradCheckConfig};
///
/// let default = GradCheckConfig::default();
/// assert_eq!((default.eps, default.atol, default.rtol), (1e-6, 1e-5, 1e-3));
///
/// // Tighter, and three random directions whatever the size.
/// let strict = GradCheckConfig::directional(3).with_atol(1e-8).with_rtol(1e-6);
/// assert_eq!(strict.mode, CheckMode::Directional { directions: 3 });
///
/// let mut custom = GradCheckConfig::default();
/// custom.eps = 1e-5;
/// assert_eq!(custom.with_seed(7).seed, 7);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct GradCheckConfig {
    /// The finite-difference step `h`, added to one element (elementwise
    /// mode) or along a direction (directional mode). A finite number > 0.
    /// Default `1e-6`.
    pub eps: f64,
    /// Absolute tolerance, ≥ 0. Default `1e-5`.
    pub atol: f64,
    /// Relative tolerance, ≥ 0, applied to the reference value. Default `1e-3`.
    pub rtol: f64,
    /// Elementwise, directional, or chosen by size. Default [`CheckMode::Auto`].
    pub mode: CheckMode,
    /// Seed of the random directions of the directional mode, so a check is
    /// reproducible. Default `0x5EED`.
    pub seed: u64,
}

impl Default for GradCheckConfig {
    fn default() -> Self {
        GradCheckConfig {
            eps: 1e-6,
            atol: 1e-5,
            rtol: 1e-3,
            mode: CheckMode::Auto,
            seed: 0x5EED,
        }
    }
}

impl GradCheckConfig {
    /// Above this many elements (all inputs together), [`CheckMode::Auto`]
    /// checks directions instead of elements. At 4096 elements an elementwise
    /// check of a pointwise loss does about 8192 evaluations of a
    /// 4096-element loss, a few tens of milliseconds.
    pub const AUTO_ELEMENTWISE_LIMIT: usize = 4096;

    /// The number of directions [`CheckMode::Auto`] checks above
    /// [`GradCheckConfig::AUTO_ELEMENTWISE_LIMIT`].
    pub const AUTO_DIRECTIONS: usize = 3;

    /// In directional mode, at most this many elements where the closed form
    /// and the tape disagree are probed for a kink (the worst first, stopping
    /// at the first one that is not a kink). Disagreements left unprobed count
    /// as failures.
    pub const MAX_KINK_PROBES: usize = 16;

    /// The most directions [`CheckMode::Directional`] takes: each costs two
    /// evaluations of the function, so a count beyond this is a mistake (an
    /// elementwise check costs two per element and is exact).
    ///
    /// ```
    /// use tapeloss::gradcheck::{GradCheckConfig, check_fn};
    /// use tapeloss::{Error, ndarray::array};
    /// let x = array![1.0, 2.0].into_dyn();
    /// let too_many = GradCheckConfig::directional(GradCheckConfig::MAX_DIRECTIONS + 1);
    /// let result = check_fn(|_, v| v[0].square()?.sum(), &[x], &too_many);
    /// assert!(matches!(result, Err(Error::InvalidParameter { .. })));
    /// ```
    pub const MAX_DIRECTIONS: usize = 1 << 16;

    /// The defaults, element by element whatever the size.
    ///
    /// ```
    /// use tapeloss::gradcheck::{CheckMode, GradCheckConfig};
    /// assert_eq!(GradCheckConfig::elementwise().mode, CheckMode::Elementwise);
    /// ```
    pub fn elementwise() -> Self {
        Self::default().with_mode(CheckMode::Elementwise)
    }

    /// The defaults, along `directions` seeded random directions whatever the
    /// size (from 1 to [`GradCheckConfig::MAX_DIRECTIONS`], checked when the
    /// check runs).
    ///
    /// ```
    /// use tapeloss::gradcheck::{CheckMode, GradCheckConfig};
    /// assert_eq!(GradCheckConfig::directional(2).mode, CheckMode::Directional { directions: 2 });
    /// ```
    pub fn directional(directions: usize) -> Self {
        Self::default().with_mode(CheckMode::Directional { directions })
    }

    /// The same configuration with step `eps`.
    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    /// The same configuration with absolute tolerance `atol`.
    pub fn with_atol(mut self, atol: f64) -> Self {
        self.atol = atol;
        self
    }

    /// The same configuration with relative tolerance `rtol`.
    pub fn with_rtol(mut self, rtol: f64) -> Self {
        self.rtol = rtol;
        self
    }

    /// The same configuration with another [`CheckMode`].
    pub fn with_mode(mut self, mode: CheckMode) -> Self {
        self.mode = mode;
        self
    }

    /// The same configuration with another seed for the random directions.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    fn validate(&self) -> Result<()> {
        validate::parameter("GradCheckConfig::eps", self.eps, Domain::Positive)?;
        validate::parameter("GradCheckConfig::atol", self.atol, Domain::NonNegative)?;
        validate::parameter("GradCheckConfig::rtol", self.rtol, Domain::NonNegative)?;
        if let CheckMode::Directional { directions } = self.mode
            && !(1..=Self::MAX_DIRECTIONS).contains(&directions)
        {
            return Err(Error::InvalidParameter {
                name: "GradCheckConfig::mode directions".into(),
                value: directions as f64,
                expected: "a count from 1 to GradCheckConfig::MAX_DIRECTIONS (65536)",
            });
        }
        Ok(())
    }

    /// The mode actually used for `elements` elements.
    fn resolve(&self, elements: usize) -> CheckMode {
        match self.mode {
            CheckMode::Auto if elements > Self::AUTO_ELEMENTWISE_LIMIT => CheckMode::Directional {
                directions: Self::AUTO_DIRECTIONS,
            },
            CheckMode::Auto => CheckMode::Elementwise,
            other => other,
        }
    }

    /// `atol + rtol·|reference|`.
    fn tolerance(&self, reference: f64) -> f64 {
        self.atol + self.rtol * reference.abs()
    }
}

/// Two derivations of the gradient compared with each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pair {
    /// [`Loss::backward`] against the tape; the tape is the reference `n`.
    ClosedVsTape,
    /// [`Loss::backward`] against finite differences, the reference.
    ClosedVsFiniteDifferences,
    /// The tape against finite differences, the reference.
    TapeVsFiniteDifferences,
}

impl Pair {
    /// `(a, n)`, the compared value and the reference, when the sample has both.
    fn operands(self, s: &Sample) -> Option<(f64, f64)> {
        match self {
            Pair::ClosedVsTape => Some((s.closed?, s.tape?)),
            Pair::ClosedVsFiniteDifferences => Some((s.closed?, s.finite_difference?)),
            Pair::TapeVsFiniteDifferences => Some((s.tape?, s.finite_difference?)),
        }
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Pair::ClosedVsTape => "closed vs tape",
            Pair::ClosedVsFiniteDifferences => "closed vs finite diff",
            Pair::TapeVsFiniteDifferences => "tape vs finite diff",
        })
    }
}

/// What one comparison looked at: an element or a random direction.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Probe {
    /// One element. `input` is `None` for [`check_loss`] (the predictions)
    /// and the input's position in the slice for [`check_fn`]. Displayed as
    /// `[1, 2]`, or `x0[1, 2]` for input 0 of [`check_fn`].
    Element {
        /// Which input of [`check_fn`]; `None` for the predictions.
        input: Option<usize>,
        /// The element's index in that input.
        index: Vec<usize>,
    },
    /// The `k`-th random direction of the directional mode, displayed as
    /// `direction k`.
    Direction(usize),
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match self {
            Probe::Element { input: None, index } => format!("{index:?}"),
            Probe::Element { input: Some(k), index } => format!("x{k}{index:?}"),
            Probe::Direction(k) => format!("direction {k}"),
        };
        f.pad(&text)
    }
}

/// The derivations' values at one probe. For a direction `v` the analytic
/// values are `⟨gradient, v⟩` and the finite difference is taken along `v`.
/// A derivation that is not part of the check (the closed form in
/// [`check_fn`]) or was not evaluated there is `None`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Sample {
    /// Where.
    pub at: Probe,
    /// From [`Loss::backward`].
    pub closed: Option<f64>,
    /// From the tape.
    pub tape: Option<f64>,
    /// The central finite difference.
    pub finite_difference: Option<f64>,
}

/// One [`Pair`] compared over every probe that was not skipped.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Comparison {
    /// Which derivations.
    pub pair: Pair,
    /// How many probes (elements or directions) were compared.
    pub compared: usize,
    /// How many of them failed `|a − n| ≤ atol + rtol·|n|`.
    pub failed: usize,
    /// The largest `|a − n|` (NaN if any was NaN).
    pub max_abs_error: f64,
    /// The largest `|a − n| / |n|` (infinite where `n = 0 ≠ a`).
    pub max_rel_error: f64,
    /// The probe furthest outside its tolerance, i.e. with the largest
    /// `|a − n| / (atol + rtol·|n|)`, with all its values; `None` when nothing
    /// was compared.
    pub worst: Option<Sample>,
}

impl Comparison {
    /// Whether something was compared and nothing failed.
    pub fn passed(&self) -> bool {
        self.compared > 0 && self.failed == 0
    }
}

/// A probe left out of every comparison because the function has a kink
/// there: its one-sided differences disagree beyond the tolerance, and not
/// as curvature would make them.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Skipped {
    /// Where, with the analytic values and the central difference there.
    pub sample: Sample,
    /// `(f(x+h) − f(x)) / h`.
    pub forward_difference: f64,
    /// `(f(x) − f(x−h)) / h`.
    pub backward_difference: f64,
}

/// The loss value by [`Loss::forward`] and by the tape, for [`check_loss`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ValueCheck {
    /// [`Loss::forward`].
    pub forward: f64,
    /// The value recorded by [`Loss::record`].
    pub tape: f64,
    /// Whether `|forward − tape| ≤ atol + rtol·|tape|`.
    pub passed: bool,
}

/// The outcome of [`check_loss`] or [`check_fn`].
///
/// `Display` prints a small table: one row per [`Pair`] with the number of
/// probes compared and failed, the largest absolute and relative errors, and
/// the worst probe with its values; then the skipped (kink) probes.
///
/// ```
/// use tapeloss::gradcheck::{check_fn, GradCheckConfig, Pair};
/// use tapeloss::ndarray::array;
///
/// # fn main() -> tapeloss::Result<()> {
/// let x = array![-1.0, 0.0, 2.0].into_dyn();
/// let report = check_fn(|_, v| v[0].abs()?.sum(), &[x], &GradCheckConfig::default())?;
/// assert!(report.passed(), "{report}");
/// assert_eq!(report.skipped().len(), 1); // |x| at 0 is a kink
/// let row = report.comparison(Pair::TapeVsFiniteDifferences).unwrap();
/// assert_eq!((row.compared, row.failed), (2, 0));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GradCheckReport {
    config: GradCheckConfig,
    mode: CheckMode,
    elements: usize,
    evaluations: usize,
    value: Option<ValueCheck>,
    comparisons: Vec<Comparison>,
    skipped: Vec<Skipped>,
    unprobed: usize,
}

impl GradCheckReport {
    /// Whether the gradient is right: every comparison compared at least one
    /// probe and none failed, and (for [`check_loss`]) `forward` and the tape
    /// agree on the value. Skipped probes are not failures, but a report
    /// with every probe skipped has not passed.
    pub fn passed(&self) -> bool {
        self.value.is_none_or(|v| v.passed)
            && !self.comparisons.is_empty()
            && self.comparisons.iter().all(Comparison::passed)
    }

    /// The mode used: [`CheckMode::Auto`] resolved by the input size.
    pub fn mode(&self) -> CheckMode {
        self.mode
    }

    /// The configuration the check ran with.
    pub fn config(&self) -> &GradCheckConfig {
        &self.config
    }

    /// The number of elements in all the inputs.
    pub fn elements(&self) -> usize {
        self.elements
    }

    /// How many times the function (or [`Loss::forward`]) was evaluated.
    pub fn evaluations(&self) -> usize {
        self.evaluations
    }

    /// The value check of [`check_loss`]; `None` for [`check_fn`].
    pub fn value(&self) -> Option<&ValueCheck> {
        self.value.as_ref()
    }

    /// One entry per [`Pair`] that applies: three for [`check_loss`], one for
    /// [`check_fn`].
    pub fn comparisons(&self) -> &[Comparison] {
        &self.comparisons
    }

    /// The comparison of `pair`, if it is part of this check.
    pub fn comparison(&self, pair: Pair) -> Option<&Comparison> {
        self.comparisons.iter().find(|c| c.pair == pair)
    }

    /// The probes at a kink, left out of every comparison.
    pub fn skipped(&self) -> &[Skipped] {
        &self.skipped
    }

    /// The number of failed probes over all comparisons.
    pub fn failures(&self) -> usize {
        self.comparisons.iter().map(|c| c.failed).sum()
    }
}

impl GradCheckReport {
    /// Which derivation is the odd one out, when the rows say so.
    fn diagnosis(&self) -> Option<&'static str> {
        let fails = |pair| self.comparison(pair).map(|c| c.failed > 0);
        match (
            fails(Pair::ClosedVsTape),
            fails(Pair::ClosedVsFiniteDifferences),
            fails(Pair::TapeVsFiniteDifferences),
        ) {
            (Some(true), Some(true), Some(false)) => {
                Some("the tape agrees with finite differences: the closed form (backward) is wrong")
            }
            (Some(true), Some(false), Some(true)) => {
                Some("the closed form agrees with finite differences: the tape composition (record) is wrong")
            }
            (Some(false), Some(true), Some(true)) => Some(
                "backward and record agree with each other but not with finite differences of forward: \
                 check forward, or the step eps",
            ),
            _ => None,
        }
    }
}

/// How many skipped probes `Display` lists before summarising.
const SHOWN_SKIPPED: usize = 8;

impl fmt::Display for GradCheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let failing: Vec<String> = self
            .comparisons
            .iter()
            .filter(|c| c.failed > 0)
            .map(|c| c.pair.to_string())
            .collect();
        let verdict = if self.passed() {
            "PASSED".to_string()
        } else if !failing.is_empty() {
            format!("FAILED ({})", failing.join(", "))
        } else if self.value.is_some_and(|v| !v.passed) {
            "FAILED (the values differ)".to_string()
        } else {
            "NOT PASSED (nothing compared: every probe was skipped)".to_string()
        };
        let how = match self.mode {
            CheckMode::Directional { directions } => format!(
                "{directions} random direction(s), seed {:#x}, over {} element(s)",
                self.config.seed, self.elements
            ),
            _ => format!("element by element, {} element(s)", self.elements),
        };
        writeln!(
            f,
            "gradient check {verdict}: {how}, {} evaluation(s); eps {:e}, atol {:e}, rtol {:e}",
            self.evaluations, self.config.eps, self.config.atol, self.config.rtol
        )?;
        if let Some(v) = &self.value {
            writeln!(
                f,
                "  value: forward {:.12e}, tape {:.12e}{}",
                v.forward,
                v.tape,
                if v.passed { "" } else { "  <- they differ" }
            )?;
        }
        let dash = |v: Option<f64>| v.map_or_else(|| "—".to_string(), |v| format!("{v:.6e}"));
        let at_width = self
            .comparisons
            .iter()
            .filter_map(|c| c.worst.as_ref().map(|w| w.at.to_string().chars().count()))
            .max()
            .unwrap_or(0)
            .max(8);
        writeln!(
            f,
            "  {:<21}  {:>8}  {:>7}  {:>11}  {:>11}  {:<at_width$}  {:>14}  {:>14}  {:>14}",
            "derivations",
            "compared",
            "failed",
            "max abs err",
            "max rel err",
            "worst at",
            "closed",
            "tape",
            "finite diff"
        )?;
        for c in &self.comparisons {
            let (at, closed, tape, fd) = match &c.worst {
                Some(w) => (
                    w.at.to_string(),
                    dash(w.closed),
                    dash(w.tape),
                    dash(w.finite_difference),
                ),
                None => ("—".to_string(), "—".to_string(), "—".to_string(), "—".to_string()),
            };
            writeln!(
                f,
                "  {:<21}  {:>8}  {:>7}  {:>11.3e}  {:>11.3e}  {:<at_width$}  {:>14}  {:>14}  {:>14}",
                c.pair, c.compared, c.failed, c.max_abs_error, c.max_rel_error, at, closed, tape, fd
            )?;
        }
        if let Some(blame) = self.diagnosis() {
            writeln!(f, "  → {blame}")?;
        }
        if self.unprobed > 0 {
            writeln!(
                f,
                "  {} disagreement(s) of closed and tape were not probed for a kink and count as failures",
                self.unprobed
            )?;
        }
        if self.skipped.is_empty() {
            return writeln!(f, "  skipped: none");
        }
        writeln!(
            f,
            "  skipped {} probe(s) at a kink (one-sided differences disagree; left out of every comparison):",
            self.skipped.len()
        )?;
        for s in self.skipped.iter().take(SHOWN_SKIPPED) {
            writeln!(
                f,
                "    {:<at_width$}  one-sided {:+.6e} / {:+.6e}  closed {}  tape {}",
                s.sample.at,
                s.forward_difference,
                s.backward_difference,
                dash(s.sample.closed),
                dash(s.sample.tape)
            )?;
        }
        if self.skipped.len() > SHOWN_SKIPPED {
            writeln!(f, "    … and {} more", self.skipped.len() - SHOWN_SKIPPED)?;
        }
        Ok(())
    }
}

/// Checks a loss's gradient three ways: the closed-form [`Loss::backward`],
/// the tape gradient of [`Loss::record`] and central finite differences of
/// [`Loss::forward`], each pair compared, at `predictions` (the `targets` stay
/// fixed). Also checks that `forward` and the tape give the same value.
///
/// A loss that implements only `record` gets `backward` from the tape, so its
/// closed-versus-tape row is trivially exact and the finite differences are
/// the real check.
///
/// ```
/// use tapeloss::gradcheck::{check_loss, GradCheckConfig};
/// use tapeloss::{Loss, MeanSquaredError, Reduction, ndarray::array};
///
/// # fn main() -> tapeloss::Result<()> {
/// let p = array![1.5, 2.3, 0.8].into_dyn();
/// let t = array![1.0, 2.0, 1.0].into_dyn();
/// let loss = MeanSquaredError::new().with_reduction(Reduction::Sum);
/// let report = check_loss(&loss, &p, &t, &GradCheckConfig::default())?;
/// assert!(report.passed(), "{report}");
/// assert_eq!(report.evaluations(), 1 + 2 * 3);
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for a bad `config`; whatever the loss returns
/// (at the given point or at a perturbed one, for example a probability
/// pushed out of `[0, 1]`); [`Error::ShapeMismatch`] when `backward` or the
/// tape returns a gradient whose shape is not the predictions'.
pub fn check_loss<L: Loss<f64> + ?Sized>(
    loss: &L,
    predictions: &ArrayD<f64>,
    targets: &ArrayD<f64>,
    config: &GradCheckConfig,
) -> Result<GradCheckReport> {
    config.validate()?;
    let value = loss.forward(predictions, targets)?;
    let closed = loss.backward(predictions, targets)?;
    expect_shape("backward", &closed, predictions.shape())?;
    let (tape_value, tape) = value_and_grad_on_tape(loss, predictions, targets)?;
    expect_shape("the tape (record)", &tape, predictions.shape())?;
    let value = ValueCheck {
        forward: value,
        tape: tape_value,
        passed: (value - tape_value).abs() <= config.tolerance(tape_value),
    };
    let eval = |xs: &[ArrayD<f64>]| match xs {
        [x] => loss.forward(x, targets),
        _ => Err(Error::InvalidShape {
            op: "check_loss",
            arg: "predictions",
            shape: vec![xs.len()],
            expected: "exactly one array of predictions".to_string(),
        }),
    };
    let mut engine = Engine {
        config,
        eval,
        evaluations: 1, // the `forward` above, reused as f(x)
        xs: vec![predictions.clone()],
        numbered: false,
    };
    let mut report = engine.run(value.forward, Some(vec![closed]), vec![tape])?;
    report.value = Some(value);
    Ok(report)
}

/// Checks the tape gradient of any composition of tape ops against central
/// finite differences, for each of several inputs.
///
/// `f` receives a tape and one value per input and returns a one-element
/// value. For the gradient it runs once with the inputs as tracked
/// [`Tape::var`]s; for the finite differences it is re-run on fresh tapes with
/// the (perturbed) inputs as [`Tape::constant`]s.
///
/// ```
/// use tapeloss::gradcheck::{check_fn, GradCheckConfig};
/// use tapeloss::{Tape, Var, ndarray::array};
///
/// fn f<'t>(_tape: &'t Tape<f64>, v: &[Var<'t, f64>]) -> tapeloss::Result<Var<'t, f64>> {
///     v[0].mul(v[1])?.sum()
/// }
///
/// # fn main() -> tapeloss::Result<()> {
/// let a = array![[1.0, 2.0], [3.0, 4.0]].into_dyn();
/// let b = array![[0.5, -1.0], [2.0, 0.0]].into_dyn();
/// let report = check_fn(f, &[a, b], &GradCheckConfig::default())?;
/// assert!(report.passed(), "{report}");
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::InvalidParameter`] for a bad `config`; [`Error::Empty`] when
/// `inputs` is empty; whatever `f` returns; [`Error::NotScalar`] when `f`
/// returns a value with more or fewer than one element.
pub fn check_fn<G>(f: G, inputs: &[ArrayD<f64>], config: &GradCheckConfig) -> Result<GradCheckReport>
where
    G: for<'t> Fn(&'t Tape<f64>, &[Var<'t, f64>]) -> Result<Var<'t, f64>>,
{
    config.validate()?;
    if inputs.is_empty() {
        return Err(Error::Empty {
            op: "check_fn",
            arg: "inputs",
            shape: vec![0],
        });
    }
    let tape_grads = {
        let tape = Tape::new();
        let vars: Vec<Var<'_, f64>> = inputs.iter().map(|x| tape.var(x.clone())).collect();
        let out = f(&tape, &vars)?;
        let mut grads = tape.backward(out)?;
        let mut taken = Vec::with_capacity(inputs.len());
        for (var, x) in vars.iter().zip(inputs) {
            let g = grads.take(*var).unwrap_or_else(|| ArrayD::zeros(x.raw_dim()));
            expect_shape("the tape", &g, x.shape())?;
            taken.push(g);
        }
        taken
    };
    let eval = |xs: &[ArrayD<f64>]| {
        let tape = Tape::new();
        let vars: Vec<Var<'_, f64>> = xs.iter().map(|x| tape.constant(x.clone())).collect();
        f(&tape, &vars)?.item()
    };
    let mut engine = Engine {
        config,
        eval,
        evaluations: 0,
        xs: inputs.to_vec(),
        numbered: true,
    };
    let f0 = engine.eval_here()?;
    engine.run(f0, None, tape_grads)
}

/// Fails with [`Error::ShapeMismatch`] unless a gradient has its input's shape.
fn expect_shape(source: &str, grad: &ArrayD<f64>, input: &[usize]) -> Result<()> {
    if grad.shape() == input {
        Ok(())
    } else {
        Err(Error::shape_mismatch_because(
            "gradcheck",
            grad.shape(),
            input,
            format!("the gradient from {source} must have its input's shape"),
        ))
    }
}

/// The central and one-sided differences at one probe.
struct Differences {
    central: f64,
    forward: f64,
    backward: f64,
    kink: bool,
}

/// Differences along a line through the point, `step(s)` evaluating the
/// function at offset `s` and returning the offset actually taken (rounding
/// makes `(x + s) − x` differ from `s`) with the value.
///
/// The one-sided differences disagree by about `h·f''` on a smooth function
/// and by the jump `J` in slope at a kink. Only when they disagree beyond the
/// tolerance are the offsets `±2h` evaluated: there a smooth function's
/// disagreement doubles while a kink's stays `J`, so
/// `|disagreement(2h) − 2·disagreement(h)|` measures the jump alone.
fn differences(
    config: &GradCheckConfig,
    f0: f64,
    mut step: impl FnMut(f64) -> Result<(f64, f64)>,
) -> Result<Differences> {
    let h = config.eps;
    let (up, f_up) = step(h)?;
    let (down, f_down) = step(-h)?;
    let central = (f_up - f_down) / (up - down);
    let forward = (f_up - f0) / up;
    let backward = (f0 - f_down) / -down;
    let tolerance = config.tolerance(central);
    let mut kink = false;
    if !within((forward - backward).abs(), tolerance) {
        let (up2, f_up2) = step(2.0 * h)?;
        let (down2, f_down2) = step(-2.0 * h)?;
        let spread2 = (f_up2 - f0) / up2 - (f0 - f_down2) / -down2;
        let ratio = (up2 - down2) / (up - down);
        kink = (spread2 - ratio * (forward - backward)).abs() > tolerance;
    }
    Ok(Differences {
        central,
        forward,
        backward,
        kink,
    })
}

/// `err ≤ tolerance`; false when either is NaN, so a NaN always fails.
fn within(err: f64, tolerance: f64) -> bool {
    err <= tolerance
}

/// One comparison being accumulated.
struct Row {
    pair: Pair,
    compared: usize,
    failed: usize,
    max_abs: f64,
    max_rel: f64,
    worst: Option<(f64, Sample)>,
}

/// `a` if it is larger or NaN: maxima must not hide a NaN.
fn max_nan(m: f64, a: f64) -> f64 {
    if a > m || a.is_nan() || m.is_nan() {
        if m.is_nan() { m } else { a }
    } else {
        m
    }
}

impl Row {
    fn new(pair: Pair) -> Self {
        Row {
            pair,
            compared: 0,
            failed: 0,
            max_abs: 0.0,
            max_rel: 0.0,
            worst: None,
        }
    }

    /// Compares `a` with the reference `n`; `sample` is built only when this
    /// probe is the worst so far.
    fn add(&mut self, config: &GradCheckConfig, a: f64, n: f64, sample: impl FnOnce() -> Sample) {
        let err = (a - n).abs();
        let tolerance = config.tolerance(n);
        let fails = !within(err, tolerance);
        let excess = match (fails, tolerance > 0.0) {
            (false, true) => err / tolerance,
            (false, false) => 0.0,
            (true, _) => {
                let r = err / tolerance;
                if r.is_nan() || r <= 1.0 { f64::INFINITY } else { r }
            }
        };
        let rel = if n == 0.0 {
            if err == 0.0 { 0.0 } else { f64::INFINITY }
        } else {
            err / n.abs()
        };
        self.compared += 1;
        self.failed += usize::from(fails);
        self.max_abs = max_nan(self.max_abs, err);
        self.max_rel = max_nan(self.max_rel, rel);
        if self.worst.as_ref().is_none_or(|(w, _)| excess > *w) {
            self.worst = Some((excess, sample()));
        }
    }

    /// Adds a sample that has both of this pair's values.
    fn add_sample(&mut self, config: &GradCheckConfig, s: &Sample) {
        if let Some((a, n)) = self.pair.operands(s) {
            self.add(config, a, n, || s.clone());
        }
    }

    fn finish(self) -> Comparison {
        Comparison {
            pair: self.pair,
            compared: self.compared,
            failed: self.failed,
            max_abs_error: self.max_abs,
            max_rel_error: self.max_rel,
            worst: self.worst.map(|(_, s)| s),
        }
    }
}

/// The rows of a check, with or without a closed form.
fn rows(closed: bool) -> Vec<Row> {
    let pairs: &[Pair] = if closed {
        &[
            Pair::ClosedVsTape,
            Pair::ClosedVsFiniteDifferences,
            Pair::TapeVsFiniteDifferences,
        ]
    } else {
        &[Pair::TapeVsFiniteDifferences]
    };
    pairs.iter().map(|&p| Row::new(p)).collect()
}

/// The inputs and the function evaluated on them.
struct Engine<'c, E> {
    config: &'c GradCheckConfig,
    eval: E,
    evaluations: usize,
    /// Working copies of the inputs, perturbed in place one element at a time.
    xs: Vec<ArrayD<f64>>,
    /// Whether probes name their input (several inputs, [`check_fn`]).
    numbered: bool,
}

impl<E: FnMut(&[ArrayD<f64>]) -> Result<f64>> Engine<'_, E> {
    fn eval_here(&mut self) -> Result<f64> {
        self.evaluations += 1;
        (self.eval)(&self.xs)
    }

    fn element(&self, input: usize, index: Vec<usize>) -> Probe {
        Probe::Element {
            input: self.numbered.then_some(input),
            index,
        }
    }

    /// The function with element `index` of input `k` set to `value`; the
    /// element is restored afterwards, also when the function fails.
    fn eval_with(&mut self, k: usize, index: &[usize], value: f64) -> Result<f64> {
        let old = std::mem::replace(slot(&mut self.xs[k], index)?, value);
        self.evaluations += 1;
        let out = (self.eval)(&self.xs);
        *slot(&mut self.xs[k], index)? = old;
        out
    }

    /// Finite differences along one element.
    fn probe_element(&mut self, f0: f64, k: usize, index: &[usize]) -> Result<Differences> {
        let x = *slot(&mut self.xs[k], index)?;
        let config = self.config;
        differences(config, f0, |s| {
            let moved = x + s;
            Ok((moved - x, self.eval_with(k, index, moved)?))
        })
    }

    /// Runs the check at `f0 = f(x)` with the analytic gradients of every
    /// input (`closed` only for a loss).
    fn run(&mut self, f0: f64, closed: Option<Vec<ArrayD<f64>>>, tape: Vec<ArrayD<f64>>) -> Result<GradCheckReport> {
        let elements = self.xs.iter().map(ArrayD::len).sum();
        let mode = self.config.resolve(elements);
        let (comparisons, skipped, unprobed) = match mode {
            // No element, no direction to move along: nothing is compared,
            // and the report does not pass, as in elementwise mode.
            CheckMode::Directional { directions } => {
                let directions = if elements == 0 { 0 } else { directions };
                self.directional(f0, directions, closed.as_deref(), &tape)?
            }
            _ => self.elementwise(f0, closed.as_deref(), &tape)?,
        };
        Ok(GradCheckReport {
            config: self.config.clone(),
            mode,
            elements,
            evaluations: self.evaluations,
            value: None,
            comparisons,
            skipped,
            unprobed,
        })
    }

    /// Every element of every input, each pair compared where not a kink.
    fn elementwise(
        &mut self,
        f0: f64,
        closed: Option<&[ArrayD<f64>]>,
        tape: &[ArrayD<f64>],
    ) -> Result<(Vec<Comparison>, Vec<Skipped>, usize)> {
        let mut rows = rows(closed.is_some());
        let mut skipped = Vec::new();
        for (k, g) in tape.iter().enumerate() {
            for (index, &t) in g.indexed_iter() {
                let index = index.slice().to_vec();
                let c = match closed.and_then(|c| c.get(k)) {
                    Some(c) => Some(*c.get(IxDyn(&index)).ok_or_else(|| out_of_range(c, &index))?),
                    None => None,
                };
                let d = self.probe_element(f0, k, &index)?;
                let sample = Sample {
                    at: self.element(k, index),
                    closed: c,
                    tape: Some(t),
                    finite_difference: Some(d.central),
                };
                if d.kink {
                    skipped.push(Skipped {
                        sample,
                        forward_difference: d.forward,
                        backward_difference: d.backward,
                    });
                } else {
                    for row in &mut rows {
                        row.add_sample(self.config, &sample);
                    }
                }
            }
        }
        Ok((rows.into_iter().map(Row::finish).collect(), skipped, 0))
    }

    /// A few random directions through all inputs at once; the closed form
    /// and the tape are also compared element by element.
    fn directional(
        &mut self,
        f0: f64,
        directions: usize,
        closed: Option<&[ArrayD<f64>]>,
        tape: &[ArrayD<f64>],
    ) -> Result<(Vec<Comparison>, Vec<Skipped>, usize)> {
        let config = self.config;
        let mut rows = rows(closed.is_some());
        let mut skipped = Vec::new();
        let mut rng = SplitMix64::new(config.seed);
        for k in 0..directions {
            let v: Vec<ArrayD<f64>> = self
                .xs
                .iter()
                .map(|x| ArrayD::from_shape_simple_fn(x.raw_dim(), || rng.normal()))
                .collect();
            let dot = |grads: &[ArrayD<f64>]| -> f64 {
                grads
                    .iter()
                    .zip(&v)
                    .map(|(g, v)| Zip::from(g).and(v).fold(0.0, |acc, &g, &v| acc + g * v))
                    .sum()
            };
            let (tape_dot, closed_dot) = (dot(tape), closed.map(dot));
            let d = {
                let (xs, eval, evaluations) = (&self.xs, &mut self.eval, &mut self.evaluations);
                differences(config, f0, |s| {
                    let moved: Vec<ArrayD<f64>> = xs
                        .iter()
                        .zip(&v)
                        .map(|(x, v)| Zip::from(x).and(v).map_collect(|&x, &v| x + s * v))
                        .collect();
                    *evaluations += 1;
                    Ok((s, eval(&moved)?))
                })?
            };
            let sample = Sample {
                at: Probe::Direction(k),
                closed: closed_dot,
                tape: Some(tape_dot),
                finite_difference: Some(d.central),
            };
            if d.kink {
                skipped.push(Skipped {
                    sample,
                    forward_difference: d.forward,
                    backward_difference: d.backward,
                });
            } else {
                for row in rows.iter_mut().filter(|r| r.pair != Pair::ClosedVsTape) {
                    row.add_sample(config, &sample);
                }
            }
        }
        let mut unprobed = 0;
        if let Some(closed) = closed {
            let (row, found, left) = self.closed_vs_tape_elementwise(f0, closed, tape)?;
            unprobed = left;
            skipped.splice(0..0, found);
            if let Some(slot) = rows.iter_mut().find(|r| r.pair == Pair::ClosedVsTape) {
                *slot = row;
            }
        }
        Ok((rows.into_iter().map(Row::finish).collect(), skipped, unprobed))
    }

    /// Closed form against tape at every element; disagreements are probed
    /// for a kink, the worst first, until one is a genuine failure or
    /// [`GradCheckConfig::MAX_KINK_PROBES`] were probed. Returns the row, the
    /// kinks found and how many disagreements went unprobed.
    fn closed_vs_tape_elementwise(
        &mut self,
        f0: f64,
        closed: &[ArrayD<f64>],
        tape: &[ArrayD<f64>],
    ) -> Result<(Row, Vec<Skipped>, usize)> {
        let config = self.config;
        // (excess over tolerance, input, flat position) of each disagreement.
        let mut suspects: Vec<(f64, usize, usize)> = Vec::new();
        for (k, (c, t)) in closed.iter().zip(tape).enumerate() {
            for (pos, (&c, &t)) in c.iter().zip(t).enumerate() {
                let err = (c - t).abs();
                let tolerance = config.tolerance(t);
                if !within(err, tolerance) {
                    let excess = err / tolerance;
                    suspects.push((if excess.is_nan() { f64::INFINITY } else { excess }, k, pos));
                }
            }
        }
        let by_excess = |a: &(f64, usize, usize), b: &(f64, usize, usize)| b.0.total_cmp(&a.0);
        let top = suspects.len().min(GradCheckConfig::MAX_KINK_PROBES);
        if top > 0 && top < suspects.len() {
            suspects.select_nth_unstable_by(top - 1, by_excess);
        }
        suspects[..top].sort_by(by_excess);

        let mut kinks: Vec<(usize, usize)> = Vec::new();
        let mut found = Vec::new();
        let mut probed_fd: Vec<(usize, usize, f64)> = Vec::new();
        for &(_, k, pos) in &suspects[..top] {
            let index = unravel(tape[k].shape(), pos);
            let d = self.probe_element(f0, k, &index)?;
            if !d.kink {
                probed_fd.push((k, pos, d.central));
                break; // a genuine failure: the check has failed
            }
            kinks.push((k, pos));
            found.push(Skipped {
                sample: Sample {
                    at: self.element(k, index),
                    closed: closed[k].iter().nth(pos).copied(),
                    tape: tape[k].iter().nth(pos).copied(),
                    finite_difference: Some(d.central),
                },
                forward_difference: d.forward,
                backward_difference: d.backward,
            });
        }
        let unprobed = suspects.len() - kinks.len() - probed_fd.len();

        let mut row = Row::new(Pair::ClosedVsTape);
        for (k, (c, t)) in closed.iter().zip(tape).enumerate() {
            for (pos, (&c, &t)) in c.iter().zip(t).enumerate() {
                if kinks.contains(&(k, pos)) {
                    continue;
                }
                let numbered = self.numbered;
                row.add(config, c, t, || Sample {
                    at: Probe::Element {
                        input: numbered.then_some(k),
                        index: unravel(tape[k].shape(), pos),
                    },
                    closed: Some(c),
                    tape: Some(t),
                    finite_difference: probed_fd
                        .iter()
                        .find(|&&(pk, pp, _)| (pk, pp) == (k, pos))
                        .map(|&(_, _, fd)| fd),
                });
            }
        }
        Ok((row, found, unprobed))
    }
}

/// The element at `index`, or an error naming it.
fn slot<'a>(x: &'a mut ArrayD<f64>, index: &[usize]) -> Result<&'a mut f64> {
    let shape = x.shape().to_vec();
    x.get_mut(IxDyn(index)).ok_or_else(|| Error::InvalidShape {
        op: "gradcheck",
        arg: "inputs",
        shape,
        expected: format!("an array holding index {index:?}"),
    })
}

fn out_of_range(x: &ArrayD<f64>, index: &[usize]) -> Error {
    Error::InvalidShape {
        op: "gradcheck",
        arg: "gradient",
        shape: x.shape().to_vec(),
        expected: format!("an array holding index {index:?}"),
    }
}

/// The multi-index of logical (row-major) position `pos` in `shape`.
fn unravel(shape: &[usize], mut pos: usize) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &n) in index.iter_mut().zip(shape).rev() {
        if n > 0 {
            *i = pos % n;
            pos /= n;
        }
    }
    index
}

/// SplitMix64: a tiny, seeded generator that draws the same numbers on every
/// platform. The checker draws its random directions from it; tests and
/// examples can use it for reproducible inputs without another dependency.
///
/// ```
/// use tapeloss::gradcheck::SplitMix64;
/// let mut rng = SplitMix64::new(7);
/// let x = rng.array(&[2, 3], -1.0, 1.0);
/// assert_eq!(x.shape(), &[2, 3]);
/// assert!(x.iter().all(|v| (-1.0..1.0).contains(v)));
/// assert_eq!(SplitMix64::new(7).array(&[2, 3], -1.0, 1.0), x); // same seed, same numbers
/// ```
#[derive(Debug, Clone)]
pub struct SplitMix64 {
    state: u64,
    /// The second normal of the last Box–Muller pair.
    spare_normal: Option<f64>,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 {
            state: seed,
            spare_normal: None,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.unit()
    }

    /// Uniform integer in `[0, n)` (`n > 0`; a modulo draw, whose bias is
    /// negligible for the small `n` of tests and examples).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Standard normal (Box–Muller, both of each pair used).
    pub fn normal(&mut self) -> f64 {
        if let Some(z) = self.spare_normal.take() {
            return z;
        }
        // Uniform in (0, 1], so the logarithm is finite.
        let mut open_below = || ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64;
        let (u1, u2) = (open_below(), open_below());
        let r = (-2.0 * u1.ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        self.spare_normal = Some(r * sin);
        r * cos
    }

    /// An array of the given shape, uniform in `[lo, hi)`, filled in row-major
    /// order.
    pub fn array(&mut self, shape: &[usize], lo: f64, hi: f64) -> ArrayD<f64> {
        ArrayD::from_shape_simple_fn(IxDyn(shape), || self.uniform(lo, hi))
    }

    /// Shuffles `items` in place (Fisher–Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(&[2, 3, 4], 0), vec![0, 0, 0]);
        assert_eq!(unravel(&[2, 3, 4], 4 * 3 + 2 * 4 + 1), vec![1, 2, 1]);
        assert_eq!(unravel(&[], 0), Vec::<usize>::new());
    }

    #[test]
    fn normals_have_unit_variance() {
        let mut rng = SplitMix64::new(1);
        let n = 100_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.02, "mean {mean}, var {var}");
    }

    #[test]
    fn kink_is_told_from_curvature() {
        let config = GradCheckConfig::default().with_atol(1e-9).with_rtol(1e-9);
        // |x| at 0: a jump of 2 in slope.
        let d = differences(&config, 0.0, |s: f64| Ok((s, s.abs()))).unwrap();
        assert!(d.kink);
        assert_eq!((d.forward, d.backward), (1.0, -1.0));
        // 1e4·x² at 0: the one-sided differences disagree by 2e-2, yet smooth.
        let d = differences(&config, 0.0, |s: f64| Ok((s, 1e4 * s * s))).unwrap();
        assert!((d.forward - d.backward).abs() > 1e-3);
        assert!(!d.kink);
    }

    #[test]
    fn nan_fails_and_is_never_a_kink() {
        let config = GradCheckConfig::default();
        let d = differences(&config, 0.0, |s: f64| Ok((s, if s > 0.0 { f64::NAN } else { s }))).unwrap();
        assert!(!d.kink);
        let mut row = Row::new(Pair::TapeVsFiniteDifferences);
        row.add(&config, 1.0, d.central, || Sample {
            at: Probe::Direction(0),
            closed: None,
            tape: Some(1.0),
            finite_difference: Some(d.central),
        });
        let c = row.finish();
        assert_eq!(c.failed, 1);
        assert!(c.max_abs_error.is_nan());
    }
}
