//! The timeline chart as inline SVG: three panels on one time axis (success rate, p99 latency,
//! share served by each backend), with the fault windows shaded across all three. Plain shapes
//! only, so the page needs no script and no charting library to show it.

use std::fmt::Write;

use super::escape;
use super::series::{Series, UNKNOWN_BACKEND};
use crate::load::rates::RateMark;
use crate::measure::FaultWindow;
use crate::units::human_duration;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 72.0;
const RIGHT: f64 = 24.0;
const PLOT_W: f64 = WIDTH - LEFT - RIGHT;
const PLOT_H: f64 = 140.0;
/// Room for a panel's title above its plot.
const TITLE_H: f64 = 24.0;
const GAP: f64 = 14.0;
const LABEL_ROW_H: f64 = 16.0;
/// Below the last panel: tick labels and the axis title.
const AXIS_H: f64 = 44.0;
const LEGEND_ROW_H: f64 = 20.0;
/// A rough width of one character at the chart's 11px font, for laying out labels without
/// measuring text (which only a browser can do).
const CHAR_W: f64 = 6.4;

const SUCCESS_COLOUR: &str = "#1a7f37";
const LATENCY_COLOUR: &str = "#8250df";
const FAULT_COLOUR: &str = "#d1242f";
/// Rate changes: neither a fault's red nor a backend's colour.
const RATE_COLOUR: &str = "#6e40c9";
/// Okabe–Ito colours: told apart by most colour-blind readers too.
const PALETTE: [&str; 7] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442",
];
const UNKNOWN_COLOUR: &str = "#8c959f";

/// The chart as one `<svg class="timeline">` element.
pub fn svg(series: &Series, windows: &[FaultWindow], rates: &[RateMark]) -> String {
    let end_s = series.end.as_secs_f64();
    let x = |secs: f64| LEFT + (secs / end_s).clamp(0.0, 1.0) * PLOT_W;
    let rows = label_rows(windows, &x);
    let label_rows_n = rows.iter().copied().max().map_or(0, |r| r + 1);
    let header_h = label_rows_n as f64 * LABEL_ROW_H + 6.0;
    let panel_top = |k: usize| header_h + k as f64 * (TITLE_H + PLOT_H + GAP) + TITLE_H;
    let bottom = panel_top(2) + PLOT_H;
    let colours = backend_colours(&series.backends);
    let legend = legend_layout(&series.backends);
    let legend_rows = legend.last().map_or(0, |item| item.row + 1);
    let height = bottom + AXIS_H + legend_rows as f64 * LEGEND_ROW_H + 8.0;

    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"timeline\" viewBox=\"0 0 {WIDTH} {height:.0}\" width=\"100%\" \
         role=\"img\" aria-labelledby=\"timeline-title\">\n\
         <title id=\"timeline-title\">Success rate, p99 latency and backend share per {} \
         bucket, with fault windows shaded</title>\n",
        human_duration(series.width)
    );
    let x_ticks = ticks(end_s, 10);

    // Panel 1: success rate.
    let top = panel_top(0);
    panel_frame(
        &mut out,
        "success-rate",
        "Success rate (ok / all requests)",
        top,
    );
    y_grid(&mut out, top, &[0.0, 25.0, 50.0, 75.0, 100.0], 100.0, "%");
    x_grid(&mut out, top, &x_ticks, &x);
    let points = series.buckets.iter().map(|b| {
        let mid = (b.start.as_secs_f64() + b.end.as_secs_f64()) / 2.0;
        b.success_rate().map(|r| (x(mid), y(top, r * 100.0, 100.0)))
    });
    line(&mut out, "series success-rate", SUCCESS_COLOUR, points);
    empty_note(
        &mut out,
        top,
        series.buckets.iter().all(|b| b.requests == 0),
    );
    out.push_str("</g>\n");

    // Panel 2: p99 latency, on an axis scaled to the worst bucket.
    let top = panel_top(1);
    let max_ms = series
        .buckets
        .iter()
        .filter_map(|b| b.p99)
        .map(|d| d.as_secs_f64() * 1e3)
        .fold(0.0, f64::max);
    let ms_ticks = ticks(max_ms, 4);
    let ms_top = ms_ticks
        .last()
        .copied()
        .unwrap_or(1.0)
        .max(f64::MIN_POSITIVE);
    panel_frame(&mut out, "p99-latency", "p99 latency (ms)", top);
    y_grid(&mut out, top, &ms_ticks, ms_top, " ms");
    x_grid(&mut out, top, &x_ticks, &x);
    let points = series.buckets.iter().map(|b| {
        let mid = (b.start.as_secs_f64() + b.end.as_secs_f64()) / 2.0;
        b.p99
            .map(|d| (x(mid), y(top, d.as_secs_f64() * 1e3, ms_top)))
    });
    line(&mut out, "series p99-latency", LATENCY_COLOUR, points);
    empty_note(
        &mut out,
        top,
        series.buckets.iter().all(|b| b.p99.is_none()),
    );
    out.push_str("</g>\n");

    // Panel 3: each backend's share of the successes, stacked, as steps: a bucket's share
    // holds for the bucket's whole width.
    let top = panel_top(2);
    panel_frame(&mut out, "served-by", "Share of successes by backend", top);
    y_grid(&mut out, top, &[0.0, 25.0, 50.0, 75.0, 100.0], 100.0, "%");
    x_grid(&mut out, top, &x_ticks, &x);
    for (k, backend) in series.backends.iter().enumerate() {
        let mut d = String::new();
        let mut run: Vec<(f64, f64, f64, f64)> = Vec::new();
        for b in &series.buckets {
            if b.ok == 0 {
                close_area(&mut d, &mut run);
                continue;
            }
            let below: u64 = b.served[..k].iter().sum();
            let lo = below as f64 / b.ok as f64 * 100.0;
            let hi = (below + b.served[k]) as f64 / b.ok as f64 * 100.0;
            run.push((
                x(b.start.as_secs_f64()),
                x(b.end.as_secs_f64()),
                y(top, lo, 100.0),
                y(top, hi, 100.0),
            ));
        }
        close_area(&mut d, &mut run);
        let _ = writeln!(
            out,
            "<path class=\"series served-by\" data-backend=\"{name}\" d=\"{d}\" fill=\"{}\" \
             fill-opacity=\"0.85\" stroke=\"none\"><title>served by {name}</title></path>",
            colours[k],
            name = escape(backend),
        );
    }
    empty_note(&mut out, top, series.buckets.iter().all(|b| b.ok == 0));
    out.push_str("</g>\n");

    // Fault windows over the panels (translucent, so the series stay readable), one band
    // through all three so a glance down the chart lines effects up with their cause.
    out.push_str("<g class=\"fault-windows\">\n");
    for (w, row) in windows.iter().zip(&rows) {
        let (x0, x1) = (x(w.start.as_secs_f64()), x(w.end.as_secs_f64()));
        // A window shorter than a pixel still gets a visible sliver.
        let width = (x1 - x0).max(1.5);
        let band_top = *row as f64 * LABEL_ROW_H + 2.0;
        let label = format!("{} ({})", w.id, w.kind);
        let _ = writeln!(
            out,
            "<rect class=\"fault-window\" data-fault-id=\"{}\" x=\"{x0:.1}\" y=\"{band_top:.1}\" \
             width=\"{width:.1}\" height=\"{:.1}\" fill=\"{FAULT_COLOUR}\" fill-opacity=\"0.1\" \
             stroke=\"{FAULT_COLOUR}\" stroke-opacity=\"0.45\" stroke-dasharray=\"4 3\">\
             <title>{} on {}: {} to {}</title></rect>\n\
             <text class=\"fault-label\" x=\"{:.1}\" y=\"{:.1}\" fill=\"{FAULT_COLOUR}\">{}</text>",
            escape(&w.id),
            bottom - band_top,
            escape(&label),
            escape(&w.target),
            human_duration(w.start),
            human_duration(w.end),
            x0 + 3.0,
            band_top + 12.0,
            escape(&label),
        );
    }
    out.push_str("</g>\n");

    // Rate changes: a solid line where each starts (a ramp shades up to where it ends), so a
    // surge in the load reads apart from a fault; labelled inside the top panel.
    out.push_str("<g class=\"rate-changes\">\n");
    let plot_top = panel_top(0);
    for (i, r) in rates.iter().enumerate() {
        let at = r.at.as_secs_f64();
        let x0 = x(at);
        let label = format!(
            "{}: {}/s → {}/s",
            r.stream,
            crate::load::rates::number(r.from_per_second),
            crate::load::rates::number(r.to_per_second)
        );
        let how = if r.over.is_zero() {
            format!("step at {}", human_duration(r.at))
        } else {
            format!(
                "ramp from {} over {}",
                human_duration(r.at),
                human_duration(r.over)
            )
        };
        if !r.over.is_zero() {
            let x1 = x(at + r.over.as_secs_f64());
            let _ = writeln!(
                out,
                "<rect class=\"rate-ramp\" x=\"{x0:.1}\" y=\"{plot_top:.1}\" \
                 width=\"{:.1}\" height=\"{:.1}\" fill=\"{RATE_COLOUR}\" fill-opacity=\"0.06\"/>",
                (x1 - x0).max(0.0),
                bottom - plot_top
            );
        }
        // Labels step down so changes close together stay legible.
        let label_y = plot_top + 12.0 + (i % 3) as f64 * 12.0;
        let _ = writeln!(
            out,
            "<line class=\"rate-change\" data-stream=\"{stream}\" x1=\"{x0:.1}\" y1=\"{plot_top:.1}\" \
             x2=\"{x0:.1}\" y2=\"{bottom:.1}\" stroke=\"{RATE_COLOUR}\" stroke-width=\"1.5\">\
             <title>{label}, {how}</title></line>\n\
             <text class=\"rate-label\" x=\"{:.1}\" y=\"{label_y:.1}\" fill=\"{RATE_COLOUR}\">{label}</text>",
            x0 + 3.0,
            stream = escape(&r.stream),
            label = escape(&label),
            how = escape(&how),
        );
    }
    out.push_str("</g>\n");

    // The shared time axis, labelled once under the last panel.
    out.push_str("<g class=\"axis x-axis\">\n");
    for t in &x_ticks {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}s</text>",
            x(*t),
            bottom + 16.0,
            number(*t)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">run time (s), by intended send \
         time, {} buckets</text>\n</g>",
        LEFT + PLOT_W / 2.0,
        bottom + 34.0,
        human_duration(series.width)
    );

    out.push_str("<g class=\"legend\">\n");
    for (item, colour) in legend.iter().zip(&colours) {
        let ly = bottom + AXIS_H + item.row as f64 * LEGEND_ROW_H;
        let _ = writeln!(
            out,
            "<rect x=\"{:.1}\" y=\"{ly:.1}\" width=\"12\" height=\"12\" fill=\"{colour}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
            item.x,
            item.x + 16.0,
            ly + 10.5,
            escape(&series.backends[item.index])
        );
    }
    out.push_str("</g>\n</svg>\n");
    out
}

fn y(top: f64, value: f64, max: f64) -> f64 {
    top + PLOT_H - (value / max).clamp(0.0, 1.0) * PLOT_H
}

/// Opens a panel's group (closed by the caller after its series) with its title and frame.
fn panel_frame(out: &mut String, id: &str, title: &str, top: f64) {
    let _ = writeln!(
        out,
        "<g class=\"panel\" id=\"panel-{id}\">\n\
         <text class=\"panel-title\" x=\"{LEFT}\" y=\"{:.1}\">{title}</text>\n\
         <rect class=\"plot\" x=\"{LEFT}\" y=\"{top:.1}\" width=\"{PLOT_W}\" \
         height=\"{PLOT_H}\" fill=\"none\" stroke=\"#d0d7de\"/>",
        top - 8.0
    );
}

fn y_grid(out: &mut String, top: f64, values: &[f64], max: f64, unit: &str) {
    for v in values {
        let py = y(top, *v, max);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{LEFT}\" x2=\"{:.1}\" y1=\"{py:.1}\" y2=\"{py:.1}\"/>\
             <text class=\"tick\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}{unit}</text>",
            LEFT + PLOT_W,
            LEFT - 6.0,
            py + 4.0,
            number(*v)
        );
    }
}

fn x_grid(out: &mut String, top: f64, values: &[f64], x: &impl Fn(f64) -> f64) {
    for v in values {
        let px = x(*v);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{top:.1}\" y2=\"{:.1}\"/>",
            top + PLOT_H
        );
    }
}

/// A polyline through the points as one path; a `None` (an empty bucket) starts a new piece
/// rather than drawing a line across time with no data.
fn line(
    out: &mut String,
    class: &str,
    colour: &str,
    points: impl Iterator<Item = Option<(f64, f64)>>,
) {
    let mut d = String::new();
    let mut pen_down = false;
    for p in points {
        match p {
            Some((px, py)) => {
                let _ = write!(d, "{}{px:.1},{py:.1} ", if pen_down { "L" } else { "M" });
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    // A lone point is a zero-length piece; round caps draw it as a dot.
    let _ = writeln!(
        out,
        "<path class=\"{class}\" d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" \
         stroke-linecap=\"round\" stroke-linejoin=\"round\"/>",
        d.trim_end()
    );
}

/// Appends the closed outline of a run of consecutive stacked steps, each `(x0, x1, y_low,
/// y_high)`: along the tops left to right, back along the bottoms.
fn close_area(d: &mut String, run: &mut Vec<(f64, f64, f64, f64)>) {
    if run.is_empty() {
        return;
    }
    for (i, (x0, x1, _, hi)) in run.iter().enumerate() {
        let _ = write!(
            d,
            "{}{x0:.1},{hi:.1} L{x1:.1},{hi:.1} ",
            if i == 0 { "M" } else { "L" }
        );
    }
    for (x0, x1, lo, _) in run.iter().rev() {
        let _ = write!(d, "L{x1:.1},{lo:.1} L{x0:.1},{lo:.1} ");
    }
    d.push_str("Z ");
    run.clear();
}

fn empty_note(out: &mut String, top: f64, empty: bool) {
    if empty {
        let _ = writeln!(
            out,
            "<text class=\"empty\" x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">no data</text>",
            LEFT + PLOT_W / 2.0,
            top + PLOT_H / 2.0
        );
    }
}

/// Label rows for the fault windows: each label goes in the first row where it does not run
/// into an earlier one, so overlapping windows (two faults injected at once) stay legible.
fn label_rows(windows: &[FaultWindow], x: &impl Fn(f64) -> f64) -> Vec<usize> {
    let mut row_ends: Vec<f64> = Vec::new();
    windows
        .iter()
        .map(|w| {
            let x0 = x(w.start.as_secs_f64());
            let x1 = x0 + 6.0 + (w.id.chars().count() + w.kind.chars().count() + 3) as f64 * CHAR_W;
            match row_ends.iter().position(|end| *end < x0) {
                Some(row) => {
                    row_ends[row] = x1;
                    row
                }
                None => {
                    row_ends.push(x1);
                    row_ends.len() - 1
                }
            }
        })
        .collect()
}

struct LegendItem {
    index: usize,
    row: usize,
    x: f64,
}

/// Legend entries flowing left to right, wrapping at the chart's width.
fn legend_layout(backends: &[String]) -> Vec<LegendItem> {
    let (mut row, mut x) = (0, LEFT);
    let mut items = Vec::new();
    for (index, name) in backends.iter().enumerate() {
        let w = 16.0 + name.chars().count() as f64 * CHAR_W + 18.0;
        if x > LEFT && x + w > WIDTH - RIGHT {
            row += 1;
            x = LEFT;
        }
        items.push(LegendItem { index, row, x });
        x += w;
    }
    items
}

/// One colour per backend: the palette in order, grey for `unknown`, then hues spaced by the
/// golden angle so any number of backends stay distinct.
fn backend_colours(backends: &[String]) -> Vec<String> {
    let mut next = 0usize;
    backends
        .iter()
        .map(|b| {
            if b == UNKNOWN_BACKEND {
                return UNKNOWN_COLOUR.to_string();
            }
            let i = next;
            next += 1;
            PALETTE.get(i).map_or_else(
                || format!("hsl({:.0}, 60%, 45%)", (i as f64 * 137.508) % 360.0),
                |c| c.to_string(),
            )
        })
        .collect()
}

/// Tick values from 0 to at least `max` at a round step (1, 2 or 5 times a power of ten),
/// about `target` of them.
fn ticks(max: f64, target: u32) -> Vec<f64> {
    if !(max.is_finite() && max > 0.0) {
        return vec![0.0];
    }
    let raw = max / f64::from(target);
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = match raw / magnitude {
        n if n <= 1.0 => magnitude,
        n if n <= 2.0 => 2.0 * magnitude,
        n if n <= 5.0 => 5.0 * magnitude,
        _ => 10.0 * magnitude,
    };
    let count = (max / step - 1e-9).ceil() as u32;
    (0..=count).map(|k| f64::from(k) * step).collect()
}

/// A tick value without float noise: `0.5`, `250`, `1000`.
fn number(v: f64) -> String {
    let s = format!("{v:.3}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round() {
        assert_eq!(ticks(60.0, 10), [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]);
        assert_eq!(ticks(12.0, 10), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        assert_eq!(ticks(430.0, 4), [0.0, 200.0, 400.0, 600.0]);
        assert_eq!(ticks(0.0, 4), [0.0]);
        assert_eq!(number(0.5), "0.5");
        assert_eq!(number(1000.0), "1000");
    }

    #[test]
    fn colours_are_distinct() {
        let names: Vec<String> = (0..20).map(|i| format!("b{i}")).collect();
        let mut colours = backend_colours(&names);
        colours.sort();
        colours.dedup();
        assert_eq!(colours.len(), 20);
        assert_eq!(
            backend_colours(&["a".into(), UNKNOWN_BACKEND.into()]),
            [PALETTE[0], UNKNOWN_COLOUR]
        );
    }
}
