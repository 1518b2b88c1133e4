//! Flink's print format for result rows: `+I[1, abc]`.

use streamsql_engine::expr::format::write_print_value;
use streamsql_engine::types::Schema;
use streamsql_engine::value::Change;

/// Appends `change` as the print connector writes it (no newline).
pub fn write_change(out: &mut String, schema: &Schema, change: &Change) {
    out.push_str(change.kind.short());
    out.push('[');
    for (i, v) in change.row.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        match schema.fields.get(i) {
            Some(f) => write_print_value(out, v, &f.data_type),
            None => out.push_str("null"),
        }
    }
    out.push(']');
}
