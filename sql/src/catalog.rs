//! The session catalog: tables and views by name, in creation order.
//!
//! A table keeps its declaration as parsed (the planner binds computed columns and the watermark
//! each time the table is scanned); a view keeps its query AST and the script text it came from,
//! and is planned inline wherever it is used, as Flink expands views.

use std::collections::BTreeMap;

use streamsql_engine::connectors::registry::{self, CustomSource};
use streamsql_engine::types::{DataType, Field, Schema};
use streamsql_engine::EngineError;

use sqlparser::ast::Expr as AstExpr;

use crate::ast::{ColumnKind, CreateTable, CreateView};
use crate::binder::{ExprBinder, Scope, ScopeColumn};

/// A table created with `CREATE TABLE`.
#[derive(Clone, Debug)]
pub struct TableEntry {
    pub def: CreateTable,
    /// The script text the definition's spans point into.
    pub sql: String,
}

impl TableEntry {
    /// The physical columns, read from (or written to) the connector.
    pub fn physical_schema(&self) -> Schema {
        Schema::new(
            self.def
                .columns
                .iter()
                .filter_map(|c| match &c.kind {
                    ColumnKind::Physical { data_type, .. } => {
                        Some(Field::new(c.name.clone(), data_type.clone()))
                    }
                    _ => None,
                })
                .collect(),
        )
    }

    /// Where a connector's error about this table's options should point: the option (key, or
    /// value when the value is quoted in the message) named before any "Supported options" list,
    /// else the table's name.
    pub fn option_error_span(&self, message: &str) -> std::ops::Range<usize> {
        let head = message
            .split("Supported options:")
            .next()
            .unwrap_or(message);
        let names_key =
            |k: &str| head.contains(&format!("'{k}'")) || head.lines().any(|l| l.trim() == k);
        self.def
            .options
            .iter()
            .filter(|o| o.key != "connector")
            .find(|o| names_key(&o.key))
            .map(|o| o.key_span.clone())
            .or_else(|| {
                self.def
                    .options
                    .iter()
                    .find(|o| head.contains(&format!("'{}'", o.value)))
                    .map(|o| o.value_span.clone())
            })
            .unwrap_or_else(|| self.def.name_span.clone())
    }

    /// The value of a `WITH` option.
    pub fn option(&self, key: &str) -> Option<&str> {
        self.def
            .options
            .iter()
            .rev()
            .find(|o| o.key == key)
            .map(|o| o.value.as_str())
    }
}

/// A view created with `CREATE VIEW`.
#[derive(Clone, Debug)]
pub struct ViewEntry {
    pub def: CreateView,
    pub sql: String,
}

/// What a name refers to.
// A session holds a handful of entries, looked up once per statement: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum CatalogEntry {
    Table(TableEntry),
    View(ViewEntry),
}

/// Tables and views of a session.
#[derive(Clone, Debug, Default)]
pub struct Catalog {
    entries: BTreeMap<String, CatalogEntry>,
    /// Source connectors the application added, by `connector` name.
    source_connectors: SourceConnectors,
}

/// Source connectors added to a session beside the built-in ones.
#[derive(Clone, Default)]
struct SourceConnectors(BTreeMap<String, CustomSource>);

impl std::fmt::Debug for SourceConnectors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a source connector: tables `WITH ('connector' = '<name>')` read through `connector`.
    /// A built-in connector's name cannot be taken.
    pub fn add_source_connector(
        &mut self,
        name: &str,
        connector: CustomSource,
    ) -> Result<(), EngineError> {
        if registry::CONNECTORS.contains(&name) {
            return Err(EngineError::option(
                format!("'{name}' is a built-in connector and cannot be replaced"),
                None,
            ));
        }
        self.source_connectors.0.insert(name.to_string(), connector);
        Ok(())
    }

    /// The added source connector called `name`, if any.
    pub fn source_connector(&self, name: &str) -> Option<&CustomSource> {
        self.source_connectors.0.get(name)
    }

    /// Looks a name up (Flink's identifiers are case-sensitive; an exact match wins, then a
    /// case-insensitive one so that a near miss still resolves unambiguously).
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name).or_else(|| {
            let mut it = self
                .entries
                .iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name));
            match (it.next(), it.next()) {
                (Some((_, e)), None) => Some(e),
                _ => None,
            }
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn insert(&mut self, name: String, entry: CatalogEntry) {
        self.entries.insert(name, entry);
    }

    pub fn remove(&mut self, name: &str) -> Option<CatalogEntry> {
        self.entries.remove(name)
    }

    /// Names of tables and views (`views == false`, as Flink's SHOW TABLES) or of views only,
    /// sorted.
    pub fn names(&self, views: bool) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| !views || matches!(e, CatalogEntry::View(_)))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every name, for "did you mean".
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// `DESCRIBE` output of a table, in Flink's columns: name, type (the rowtime column marked
/// `*ROWTIME*`), null, key (`PRI(a, b)`), extras (`AS expr` of a computed column) and watermark.
/// Expressions are written as Flink expands them, identifiers in backquotes. A computed column
/// whose expression does not bind shows no type rather than failing the DESCRIBE.
pub fn describe_table(t: &TableEntry) -> Vec<Vec<String>> {
    let pk: Vec<&str> = t
        .def
        .primary_key
        .as_ref()
        .map(|p| p.columns.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let key = format!("PRI({})", pk.join(", "));
    let physical = Scope {
        columns: t
            .physical_schema()
            .fields
            .into_iter()
            .map(|f| ScopeColumn {
                qualifier: None,
                name: f.name,
                data_type: f.data_type,
                rowtime: false,
            })
            .collect(),
    };
    t.def
        .columns
        .iter()
        .map(|c| {
            let (mut ty, extra) = match &c.kind {
                ColumnKind::Physical { data_type, .. } => (data_type.to_string(), String::new()),
                ColumnKind::Computed { expr, .. } => {
                    let ty = ExprBinder::new(&t.sql, &physical)
                        .bind(expr)
                        .map(|b| b.ty.to_string())
                        .unwrap_or_default();
                    (ty, format!("AS {}", backquoted(expr)))
                }
                ColumnKind::Metadata { data_type, .. } => {
                    (data_type.to_string(), "METADATA".into())
                }
            };
            let watermark = match &t.def.watermark {
                Some(w) if w.column == c.name => {
                    ty.push_str(" *ROWTIME*");
                    backquoted(&w.expr)
                }
                _ => String::new(),
            };
            let is_key = pk.contains(&c.name.as_str());
            vec![
                c.name.clone(),
                ty,
                (!is_key).to_string(),
                if is_key { key.clone() } else { String::new() },
                extra,
                watermark,
            ]
        })
        .collect()
}

/// The text of `e` with every identifier in backquotes, as Flink shows expanded expressions.
fn backquoted(e: &AstExpr) -> String {
    let mut e = e.clone();
    quote_identifiers(&mut e);
    e.to_string()
}

fn quote_identifiers(e: &mut AstExpr) {
    use sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    match e {
        AstExpr::Identifier(i) => i.quote_style = Some('`'),
        AstExpr::CompoundIdentifier(parts) => {
            for i in parts {
                i.quote_style = Some('`');
            }
        }
        AstExpr::BinaryOp { left, right, .. } => {
            quote_identifiers(left);
            quote_identifiers(right);
        }
        AstExpr::UnaryOp { expr, .. }
        | AstExpr::Nested(expr)
        | AstExpr::Cast { expr, .. }
        | AstExpr::IsNull(expr)
        | AstExpr::IsNotNull(expr) => quote_identifiers(expr),
        AstExpr::Function(f) => {
            if let FunctionArguments::List(list) = &mut f.args {
                for a in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) = a {
                        quote_identifiers(x);
                    }
                }
            }
        }
        _ => {}
    }
}

/// Helper for planners: the type of a physical column by name.
pub fn physical_type(t: &TableEntry, name: &str) -> Option<DataType> {
    t.physical_schema()
        .fields
        .into_iter()
        .find(|f| f.name == name)
        .map(|f| f.data_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ast::Statement;

    fn table(sql: &str) -> TableEntry {
        match crate::parser::parse_script(sql).expect("parses").remove(0) {
            Statement::CreateTable(def) => TableEntry {
                def,
                sql: sql.to_string(),
            },
            other => panic!("not a CREATE TABLE: {other:?}"),
        }
    }

    #[test]
    fn option_errors_point_at_the_unsupported_option_not_the_supported_list() {
        let sql = "CREATE TABLE t (x INT) WITH ('connector' = 'filesystem', 'path' = 'p', 'csv.bad' = '1')";
        let t = table(sql);
        let msg = "Unsupported options found for 'filesystem'.\n\nUnsupported options:\n\ncsv.bad\n\nSupported options:\n\nconnector\npath\n";
        assert_eq!(&sql[t.option_error_span(msg)], "'csv.bad'");
        let unknown = "Could not find any factory for identifier 'kafkaa'";
        let t2 = table("CREATE TABLE t (x INT) WITH ('connector' = 'kafkaa')");
        assert_eq!(&t2.sql[t2.option_error_span(unknown)], "'kafkaa'");
        assert_eq!(
            &sql[t.option_error_span("Missing required options are:\n\nformat")],
            "t"
        );
    }
}
