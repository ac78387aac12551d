//! comfy-table set-up shared by every table, and number formatting.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ColumnConstraint, ContentArrangement, Table, Width};
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

use super::Output;

pub fn new_table(output: &Output, header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied().map(Cell::new));
    if !output.color {
        // No styling; force_no_tty also stops comfy-table measuring the terminal.
        table.force_no_tty();
    }
    // The width is given in every mode (NO_COLOR in 80×24 must fit, and a
    // terminal that reports no size falls back to COLUMNS).
    if let Some(width) = text_width() {
        table.set_width(width);
    }
    table
}

/// Word-wraps the prose lines of a text block to `width` display columns,
/// at spaces only, so no number or command is ever cut; a line of a table
/// (it starts with a box-drawing character) is left as comfy-table laid it out.
pub fn wrap_prose(block: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    let mut out = Vec::new();
    for line in block.split('\n') {
        let is_table = line
            .trim_start()
            .chars()
            .next()
            .is_some_and(|c| ('\u{2500}'..='\u{257f}').contains(&c));
        if is_table || line.width() <= width {
            out.push(line.to_string());
            continue;
        }
        let indent: String = line.chars().take_while(|c| *c == ' ').collect();
        let mut current = String::new();
        for word in line.split(' ').filter(|w| !w.is_empty()) {
            if current.is_empty() {
                current = format!("{indent}{word}");
            } else if current.width() + 1 + word.width() <= width {
                current.push(' ');
                current.push_str(word);
            } else {
                out.push(std::mem::take(&mut current));
                current = format!("{indent}{word}");
            }
        }
        out.push(current);
    }
    out.join("\n")
}

/// The width tables are laid out for without colour: the terminal's, or
/// `COLUMNS` when stdout is a pipe (`COLUMNS=80 workshop-cli stats | less`);
/// `None` leaves a piped table as wide as its content.
pub fn text_width() -> Option<u16> {
    if std::io::stdout().is_terminal() {
        if let Ok((width, _)) = crossterm::terminal::size() {
            if width > 0 {
                return Some(width);
            }
        }
    }
    std::env::var("COLUMNS")
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|width| *width > 0)
}

/// Right-aligns the given columns (numbers read better that way) and keeps
/// their numbers whole: such a column is never narrower than its widest
/// value, so at 80 columns comfy-table wraps the headers and the text
/// columns instead of cutting a number across two lines. Call it after the
/// rows are added.
pub fn align_right(table: &mut Table, columns: &[usize]) {
    let widest: Vec<usize> = columns
        .iter()
        .map(|index| {
            table
                .row_iter()
                .filter_map(|row| row.cell_iter().nth(*index))
                .map(|cell| cell.content().lines().map(UnicodeWidthStr::width).max().unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .collect();
    for (index, widest) in columns.iter().zip(widest) {
        if let Some(column) = table.column_mut(*index) {
            column.set_cell_alignment(CellAlignment::Right);
            // The padding is part of a column's width.
            let width = u16::try_from(widest + 2).unwrap_or(u16::MAX);
            column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(width)));
        }
    }
}

/// Milliseconds in at most five characters, for tables with many latency
/// columns: three decimals below 10 ms, then fewer (12.10, 123.4, 9953).
pub fn ms_compact(value: Duration) -> String {
    let ms = value.as_secs_f64() * 1000.0;
    match ms {
        m if m < 10.0 => format!("{m:.3}"),
        m if m < 100.0 => format!("{m:.2}"),
        m if m < 1000.0 => format!("{m:.1}"),
        m => format!("{m:.0}"),
    }
}

/// Milliseconds with three decimals: 0.142 ms, 27.310 ms.
pub fn ms(value: Duration) -> String {
    format!("{:.3}", value.as_secs_f64() * 1000.0)
}

/// A count with thousands separators: 412,345.
pub fn count(value: u64) -> String {
    crate::measure::count(value)
}

/// A result cell is cut to this many terminal columns: laying out a 10 MB
/// cell took comfy-table 25 s, and 300 MB never finished. `--json` keeps all.
pub const CELL_COLUMNS: usize = 60;

/// The cell as shown in a table: whole when it fits in [`CELL_COLUMNS`],
/// else its first columns and the full size, e.g. `xxxx…(10.0 MB)`.
/// Line breaks show as `⏎` so one row stays one row.
pub fn cell_text(text: &str) -> String {
    let mut shown = String::new();
    let mut columns = 0;
    for c in text.chars() {
        let c = if c == '\n' { '⏎' } else { c };
        let width = c.width().unwrap_or(0);
        if columns + width > CELL_COLUMNS {
            return format!("{shown}…({})", size(text.len() as u64));
        }
        columns += width;
        shown.push(c);
    }
    shown
}

/// Bytes in decimal units with one decimal: 999 B, 1.5 kB, 10.0 MB.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_cells_are_shown_whole() {
        assert_eq!(cell_text("FARQUHAR"), "FARQUHAR");
        assert_eq!(cell_text(&"x".repeat(CELL_COLUMNS)), "x".repeat(CELL_COLUMNS));
        assert_eq!(cell_text("a\nb"), "a⏎b");
    }

    #[test]
    fn long_cells_are_cut_with_their_full_size() {
        let big = "x".repeat(10_000_000);
        assert_eq!(cell_text(&big), format!("{}…(10.0 MB)", "x".repeat(CELL_COLUMNS)));
        assert_eq!(
            cell_text(&"y".repeat(61)),
            format!("{}…(61 B)", "y".repeat(CELL_COLUMNS))
        );
    }

    #[test]
    fn wide_characters_count_two_columns() {
        let wide = "漢".repeat(40); // 80 columns, 120 bytes
        assert_eq!(cell_text(&wide), format!("{}…(120 B)", "漢".repeat(30)));
    }

    #[test]
    fn sizes_use_decimal_units() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1500), "1.5 kB");
        assert_eq!(size(3_000_000), "3.0 MB");
        assert_eq!(size(300_000_000), "300.0 MB");
        assert_eq!(size(999_999), "1.0 MB");
    }

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(412_345), "412,345");
        assert_eq!(count(1_000_000), "1,000,000");
    }

    #[test]
    fn prose_wraps_at_spaces_and_tables_stay_as_laid_out() {
        let prose = "Already seeded: MariaDB at mysql://workshop:***@127.0.0.1:3306/workshop holds 12,345 rows; nothing changed.";
        let wrapped = wrap_prose(prose, 40);
        assert!(
            wrapped.lines().all(|l| l.chars().count() <= 40 || !l.contains(' ')),
            "{wrapped}"
        );
        assert!(wrapped.contains("12,345"), "numbers stay whole: {wrapped}");
        assert_eq!(wrapped.replace('\n', " "), prose);
        let table = format!("│ {} │", "x".repeat(60));
        assert_eq!(wrap_prose(&table, 40), table);
        assert_eq!(wrap_prose("  short", 40), "  short");
    }

    #[test]
    fn compact_milliseconds_keep_five_characters() {
        assert_eq!(ms_compact(Duration::from_micros(670)), "0.670");
        assert_eq!(ms_compact(Duration::from_micros(12_100)), "12.10");
        assert_eq!(ms_compact(Duration::from_micros(123_456)), "123.5");
        assert_eq!(ms_compact(Duration::from_micros(9_952_721)), "9953");
    }

    #[test]
    fn milliseconds_have_three_decimals() {
        assert_eq!(ms(Duration::from_micros(142)), "0.142");
        assert_eq!(ms(Duration::from_micros(27_310)), "27.310");
    }
}
