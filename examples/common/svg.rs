//! A small hand-written SVG plotter: line charts and scatter plots with axes,
//! ticks, labels and legends, panels side by side in one file. About 200
//! lines of `format!`, so the examples need no plotting dependency (and no
//! font files: the viewer renders the text).

use std::fmt::Write as _;
use std::path::Path;

/// Ten colours that stay distinguishable (the "Tableau 10" palette).
pub const PALETTE: [&str; 10] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac",
];

/// One line of a [`LineChart`].
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub dashed: bool,
    pub points: Vec<(f64, f64)>,
}

/// Lines over a shared x axis (epochs, say).
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed y limits; `None` fits the data.
    pub y_range: Option<(f64, f64)>,
    /// A logarithmic y axis (for losses that fall by decades).
    pub log_y: bool,
}

/// Points coloured by group, with a legend of the group names.
pub struct ScatterPlot {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    /// (x, y, group); the group picks the colour from [`PALETTE`].
    pub points: Vec<(f64, f64, usize)>,
    pub group_names: Vec<String>,
}

pub enum Panel {
    Lines(LineChart),
    Scatter(ScatterPlot),
}

const PANEL_W: f64 = 480.0;
const PANEL_H: f64 = 360.0;
const TITLE_H: f64 = 36.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 36.0;
const BOTTOM: f64 = 52.0;

/// Writes the panels side by side under one title.
pub fn write(path: &Path, title: &str, panels: &[Panel]) -> std::io::Result<()> {
    let widths: Vec<f64> = panels
        .iter()
        .map(|p| match p {
            Panel::Lines(c) => PANEL_W + legend_width(c.series.iter().map(|s| s.name.as_str())),
            Panel::Scatter(p) => PANEL_W + legend_width(p.group_names.iter().map(String::as_str)),
        })
        .collect();
    let (width, height) = (widths.iter().sum::<f64>(), PANEL_H + TITLE_H);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" font-family=\"Helvetica, Arial, sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-size=\"16\" font-weight=\"bold\">{}</text>\n",
        width / 2.0,
        escape(title)
    );
    let mut x0 = 0.0;
    for (panel, w) in panels.iter().zip(&widths) {
        let _ = writeln!(svg, "<g transform=\"translate({x0},{TITLE_H})\">");
        match panel {
            Panel::Lines(chart) => line_chart(&mut svg, chart),
            Panel::Scatter(plot) => scatter(&mut svg, plot),
        }
        svg += "</g>\n";
        x0 += w;
    }
    svg += "</svg>\n";
    std::fs::write(path, svg)
}

/// Maps data coordinates to pixels inside a panel's plot area.
struct Frame {
    /// Axis limits, in axis space (log10 of the value on a log axis).
    x: (f64, f64),
    y: (f64, f64),
    log_y: bool,
    x_ticks: Vec<(f64, String)>,
    y_ticks: Vec<(f64, String)>,
}

impl Frame {
    fn fit(
        xs: impl Iterator<Item = f64>,
        ys: impl Iterator<Item = f64>,
        y_fixed: Option<(f64, f64)>,
        log_y: bool,
    ) -> Frame {
        let (x_ticks, x) = nice_range(bounds(xs));
        let (y_ticks, y) = match (y_fixed, log_y) {
            (Some(r), false) => (ticks(r.0, r.1), r),
            (None, false) => nice_range(bounds(ys)),
            (r, true) => {
                let (lo, hi) = match r {
                    Some((a, b)) => (a.log10(), b.log10()),
                    None => bounds(ys.filter(|&v| v > 0.0).map(f64::log10)),
                };
                decades(lo, hi)
            }
        };
        Frame {
            x,
            y,
            log_y,
            x_ticks,
            y_ticks,
        }
    }

    fn px(&self, x: f64) -> f64 {
        LEFT + (x - self.x.0) / (self.x.1 - self.x.0) * (PANEL_W - LEFT - RIGHT)
    }

    fn py(&self, y: f64) -> f64 {
        let y = if self.log_y {
            y.max(f64::MIN_POSITIVE).log10()
        } else {
            y
        };
        let y = y.clamp(self.y.0, self.y.1);
        PANEL_H - BOTTOM - (y - self.y.0) / (self.y.1 - self.y.0) * (PANEL_H - TOP - BOTTOM)
    }

    /// Title, grid, ticks with their labels, axis labels and the frame.
    fn draw_axes(&self, svg: &mut String, title: &str, x_label: &str, y_label: &str) {
        let (l, r, t, b) = (LEFT, PANEL_W - RIGHT, TOP, PANEL_H - BOTTOM);
        let _ = writeln!(
            svg,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"14\">{}</text>",
            (l + r) / 2.0,
            t - 12.0,
            escape(title)
        );
        for (tx, text) in &self.x_ticks {
            let x = self.px(*tx);
            let _ = writeln!(
                svg,
                "<line x1=\"{x:.1}\" y1=\"{t}\" x2=\"{x:.1}\" y2=\"{b}\" stroke=\"#e6e6e6\"/>\
                 <text x=\"{x:.1}\" y=\"{}\" text-anchor=\"middle\">{text}</text>",
                b + 16.0,
            );
        }
        for (ty, text) in &self.y_ticks {
            let y = self.py(*ty);
            let _ = writeln!(
                svg,
                "<line x1=\"{l}\" y1=\"{y:.1}\" x2=\"{r}\" y2=\"{y:.1}\" stroke=\"#e6e6e6\"/>\
                 <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{text}</text>",
                l - 6.0,
                y + 4.0,
            );
        }
        let _ = writeln!(
            svg,
            "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n\
             <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
             <text transform=\"translate({},{}) rotate(-90)\" text-anchor=\"middle\">{}</text>",
            r - l,
            b - t,
            (l + r) / 2.0,
            PANEL_H - 14.0,
            escape(x_label),
            18.0,
            (t + b) / 2.0,
            escape(y_label)
        );
    }
}

fn line_chart(svg: &mut String, chart: &LineChart) {
    let all = chart.series.iter().flat_map(|s| s.points.iter().copied());
    let frame = Frame::fit(all.clone().map(|p| p.0), all.map(|p| p.1), chart.y_range, chart.log_y);
    frame.draw_axes(svg, &chart.title, &chart.x_label, &chart.y_label);
    for s in &chart.series {
        let pixels: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (frame.px(x), frame.py(y))).collect();
        let points: Vec<String> = pixels.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let dash = if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            svg,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{dash}/>",
            points.join(" "),
            s.color
        );
    }
    // The legend sits to the right of the plot area, clear of the lines.
    let lx = PANEL_W;
    for (i, s) in chart.series.iter().enumerate() {
        let y = TOP + 10.0 + 18.0 * i as f64;
        let dash = if s.dashed { " stroke-dasharray=\"6 4\"" } else { "" };
        let _ = writeln!(
            svg,
            "<line x1=\"{lx}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"{}\" stroke-width=\"2\"{dash}/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            lx + 24.0,
            s.color,
            lx + 30.0,
            y + 4.0,
            escape(&s.name)
        );
    }
}

/// Room for a legend of these names to the right of a plot.
fn legend_width<'a>(names: impl Iterator<Item = &'a str>) -> f64 {
    let longest = names.map(|n| n.chars().count()).max().unwrap_or(0);
    40.0 + 7.0 * longest as f64
}

fn scatter(svg: &mut String, plot: &ScatterPlot) {
    // One unit is as long across as up, so distances in the picture are true.
    let (x, y) = (
        bounds(plot.points.iter().map(|p| p.0)),
        bounds(plot.points.iter().map(|p| p.1)),
    );
    let (w, h) = (PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM);
    let scale = ((x.1 - x.0) / w).max((y.1 - y.0) / h) * 1.06;
    let widen = |(lo, hi): (f64, f64), pixels: f64| {
        let mid = (lo + hi) / 2.0;
        (mid - scale * pixels / 2.0, mid + scale * pixels / 2.0)
    };
    let (x, y) = (widen(x, w), widen(y, h));
    let frame = Frame {
        x,
        y,
        log_y: false,
        x_ticks: ticks(x.0, x.1),
        y_ticks: ticks(y.0, y.1),
    };
    frame.draw_axes(svg, &plot.title, &plot.x_label, &plot.y_label);
    for &(x, y, group) in &plot.points {
        let _ = writeln!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"2.5\" fill=\"{}\" fill-opacity=\"0.75\"/>",
            frame.px(x),
            frame.py(y),
            PALETTE[group % PALETTE.len()]
        );
    }
    // Legend to the right of the plot area.
    let lx = PANEL_W + 4.0;
    for (i, name) in plot.group_names.iter().enumerate() {
        let y = TOP + 10.0 + 20.0 * i as f64;
        let _ = writeln!(
            svg,
            "<circle cx=\"{lx}\" cy=\"{y}\" r=\"5\" fill=\"{}\"/><text x=\"{}\" y=\"{}\">{}</text>",
            PALETTE[i % PALETTE.len()],
            lx + 12.0,
            y + 4.0,
            escape(name)
        );
    }
}

/// (min, max) of finite values, widened when empty or flat.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    match (lo.is_finite(), lo < hi) {
        (false, _) => (0.0, 1.0),
        (true, false) => (lo - 0.5, hi + 0.5),
        (true, true) => (lo, hi),
    }
}

/// A step of 1, 2 or 5 times a power of ten giving about five ticks.
fn step(lo: f64, hi: f64) -> f64 {
    let raw = (hi - lo) / 5.0;
    let power = 10f64.powf(raw.log10().floor());
    let mantissa = raw / power;
    power
        * [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .find(|&m| m >= mantissa)
            .unwrap_or(10.0)
}

/// The ticks inside [lo, hi], labelled with as many decimals as their
/// spacing needs.
fn ticks(lo: f64, hi: f64) -> Vec<(f64, String)> {
    let s = step(lo, hi);
    let decimals = (-s.log10().floor()).max(0.0) as usize;
    let first = (lo / s - 1e-9).ceil() as i64;
    let last = (hi / s + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let v = k as f64 * s;
            (v, format!("{v:.decimals$}"))
        })
        .collect()
}

/// The range widened outward to whole ticks, and those ticks.
fn nice_range((lo, hi): (f64, f64)) -> (Vec<(f64, String)>, (f64, f64)) {
    let s = step(lo, hi);
    let range = ((lo / s).floor() * s, (hi / s).ceil() * s);
    (ticks(range.0, range.1), range)
}

/// A log axis a little wider than [10^lo, 10^hi], with ticks
/// at 1, 2 and 5 times each power of ten (only the powers when the range is
/// wide). Limits are in log10 space; tick positions are values.
fn decades(lo: f64, hi: f64) -> (Vec<(f64, String)>, (f64, f64)) {
    let pad = 0.04 * (hi - lo).max(0.5);
    let (lo, hi) = (lo - pad, hi + pad);
    let (first, last) = (lo.floor() as i32, hi.ceil() as i32);
    let mantissas: &[f64] = if last - first <= 3 { &[1.0, 2.0, 5.0] } else { &[1.0] };
    let mut out = Vec::new();
    for power in first..=last {
        for &m in mantissas {
            let v = m * 10f64.powi(power);
            if (lo..=hi).contains(&v.log10()) {
                let decimals = (-power).max(0) as usize;
                out.push((v, format!("{v:.decimals$}")));
            }
        }
    }
    (out, (lo, hi))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
