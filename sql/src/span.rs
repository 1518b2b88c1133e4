//! Converting sqlparser's line/column locations into byte ranges of the script, which is what
//! diagnostics point at.

use std::ops::Range;

use sqlparser::ast::Spanned;
use sqlparser::tokenizer::{Location, Span};

/// The byte offset of a 1-based line/column location (columns count characters).
pub fn offset_of(sql: &str, loc: Location) -> Option<usize> {
    if loc.line == 0 {
        return None;
    }
    let mut line = 1u64;
    let mut line_start = 0usize;
    if loc.line > 1 {
        for (i, b) in sql.bytes().enumerate() {
            if b == b'\n' {
                line += 1;
                if line == loc.line {
                    line_start = i + 1;
                    break;
                }
            }
        }
        if line != loc.line {
            return None;
        }
    }
    let rest = &sql[line_start..];
    let col = usize::try_from(loc.column.saturating_sub(1)).ok()?;
    let within = rest
        .char_indices()
        .nth(col)
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    Some(line_start + within)
}

/// The byte range of a sqlparser span; `None` for an empty span.
pub fn range_of(sql: &str, span: Span) -> Option<Range<usize>> {
    let start = offset_of(sql, span.start)?;
    let end = offset_of(sql, span.end).unwrap_or(start).max(start);
    Some(start..end.max(start + 1).min(sql.len().max(start)))
}

/// The byte range of any AST node.
pub fn range_of_node(sql: &str, node: &impl Spanned) -> Option<Range<usize>> {
    range_of(sql, node.span())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_lines_and_chars() {
        let sql = "SELECT a\nFROM tä, b";
        assert_eq!(offset_of(sql, Location::new(1, 1)), Some(0));
        assert_eq!(offset_of(sql, Location::new(2, 1)), Some(9));
        assert_eq!(offset_of(sql, Location::new(2, 8)), Some(17));
    }
}
