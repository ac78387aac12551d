//! Drawing the guided app: `draw(frame, &state)` and nothing else. Layouts
//! come from constraints, so a resize is just another draw; no I/O here.

mod exercise;
mod list;
mod results;

use ratatui::layout::{Constraint, Flex, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph, Wrap};
use ratatui::Frame;

use super::state::State;

pub const KEYS_LIST: &str = "↑↓ choose · Enter open · ? help · q quit";
pub const KEYS_PAGE: &str = "1-9 run · h hint · d done · n next · Tab pane · Esc back · ? help";
pub const KEYS_PAGE_NARROW: &str = "1-9 run · h hint · d done · n next · Tab · Esc · ? help";
pub const KEYS_RUNNING: &str = "Ctrl-C cancel the run · ↑↓ PgUp PgDn scroll";

pub fn draw(frame: &mut Frame<'_>, state: &State) {
    let area = frame.area();
    match state.page {
        Some(_) => exercise::draw(frame, area, state),
        None => list::draw(frame, area, state),
    }
    if state.help {
        help(frame, area);
    }
}

/// The two bottom lines: the message (if any) and the keys of this screen.
fn footer(frame: &mut Frame<'_>, area: Rect, message: Option<&str>, keys: &str) {
    let [message_area, keys_area] = Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    if let Some(message) = message {
        frame.render_widget(
            Paragraph::new(Line::from(vec![
                Span::raw("» "),
                Span::raw(fit(message, usize::from(area.width).saturating_sub(2))),
            ]))
            .style(Style::new().fg(Color::Yellow)),
            message_area,
        );
    }
    frame.render_widget(
        Paragraph::new(keys.to_string()).style(Style::new().add_modifier(Modifier::REVERSED)),
        keys_area,
    );
}

/// `text` cut to `width` columns, with `…` where it was cut.
fn fit(text: &str, width: usize) -> String {
    if unicode_width::UnicodeWidthStr::width(text) <= width {
        return text.to_string();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in text.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w + 1 > width {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

const HELP: &[(&str, &str)] = &[
    ("↑ ↓ PgUp PgDn", "scroll (line, page)"),
    ("Home End", "top, bottom"),
    ("← →", "scroll sideways (code, wide tables)"),
    ("Enter", "open the exercise (list)"),
    ("1-9, r", "run a variant; r runs the last again"),
    ("a b c", "answer the prediction"),
    ("h", "next hint (the result stays)"),
    ("Tab", "switch pane: briefing / result"),
    ("d  n", "mark done · next exercise"),
    ("Ctrl-C", "cancel the run"),
    ("Esc", "back (hint, page) · q quits"),
];

fn help(frame: &mut Frame<'_>, area: Rect) {
    let lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(key, what)| {
            Line::from(vec![
                Span::styled(format!("{key:<14}"), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(*what),
            ])
        })
        .collect();
    let height = (lines.len() as u16 + 2).min(area.height);
    let popup = centered(area, 58, height);
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).block(Block::bordered().title(" Keys · Esc or ? closes ")),
        popup,
    );
}

/// A box of at most `width` × `height` in the middle of `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let [row] = Layout::vertical([Constraint::Length(height.min(area.height))])
        .flex(Flex::Center)
        .areas(area);
    let [cell] = Layout::horizontal([Constraint::Length(width.min(area.width))])
        .flex(Flex::Center)
        .areas(row);
    cell
}

/// Lines of `text` wrapped to `width` (ratatui's word wrap), for sizing a box.
fn wrapped_height(text: &str, width: u16) -> u16 {
    let width = usize::from(width.max(1));
    text.split('\n')
        .map(|line| {
            let mut rows = 1;
            let mut used = 0;
            for word in line.split_whitespace() {
                let w = unicode_width::UnicodeWidthStr::width(word);
                if used > 0 && used + 1 + w > width {
                    rows += 1;
                    used = w;
                } else {
                    used += w + usize::from(used > 0);
                }
            }
            rows
        })
        .sum::<u16>()
}

fn wrapped(text: String) -> Paragraph<'static> {
    Paragraph::new(text).wrap(Wrap { trim: true })
}
