//! The chart: one bar group per throughput phase, one bar per engine, ops/s on
//! a log scale, written as SVG (no system fonts needed: the viewer renders
//! the text). Reopen time and disk bytes are not rates; they stay in the table.

use std::path::Path;

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::phases::{Column, Measure, Phase};
use crate::workload::Workload;

const RATE_PHASES: [Phase; 6] = [
    Phase::SequentialLoad,
    Phase::RandomOverwrite,
    Phase::RandomGet,
    Phase::PrefixScan,
    Phase::DurableSingle,
    Phase::DurableConcurrent,
];

const COLORS: [RGBColor; 5] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x7f, 0x7f, 0x7f),
];

fn label(phase: Phase, w: &Workload) -> String {
    match phase {
        Phase::SequentialLoad => "sequential load".into(),
        Phase::RandomOverwrite => "random overwrite".into(),
        Phase::RandomGet => "random get".into(),
        Phase::PrefixScan => "prefix scan".into(),
        Phase::DurableSingle => "durable, 1 writer".into(),
        Phase::DurableConcurrent => format!("durable, {} writers", w.durable_threads),
        Phase::Reopen | Phase::DiskBytes => String::new(),
    }
}

/// Draws the columns' rates into an SVG file at `path`.
pub fn draw(path: &Path, columns: &[Column], w: &Workload) -> Result<()> {
    let fail = |what: String| Error::Chart {
        path: path.to_path_buf(),
        what,
    };
    let values: Vec<f64> = columns
        .iter()
        .flat_map(|c| RATE_PHASES.iter().filter_map(|p| c.get(*p)))
        .map(Measure::value)
        .filter(|v| *v > 0.0)
        .collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(0.0, f64::max);
    if values.is_empty() {
        return Err(fail("no rates to draw".into()));
    }
    let y_min = 10f64.powf(lo.log10().floor());
    let y_max = 10f64.powf(hi.log10().ceil()).max(y_min * 10.0);
    let groups = RATE_PHASES.len();

    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| fail(e.to_string()))?;
    let caption = format!(
        "kvstore and peers, {} keys of 16 B + {} B values, one process (ops/s, log scale)",
        w.keys, w.value_bytes
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..groups as f64, (y_min..y_max).log_scale())
        .map_err(|e| fail(e.to_string()))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups)
        .x_label_formatter(&|_| String::new())
        .y_label_formatter(&|v| axis_label(*v))
        .y_desc("ops/s")
        .draw()
        .map_err(|e| fail(e.to_string()))?;

    let width = 0.8 / columns.len().max(1) as f64;
    for (j, col) in columns.iter().enumerate() {
        let color = COLORS[j % COLORS.len()];
        let bars = RATE_PHASES.iter().enumerate().filter_map(|(i, p)| {
            let v = col.get(*p)?.value();
            let x0 = i as f64 + 0.1 + j as f64 * width;
            Some(Rectangle::new(
                [(x0, y_min), (x0 + width * 0.9, v.max(y_min))],
                color.filled(),
            ))
        });
        chart
            .draw_series(bars)
            .map_err(|e| fail(e.to_string()))?
            .label(col.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| fail(e.to_string()))?;

    let style = TextStyle::from(("sans-serif", 15).into_font()).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Center,
            plotters::style::text_anchor::VPos::Top,
        ),
    );
    for (i, p) in RATE_PHASES.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, y_min));
        root.draw(&Text::new(label(*p, w), (x, y + 10), style.clone()))
            .map_err(|e| fail(e.to_string()))?;
    }
    root.present().map_err(|e| fail(e.to_string()))?;
    Ok(())
}

/// An axis tick: `100`, `10k`, `1M` (the ticks are powers of ten).
fn axis_label(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", v / 1e6),
        v if v >= 1e3 => format!("{}k", v / 1e3),
        v => format!("{v}"),
    }
}
