//! `workshop-cli plot`: saved runs (`--out run.json`) drawn as line charts,
//! in the terminal (braille dots, 80 columns, colour only when allowed) or
//! as one SVG file (plotters) with a legend, so runs can be compared.
//!
//! In the terminal, several runs share a chart when colour tells them
//! apart; without colour (`NO_COLOR`, a pipe) each run gets its own chart
//! with the same scales, so they can still be compared line by line.

use std::path::{Path, PathBuf};

use super::Output;
use crate::error::{Result, WorkshopError};
use crate::measure::saved_run::{self, Metric, SavedRun, Series};

#[derive(Debug, Clone)]
pub struct PlotOptions {
    pub runs: Vec<PathBuf>,
    pub svg: Option<PathBuf>,
    pub png: Option<PathBuf>,
}

/// Plot width in braille cells (2 dots each) and height in rows (4 dots each).
const CHART_COLUMNS: usize = 64;
const CHART_ROWS: usize = 6;
/// The y-axis labels, right-aligned, then " ┤".
const LABEL_WIDTH: usize = 8;
/// Terminal colours of the series, in order (cyan, yellow, magenta, green, blue, red).
const ANSI: [u8; 6] = [36, 33, 35, 32, 34, 31];
/// SVG colours of the series, in order.
const SVG_COLOURS: [(u8, u8, u8); 6] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
];

/// The points of one line in a chart (`(second, value)`), with its ANSI colour if any.
pub type ChartLine = (Vec<(u64, f64)>, Option<u8>);

/// One line of a chart: a saved series and the label the legend gives it.
#[derive(Debug, Clone)]
pub struct Line {
    pub label: String,
    pub series: Series,
}

impl Line {
    /// `(second, value)` of `metric`, hit rates in percent; seconds without a value are left out.
    fn points(&self, metric: Metric) -> Vec<(u64, f64)> {
        let scale = if metric == Metric::HitRate { 100.0 } else { 1.0 };
        self.series
            .second
            .iter()
            .zip(self.series.values(metric))
            .filter_map(|(second, value)| value.map(|v| (*second, v * scale)))
            .collect()
    }
}

/// Reads one saved run; the error names the file and what to do.
pub fn read(path: &Path) -> Result<SavedRun> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::NotFound => "no such file".to_string(),
            _ => e.to_string(),
        };
        WorkshopError::invalid(format!(
            "cannot read {name}: {reason}; give a file saved with `--out` (e.g. `workshop-cli stats --out {name}`)"
        ))
    })?;
    saved_run::parse(&name, &text).map_err(WorkshopError::invalid)
}

/// The lines of every run: one per series, labelled by file (and series when a run has several).
pub fn lines_of(runs: &[(String, SavedRun)]) -> Vec<Line> {
    let mut lines = Vec::new();
    for (file, run) in runs {
        for series in &run.series {
            let label = if run.series.len() == 1 {
                format!("{file} ({})", run.command)
            } else {
                format!("{file}: {}", series.name)
            };
            lines.push(Line {
                label,
                series: series.clone(),
            });
        }
    }
    lines
}

pub fn run(options: &PlotOptions, output: &Output) -> Result<()> {
    if let Some(png) = &options.png {
        return Err(WorkshopError::invalid(format!(
            "--png {} is not built in (PNG needs font files this tool does not ship); use --svg {} and convert it, e.g. `rsvg-convert -o {} {}`",
            png.display(),
            png.with_extension("svg").display(),
            png.display(),
            png.with_extension("svg").display()
        )));
    }
    if let Some(svg) = &options.svg {
        super::saved_run::check_out_path(svg).map_err(|_| {
            WorkshopError::invalid(format!(
                "--svg {}: its folder does not exist or it is a folder; choose another --svg path",
                svg.display()
            ))
        })?;
    }
    let mut runs = Vec::new();
    for path in &options.runs {
        runs.push((path.display().to_string(), read(path)?));
    }
    let lines = lines_of(&runs);
    let metrics: Vec<Metric> = Metric::ALL
        .into_iter()
        .filter(|m| lines.iter().any(|l| l.series.has(*m)))
        .collect();
    if let Some(svg) = &options.svg {
        let text = svg_document(&lines, &metrics)?;
        write_whole(svg, &text)?;
        let summary = serde_json::json!({
            "svg": svg.display().to_string(),
            "charts": metrics.iter().map(|m| m.title()).collect::<Vec<_>>(),
            "series": lines.iter().map(|l| l.label.clone()).collect::<Vec<_>>(),
        });
        if output.json {
            output.json_document(&summary);
        } else {
            output.text(format!(
                "wrote {}: {} chart(s) ({}), {} series",
                svg.display(),
                metrics.len(),
                metrics.iter().map(|m| m.title()).collect::<Vec<_>>().join(", "),
                lines.len()
            ));
        }
        return Ok(());
    }
    if output.json {
        let document: Vec<serde_json::Value> = runs
            .iter()
            .map(|(file, run)| serde_json::json!({"file": file, "command": run.command, "options": run.options, "series": run.series}))
            .collect();
        output.json_document(&document);
        return Ok(());
    }
    output.text(terminal_text(&lines, &metrics, output.color));
    Ok(())
}

fn write_whole(path: &Path, text: &str) -> Result<()> {
    let failed = |e: std::io::Error| {
        WorkshopError::invalid(format!(
            "cannot write {}: {e}; choose another --svg path",
            path.display()
        ))
    };
    let mut partial = path.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    std::fs::write(&partial, text).map_err(failed)?;
    std::fs::rename(&partial, path).map_err(|e| {
        let _ = std::fs::remove_file(&partial);
        failed(e)
    })
}

/// The longest second over every line: the common x scale.
fn x_max(lines: &[Line]) -> u64 {
    lines
        .iter()
        .filter_map(|l| l.series.second.last().copied())
        .max()
        .unwrap_or(0)
        .max(1)
}

/// The common y scale of `metric`: 100 for hit rates, else the largest value (or 1).
fn y_max(lines: &[Line], metric: Metric) -> f64 {
    if metric == Metric::HitRate {
        return 100.0;
    }
    let peak = lines
        .iter()
        .flat_map(|l| l.points(metric))
        .map(|(_, v)| v)
        .fold(0.0, f64::max);
    if peak > 0.0 {
        peak
    } else {
        1.0
    }
}

/// A y-axis label of at most `LABEL_WIDTH` columns.
fn axis_value(value: f64) -> String {
    if value >= 100.0 {
        crate::measure::count(value.round() as u64)
    } else if value >= 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

/// Every chart in the terminal: per metric, one chart of all lines (colour)
/// or one chart per line (no colour), on shared scales.
pub fn terminal_text(lines: &[Line], metrics: &[Metric], color: bool) -> String {
    let x_max = x_max(lines);
    let mut out = Vec::new();
    if color && lines.len() > 1 {
        let legend: Vec<String> = lines
            .iter()
            .enumerate()
            .map(|(i, l)| format!("\x1b[{}m━━\x1b[0m {}", ANSI[i % ANSI.len()], l.label))
            .collect();
        out.push(legend.join("   "));
    }
    for metric in metrics {
        let y_max = y_max(lines, *metric);
        let drawn: Vec<(usize, &Line)> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.series.has(*metric))
            .collect();
        if color || drawn.len() == 1 {
            out.push(String::new());
            out.push(title(metric.title(), color));
            let points: Vec<ChartLine> = drawn
                .iter()
                .map(|(i, l)| (l.points(*metric), color.then_some(ANSI[i % ANSI.len()])))
                .collect();
            out.extend(chart(&points, x_max, y_max));
        } else {
            for (_, line) in drawn {
                out.push(String::new());
                out.push(title(&format!("{} · {}", metric.title(), line.label), false));
                out.extend(chart(&[(line.points(*metric), None)], x_max, y_max));
            }
        }
    }
    out.join("\n")
}

fn title(text: &str, color: bool) -> String {
    let text: String = text.chars().take(LABEL_WIDTH + 2 + CHART_COLUMNS).collect();
    if color {
        format!("\x1b[1m{text}\x1b[0m")
    } else {
        text
    }
}

/// One braille chart: `CHART_ROWS` rows of `CHART_COLUMNS` cells under a
/// y axis from 0 to `y_max`, an x axis from 0 to `x_max` seconds. Each line
/// has an optional ANSI colour; where lines cross, the later one shows.
pub fn chart(lines: &[ChartLine], x_max: u64, y_max: f64) -> Vec<String> {
    let (width, height) = (CHART_COLUMNS * 2, CHART_ROWS * 4);
    let mut dots = vec![vec![0u8; CHART_COLUMNS]; CHART_ROWS];
    let mut owner: Vec<Vec<Option<u8>>> = vec![vec![None; CHART_COLUMNS]; CHART_ROWS];
    let to_x = |second: u64| ((second as f64 / x_max.max(1) as f64) * (width - 1) as f64).round() as i64;
    let to_y =
        |value: f64| ((value / y_max.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0) * (height - 1) as f64).round() as i64;
    for (points, colour) in lines {
        let mut previous: Option<(i64, i64)> = None;
        for &(second, value) in points {
            let here = (to_x(second), to_y(value));
            let from = previous.unwrap_or(here);
            for (x, y) in segment(from, here) {
                let (x, y) = (x as usize, (height as i64 - 1 - y) as usize);
                let (column, row) = (x / 2, y / 4);
                if column < CHART_COLUMNS && row < CHART_ROWS {
                    dots[row][column] |= braille_bit(x % 2, y % 4);
                    owner[row][column] = *colour;
                }
            }
            previous = Some(here);
        }
    }
    let mut out = Vec::new();
    for (row, cells) in dots.iter().enumerate() {
        let label = match row {
            0 => axis_value(y_max),
            r if r == CHART_ROWS - 1 => "0".to_string(),
            _ => String::new(),
        };
        let mut text = format!("{label:>LABEL_WIDTH$} ┤");
        for (column, bits) in cells.iter().enumerate() {
            let glyph = char::from_u32(0x2800 + u32::from(*bits)).unwrap_or(' ');
            match (owner[row][column], *bits) {
                (Some(colour), bits) if bits != 0 => text.push_str(&format!("\x1b[{colour}m{glyph}\x1b[0m")),
                _ => text.push(glyph),
            }
        }
        out.push(text);
    }
    out.push(format!("{:>LABEL_WIDTH$} └{}", "", "─".repeat(CHART_COLUMNS)));
    let right = format!("{x_max} s");
    out.push(format!(
        "{:>LABEL_WIDTH$}  0 s{:>w$}",
        "",
        right,
        w = CHART_COLUMNS.saturating_sub(3)
    ));
    out
}

/// The dot at column `dx` (0, 1) and row `dy` (0 at the top to 3) of a braille cell.
fn braille_bit(dx: usize, dy: usize) -> u8 {
    match (dx, dy) {
        (0, 3) => 0x40,
        (1, 3) => 0x80,
        (0, dy) => 1 << dy,
        (_, dy) => 1 << (dy + 3),
    }
}

/// The dots from `a` to `b` (Bresenham), both ends included.
fn segment(a: (i64, i64), b: (i64, i64)) -> Vec<(i64, i64)> {
    let (mut x, mut y) = a;
    let (dx, dy) = ((b.0 - a.0).abs(), -(b.1 - a.1).abs());
    let (sx, sy) = ((b.0 - a.0).signum(), (b.1 - a.1).signum());
    let mut error = dx + dy;
    let mut out = vec![(x, y)];
    while (x, y) != b {
        let twice = 2 * error;
        if twice >= dy {
            error += dy;
            x += sx;
        }
        if twice <= dx {
            error += dx;
            y += sy;
        }
        out.push((x, y));
    }
    out
}

/// One SVG with a chart per metric, every line in each, and a legend.
pub fn svg_document(lines: &[Line], metrics: &[Metric]) -> Result<String> {
    use plotters::prelude::*;
    let failed = |e: String| WorkshopError::Other(anyhow::anyhow!("cannot draw the SVG: {e}"));
    let x_max = x_max(lines) as f64;
    let mut text = String::new();
    {
        let height = 300 * metrics.len().max(1) as u32;
        let root = SVGBackend::with_string(&mut text, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| failed(e.to_string()))?;
        let panels = root.split_evenly((metrics.len().max(1), 1));
        for (panel, metric) in panels.iter().zip(metrics) {
            let y_max = y_max(lines, *metric) * 1.05;
            let mut chart = ChartBuilder::on(panel)
                .caption(metric.title(), ("sans-serif", 20))
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)
                .map_err(|e| failed(e.to_string()))?;
            chart
                .configure_mesh()
                .x_desc("second")
                .draw()
                .map_err(|e| failed(e.to_string()))?;
            for (index, line) in lines.iter().enumerate() {
                if !line.series.has(*metric) {
                    continue;
                }
                let (r, g, b) = SVG_COLOURS[index % SVG_COLOURS.len()];
                let colour = RGBColor(r, g, b);
                let points: Vec<(f64, f64)> = line.points(*metric).into_iter().map(|(s, v)| (s as f64, v)).collect();
                chart
                    .draw_series(LineSeries::new(points, colour.stroke_width(2)))
                    .map_err(|e| failed(e.to_string()))?
                    .label(line.label.clone())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], colour.filled()));
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(|e| failed(e.to_string()))?;
        }
        root.present().map_err(|e| failed(e.to_string()))?;
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, values: &[f64]) -> Line {
        Line {
            label: label.into(),
            series: Series {
                name: label.into(),
                second: (0..values.len() as u64).collect(),
                requests_per_second: values.iter().map(|v| Some(*v)).collect(),
                hit_rate: values.iter().map(|v| Some(v / 1000.0)).collect(),
                p50_ms: vec![],
                p99_ms: vec![],
            },
        }
    }

    fn width(text: &str) -> usize {
        unicode_width::UnicodeWidthStr::width(text)
    }

    #[test]
    fn a_chart_fits_80_columns_and_rises_with_its_values() {
        let rows = chart(&[(vec![(0, 0.0), (10, 100.0)], None)], 10, 100.0);
        assert_eq!(rows.len(), CHART_ROWS + 2);
        for row in &rows {
            assert!(width(row) <= 80, "{row:?} is {} columns", width(row));
        }
        // The rising line starts bottom left and ends top right.
        let first_cell = |row: &str| row.chars().nth(LABEL_WIDTH + 2).unwrap();
        let last_cell = |row: &str| row.chars().nth(LABEL_WIDTH + 1 + CHART_COLUMNS).unwrap();
        assert_ne!(first_cell(&rows[CHART_ROWS - 1]), '\u{2800}');
        assert_eq!(first_cell(&rows[0]), '\u{2800}');
        assert_ne!(last_cell(&rows[0]), '\u{2800}');
        assert!(rows[0].starts_with("     100 ┤"), "{:?}", rows[0]);
        assert!(rows[CHART_ROWS + 1].ends_with("10 s"));
    }

    #[test]
    fn without_colour_every_run_gets_its_own_chart_and_no_escape_codes() {
        let lines = [line("a.json", &[10.0, 20.0, 30.0]), line("b.json", &[30.0, 20.0])];
        let metrics = [Metric::RequestsPerSecond, Metric::HitRate];
        let plain = terminal_text(&lines, &metrics, false);
        assert!(!plain.contains('\x1b'));
        assert_eq!(plain.matches("requests per second · ").count(), 2, "{plain}");
        assert_eq!(plain.matches("hit rate % · ").count(), 2);
        for row in plain.lines() {
            assert!(width(row) <= 80, "{row:?}");
        }
        let coloured = terminal_text(&lines, &metrics, true);
        assert!(coloured.contains("\x1b[36m"));
        assert_eq!(coloured.matches("requests per second").count(), 1);
    }

    #[test]
    fn bresenham_reaches_both_ends() {
        assert_eq!(segment((0, 0), (3, 1)), vec![(0, 0), (1, 0), (2, 1), (3, 1)]);
        assert_eq!(segment((2, 2), (2, 2)), vec![(2, 2)]);
        assert_eq!(segment((0, 3), (0, 0)).len(), 4);
    }

    #[test]
    fn the_svg_has_one_polyline_per_series_and_chart() {
        let lines = [line("a.json", &[10.0, 20.0, 30.0]), line("b.json", &[30.0, 20.0])];
        let svg = svg_document(&lines, &[Metric::RequestsPerSecond, Metric::HitRate]).unwrap();
        // Axes and ticks are 1 px polylines; the series are drawn 2 px wide.
        let series = svg.matches("<polyline").count() - svg.matches("stroke-width=\"1\" points").count();
        assert_eq!(series, 4, "{svg}");
        assert!(svg.contains("a.json") && svg.contains("b.json"));
    }
}
