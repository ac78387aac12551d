//! comfy-table set-up shared by every table, and number formatting.

use std::io::IsTerminal;
use std::time::Duration;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table};

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
    let digits = value.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
