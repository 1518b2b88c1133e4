//! `CREATE TABLE` / `CREATE VIEW` in Flink's grammar, and Flink's data types.
//!
//! A table's elements (columns, computed and metadata columns, the watermark, the primary key)
//! may come in any order, as in Flink; at most one watermark and one primary key are allowed.
//! Types are parsed by sqlparser and then mapped by [`convert_data_type`], the one place that
//! knows Flink's type names and defaults (`DECIMAL` = `DECIMAL(10, 0)`, `VARCHAR` = `STRING`,
//! `TIME` = `TIME(0)`, `TIMESTAMP` = `TIMESTAMP(6)`). `ROW<name type, ...>` and
//! `ROW(name type, ...)` column types have no sqlparser form and are parsed here, nested rows
//! included (a `>>` token closes two of them).

use std::ops::Range;

use sqlparser::ast::{
    CharacterLength, DataType as SqlType, ExactNumberInfo, IntervalFields, TimezoneInfo,
};
use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::Token;
use streamsql_engine::types::{DataType, Field, STRING_MAX};

use super::{PErr, PResult, ScriptParser};
use crate::ast::{
    ColumnDef, ColumnKind, CreateTable, CreateView, PrimaryKey, Statement, TableOption,
    WatermarkDef,
};
use crate::error::{did_you_mean, SqlError, SqlResult};

/// Flink's message for a primary key without `NOT ENFORCED`.
const ENFORCED_MESSAGE: &str = "Flink doesn't support ENFORCED mode for PRIMARY KEY constraint. \
ENFORCED/NOT ENFORCED controls if the constraint checks are performed on the incoming/outgoing \
data. Flink does not own the data therefore the only supported mode is the NOT ENFORCED mode";

/// Type names that exist in Flink but not here; named in the error.
const UNSUPPORTED_TYPE_WORDS: [&str; 5] = ["ARRAY", "MAP", "MULTISET", "RAW", "STRUCTURED"];

impl ScriptParser<'_> {
    pub(super) fn parse_create(&mut self, start: usize) -> PResult<Statement> {
        self.parser.expect_keyword(Keyword::CREATE)?;
        if self.peek_keyword_at(0) == Some(Keyword::OR) {
            self.parser.prev_token();
            return Err(self.unsupported_statement(4));
        }
        let temporary = self.parser.parse_keyword(Keyword::TEMPORARY);
        match self.peek_keyword_at(0) {
            Some(Keyword::TABLE) => {
                self.parser.advance_token();
                self.parse_create_table(start, temporary)
            }
            Some(Keyword::VIEW) => {
                self.parser.advance_token();
                self.parse_create_view(start, temporary)
            }
            Some(Keyword::FUNCTION | Keyword::SYSTEM | Keyword::CATALOG | Keyword::DATABASE) => {
                let back = if temporary { 2 } else { 1 };
                for _ in 0..back {
                    self.parser.prev_token();
                }
                Err(self.unsupported_statement(back + 1))
            }
            _ => {
                let found = self.parser.peek_token();
                Ok(self.parser.expected("TABLE or VIEW after CREATE", found)?)
            }
        }
    }

    fn parse_create_view(&mut self, start: usize, temporary: bool) -> PResult<Statement> {
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let (name, name_span) = self.object_name()?;
        let mut columns = Vec::new();
        if self.parser.consume_token(&Token::LParen) {
            loop {
                columns.push(self.identifier()?.0);
                if !self.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.parser.expect_token(&Token::RParen)?;
        }
        if self.parser.parse_keyword(Keyword::COMMENT) {
            self.string_literal()?;
        }
        self.parser.expect_keyword(Keyword::AS)?;
        let query = self.parser.parse_query()?;
        Ok(Statement::CreateView(CreateView {
            name,
            name_span,
            if_not_exists,
            temporary,
            columns,
            query,
            span: start..self.end_of_prev(),
        }))
    }

    fn parse_create_table(&mut self, start: usize, temporary: bool) -> PResult<Statement> {
        let if_not_exists =
            self.parser
                .parse_keywords(&[Keyword::IF, Keyword::NOT, Keyword::EXISTS]);
        let (name, name_span) = self.object_name()?;
        let mut table = CreateTable {
            name,
            name_span,
            if_not_exists,
            temporary,
            columns: Vec::new(),
            watermark: None,
            primary_key: None,
            options: Vec::new(),
            comment: None,
            span: start..start,
        };
        if self.parser.consume_token(&Token::LParen) {
            loop {
                self.parse_table_element(&mut table)?;
                if !self.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.parser.expect_token(&Token::RParen)?;
        }
        if self.parser.parse_keyword(Keyword::COMMENT) {
            table.comment = Some(self.string_literal()?.0);
        }
        if self.peek_keyword_at(0) == Some(Keyword::PARTITIONED) {
            return Err(self.unsupported_clause("PARTITIONED BY", 2));
        }
        if self.peek_word_is(0, "DISTRIBUTED") {
            return Err(self.unsupported_clause("DISTRIBUTED BY", 2));
        }
        if self.parser.parse_keyword(Keyword::WITH) {
            self.parser.expect_token(&Token::LParen)?;
            if !self.parser.consume_token(&Token::RParen) {
                loop {
                    let (key, key_span) = self.string_literal()?;
                    self.parser.expect_token(&Token::Eq)?;
                    let (value, value_span) = self.string_literal()?;
                    table.options.push(TableOption {
                        key,
                        value,
                        key_span,
                        value_span,
                    });
                    if !self.parser.consume_token(&Token::Comma) {
                        break;
                    }
                }
                self.parser.expect_token(&Token::RParen)?;
            }
        }
        match self.peek_keyword_at(0) {
            Some(Keyword::LIKE) => return Err(self.unsupported_clause("CREATE TABLE ... LIKE", 1)),
            Some(Keyword::AS) => {
                return Err(self.unsupported_clause("CREATE TABLE ... AS SELECT", 1))
            }
            _ => {}
        }
        table.span = start..self.end_of_prev();
        Ok(Statement::CreateTable(table))
    }

    fn unsupported_clause(&mut self, what: &str, words: usize) -> PErr {
        let start = self.start_of_next();
        for _ in 0..words {
            self.parser.advance_token();
        }
        let end = self.end_of_prev().max(start);
        PErr::Sql(
            SqlError::unsupported(format!("{what} is not supported")).with_span(Some(start..end)),
        )
    }

    fn peek_word_is(&self, n: usize, word: &str) -> bool {
        matches!(&self.parser.peek_nth_token_ref(n).token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    fn parse_table_element(&mut self, table: &mut CreateTable) -> PResult<()> {
        let start = self.start_of_next();
        if self.peek_word_is(0, "WATERMARK") && self.peek_keyword_at(1) == Some(Keyword::FOR) {
            self.parser.advance_token();
            self.parser.advance_token();
            let (column, column_span) = self.identifier()?;
            self.parser.expect_keyword(Keyword::AS)?;
            let expr_start = self.start_of_next();
            let expr = self.parser.parse_expr()?;
            let expr_span = expr_start..self.end_of_prev();
            let span = start..self.end_of_prev();
            if table.watermark.is_some() {
                return Err(SqlError::validation(
                    "Multiple WATERMARK statements is not supported yet.",
                )
                .with_span(Some(span))
                .into());
            }
            table.watermark = Some(WatermarkDef {
                column,
                column_span,
                expr,
                expr_span,
                span,
            });
            return Ok(());
        }
        let constraint_ahead = match self.peek_keyword_at(0) {
            Some(Keyword::CONSTRAINT) => true,
            Some(Keyword::PRIMARY) => self.peek_keyword_at(1) == Some(Keyword::KEY),
            Some(Keyword::UNIQUE | Keyword::FOREIGN | Keyword::CHECK) => {
                let what = format!(
                    "{} constraints are",
                    self.parser
                        .peek_token_ref()
                        .token
                        .to_string()
                        .to_ascii_uppercase()
                );
                return Err(self.unsupported_clause(&what, 1));
            }
            _ => false,
        };
        if constraint_ahead {
            if self.parser.parse_keyword(Keyword::CONSTRAINT) {
                self.identifier()?;
            }
            self.parser
                .expect_keywords(&[Keyword::PRIMARY, Keyword::KEY])?;
            self.parser.expect_token(&Token::LParen)?;
            let mut columns = Vec::new();
            let mut column_spans = Vec::new();
            loop {
                let (c, s) = self.identifier()?;
                columns.push(c);
                column_spans.push(s);
                if !self.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.parser.expect_token(&Token::RParen)?;
            self.expect_not_enforced(start)?;
            let span = start..self.end_of_prev();
            return self.set_primary_key(
                table,
                PrimaryKey {
                    columns,
                    column_spans,
                    span,
                },
            );
        }
        self.parse_column(table)
    }

    /// After `PRIMARY KEY [(...)]`: Flink accepts only `NOT ENFORCED`.
    fn expect_not_enforced(&mut self, constraint_start: usize) -> PResult<()> {
        if self
            .parser
            .parse_keywords(&[Keyword::NOT, Keyword::ENFORCED])
        {
            return Ok(());
        }
        let _ = self.parser.parse_keyword(Keyword::ENFORCED);
        let span = constraint_start..self.end_of_prev();
        Err(SqlError::validation(ENFORCED_MESSAGE)
            .with_span(Some(span))
            .into())
    }

    fn set_primary_key(&mut self, table: &mut CreateTable, key: PrimaryKey) -> PResult<()> {
        if table.primary_key.is_some() {
            return Err(SqlError::validation("Duplicate primary key definition")
                .with_span(Some(key.span))
                .into());
        }
        table.primary_key = Some(key);
        Ok(())
    }

    fn parse_column(&mut self, table: &mut CreateTable) -> PResult<()> {
        let (name, name_span) = self.identifier()?;
        let mut not_null = false;
        let mut comment = None;
        let kind = if self.parser.parse_keyword(Keyword::AS) {
            let expr_start = self.start_of_next();
            let expr = self.parser.parse_expr()?;
            ColumnKind::Computed {
                expr: Box::new(expr),
                expr_span: expr_start..self.end_of_prev(),
            }
        } else {
            let (data_type, type_span) = self.parse_column_type()?;
            if self.parser.parse_keyword(Keyword::METADATA) {
                let key = if self.parser.parse_keyword(Keyword::FROM) {
                    Some(self.string_literal()?.0)
                } else {
                    None
                };
                let is_virtual = self.parser.parse_keyword(Keyword::VIRTUAL);
                ColumnKind::Metadata {
                    data_type,
                    type_span,
                    key,
                    is_virtual,
                }
            } else {
                ColumnKind::Physical {
                    data_type,
                    type_span,
                }
            }
        };
        loop {
            let option_start = self.start_of_next();
            if self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                not_null = true;
            } else if self.parser.parse_keyword(Keyword::NULL) {
                not_null = false;
            } else if self.parser.parse_keyword(Keyword::COMMENT) {
                comment = Some(self.string_literal()?.0);
            } else if self.peek_keyword_at(0) == Some(Keyword::CONSTRAINT)
                || self.peek_keyword_at(0) == Some(Keyword::PRIMARY)
            {
                if self.parser.parse_keyword(Keyword::CONSTRAINT) {
                    self.identifier()?;
                }
                self.parser
                    .expect_keywords(&[Keyword::PRIMARY, Keyword::KEY])?;
                self.expect_not_enforced(option_start)?;
                let span = option_start..self.end_of_prev();
                self.set_primary_key(
                    table,
                    PrimaryKey {
                        columns: vec![name.clone()],
                        column_spans: vec![name_span.clone()],
                        span,
                    },
                )?;
            } else {
                break;
            }
        }
        table.columns.push(ColumnDef {
            name,
            name_span,
            kind,
            not_null,
            comment,
        });
        Ok(())
    }

    /// A column's type and its span, with unsupported Flink types named.
    fn parse_column_type(&mut self) -> PResult<(DataType, Range<usize>)> {
        let start = self.start_of_next();
        let mut pending_gt = false;
        let data_type = self.parse_type(&mut pending_gt)?;
        if pending_gt {
            let found = self.parser.peek_token();
            return Ok(self.parser.expected("a type, not '>>'", found)?);
        }
        Ok((data_type, start..self.end_of_prev()))
    }

    /// Whether the next token is the unquoted word `ROW`.
    fn at_row_keyword(&self) -> bool {
        matches!(&self.parser.peek_token_ref().token,
            Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case("ROW"))
    }

    /// One type, ROW types included. `pending_gt` is set when a nested `ROW<...>` was closed by
    /// a `>>` token, whose second `>` then belongs to the enclosing `ROW<`.
    fn parse_type(&mut self, pending_gt: &mut bool) -> PResult<DataType> {
        if self.at_row_keyword() {
            self.parser.advance_token();
            return self.parse_row_type(pending_gt);
        }
        Ok(self.parse_scalar_type()?.0)
    }

    /// `ROW<name type [NOT NULL] ['comment'], ...>` or `ROW(name type, ...)`, after `ROW`.
    fn parse_row_type(&mut self, pending_gt: &mut bool) -> PResult<DataType> {
        if self.parser.consume_token(&Token::Neq) {
            // `ROW<>` tokenizes as the `<>` operator.
            return Ok(DataType::Row(Vec::<Field>::new().into()));
        }
        let angle = if self.parser.consume_token(&Token::Lt) {
            true
        } else {
            self.parser.expect_token(&Token::LParen)?;
            false
        };
        let mut fields: Vec<Field> = Vec::new();
        let empty = if angle {
            self.parser.consume_token(&Token::Gt)
        } else {
            self.parser.consume_token(&Token::RParen)
        };
        if !empty {
            loop {
                let (name, name_span) = self.identifier()?;
                if fields.iter().any(|f| f.name == name) {
                    return Err(SqlError::validation(format!(
                        "Field names must be unique. Found duplicates: [{name}]"
                    ))
                    .with_span(Some(name_span))
                    .into());
                }
                let mut inner_gt = false;
                let data_type = self.parse_type(&mut inner_gt)?;
                if inner_gt {
                    // `ROW<a ROW<b INT>>`: the `>>` closed both rows.
                    if !angle {
                        let found = self.parser.peek_token();
                        return Ok(self.parser.expected("')' to close ROW(", found)?);
                    }
                    fields.push(Field::new(name, data_type));
                    break;
                }
                if !self.parser.parse_keywords(&[Keyword::NOT, Keyword::NULL]) {
                    self.parser.parse_keyword(Keyword::NULL);
                }
                if let Token::SingleQuotedString(_) = self.parser.peek_token_ref().token {
                    self.string_literal()?;
                }
                fields.push(Field::new(name, data_type));
                if self.parser.consume_token(&Token::Comma) {
                    continue;
                }
                if angle {
                    if self.parser.consume_token(&Token::ShiftRight) {
                        *pending_gt = true;
                    } else {
                        self.parser.expect_token(&Token::Gt)?;
                    }
                } else {
                    self.parser.expect_token(&Token::RParen)?;
                }
                break;
            }
        }
        Ok(DataType::Row(fields.into()))
    }

    /// A type sqlparser parses (any but ROW), with unsupported Flink types named.
    fn parse_scalar_type(&mut self) -> PResult<(DataType, Range<usize>)> {
        let start = self.start_of_next();
        if let Token::Word(w) = &self.parser.peek_token_ref().token {
            if w.quote_style.is_none()
                && UNSUPPORTED_TYPE_WORDS
                    .iter()
                    .any(|t| w.value.eq_ignore_ascii_case(t))
            {
                let name = w.value.to_ascii_uppercase();
                let span = self.range(self.parser.peek_token_ref().span);
                return Err(
                    SqlError::unsupported(format!("{name} types are not supported"))
                        .with_span(Some(span))
                        .into(),
                );
            }
        }
        let sql_type = self.parser.parse_data_type()?;
        let span = start..self.end_of_prev();
        let data_type =
            convert_data_type(&sql_type).map_err(|e| e.with_span(Some(span.clone())))?;
        Ok((data_type, span))
    }
}

/// Maps a sqlparser type (from DDL or a `CAST` target) to the engine's, with Flink's defaults.
/// Errors carry no span: the caller knows where the type was written.
pub fn convert_data_type(sql_type: &SqlType) -> SqlResult<DataType> {
    let unsupported = |what: &str| {
        Err(SqlError::unsupported(format!(
            "{what} types are not supported"
        )))
    };
    match sql_type {
        SqlType::Boolean | SqlType::Bool => Ok(DataType::Boolean),
        SqlType::TinyInt(None) => Ok(DataType::TinyInt),
        SqlType::SmallInt(None) => Ok(DataType::SmallInt),
        SqlType::Int(None) | SqlType::Integer(None) => Ok(DataType::Int),
        SqlType::BigInt(None) => Ok(DataType::BigInt),
        SqlType::TinyInt(Some(_))
        | SqlType::SmallInt(Some(_))
        | SqlType::Int(Some(_))
        | SqlType::Integer(Some(_))
        | SqlType::BigInt(Some(_)) => Err(SqlError::validation(format!(
            "Integer types take no length in Flink SQL: {sql_type}"
        ))),
        SqlType::Float(ExactNumberInfo::None) | SqlType::Real => Ok(DataType::Float),
        SqlType::Double(ExactNumberInfo::None) | SqlType::DoublePrecision => Ok(DataType::Double),
        SqlType::Decimal(info) | SqlType::Dec(info) | SqlType::Numeric(info) => decimal_type(info),
        SqlType::Char(len) | SqlType::Character(len) => Ok(DataType::Char(char_length(
            len.as_ref(),
            "Character string",
        )?)),
        // Flink's type system gives a VARCHAR without a length the maximum one: STRING.
        SqlType::Varchar(None) | SqlType::CharVarying(None) | SqlType::CharacterVarying(None) => {
            Ok(DataType::STRING)
        }
        SqlType::Varchar(len) | SqlType::CharVarying(len) | SqlType::CharacterVarying(len) => Ok(
            DataType::Varchar(char_length(len.as_ref(), "Variable character string")?),
        ),
        SqlType::String(None) => Ok(DataType::STRING),
        SqlType::Date => Ok(DataType::Date),
        SqlType::Time(p, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            Ok(DataType::Time(precision(*p, 0, "TIME")?))
        }
        SqlType::Timestamp(p, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => {
            Ok(DataType::Timestamp(precision(*p, 6, "TIMESTAMP")?))
        }
        SqlType::Timestamp(..) | SqlType::Time(..) => Err(SqlError::unsupported(format!(
            "{sql_type} is not supported; use TIMESTAMP_LTZ or TIMESTAMP WITH LOCAL TIME ZONE"
        ))),
        SqlType::Interval { fields, .. } => match fields {
            Some(IntervalFields::Year | IntervalFields::Month | IntervalFields::YearToMonth) => {
                Ok(DataType::IntervalYearMonth)
            }
            Some(_) => Ok(DataType::IntervalDayTime),
            None => Err(SqlError::validation(
                "INTERVAL type needs a qualifier, such as INTERVAL DAY TO SECOND",
            )),
        },
        SqlType::Custom(name, modifiers) => {
            let type_name = name.to_string().to_ascii_uppercase();
            match type_name.as_str() {
                "TIMESTAMP_LTZ" => {
                    let p = match modifiers.as_slice() {
                        [] => None,
                        [p] => Some(p.trim().parse::<u64>().map_err(|_| {
                            SqlError::validation(format!("Invalid precision of TIMESTAMP_LTZ: {p}"))
                        })?),
                        _ => {
                            return Err(SqlError::validation(
                                "TIMESTAMP_LTZ takes one precision argument",
                            ))
                        }
                    };
                    Ok(DataType::TimestampLtz(precision(p, 6, "TIMESTAMP_LTZ")?))
                }
                n if UNSUPPORTED_TYPE_WORDS.contains(&n) => unsupported(n),
                "VARBINARY" | "BINARY" | "BYTES" => unsupported(&type_name),
                _ => {
                    let known = [
                        "BOOLEAN",
                        "TINYINT",
                        "SMALLINT",
                        "INT",
                        "INTEGER",
                        "BIGINT",
                        "FLOAT",
                        "DOUBLE",
                        "DECIMAL",
                        "CHAR",
                        "VARCHAR",
                        "STRING",
                        "DATE",
                        "TIME",
                        "TIMESTAMP",
                        "TIMESTAMP_LTZ",
                        "INTERVAL",
                    ];
                    let mut e = SqlError::validation(format!("Unknown data type {name}"));
                    if let Some(s) = did_you_mean(&type_name, known) {
                        e = e.with_help(format!("did you mean {s}?"));
                    }
                    Err(e)
                }
            }
        }
        SqlType::Bytes(_) => unsupported("BYTES"),
        SqlType::Binary(_) => unsupported("BINARY"),
        SqlType::Varbinary(_) => unsupported("VARBINARY"),
        SqlType::Array(_) => unsupported("ARRAY"),
        SqlType::Map(..) => unsupported("MAP"),
        SqlType::Struct(..) | SqlType::Tuple(_) => Err(SqlError::unsupported(
            "ROW types are supported as column types of CREATE TABLE only",
        )),
        other => Err(SqlError::unsupported(format!(
            "The data type {other} is not supported"
        ))),
    }
}

fn decimal_type(info: &ExactNumberInfo) -> SqlResult<DataType> {
    let (p, s) = match info {
        ExactNumberInfo::None => (10, 0),
        ExactNumberInfo::Precision(p) => (*p, 0),
        ExactNumberInfo::PrecisionAndScale(p, s) => {
            let s = u64::try_from(*s).map_err(|_| {
                SqlError::validation(format!(
                    "Decimal scale must be between 0 and the precision {p} (both inclusive)."
                ))
            })?;
            (*p, s)
        }
    };
    if !(1..=38).contains(&p) {
        return Err(SqlError::validation(
            "Decimal precision must be between 1 and 38 (both inclusive).",
        ));
    }
    if s > p {
        return Err(SqlError::validation(format!(
            "Decimal scale must be between 0 and the precision {p} (both inclusive)."
        )));
    }
    let p = u8::try_from(p).expect("invariant: checked to be at most 38");
    let s = u8::try_from(s).expect("invariant: checked to be at most the precision");
    Ok(DataType::Decimal(p, s))
}

fn char_length(len: Option<&CharacterLength>, what: &str) -> SqlResult<u32> {
    match len {
        None => Ok(1),
        Some(CharacterLength::IntegerLength { length, .. }) => u32::try_from(*length)
            .ok()
            .filter(|n| (1..=STRING_MAX).contains(n))
            .ok_or_else(|| {
                SqlError::validation(format!(
                    "{what} length must be between 1 and {STRING_MAX} (both inclusive)."
                ))
            }),
        Some(CharacterLength::Max) => Err(SqlError::validation(format!(
            "{what} length must be a number"
        ))),
    }
}

fn precision(p: Option<u64>, default: u8, type_name: &str) -> SqlResult<u8> {
    match p {
        None => Ok(default),
        Some(p) if p <= 9 => Ok(u8::try_from(p).expect("invariant: at most 9")),
        Some(_) => Err(SqlError::validation(format!(
            "{type_name} precision must be between 0 and 9 (both inclusive)."
        ))),
    }
}
