//! The exercise list: title and progress on top, the keys at the bottom,
//! always visible; the list between them scrolls when the window is short.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, List, ListItem, ListState, Paragraph};
use ratatui::Frame;

use super::{footer, KEYS_LIST};
use crate::workshop::state::State;

pub fn draw(frame: &mut Frame<'_>, area: Rect, state: &State) {
    let [title, list_area, foot] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(1), Constraint::Length(2)]).areas(area);
    let total = state.catalogue.exercises.len();
    let done = state
        .catalogue
        .exercises
        .iter()
        .filter(|e| state.progress.is_done(&e.id))
        .count();
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(
                "workshop-cli · the caching workshop",
                Style::new().add_modifier(Modifier::BOLD),
            ),
            Span::raw(if area.width >= 72 {
                format!("  {}", crate::report::workshop::progress_line(done, total))
            } else {
                format!("  {done}/{total} done")
            }),
        ])),
        title,
    );
    let items: Vec<ListItem<'_>> = state
        .catalogue
        .exercises
        .iter()
        .map(|e| {
            let mark = if state.progress.is_done(&e.id) { "✓" } else { " " };
            ListItem::new(Line::from(vec![
                Span::styled(format!("{mark} "), Style::new().fg(Color::Green)),
                Span::raw(format!("{:>2}  {}", e.number, e.title)),
            ]))
        })
        .collect();
    let block = Block::bordered().title(" Exercises ");
    let inner_height = block.inner(list_area).height;
    let mut viewport = state.viewport.get();
    viewport.list_height = inner_height;
    state.viewport.set(viewport);
    let list = List::new(items)
        .block(block)
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol("▶ ");
    let mut list_state = ListState::default().with_selected((total > 0).then_some(state.list_selected));
    frame.render_stateful_widget(list, list_area, &mut list_state);
    footer(frame, foot, state.message.as_deref(), KEYS_LIST);
}
