//! comfy-table set-up shared by every table, and number formatting.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};
use unicode_width::UnicodeWidthChar;

use super::Output;

pub fn new_table(output: &Output, header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied().map(Cell::new));
    if !output.color {
        // No styling; but force_no_tty also stops comfy-table measuring the
        // terminal, so give it the width itself (NO_COLOR in 80×24 must fit).
        table.force_no_tty();
        if std::io::stdout().is_terminal() {
            if let Ok((width, _)) = crossterm::terminal::size() {
                if width > 0 {
                    table.set_width(width);
                }
            }
        }
    }
    table
}

/// Right-aligns the given columns (numbers read better that way).
pub fn align_right(table: &mut Table, columns: &[usize]) {
    for index in columns {
        if let Some(column) = table.column_mut(*index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
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
    fn milliseconds_have_three_decimals() {
        assert_eq!(ms(Duration::from_micros(142)), "0.142");
        assert_eq!(ms(Duration::from_micros(27_310)), "27.310");
    }
}
