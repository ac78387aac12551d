//! A briefing's Markdown as terminal lines: headings, bold, emphasis,
//! inline code, lists, code blocks and tables, wrapped by display width
//! (not char count) at spaces. A word wider than the line is kept whole,
//! and code blocks, table rows and inline code are never broken: what a
//! learner copies is what runs (the pane scrolls sideways instead).

use pulldown_cmark::{CodeBlockKind, Event, HeadingLevel, Options, Parser, Tag, TagEnd};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use unicode_width::UnicodeWidthStr;

/// A briefing parsed once, laid out again for every width.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    blocks: Vec<Block>,
}

#[derive(Debug, Clone, PartialEq)]
enum Block {
    Heading(u8, Vec<Piece>),
    /// Text to wrap; `first` is the list marker, `indent` the hanging indent.
    Text {
        first: String,
        indent: usize,
        pieces: Vec<Piece>,
    },
    /// Lines kept as they are: a code block or a table.
    Verbatim(Vec<String>),
    Rule,
}

/// A run of text in one style; `whole` pieces are never broken at spaces.
#[derive(Debug, Clone, PartialEq)]
struct Piece {
    text: String,
    style: Style,
    whole: bool,
}

const CODE: Style = Style::new().fg(Color::Cyan);

impl Document {
    pub fn parse(markdown: &str) -> Document {
        let mut blocks = Vec::new();
        let mut style = Style::new();
        let mut pieces: Vec<Piece> = Vec::new();
        // (ordered next number or None for bullets) per open list
        let mut lists: Vec<Option<u64>> = Vec::new();
        let mut item_marker: Option<(String, usize)> = None;
        let mut code: Option<Vec<String>> = None;
        let mut table: Option<(Vec<String>, Vec<String>, String)> = None; // rows, cells, cell
        let mut heading: Option<u8> = None;

        let flush_text = |pieces: &mut Vec<Piece>,
                          blocks: &mut Vec<Block>,
                          item_marker: &mut Option<(String, usize)>,
                          lists: &Vec<Option<u64>>| {
            if pieces.iter().all(|p| p.text.trim().is_empty()) {
                pieces.clear();
                return;
            }
            let depth = lists.len().saturating_sub(1) * 3;
            let (first, indent) = match item_marker.take() {
                Some((marker, width)) => (format!("{}{marker}", " ".repeat(depth)), depth + width),
                None if lists.is_empty() => (String::new(), 0),
                None => (" ".repeat(depth + 3), depth + 3),
            };
            blocks.push(Block::Text {
                first,
                indent,
                pieces: std::mem::take(pieces),
            });
        };

        for event in Parser::new_ext(markdown, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH) {
            if let Some((_, cells, cell)) = table.as_mut() {
                match event {
                    Event::Text(t) | Event::Code(t) => {
                        cell.push_str(&t);
                        continue;
                    }
                    Event::End(TagEnd::TableCell) => {
                        cells.push(std::mem::take(cell).trim().to_string());
                        continue;
                    }
                    Event::End(TagEnd::TableHead) | Event::End(TagEnd::TableRow) => {
                        let (rows, cells, _) = table.as_mut().expect("a table is open");
                        rows.push(cells.join(" │ "));
                        cells.clear();
                        continue;
                    }
                    Event::End(TagEnd::Table) => {
                        let (rows, _, _) = table.take().expect("a table is open");
                        blocks.push(Block::Verbatim(rows));
                        continue;
                    }
                    _ => continue,
                }
            }
            match event {
                Event::Start(Tag::Heading { level, .. }) => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                    heading = Some(match level {
                        HeadingLevel::H1 => 1,
                        HeadingLevel::H2 => 2,
                        _ => 3,
                    });
                }
                Event::End(TagEnd::Heading(_)) => {
                    if let Some(level) = heading.take() {
                        blocks.push(Block::Heading(level, std::mem::take(&mut pieces)));
                    }
                }
                Event::Start(Tag::CodeBlock(kind)) => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                    let _ = matches!(kind, CodeBlockKind::Fenced(_));
                    code = Some(Vec::new());
                }
                Event::End(TagEnd::CodeBlock) => {
                    if let Some(lines) = code.take() {
                        let depth = if lists.is_empty() { 0 } else { lists.len() * 3 };
                        let pad = " ".repeat(depth + 2);
                        blocks.push(Block::Verbatim(
                            lines.into_iter().map(|l| format!("{pad}{l}")).collect(),
                        ));
                    }
                }
                Event::Text(text) if code.is_some() => {
                    let lines = code.as_mut().expect("a code block is open");
                    lines.extend(text.trim_end_matches('\n').split('\n').map(str::to_string));
                }
                Event::Start(Tag::Table(_)) => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                    table = Some((Vec::new(), Vec::new(), String::new()));
                }
                Event::Start(Tag::List(start)) => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                    lists.push(start);
                }
                Event::End(TagEnd::List(_)) => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                    lists.pop();
                }
                Event::Start(Tag::Item) => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                    let marker = match lists.last_mut() {
                        Some(Some(n)) => {
                            let marker = format!("{n}. ");
                            *n += 1;
                            marker
                        }
                        _ => "• ".to_string(),
                    };
                    let width = marker.width();
                    item_marker = Some((marker, width));
                }
                Event::End(TagEnd::Item) | Event::End(TagEnd::Paragraph) | Event::End(TagEnd::BlockQuote(_)) => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                }
                Event::Start(Tag::Strong) => style = style.add_modifier(Modifier::BOLD),
                Event::End(TagEnd::Strong) => style = style.remove_modifier(Modifier::BOLD),
                Event::Start(Tag::Emphasis) => style = style.add_modifier(Modifier::ITALIC),
                Event::End(TagEnd::Emphasis) => style = style.remove_modifier(Modifier::ITALIC),
                Event::Text(text) => pieces.push(Piece {
                    text: text.to_string(),
                    style,
                    whole: false,
                }),
                Event::Code(text) => pieces.push(Piece {
                    text: text.to_string(),
                    style: CODE,
                    whole: true,
                }),
                Event::SoftBreak | Event::HardBreak => pieces.push(Piece {
                    text: " ".into(),
                    style,
                    whole: false,
                }),
                Event::Rule => {
                    flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
                    blocks.push(Block::Rule);
                }
                Event::Html(text) | Event::InlineHtml(text) => pieces.push(Piece {
                    text: text.to_string(),
                    style,
                    whole: false,
                }),
                _ => {}
            }
        }
        flush_text(&mut pieces, &mut blocks, &mut item_marker, &lists);
        Document { blocks }
    }

    /// The document as lines at most `width` columns wide, except a code
    /// line, table row or single word that is wider (kept whole).
    pub fn lines(&self, width: u16) -> Vec<Line<'static>> {
        let width = usize::from(width.max(10));
        let mut lines: Vec<Line<'static>> = Vec::new();
        let gap = |lines: &mut Vec<Line<'static>>| {
            if lines.last().is_some_and(|l| l.width() > 0) {
                lines.push(Line::default());
            }
        };
        for (i, block) in self.blocks.iter().enumerate() {
            let list_continues = matches!(
                (block, i.checked_sub(1).and_then(|j| self.blocks.get(j))),
                (Block::Text { indent, .. }, Some(Block::Text { indent: before, .. })) if *indent > 0 && *before > 0
            );
            if !list_continues {
                gap(&mut lines);
            }
            match block {
                Block::Heading(level, pieces) => {
                    let text: String = pieces.iter().map(|p| p.text.as_str()).collect();
                    let style = Style::new().add_modifier(Modifier::BOLD);
                    let style = if *level == 1 {
                        style.fg(Color::Yellow)
                    } else {
                        style.add_modifier(Modifier::UNDERLINED)
                    };
                    let plain = Block::Text {
                        first: String::new(),
                        indent: 0,
                        pieces: vec![Piece {
                            text,
                            style,
                            whole: false,
                        }],
                    };
                    lines.extend(wrap(&plain, width));
                }
                Block::Text { .. } => lines.extend(wrap(block, width)),
                Block::Verbatim(rows) => {
                    lines.extend(rows.iter().map(|r| Line::from(Span::styled(r.clone(), CODE))));
                }
                Block::Rule => lines.push(Line::from("─".repeat(width.min(40)))),
            }
        }
        lines
    }
}

/// Fills a text block into lines at spaces; a `whole` piece moves to the
/// next line as one, and a word wider than the line stands alone.
fn wrap(block: &Block, width: usize) -> Vec<Line<'static>> {
    let Block::Text { first, indent, pieces } = block else {
        return Vec::new();
    };
    // Words: (text, style), split at spaces except inside whole pieces.
    let mut words: Vec<Vec<(String, Style)>> = Vec::new();
    let mut open = false; // the last word continues (no space before the next piece)
    for piece in pieces {
        if piece.whole {
            if open {
                words
                    .last_mut()
                    .expect("open word")
                    .push((piece.text.clone(), piece.style));
            } else {
                words.push(vec![(piece.text.clone(), piece.style)]);
            }
            open = true;
            continue;
        }
        let mut rest = piece.text.as_str();
        while !rest.is_empty() {
            if rest.starts_with(char::is_whitespace) {
                rest = rest.trim_start();
                open = false;
                continue;
            }
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            if open {
                words
                    .last_mut()
                    .expect("open word")
                    .push((word.to_string(), piece.style));
            } else {
                words.push(vec![(word.to_string(), piece.style)]);
            }
            open = true;
            rest = &rest[end..];
        }
    }
    let mut lines = Vec::new();
    let mut spans: Vec<Span<'static>> = vec![Span::raw(first.clone())];
    let mut used = first.width();
    let mut empty = true;
    for word in words {
        let word_width: usize = word.iter().map(|(t, _)| t.width()).sum();
        if !empty && used + 1 + word_width > width {
            lines.push(Line::from(std::mem::take(&mut spans)));
            spans.push(Span::raw(" ".repeat(*indent)));
            used = *indent;
            empty = true;
        }
        if !empty {
            spans.push(Span::raw(" "));
            used += 1;
        }
        for (text, style) in word {
            spans.push(Span::styled(text, style));
        }
        used += word_width;
        empty = false;
    }
    lines.push(Line::from(spans));
    lines
}

/// A line's text without styles (tests and the pty capture read these).
pub fn plain(line: &Line<'_>) -> String {
    line.spans.iter().map(|s| s.content.as_ref()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(markdown: &str, width: u16) -> Vec<String> {
        Document::parse(markdown).lines(width).iter().map(plain).collect()
    }

    #[test]
    fn bold_and_headings_lose_their_markers_and_paragraphs_rewrap() {
        let lines = text("# Title\n\nthe **quick** brown\nfox jumps over the lazy dog", 20);
        assert_eq!(
            lines,
            vec!["Title", "", "the quick brown fox", "jumps over the lazy", "dog"]
        );
    }

    #[test]
    fn list_items_hang_and_code_blocks_are_never_broken() {
        let lines = text(
            "- first item that is long enough\n1. second\n\n```\nworkshop-cli cache-aside --query busiest-routes --runs 20\n```\n",
            16,
        );
        assert_eq!(
            lines,
            vec![
                "• first item",
                "  that is long",
                "  enough",
                "1. second",
                "",
                "  workshop-cli cache-aside --query busiest-routes --runs 20",
            ]
        );
    }

    #[test]
    fn wrapping_counts_display_width_and_inline_code_moves_whole() {
        // "日本" is 4 columns wide, 2 chars.
        let lines = text("日本 日本 日本 and `just exercise-1 now`", 12);
        assert_eq!(lines, vec!["日本 日本", "日本 and", "just exercise-1 now"]);
        for line in Document::parse("日本 ".repeat(30).as_str()).lines(21) {
            assert!(line.width() <= 21, "{}", plain(&line));
        }
    }

    #[test]
    fn every_briefing_fits_60_columns_except_verbatim_lines_and_shows_no_markers() {
        for exercise in super::super::catalogue::Catalogue::builtin().unwrap().exercises {
            let markdown = exercise.briefing_text().unwrap_or_default();
            let document = Document::parse(markdown);
            let verbatim: Vec<String> = document
                .blocks
                .iter()
                .filter_map(|b| match b {
                    Block::Verbatim(rows) => Some(rows.clone()),
                    _ => None,
                })
                .flatten()
                .collect();
            for line in document.lines(60) {
                let shown = plain(&line);
                // `***` (a masked password, in inline code) is text, not a marker.
                let markers = shown.replace("***", "");
                assert!(
                    !markers.contains("**") && !markers.contains("```"),
                    "{}: {shown}",
                    exercise.id
                );
                // A word or an inline command wider than the line is kept whole.
                let long_word = shown.split_whitespace().count() == 1
                    || line.spans.iter().any(|s| s.style == CODE && s.width() > 40);
                assert!(
                    line.width() <= 60 || verbatim.contains(&shown) || long_word,
                    "{}: {shown}",
                    exercise.id
                );
            }
        }
    }
}
