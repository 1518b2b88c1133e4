//! The session catalog: tables and views by name, in creation order.
//!
//! A table keeps its declaration as parsed (the planner binds computed columns and the watermark
//! each time the table is scanned); a view keeps its query AST and the script text it came from,
//! and is planned inline wherever it is used, as Flink expands views.

use std::collections::BTreeMap;

use streamsql_engine::types::{DataType, Field, Schema};

use crate::ast::{ColumnKind, CreateTable, CreateView};

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
}

impl Catalog {
    pub fn new() -> Self {
        Self::default()
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

    /// Names of tables (`views == false`) or views, sorted.
    pub fn names(&self, views: bool) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e, CatalogEntry::View(_)) == views)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Every name, for "did you mean".
    pub fn all_names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }
}

/// `DESCRIBE` output of a table: name, type, whether a key, extras (computed, watermark).
pub fn describe_table(t: &TableEntry) -> Vec<[String; 4]> {
    let pk: Vec<&str> = t
        .def
        .primary_key
        .as_ref()
        .map(|p| p.columns.iter().map(String::as_str).collect())
        .unwrap_or_default();
    t.def
        .columns
        .iter()
        .map(|c| {
            let (ty, extra) = match &c.kind {
                ColumnKind::Physical { data_type, .. } => (data_type.to_string(), String::new()),
                ColumnKind::Computed { expr, .. } => {
                    (String::from("(computed)"), format!("AS {expr}"))
                }
                ColumnKind::Metadata { data_type, .. } => {
                    (data_type.to_string(), "METADATA".into())
                }
            };
            let extra = match &t.def.watermark {
                Some(w) if w.column == c.name => format!("{extra} WATERMARK AS {}", w.expr)
                    .trim()
                    .to_string(),
                _ => extra,
            };
            [
                c.name.clone(),
                ty,
                if pk.contains(&c.name.as_str()) {
                    "PRI".into()
                } else {
                    String::new()
                },
                extra,
            ]
        })
        .collect()
}

/// Helper for planners: the type of a physical column by name.
pub fn physical_type(t: &TableEntry, name: &str) -> Option<DataType> {
    t.physical_schema()
        .fields
        .into_iter()
        .find(|f| f.name == name)
        .map(|f| f.data_type)
}
