//! The results pane: the run's live progress while it runs, then its
//! outcome as widgets (tables with compact units, a bar chart of the
//! latency distribution on log-spaced buckets, sparklines of per-second
//! timelines) above the text report's lines, which every outcome has (the
//! generic view). Everything scrolls both ways: the content is drawn at its
//! own width into a buffer and the pane shows a window of it, so a wide
//! table scrolls sideways instead of splitting a number.

use ratatui::buffer::Buffer;
use ratatui::layout::{Constraint, Direction, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, LineGauge, Paragraph, Row, Sparkline, Table, Widget, Wrap};
use ratatui::Frame;

use super::exercise::focus_style;
use super::{wrapped, wrapped_height};
use crate::exercises::stampede::StampedeRun;
use crate::workshop::facts::short_duration;
use crate::workshop::markdown::plain;
use crate::workshop::run::GuidedOutcome;
use crate::workshop::state::{Finished, Live, RunStatus, RunView, State};

/// Draws a part into its place on the pane's canvas.
type Render<'a> = Box<dyn Fn(Rect, &mut Buffer) + 'a>;

/// One piece of the pane: its size, and how to draw it there.
struct Part<'a> {
    height: u16,
    width: u16,
    render: Render<'a>,
}

fn lines_part(lines: Vec<Line<'static>>) -> Part<'static> {
    let height = lines.len() as u16;
    let width = lines.iter().map(Line::width).max().unwrap_or(0) as u16;
    Part {
        height,
        width,
        render: Box::new(move |area, buf| Paragraph::new(lines.clone()).render(area, buf)),
    }
}

/// Lines word-wrapped to the pane's `width` (not the canvas's, which a
/// wide table may widen): a question or an error is read, not scrolled.
fn wrapped_part(lines: Vec<Line<'static>>, width: u16) -> Part<'static> {
    let width = width.max(1);
    let height = lines.iter().map(|line| wrapped_height(&plain(line), width)).sum();
    Part {
        height,
        width,
        render: Box::new(move |area, buf| {
            let area = Rect {
                width: area.width.min(width),
                ..area
            };
            Paragraph::new(lines.clone())
                .wrap(Wrap { trim: true })
                .render(area, buf)
        }),
    }
}

const BOLD: Style = Style::new().add_modifier(Modifier::BOLD);

pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State, run: &RunView, focused: bool) {
    let block = Block::bordered()
        .title(format!(" Result: {} ", run.label))
        .border_style(focus_style(focused));
    let inner = block.inner(area);
    frame.render_widget(block, area);

    let takeaway = match &run.status {
        RunStatus::Finished(finished) => Some(format!("→ {}", finished.takeaway)),
        _ => None,
    };
    let takeaway_height = takeaway.as_ref().map_or(0, |t| {
        wrapped_height(t, inner.width).min(inner.height.saturating_sub(1))
    });
    let [content_area, takeaway_area] =
        Layout::vertical([Constraint::Min(1), Constraint::Length(takeaway_height)]).areas(inner);
    if let Some(takeaway) = takeaway {
        frame.render_widget(wrapped(takeaway).style(BOLD.fg(Color::Green)), takeaway_area);
    }

    let mut parts = vec![lines_part(vec![Line::from(Span::styled(
        format!("$ {}", run.command_line),
        Style::new().fg(Color::Cyan),
    ))])];
    match &run.status {
        RunStatus::Running(live) => parts.push(running(live)),
        RunStatus::Failed(error) => parts.push(lines_part(vec![Line::from(Span::styled(
            format!("error: {error}"),
            Style::new().fg(Color::Red),
        ))])),
        RunStatus::Cancelled(what) => parts.push(lines_part(vec![Line::from(what.clone())])),
        RunStatus::Finished(finished) => finished_parts(finished, run, content_area.width, &mut parts),
    }

    let width = parts.iter().map(|p| p.width).max().unwrap_or(0).max(content_area.width);
    let height: u16 = parts.iter().map(|p| p.height + 1).sum();
    let max_y = height.saturating_sub(content_area.height);
    let max_x = width.saturating_sub(content_area.width);
    let mut viewport = state.viewport.get();
    viewport.results_height = content_area.height;
    viewport.results_max = (max_y, max_x);
    state.viewport.set(viewport);
    let scroll = state.page.as_ref().map_or_else(Default::default, |p| p.results);
    let (top, left) = (scroll.y.min(max_y), scroll.x.min(max_x));

    let mut canvas = Buffer::empty(Rect::new(0, 0, width, height.max(1)));
    let mut y = 0;
    for part in &parts {
        let part_width = if part.width == 0 { width } else { width.max(part.width) };
        (part.render)(Rect::new(0, y, part_width.min(width), part.height), &mut canvas);
        y += part.height + 1;
    }
    let buf = frame.buffer_mut();
    for row in 0..content_area.height {
        for column in 0..content_area.width {
            let (cx, cy) = (column + left, row + top);
            if cx < width && cy < canvas.area.height {
                if let (Some(from), Some(to)) = (
                    canvas.cell((cx, cy)).cloned(),
                    buf.cell_mut((content_area.x + column, content_area.y + row)),
                ) {
                    *to = from;
                }
            }
        }
    }
}

fn running(live: &Live) -> Part<'static> {
    let live = live.clone();
    let mut lines = vec![Line::from(vec![
        Span::styled("running: ", BOLD),
        Span::raw(if live.phase.is_empty() {
            "starting".to_string()
        } else {
            live.phase.clone()
        }),
        Span::raw(format!("  ({:.1} s)", live.elapsed.as_secs_f64())),
    ])];
    let counted = match live.total {
        Some(total) => format!("{}/{total} {}", live.done, live.steps),
        None if live.done > 0 => format!("{} {}", live.done, live.steps),
        None => String::new(),
    };
    lines.push(Line::from(counted));
    lines.extend(live.notes.iter().rev().take(5).map(|n| Line::from(format!("· {n}"))));
    lines.push(Line::from(Span::styled(
        "Ctrl-C cancels the run (and its queries)",
        Style::new().fg(Color::DarkGray),
    )));
    let height = lines.len() as u16 + 1;
    Part {
        height,
        width: 0,
        render: Box::new(move |area, buf| {
            let [gauge_area, text_area] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(area);
            let ratio = match live.total {
                Some(total) if total > 0 => (live.done as f64 / total as f64).clamp(0.0, 1.0),
                _ => 0.0,
            };
            LineGauge::default()
                .ratio(ratio)
                .filled_style(Style::new().fg(Color::Cyan))
                .render(gauge_area.intersection(Rect::new(0, 0, 40, u16::MAX)), buf);
            Paragraph::new(lines.clone()).render(text_area, buf);
        }),
    }
}

fn finished_parts(finished: &Finished, run: &RunView, width: u16, parts: &mut Vec<Part<'_>>) {
    let mut head = Vec::new();
    if let Some(note) = &finished.note {
        head.push(Line::from(Span::styled(note.clone(), Style::new().fg(Color::Yellow))));
    }
    if let Some(failure) = &finished.failure {
        head.push(Line::from(Span::styled(
            format!("error: {failure}"),
            Style::new().fg(Color::Red),
        )));
    }
    if let (Some(checked), Some((question, _))) = (&finished.checked, &run.question) {
        let actual = checked
            .actual
            .as_ref()
            .map_or_else(|| "not measured".into(), |a| a.to_string());
        head.push(Line::from(Span::styled(question.ask.clone(), BOLD)));
        head.push(Line::from(vec![
            Span::raw(format!("you said: {} · the run: {actual} ", checked.guess)),
            if checked.right {
                Span::styled("✓ right", BOLD.fg(Color::Green))
            } else {
                Span::styled("✗ not quite", BOLD.fg(Color::Red))
            },
        ]));
    }
    if !head.is_empty() {
        parts.push(wrapped_part(head, width));
    }
    match &finished.outcome {
        GuidedOutcome::CacheAside(o) => {
            let rows = [
                ("database", o.summary.database.as_ref()),
                ("cache", o.summary.cache.as_ref()),
            ];
            parts.push(latency_table(&rows));
            if let Some(distribution) = &o.distribution {
                parts.push(distribution_chart(distribution, width));
            }
        }
        GuidedOutcome::Stampede(StampedeRun::Compared(o)) => {
            let header = ["mode", "requests", "db queries", "waited", "p99"];
            let rows: Vec<[String; 5]> = o
                .modes
                .iter()
                .map(|m| {
                    [
                        m.mode.name().to_string(),
                        m.requests.to_string(),
                        m.database_queries.to_string(),
                        m.waited.to_string(),
                        m.latency.as_ref().map_or_else(|| "–".into(), |l| short_duration(l.p99)),
                    ]
                })
                .collect();
            parts.push(table(&header, rows, &[14, 9, 11, 7, 9]));
        }
        GuidedOutcome::RateLimit(o) => {
            let header = ["limiter", "allowed/s", "max 1 s", "cmds", "p99"];
            let rows: Vec<[String; 5]> = o
                .limiters
                .iter()
                .map(|l| {
                    [
                        l.limiter.name().to_string(),
                        format!("{:.0}", l.allowed_per_second),
                        l.max_in_any_second.to_string(),
                        format!("{:.1}", l.commands_per_decision),
                        l.latency.as_ref().map_or_else(|| "–".into(), |s| short_duration(s.p99)),
                    ]
                })
                .collect();
            parts.push(table(&header, rows, &[13, 9, 8, 5, 9]));
            let series: Vec<(String, Vec<u64>)> = o
                .limiters
                .iter()
                .map(|l| {
                    (
                        format!("{} allowed per second", l.limiter.name()),
                        l.allowed_each_second.clone(),
                    )
                })
                .collect();
            parts.push(sparklines(series));
        }
        GuidedOutcome::Stats(o) => {
            if let Some(run) = &o.run {
                let requests: Vec<u64> = run.timeline.iter().map(|s| s.requests).collect();
                let hits: Vec<u64> = run
                    .timeline
                    .iter()
                    .map(|s| s.hit_rate.map_or(0, |r| (r * 100.0).round() as u64))
                    .collect();
                parts.push(sparklines(vec![
                    ("requests per second".to_string(), requests),
                    ("hit rate per second (%)".to_string(), hits),
                ]));
            }
        }
        _ => {}
    }
    let report: Vec<Line<'static>> = std::iter::once(Line::from(Span::styled("The report", BOLD)))
        .chain(finished.lines.iter().map(|l| Line::from(l.clone())))
        .collect();
    match &finished.beside {
        None => parts.push(lines_part(report)),
        Some(beside) => {
            let listener: Vec<Line<'static>> =
                std::iter::once(Line::from(Span::styled("The listener (another process's view)", BOLD)))
                    .chain(beside.iter().map(|l| Line::from(l.clone())))
                    .collect();
            parts.push(side_by_side(listener, report));
        }
    }
}

/// Two columns of lines, each as wide as its widest line.
fn side_by_side(left: Vec<Line<'static>>, right: Vec<Line<'static>>) -> Part<'static> {
    let left_width = left.iter().map(Line::width).max().unwrap_or(0) as u16;
    let right_width = right.iter().map(Line::width).max().unwrap_or(0) as u16;
    Part {
        height: left.len().max(right.len()) as u16,
        width: left_width + 3 + right_width,
        render: Box::new(move |area, buf| {
            let left_area = Rect::new(area.x, area.y, left_width.min(area.width), area.height);
            Paragraph::new(left.clone()).render(left_area, buf);
            let x = area.x + left_width + 3;
            if x < area.x + area.width {
                let right_area = Rect::new(x, area.y, area.x + area.width - x, area.height);
                Paragraph::new(right.clone()).render(right_area, buf);
            }
        }),
    }
}

fn table<const N: usize>(header: &[&str; N], rows: Vec<[String; N]>, widths: &[u16; N]) -> Part<'static> {
    let width = widths.iter().sum::<u16>() + N as u16 - 1;
    let height = rows.len() as u16 + 1;
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    let widths = *widths;
    Part {
        height,
        width,
        render: Box::new(move |area, buf| {
            let table = Table::new(
                rows.iter().map(|r| Row::new(r.iter().cloned())),
                widths.iter().map(|w| Constraint::Length(*w)),
            )
            .header(Row::new(header.clone()).style(BOLD));
            Widget::render(table, area, buf);
        }),
    }
}

fn latency_table(rows: &[(&str, Option<&crate::measure::LatencySummary>)]) -> Part<'static> {
    let rows: Vec<[String; 6]> = rows
        .iter()
        .filter_map(|(name, summary)| {
            let s = (*summary)?;
            Some([
                name.to_string(),
                s.count.to_string(),
                short_duration(s.p50),
                short_duration(s.p95),
                short_duration(s.p99),
                short_duration(s.max),
            ])
        })
        .collect();
    table(&["source", "n", "p50", "p95", "p99", "max"], rows, &[9, 6, 8, 8, 8, 8])
}

/// One horizontal bar chart per series, side by side when they fit: the
/// buckets are log-spaced, so a 0.1 ms cache and a 30 ms query both show.
fn distribution_chart(distribution: &crate::measure::Distribution, width: u16) -> Part<'static> {
    let distribution = distribution.clone();
    let series = distribution.series.len().max(1) as u16;
    let side_by_side = width >= 30 * series;
    let buckets = distribution.buckets.len() as u16;
    let chart_height = buckets + 1;
    let height = if side_by_side {
        chart_height
    } else {
        chart_height * series
    };
    // Bar lengths on a log scale of the count: 1 read next to 800 still shows.
    let log = |count: u64| ((count as f64).ln_1p() * 100.0).round() as u64;
    let max = distribution
        .buckets
        .iter()
        .flat_map(|b| b.counts.iter().copied())
        .map(log)
        .max()
        .unwrap_or(1);
    Part {
        height,
        width: 0,
        render: Box::new(move |area, buf| {
            let direction = if side_by_side {
                Direction::Horizontal
            } else {
                Direction::Vertical
            };
            let areas = Layout::default()
                .direction(direction)
                .constraints(distribution.series.iter().map(|_| Constraint::Ratio(1, series.into())))
                .split(area);
            for (i, name) in distribution.series.iter().enumerate() {
                let bars: Vec<Bar<'_>> = distribution
                    .buckets
                    .iter()
                    .map(|b| {
                        let count = b.counts.get(i).copied().unwrap_or(0);
                        Bar::default()
                            .value(log(count))
                            .label(Line::from(format!("≤{:>8}", short_duration(b.up_to))))
                            .text_value(count.to_string())
                    })
                    .collect();
                let [title, chart] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(areas[i]);
                Paragraph::new(Line::from(Span::styled(format!("{name} latency (log scales)"), BOLD)))
                    .render(title, buf);
                BarChart::default()
                    .direction(Direction::Horizontal)
                    .bar_width(1)
                    .bar_gap(0)
                    .max(max)
                    .bar_style(Style::new().fg(if i == 0 { Color::Magenta } else { Color::Cyan }))
                    .data(BarGroup::default().bars(&bars))
                    .render(chart, buf);
            }
        }),
    }
}

/// A labelled sparkline per series (per-second timelines).
fn sparklines(series: Vec<(String, Vec<u64>)>) -> Part<'static> {
    let height = series.len() as u16 * 2;
    let widest = series.iter().map(|(_, v)| v.len()).max().unwrap_or(0) as u16;
    Part {
        height,
        width: widest,
        render: Box::new(move |area, buf| {
            for (i, (label, values)) in series.iter().enumerate() {
                let y = area.y + i as u16 * 2;
                let max = values.iter().copied().max().unwrap_or(0);
                Paragraph::new(Line::from(vec![
                    Span::styled(label.clone(), BOLD),
                    Span::raw(format!(" (max {max}, {} s)", values.len())),
                ]))
                .render(Rect::new(area.x, y, area.width, 1), buf);
                Sparkline::default()
                    .data(values)
                    .max(max.max(1))
                    .style(Style::new().fg(Color::Cyan))
                    .render(Rect::new(area.x, y + 1, area.width, 1), buf);
            }
        }),
    }
}
