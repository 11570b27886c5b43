//! `--plot`: one SVG with three stacked panels over time (requests in flight, replicas, TTFT p95
//! per tick against the SLO), one line per policy, drawn with plotters' SVG backend.

use std::path::Path;

use plotters::prelude::*;

use super::RunResult;
use crate::stage::serving::profile::Profile;

const COLORS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// One line of points per policy.
type Lines = Vec<Vec<(f64, f64)>>;

pub fn svg(path: &Path, rows: &[(String, RunResult)], p: &Profile) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let panels = root.split_evenly((3, 1));
    let t_max = rows
        .iter()
        .flat_map(|(_, r)| r.timeline.last().map(|s| s.t_s / 60.0))
        .fold(1.0, f64::max);
    let series = |f: &dyn Fn(&super::Sample) -> Option<f64>| -> Lines {
        rows.iter()
            .map(|(_, r)| {
                r.timeline
                    .iter()
                    .filter_map(|s| f(s).map(|y| (s.t_s / 60.0, y)))
                    .collect()
            })
            .collect()
    };
    let load = series(&|s| Some(f64::from(s.in_flight)));
    let replicas = series(&|s| Some(f64::from(s.replicas)));
    let ttft = series(&|s| s.ttft_p95_s);
    let panels_data: [(&str, &Lines, &str); 3] = [
        (
            "requests in flight (all replicas and the gateway)",
            &load,
            "requests",
        ),
        ("replicas (ready + starting)", &replicas, "replicas"),
        ("TTFT p95 per 15 s tick (dashed: the SLO)", &ttft, "seconds"),
    ];
    for (i, (title, data, unit)) in panels_data.iter().enumerate() {
        let y_max = data
            .iter()
            .flatten()
            .map(|(_, y)| *y)
            .fold(if i == 2 { p.ttft_slo_s * 1.5 } else { 1.0 }, f64::max)
            * 1.05;
        let y_max = if i == 2 {
            y_max.min(p.ttft_slo_s * 10.0)
        } else {
            y_max
        };
        let mut chart = ChartBuilder::on(&panels[i])
            .caption(*title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..t_max, 0f64..y_max)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(*unit)
            .draw()
            .map_err(|e| err(&e))?;
        for (k, ((name, _), points)) in rows.iter().zip(data.iter()).enumerate() {
            let color = COLORS[k % COLORS.len()];
            chart
                .draw_series(LineSeries::new(
                    points.iter().map(|(x, y)| (*x, y.min(y_max))),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        if i == 2 {
            chart
                .draw_series(DashedLineSeries::new(
                    [(0.0, p.ttft_slo_s), (t_max, p.ttft_slo_s)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .border_style(BLACK)
            .background_style(WHITE.mix(0.8))
            .draw()
            .map_err(|e| err(&e))?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
