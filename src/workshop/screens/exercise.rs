//! An exercise page: its title, the variants with their keys, the
//! briefing (Markdown, scrollable both ways), the results pane once a run
//! started, a hint over the briefing, and the predict/prompt box.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph};
use ratatui::Frame;

use super::{centered, footer, results, wrapped, wrapped_height, KEYS_PAGE, KEYS_PAGE_NARROW, KEYS_RUNNING};
use crate::workshop::markdown::Document;
use crate::workshop::state::{Focus, Modal, State};

/// Results beside the briefing from this width on; above it, below.
const SIDE_BY_SIDE_FROM: u16 = 120;

pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let (Some(page), Some(exercise)) = (state.page.as_ref(), state.exercise()) else {
        return;
    };
    let variants = exercise.runs();
    let variant_lines = variant_lines(&variants, area.width);
    let last = state.catalogue.exercises.last().map_or(0, |e| e.number);
    let done = if state.progress.is_done(&exercise.id) {
        " · done ✓"
    } else {
        ""
    };
    let heading = format!("Exercise {} of {last}{done} · ", exercise.number);
    // A narrow window wraps the title rather than cutting it.
    let title_rows = wrapped_height(&format!("{heading}{}", exercise.title), area.width);
    let [title, variants_area, body, foot] = Layout::vertical([
        Constraint::Length(title_rows),
        Constraint::Length(variant_lines.len() as u16),
        Constraint::Min(3),
        Constraint::Length(2),
    ])
    .areas(area);

    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(heading, Style::new().fg(Color::Yellow)),
            Span::styled(exercise.title.clone(), Style::new().add_modifier(Modifier::BOLD)),
        ]))
        .wrap(ratatui::widgets::Wrap { trim: true }),
        title,
    );
    frame.render_widget(Paragraph::new(variant_lines), variants_area);

    // Too short for two panes: the focused one fills the body (Tab switches).
    let one_pane = body.height < 12 && area.width < SIDE_BY_SIDE_FROM;
    let (briefing_area, results_area) = match page.run {
        None => (body, None),
        Some(_) if one_pane && page.focus == Focus::Results => (Rect::new(body.x, body.y, body.width, 0), Some(body)),
        Some(_) if one_pane => (body, None),
        Some(_) if area.width >= SIDE_BY_SIDE_FROM => {
            let [left, right] =
                Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
            (left, Some(right))
        }
        Some(_) => {
            let [top, bottom] = Layout::vertical([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(body);
            (top, Some(bottom))
        }
    };
    briefing(frame, briefing_area, state);
    if let (Some(results_area), Some(run)) = (results_area, page.run.as_ref()) {
        results::draw(frame, results_area, state, run, page.focus == Focus::Results);
    }
    // Over the briefing; in a window too short for both panes, over the
    // result's lower part (the result's top stays in view).
    let hint_host = if briefing_area.height > 0 {
        briefing_area
    } else {
        results_area.unwrap_or(body)
    };
    if let Some(hint) = page.hint {
        let briefing_area = hint_host;
        let text = format!("Hint {}/{}: {}", hint + 1, exercise.hints.len(), exercise.hints[hint]);
        let inner_width = briefing_area.width.saturating_sub(2);
        let height = (wrapped_height(&text, inner_width) + 2).min(briefing_area.height);
        let [_, hint_area] = Layout::vertical([Constraint::Min(0), Constraint::Length(height)]).areas(briefing_area);
        frame.render_widget(Clear, hint_area);
        frame.render_widget(
            wrapped(text).block(
                Block::bordered()
                    .title(" Hint · h next · Esc close ")
                    .border_style(Style::new().fg(Color::Green)),
            ),
            hint_area,
        );
    }
    if let Some(modal) = &page.modal {
        modal_box(frame, body, modal, &variants);
    }
    let keys = match (state.running(), area.width < 70) {
        (true, _) => KEYS_RUNNING,
        (false, false) => KEYS_PAGE,
        (false, true) => KEYS_PAGE_NARROW,
    };
    footer(frame, foot, state.message.as_deref(), keys);
}

/// `1 the airport …  2 the busiest routes …`, packed into lines; a `?`
/// marks a variant that asks for a prediction first.
fn variant_lines(variants: &[crate::workshop::catalogue::Variant], width: u16) -> Vec<Line<'static>> {
    let width = usize::from(width.max(10));
    let mut lines = Vec::new();
    let mut spans: Vec<Span<'static>> = Vec::new();
    let mut used = 0;
    for (i, variant) in variants.iter().enumerate() {
        let key = format!("[{}]", i + 1);
        let mark = if variant.question.is_some() { " ?" } else { "" };
        let label = format!(" {}{mark}", variant.label);
        let entry =
            unicode_width::UnicodeWidthStr::width(key.as_str()) + unicode_width::UnicodeWidthStr::width(label.as_str());
        if used > 0 && used + 2 + entry > width {
            lines.push(Line::from(std::mem::take(&mut spans)));
            used = 0;
        }
        if used > 0 {
            spans.push(Span::raw("  "));
            used += 2;
        }
        let key_width = unicode_width::UnicodeWidthStr::width(key.as_str());
        spans.push(Span::styled(
            key,
            Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ));
        if entry <= width {
            spans.push(Span::raw(label));
            used += entry;
            continue;
        }
        // Wider than the window: its words wrap under the label, after the key.
        used += key_width;
        let indent = key_width + 1;
        for word in label.split_whitespace() {
            let word_width = unicode_width::UnicodeWidthStr::width(word);
            if used > indent && used + 1 + word_width > width {
                lines.push(Line::from(std::mem::take(&mut spans)));
                spans.push(Span::raw(" ".repeat(indent - 1)));
                used = indent - 1;
            }
            spans.push(Span::raw(format!(" {word}")));
            used += 1 + word_width;
        }
        // The next variant starts on a line of its own.
        lines.push(Line::from(std::mem::take(&mut spans)));
        used = 0;
    }
    if !spans.is_empty() {
        lines.push(Line::from(spans));
    }
    lines
}

fn briefing(frame: &mut Frame<'_>, area: Rect, state: &State) {
    if area.height == 0 {
        return;
    }
    let (Some(page), Some(exercise)) = (state.page.as_ref(), state.exercise()) else {
        return;
    };
    let focused = page.focus == Focus::Briefing;
    let block = Block::new()
        .borders(Borders::TOP)
        .title(" Briefing ")
        .border_style(focus_style(focused && page.run.is_some()));
    let inner = block.inner(area);
    let text = exercise.briefing_text().unwrap_or("(this exercise has no briefing)");
    let text = match exercise.grade_offer() {
        Some(offer) => format!("{text}\n\n{offer}"),
        None => text.to_string(),
    };
    let document = Document::parse(&text);
    let lines = document.lines(inner.width);
    let widest = lines.iter().map(Line::width).max().unwrap_or(0) as u16;
    let max_y = (lines.len() as u16).saturating_sub(inner.height);
    let max_x = widest.saturating_sub(inner.width);
    let mut viewport = state.viewport.get();
    viewport.briefing_height = inner.height;
    viewport.briefing_max = (max_y, max_x);
    state.viewport.set(viewport);
    let scroll = (page.briefing.y.min(max_y), page.briefing.x.min(max_x));
    frame.render_widget(block, area);
    frame.render_widget(Paragraph::new(lines).scroll(scroll), inner);
}

pub fn focus_style(focused: bool) -> Style {
    if focused {
        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD)
    } else {
        Style::new()
    }
}

fn modal_box(frame: &mut Frame<'_>, area: Rect, modal: &Modal, variants: &[crate::workshop::catalogue::Variant]) {
    let (title, lines): (&str, Vec<Line<'static>>) = match modal {
        Modal::Question { variant, .. } => {
            let Some(question) = variants.get(*variant).and_then(|v| v.question.as_ref()) else {
                return;
            };
            let mut lines = vec![Line::from(Span::styled(
                question.ask.clone(),
                Style::new().add_modifier(Modifier::BOLD),
            ))];
            for (i, choice) in question.choices.iter().enumerate() {
                lines.push(Line::from(vec![
                    Span::styled(
                        format!("  {}) ", char::from(b'a' + i as u8)),
                        Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD),
                    ),
                    Span::raw(choice.label.clone()),
                ]));
            }
            (" Predict, then run · a b c answer · Esc skip ", lines)
        }
        Modal::Prompt { variant, input } => {
            let prompt = variants
                .get(*variant)
                .and_then(|v| v.prompt.clone())
                .unwrap_or_default();
            (
                " Enter runs · Esc cancels ",
                vec![
                    Line::from(prompt),
                    Line::from(vec![Span::raw("> "), Span::raw(input.clone()), Span::raw("▏")]),
                ],
            )
        }
    };
    let width = area.width.min(72);
    let inner_width = width.saturating_sub(2);
    let text_rows: u16 = lines
        .iter()
        .map(|l| wrapped_height(&crate::workshop::markdown::plain(l), inner_width))
        .sum();
    let popup = centered(area, width, text_rows + 2);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(ratatui::widgets::Wrap { trim: false })
            .block(
                Block::bordered()
                    .title(title)
                    .border_style(Style::new().fg(Color::Cyan)),
            ),
        popup,
    );
}
