//! `bench/chart.svg`, drawn from results.json (so `--chart-from` can redraw it):
//! 1. throughput over time of the single and batch phases: jobs enqueued
//!    (accepted by the api) and completed per second, in short bins, from the
//!    jobs' `created_at` and `completed_at` in PostgreSQL;
//! 2. the distribution of enqueue→start latency at the fixed offered rate,
//!    with p50 and p99 marked;
//! 3. Roundhouse vs Celery jobs/s, when Celery ran.

use std::path::Path;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde_json::Value;

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;
const SINGLE: RGBColor = RGBColor(31, 119, 180);
const BATCH: RGBColor = RGBColor(230, 120, 20);
const CELERY: RGBColor = RGBColor(55, 150, 75);
const MARK: RGBColor = RGBColor(200, 30, 30);
const FONT: &str = "sans-serif";

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

pub fn draw(path: &Path, results: &Value) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE)?;
    let (heading, body) = root.split_vertically(44);
    heading.draw(&Text::new(
        format!(
            "Roundhouse make bench, {}: {} CPUs shared by PostgreSQL, RabbitMQ, the services and the load generator{}; no-op jobs, durable settings",
            results["date"].as_str().unwrap_or("").get(..10).unwrap_or(""),
            results["machine"]["cpus"],
            results["machine"]["busyPercentBefore"]
                .as_f64()
                .map_or(String::new(), |b| format!(" ({b:.0} % busy with other work at the start)")),
        ),
        (16, 14),
        (FONT, 15).into_font().color(&BLACK.mix(0.75)),
    ))?;
    let (top, bottom) = body.split_vertically(500);
    let (left, right) = bottom.split_horizontally(WIDTH * 11 / 20);
    throughput(&top, results)?;
    latency(&left, results)?;
    comparison(&right, results)?;
    root.present()?;
    Ok(())
}

fn number(value: &Value) -> f64 {
    value.as_f64().unwrap_or(f64::NAN)
}

/// 12345.6 → "12,346".
pub fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "?".to_owned();
    }
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if value < 0.0 { format!("-{out}") } else { out }
}

/// A millisecond value for an axis or a label: 0.5, 3, 40.4, 120.
fn ms(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 10.0 {
        format!("{:.1}", value).trim_end_matches(".0").to_owned()
    } else {
        let s = format!("{value:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// Panel 1: jobs/s over time in the single and batch phases.
fn throughput(area: &Area, results: &Value) -> anyhow::Result<()> {
    struct Phase {
        name: String,
        color: RGBColor,
        enqueued: Vec<(f64, f64)>,
        completed: Vec<(f64, f64)>,
        average: f64,
    }
    let mut phases = Vec::new();
    for (key, color, name) in [
        (
            "single",
            SINGLE,
            format!(
                "single enqueues ({} clients)",
                results["single"]["clients"].as_u64().unwrap_or(0)
            ),
        ),
        (
            "batch",
            BATCH,
            format!(
                "batch enqueues ({} per request)",
                results["batch"]["batchSize"].as_u64().unwrap_or(0)
            ),
        ),
    ] {
        let timeline = &results[key]["timeline"];
        let bucket = timeline["bucketSeconds"].as_f64().unwrap_or(0.1);
        let series = |field: &str| -> Vec<(f64, f64)> {
            timeline[field]
                .as_array()
                .map(|counts| {
                    counts
                        .iter()
                        .enumerate()
                        .map(|(i, c)| ((i as f64 + 0.5) * bucket, number(c) / bucket))
                        .collect()
                })
                .unwrap_or_default()
        };
        let completed = series("completed");
        if completed.is_empty() {
            continue;
        }
        phases.push(Phase {
            name,
            color,
            // The api accepts a batch request's 500 jobs at one instant: a
            // moving average of 1 s shows its rate without that comb.
            enqueued: moving_average(
                &series("enqueued"),
                (1.0 / bucket).round().max(1.0) as usize,
            ),
            completed,
            average: number(&results[key]["jobsPerSecond"]),
        });
    }
    let x_max = phases
        .iter()
        .flat_map(|p| p.completed.iter().chain(&p.enqueued))
        .map(|(x, _)| *x)
        .fold(1.0, f64::max);
    // The scale follows the completions; a burst of batch enqueues far above
    // them (the api accepts 500 jobs per request) is cut at the top.
    let completed_max = phases
        .iter()
        .flat_map(|p| &p.completed)
        .map(|(_, y)| *y)
        .fold(100.0, f64::max);
    let enqueued_max = phases
        .iter()
        .flat_map(|p| &p.enqueued)
        .map(|(_, y)| *y)
        .fold(0.0, f64::max);
    let y_max = completed_max.max(enqueued_max.min(completed_max * 1.6)) * 1.45;
    let clipped = enqueued_max > y_max;
    for phase in &mut phases {
        for point in &mut phase.enqueued {
            point.1 = point.1.min(y_max);
        }
    }
    let bucket_ms = results["single"]["timeline"]["bucketSeconds"]
        .as_f64()
        .unwrap_or(0.1)
        * 1000.0;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Throughput over time: jobs enqueued and completed per second ({bucket_ms:.0} ms bins)"
            ),
            (FONT, 22),
        )
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..x_max * 1.02, 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the phase's first request")
        .y_desc("jobs per second")
        .y_label_formatter(&|v| thousands(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(BLACK.mix(0.05))
        .draw()?;
    for phase in &phases {
        let color = phase.color;
        chart
            .draw_series(LineSeries::new(
                phase.completed.iter().copied(),
                color.stroke_width(3),
            ))?
            .label(format!(
                "{}: completed (average {} jobs/s end to end)",
                phase.name,
                thousands(phase.average)
            ))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
            });
        chart
            .draw_series(DashedLineSeries::new(
                phase.enqueued.iter().copied(),
                6,
                4,
                color.mix(0.7).stroke_width(1),
            ))?
            .label(format!(
                "{}: enqueued (accepted by the api; 1 s moving average){}",
                phase.name,
                if clipped && phase.enqueued.iter().any(|p| p.1 >= y_max) {
                    format!(", peak {} cut", thousands(enqueued_max))
                } else {
                    String::new()
                }
            ))
            .legend(move |(x, y)| {
                DashedPathElement::new(
                    vec![(x, y), (x + 24, y)],
                    6,
                    4,
                    color.mix(0.7).stroke_width(1),
                )
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

/// The mean over a centred window of `width` points (shorter at the ends).
fn moving_average(points: &[(f64, f64)], width: usize) -> Vec<(f64, f64)> {
    let half = width / 2;
    (0..points.len())
        .map(|i| {
            let window = &points[i.saturating_sub(half)..(i + width - half).min(points.len())];
            let mean = window.iter().map(|p| p.1).sum::<f64>() / window.len() as f64;
            (points[i].0, mean)
        })
        .collect()
}

/// Panel 2: histogram of enqueue→start latency on a log axis, p50/p99 marked.
fn latency(area: &Area, results: &Value) -> anyhow::Result<()> {
    let latency = &results["latency"];
    let edges: Vec<f64> = latency["histogram"]["edgesMs"]
        .as_array()
        .map(|a| a.iter().map(number).collect())
        .unwrap_or_default();
    let counts: Vec<f64> = latency["histogram"]["counts"]
        .as_array()
        .map(|a| a.iter().map(number).collect())
        .unwrap_or_default();
    let total: f64 = counts.iter().sum();
    if edges.len() < 2 || total <= 0.0 {
        return Ok(());
    }
    let percent: Vec<f64> = counts.iter().map(|c| c * 100.0 / total).collect();
    let y_max = percent.iter().copied().fold(1.0, f64::max) * 1.25;
    let (x_min, x_max) = (edges[0], edges[edges.len() - 1]);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!(
                "Enqueue → start latency at {} jobs/s offered ({} jobs)",
                thousands(number(&latency["offeredPerSecond"])),
                thousands(number(&latency["jobs"]))
            ),
            (FONT, 20),
        )
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..y_max)?;
    chart
        .configure_mesh()
        .x_desc("ms from the api's insert to the worker's start (log scale)")
        .y_desc("% of jobs")
        .x_label_formatter(&|v| ms(*v))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(BLACK.mix(0.05))
        .draw()?;
    chart.draw_series(
        edges
            .windows(2)
            .zip(&percent)
            .map(|(w, p)| Rectangle::new([(w[0], 0.0), (w[1], *p)], SINGLE.mix(0.55).filled())),
    )?;
    // A label on the right of its line, or on its left near the right edge.
    let span = (x_max / x_min).ln();
    for (key, label, width, height) in [
        ("p50Ms", "p50", 2, 0.95),
        ("p99Ms", "p99", 3, 0.95),
        ("maxMs", "max", 1, 0.85),
    ] {
        let value = number(&latency[key]);
        if !value.is_finite() || value <= 0.0 {
            continue;
        }
        chart.draw_series(DashedLineSeries::new(
            [(value, 0.0), (value, y_max * 0.97)],
            8,
            5,
            MARK.mix(if key == "maxMs" { 0.5 } else { 1.0 })
                .stroke_width(width),
        ))?;
        let right = (value / x_min).ln() / span < 0.75;
        let anchor = if right { HPos::Left } else { HPos::Right };
        chart.draw_series(std::iter::once(Text::new(
            format!("{label} {} ms", ms(value)),
            (
                if right { value * 1.05 } else { value / 1.05 },
                y_max * height,
            ),
            (FONT, 16)
                .into_font()
                .color(&MARK)
                .pos(Pos::new(anchor, VPos::Center)),
        )))?;
    }
    Ok(())
}

/// Panel 3: Roundhouse vs Celery, jobs/s end to end.
fn comparison(area: &Area, results: &Value) -> anyhow::Result<()> {
    let celery = &results["celery"];
    let ran = celery.get("single").is_some();
    let groups = [
        (
            number(&results["single"]["jobsPerSecond"]),
            number(&celery["single"]["jobsPerSecond"]),
        ),
        (
            number(&results["batch"]["jobsPerSecond"]),
            number(&celery["batch"]["jobsPerSecond"]),
        ),
    ];
    let y_max = groups
        .iter()
        .flat_map(|(a, b)| [*a, *b])
        .filter(|v| v.is_finite())
        .fold(100.0, f64::max)
        * 1.4;
    let caption = if ran {
        format!(
            "Roundhouse vs Celery {}: jobs/s, enqueue → completed",
            celery["version"].as_str().unwrap_or("")
        )
    } else {
        "Roundhouse jobs/s, enqueue → completed".to_owned()
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 20))
        .margin(14)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(-0.5f64..1.5f64, 0f64..y_max)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(3)
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() > 1e-6 {
                return String::new();
            }
            match v.round() as i64 {
                0 => "single enqueues".to_owned(),
                1 => "batch enqueues".to_owned(),
                _ => String::new(),
            }
        })
        .x_desc(if ran {
            format!(
                "peak RSS: Roundhouse api + worker {:.0} MB; Celery worker {:.0} MB ({} processes)",
                number(&results["comparison"]["roundhouseApiPlusWorkerPeakRssMb"]),
                number(&celery["memory"]["peakRssMb"]),
                celery["memory"]["processes"]
            )
        } else {
            format!(
                "Celery not run: {}",
                celery
                    .get("skipped")
                    .and_then(Value::as_str)
                    .unwrap_or("not asked for")
            )
        })
        .y_desc("jobs per second (until completed in PostgreSQL)")
        .y_label_formatter(&|v| thousands(*v))
        .label_style((FONT, 15))
        .axis_desc_style((FONT, 16))
        .light_line_style(BLACK.mix(0.05))
        .draw()?;
    let value_style = (FONT, 15)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Center, VPos::Bottom));
    let bars = |offset: f64, pick: fn(&(f64, f64)) -> f64, color: RGBColor| {
        groups
            .iter()
            .enumerate()
            .filter(move |(_, g)| pick(g).is_finite())
            .map(move |(i, g)| {
                let x = i as f64 + offset;
                Rectangle::new([(x, 0.0), (x + 0.34, pick(g))], color.filled())
            })
            .collect::<Vec<_>>()
    };
    let (rh_offset, celery_offset) = if ran { (-0.37, 0.03) } else { (-0.17, 0.0) };
    chart
        .draw_series(bars(rh_offset, |g| g.0, SINGLE))?
        .label("Roundhouse (api + worker)")
        .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], SINGLE.filled()));
    for (i, g) in groups.iter().enumerate() {
        if g.0.is_finite() {
            chart.draw_series(std::iter::once(Text::new(
                thousands(g.0),
                (i as f64 + rh_offset + 0.17, g.0 + y_max * 0.01),
                value_style.clone(),
            )))?;
        }
    }
    if ran {
        chart
            .draw_series(bars(celery_offset, |g| g.1, CELERY))?
            .label(format!(
                "Celery (prefork ×{}, acks_late, prefetch ×{}, PostgreSQL results)",
                celery["concurrency"], celery["prefetchMultiplier"]
            ))
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], CELERY.filled()));
        for (i, g) in groups.iter().enumerate() {
            if g.1.is_finite() {
                chart.draw_series(std::iter::once(Text::new(
                    thousands(g.1),
                    (i as f64 + celery_offset + 0.17, g.1 + y_max * 0.01),
                    value_style.clone(),
                )))?;
                chart.draw_series(std::iter::once(Text::new(
                    format!("Roundhouse: {:.1}× Celery", g.0 / g.1),
                    (i as f64, g.0.max(g.1) + y_max * 0.09),
                    (FONT, 17)
                        .into_font()
                        .color(&BLACK)
                        .pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))?;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .label_font((FONT, 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}
