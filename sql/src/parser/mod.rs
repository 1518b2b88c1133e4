//! Parsing Flink SQL scripts into [`crate::ast::Statement`]s.
//!
//! sqlparser does the tokenizing and all query and expression parsing (with [`FlinkDialect`]);
//! this module drives it statement by statement and parses Flink's own statements (DDL with
//! watermarks and `WITH` options, `SET`/`RESET`, statement sets, `EXECUTE`, `EXPLAIN`) itself
//! through sqlparser's `Parser` API, so sqlparser's statement types never reach the binder.
//!
//! Invariants: no input panics or overflows the stack (sqlparser's recursion limit turns deep
//! nesting into an error, and our own grammar does not recurse beyond `EXPLAIN` of one level);
//! every error carries the byte span of the offending token; every statement's span starts at its
//! first token and ends at its last one.

mod ddl;
mod dialect;
mod query;

use std::ops::Range;

use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, Tokenizer};

use crate::ast::{Insert, Statement};
use crate::error::{SqlError, SqlResult};

pub use ddl::convert_data_type;
pub use dialect::FlinkDialect;
pub use query::{interval_millis_or_months, window_tvf};

/// Parses a whole script: statements separated by `;` (the last one may omit it).
pub fn parse_script(sql: &str) -> SqlResult<Vec<Statement>> {
    let dialect = FlinkDialect;
    let tokens = Tokenizer::new(&dialect, sql)
        .with_unescape(true)
        .tokenize_with_location()
        .map_err(|e| {
            let at = location_to_offset(sql, e.location.line, e.location.column);
            let end = sql[at..].chars().next().map_or(at, |c| at + c.len_utf8());
            SqlError::parse(format!(
                "SQL parse failed. {} at line {}, column {}.",
                e.message, e.location.line, e.location.column
            ))
            .with_span(Some(at..end))
        })?;
    let tokens = dialect::rewrite_tokens(tokens);
    let token_spans: Vec<Span> = tokens
        .iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|t| t.span)
        .collect();
    let mut script = ScriptParser {
        sql,
        parser: Parser::new(&dialect).with_tokens_with_locations(tokens),
        token_spans,
    };
    match script.parse_statements() {
        Ok(statements) => Ok(statements),
        Err(PErr::Sql(e)) => Err(e),
        Err(PErr::Parse(e)) => Err(script.convert_parser_error(e)),
    }
}

/// The byte offset of a sqlparser `Location` (1-based line, 1-based column counted in chars),
/// clamped to the end of its line and of the text.
pub fn location_to_offset(sql: &str, line: u64, col: u64) -> usize {
    let mut current_line = 1u64;
    let mut line_start = 0usize;
    if line > 1 {
        let mut found = false;
        for (i, b) in sql.bytes().enumerate() {
            if b == b'\n' {
                current_line += 1;
                if current_line == line {
                    line_start = i + 1;
                    found = true;
                    break;
                }
            }
        }
        if !found {
            return sql.len();
        }
    }
    let rest = &sql[line_start..];
    let mut offset = line_start;
    for (n, (i, c)) in rest.char_indices().enumerate() {
        offset = line_start + i;
        if n as u64 + 1 >= col || c == '\n' {
            return offset;
        }
        offset += c.len_utf8();
    }
    offset
}

/// The byte range of a sqlparser `Span` in `sql`; `None` for the empty span sqlparser uses
/// when it has no location.
pub fn span_of(sql: &str, span: Span) -> Option<Range<usize>> {
    if span.start.line == 0 {
        return None;
    }
    let start = location_to_offset(sql, span.start.line, span.start.column);
    let end = if span.end.line == 0 {
        start
    } else {
        location_to_offset(sql, span.end.line, span.end.column).max(start)
    };
    Some(start..end)
}

/// An error while parsing: sqlparser's (converted to a `SqlError` with a span at the top) or
/// one of ours.
enum PErr {
    Parse(ParserError),
    Sql(SqlError),
}

impl From<ParserError> for PErr {
    fn from(e: ParserError) -> Self {
        PErr::Parse(e)
    }
}

impl From<SqlError> for PErr {
    fn from(e: SqlError) -> Self {
        PErr::Sql(e)
    }
}

type PResult<T> = Result<T, PErr>;

/// A sqlparser `Parser` over the whole script, with the script text for spans.
struct ScriptParser<'a> {
    sql: &'a str,
    parser: Parser<'a>,
    /// Spans of the non-whitespace tokens, to find the token an error location points at.
    token_spans: Vec<Span>,
}

impl<'a> ScriptParser<'a> {
    fn parse_statements(&mut self) -> PResult<Vec<Statement>> {
        let mut statements = Vec::new();
        loop {
            while self.parser.consume_token(&Token::SemiColon) {}
            if self.peek() == &Token::EOF {
                return Ok(statements);
            }
            statements.push(self.parse_statement()?);
            self.expect_statement_end()?;
        }
    }

    /// After a statement: `;` or the end of the script.
    fn expect_statement_end(&mut self) -> PResult<()> {
        if self.parser.consume_token(&Token::SemiColon) || self.peek() == &Token::EOF {
            Ok(())
        } else {
            let found = self.parser.peek_token();
            Ok(self
                .parser
                .expected("';' or the end of the script", found)?)
        }
    }

    fn peek(&self) -> &Token {
        &self.parser.peek_token_ref().token
    }

    fn peek_keyword_at(&self, n: usize) -> Option<Keyword> {
        match &self.parser.peek_nth_token_ref(n).token {
            Token::Word(w) if w.quote_style.is_none() => Some(w.keyword),
            _ => None,
        }
    }

    fn range(&self, span: Span) -> Range<usize> {
        span_of(self.sql, span).unwrap_or(self.sql.len()..self.sql.len())
    }

    /// Byte offset where the next token starts.
    fn start_of_next(&self) -> usize {
        self.range(self.parser.peek_token_ref().span).start
    }

    /// Byte offset where the last consumed token ends.
    fn end_of_prev(&self) -> usize {
        let mut i = self.parser.index();
        while i > 0 {
            i -= 1;
            let t = self.parser.token_at(i);
            if !matches!(t.token, Token::Whitespace(_)) {
                return self.range(t.span).end;
            }
        }
        0
    }

    fn identifier(&mut self) -> PResult<(String, Range<usize>)> {
        let ident = self.parser.parse_identifier()?;
        let range = self.range(ident.span);
        Ok((ident.value, range))
    }

    /// A possibly qualified name, joined with `.`.
    fn object_name(&mut self) -> PResult<(String, Range<usize>)> {
        let start = self.start_of_next();
        let name = self.parser.parse_object_name(false)?;
        let parts: Vec<String> = name
            .0
            .iter()
            .map(|p| match p.as_ident() {
                Some(i) => i.value.clone(),
                None => p.to_string(),
            })
            .collect();
        Ok((parts.join("."), start..self.end_of_prev()))
    }

    fn string_literal(&mut self) -> PResult<(String, Range<usize>)> {
        let tok = self.parser.next_token();
        match &tok.token {
            Token::SingleQuotedString(s) => Ok((s.clone(), self.range(tok.span))),
            _ => Ok(self.parser.expected("a string literal", tok)?),
        }
    }

    /// An error for valid Flink SQL we do not support, naming the next `words` words.
    fn unsupported_statement(&mut self, words: usize) -> PErr {
        let start = self.start_of_next();
        let mut names = Vec::new();
        for _ in 0..words {
            match self.parser.peek_token_ref().token.clone() {
                Token::Word(w) => {
                    names.push(w.value.to_ascii_uppercase());
                    self.parser.advance_token();
                }
                _ => break,
            }
        }
        let end = self.end_of_prev().max(start);
        PErr::Sql(
            SqlError::unsupported(format!("{} statements are not supported", names.join(" ")))
                .with_span(Some(start..end)),
        )
    }

    fn parse_statement(&mut self) -> PResult<Statement> {
        let start = self.start_of_next();
        let keyword = match self.peek() {
            Token::LParen => return self.parse_query_statement(start),
            Token::Word(w) if w.quote_style.is_none() => w.keyword,
            _ => {
                let found = self.parser.peek_token();
                return Ok(self.parser.expected("a statement", found)?);
            }
        };
        match keyword {
            Keyword::SELECT | Keyword::WITH | Keyword::VALUES => self.parse_query_statement(start),
            Keyword::CREATE => self.parse_create(start),
            Keyword::DROP => self.parse_drop(start),
            Keyword::SET => self.parse_set(start),
            Keyword::RESET => self.parse_reset(start),
            Keyword::INSERT => Ok(Statement::Insert(self.parse_insert()?)),
            Keyword::EXECUTE => self.parse_execute(start),
            Keyword::BEGIN => self.parse_begin_statement_set(start),
            Keyword::EXPLAIN => self.parse_explain(start),
            Keyword::SHOW => self.parse_show(start),
            Keyword::DESCRIBE | Keyword::DESC => self.parse_describe(start),
            Keyword::ALTER
            | Keyword::ANALYZE
            | Keyword::CALL
            | Keyword::DELETE
            | Keyword::LOAD
            | Keyword::UNLOAD
            | Keyword::UPDATE
            | Keyword::TRUNCATE
            | Keyword::REPLACE
            | Keyword::MERGE
            | Keyword::GRANT
            | Keyword::REVOKE
            | Keyword::ADD
            | Keyword::REMOVE
            | Keyword::USE => Err(self.unsupported_statement(2)),
            _ => {
                let found = self.parser.peek_token();
                Ok(self.parser.expected("a statement", found)?)
            }
        }
    }

    fn parse_query_statement(&mut self, start: usize) -> PResult<Statement> {
        let query = self.parser.parse_query()?;
        Ok(Statement::Query {
            query,
            span: start..self.end_of_prev(),
        })
    }

    fn parse_drop(&mut self, start: usize) -> PResult<Statement> {
        self.parser.expect_keyword(Keyword::DROP)?;
        let temporary = self.parser.parse_keyword(Keyword::TEMPORARY);
        let is_table = match self.peek_keyword_at(0) {
            Some(Keyword::TABLE) => true,
            Some(Keyword::VIEW) => false,
            Some(Keyword::FUNCTION | Keyword::CATALOG | Keyword::DATABASE | Keyword::SYSTEM) => {
                self.parser.prev_token();
                if temporary {
                    self.parser.prev_token();
                }
                return Err(self.unsupported_statement(if temporary { 3 } else { 2 }));
            }
            _ => {
                let found = self.parser.peek_token();
                return Ok(self.parser.expected("TABLE or VIEW after DROP", found)?);
            }
        };
        self.parser.advance_token();
        let if_exists = self.parser.parse_keywords(&[Keyword::IF, Keyword::EXISTS]);
        let (name, name_span) = self.object_name()?;
        let span = start..self.end_of_prev();
        Ok(if is_table {
            Statement::DropTable {
                name,
                name_span,
                if_exists,
                temporary,
                span,
            }
        } else {
            Statement::DropView {
                name,
                name_span,
                if_exists,
                temporary,
                span,
            }
        })
    }

    fn at_statement_end(&self) -> bool {
        matches!(self.peek(), Token::SemiColon | Token::EOF)
    }

    fn parse_set(&mut self, start: usize) -> PResult<Statement> {
        self.parser.expect_keyword(Keyword::SET)?;
        if self.at_statement_end() {
            return Ok(Statement::SetList {
                span: start..self.end_of_prev(),
            });
        }
        let (key, key_span) = self.string_literal()?;
        self.parser.expect_token(&Token::Eq)?;
        let (value, value_span) = self.string_literal()?;
        Ok(Statement::Set {
            key,
            value,
            key_span,
            value_span,
            span: start..self.end_of_prev(),
        })
    }

    fn parse_reset(&mut self, start: usize) -> PResult<Statement> {
        self.parser.expect_keyword(Keyword::RESET)?;
        let (key, key_span) = if self.at_statement_end() {
            (None, None)
        } else {
            let (k, s) = self.string_literal()?;
            (Some(k), Some(s))
        };
        Ok(Statement::Reset {
            key,
            key_span,
            span: start..self.end_of_prev(),
        })
    }

    fn parse_insert(&mut self) -> PResult<Insert> {
        let start = self.start_of_next();
        self.parser.expect_keyword(Keyword::INSERT)?;
        if self.peek_keyword_at(0) == Some(Keyword::OVERWRITE) {
            self.parser.prev_token();
            return Err(self.unsupported_statement(2));
        }
        self.parser.expect_keyword(Keyword::INTO)?;
        let (table, table_span) = self.object_name()?;
        if self.peek_keyword_at(0) == Some(Keyword::PARTITION) {
            let span = self.range(self.parser.peek_token_ref().span);
            return Err(
                SqlError::unsupported("INSERT INTO ... PARTITION is not supported")
                    .with_span(Some(span))
                    .into(),
            );
        }
        let mut columns = Vec::new();
        let mut column_spans = Vec::new();
        // `(a, b) SELECT ...` is a column list; `(SELECT ...)` is a parenthesized query.
        let is_column_list = self.peek() == &Token::LParen
            && matches!(self.parser.peek_nth_token_ref(1).token, Token::Word(_))
            && !matches!(
                self.peek_keyword_at(1),
                Some(Keyword::SELECT | Keyword::WITH | Keyword::VALUES)
            );
        if is_column_list {
            self.parser.expect_token(&Token::LParen)?;
            loop {
                let (c, s) = self.identifier()?;
                columns.push(c);
                column_spans.push(s);
                if !self.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
            self.parser.expect_token(&Token::RParen)?;
        }
        let query = self.parser.parse_query()?;
        Ok(Insert {
            table,
            table_span,
            columns,
            column_spans,
            query,
            span: start..self.end_of_prev(),
        })
    }

    /// The inserts of a statement set, after its `BEGIN`, through `END`.
    fn parse_statement_set_body(&mut self) -> PResult<Vec<Insert>> {
        let mut inserts = Vec::new();
        loop {
            while self.parser.consume_token(&Token::SemiColon) {}
            if !inserts.is_empty() && self.parser.parse_keyword(Keyword::END) {
                return Ok(inserts);
            }
            if self.peek_keyword_at(0) != Some(Keyword::INSERT) {
                let found = self.parser.peek_token();
                let expected = if inserts.is_empty() {
                    "INSERT in a statement set"
                } else {
                    "INSERT or END in a statement set"
                };
                return Ok(self.parser.expected(expected, found)?);
            }
            inserts.push(self.parse_insert()?);
            if !self.parser.consume_token(&Token::SemiColon)
                && self.peek_keyword_at(0) != Some(Keyword::END)
            {
                let found = self.parser.peek_token();
                return Ok(self
                    .parser
                    .expected("';' after INSERT in a statement set", found)?);
            }
        }
    }

    fn parse_execute(&mut self, start: usize) -> PResult<Statement> {
        self.parser.expect_keyword(Keyword::EXECUTE)?;
        match self.peek_keyword_at(0) {
            Some(Keyword::STATEMENT) => {
                self.parser
                    .expect_keywords(&[Keyword::STATEMENT, Keyword::SET, Keyword::BEGIN])?;
                let inserts = self.parse_statement_set_body()?;
                Ok(Statement::StatementSet {
                    inserts,
                    span: start..self.end_of_prev(),
                })
            }
            Some(Keyword::INSERT) => {
                let mut insert = self.parse_insert()?;
                insert.span.start = start;
                Ok(Statement::Insert(insert))
            }
            Some(Keyword::SELECT | Keyword::WITH | Keyword::VALUES) => {
                self.parse_query_statement(start)
            }
            _ if self.peek() == &Token::LParen => self.parse_query_statement(start),
            Some(Keyword::PLAN) => {
                self.parser.prev_token();
                Err(self.unsupported_statement(2))
            }
            _ => {
                let found = self.parser.peek_token();
                Ok(self
                    .parser
                    .expected("STATEMENT SET, INSERT or a query after EXECUTE", found)?)
            }
        }
    }

    /// The older `BEGIN STATEMENT SET; INSERT ...; END` form.
    fn parse_begin_statement_set(&mut self, start: usize) -> PResult<Statement> {
        self.parser
            .expect_keywords(&[Keyword::BEGIN, Keyword::STATEMENT, Keyword::SET])?;
        let inserts = self.parse_statement_set_body()?;
        Ok(Statement::StatementSet {
            inserts,
            span: start..self.end_of_prev(),
        })
    }

    fn parse_explain(&mut self, start: usize) -> PResult<Statement> {
        self.parser.expect_keyword(Keyword::EXPLAIN)?;
        if !self.parser.parse_keywords(&[Keyword::PLAN, Keyword::FOR]) {
            // Flink's explain details (ESTIMATED_COST, CHANGELOG_MODE, ...) change only the
            // rendering, which is ours to choose; they are accepted and ignored.
            const DETAILS: [&str; 4] = [
                "ESTIMATED_COST",
                "CHANGELOG_MODE",
                "JSON_EXECUTION_PLAN",
                "PLAN_ADVICE",
            ];
            loop {
                let is_detail = matches!(&self.parser.peek_token_ref().token,
                    Token::Word(w) if w.quote_style.is_none()
                        && DETAILS.iter().any(|d| w.value.eq_ignore_ascii_case(d)));
                if !is_detail {
                    break;
                }
                self.parser.advance_token();
                if !self.parser.consume_token(&Token::Comma) {
                    break;
                }
            }
        }
        let inner_start = self.start_of_next();
        let statement = match self.peek_keyword_at(0) {
            Some(Keyword::INSERT) => Statement::Insert(self.parse_insert()?),
            Some(Keyword::EXECUTE) => self.parse_execute(inner_start)?,
            Some(Keyword::STATEMENT) => {
                self.parser
                    .expect_keywords(&[Keyword::STATEMENT, Keyword::SET, Keyword::BEGIN])?;
                let inserts = self.parse_statement_set_body()?;
                Statement::StatementSet {
                    inserts,
                    span: inner_start..self.end_of_prev(),
                }
            }
            Some(Keyword::SELECT | Keyword::WITH | Keyword::VALUES) => {
                self.parse_query_statement(inner_start)?
            }
            _ if self.peek() == &Token::LParen => self.parse_query_statement(inner_start)?,
            _ => {
                let found = self.parser.peek_token();
                return Ok(self
                    .parser
                    .expected("a query, INSERT or STATEMENT SET after EXPLAIN", found)?);
            }
        };
        Ok(Statement::Explain {
            statement: Box::new(statement),
            span: start..self.end_of_prev(),
        })
    }

    fn parse_show(&mut self, start: usize) -> PResult<Statement> {
        self.parser.expect_keyword(Keyword::SHOW)?;
        let statement = match self.peek_keyword_at(0) {
            Some(Keyword::TABLES) => {
                self.parser.advance_token();
                Statement::ShowTables {
                    span: start..self.end_of_prev(),
                }
            }
            Some(Keyword::VIEWS) => {
                self.parser.advance_token();
                Statement::ShowViews {
                    span: start..self.end_of_prev(),
                }
            }
            Some(Keyword::FUNCTIONS) => {
                self.parser.advance_token();
                Statement::ShowFunctions {
                    span: start..self.end_of_prev(),
                }
            }
            Some(Keyword::USER) if self.peek_keyword_at(1) == Some(Keyword::FUNCTIONS) => {
                self.parser.advance_token();
                self.parser.advance_token();
                Statement::ShowFunctions {
                    span: start..self.end_of_prev(),
                }
            }
            Some(_) => {
                self.parser.prev_token();
                return Err(self.unsupported_statement(2));
            }
            None => {
                let found = self.parser.peek_token();
                return Ok(self
                    .parser
                    .expected("TABLES, VIEWS or FUNCTIONS after SHOW", found)?);
            }
        };
        Ok(statement)
    }

    fn parse_describe(&mut self, start: usize) -> PResult<Statement> {
        self.parser.advance_token();
        let _extended = self.parser.parse_keyword(Keyword::EXTENDED);
        let (name, name_span) = self.object_name()?;
        Ok(Statement::Describe {
            name,
            name_span,
            span: start..self.end_of_prev(),
        })
    }

    /// Turns sqlparser's error into ours: Flink's wording, a span on the offending token, and
    /// sqlparser's "Expected: ..., found: ..." detail kept after it.
    fn convert_parser_error(&self, e: ParserError) -> SqlError {
        let message = match e {
            ParserError::RecursionLimitExceeded => {
                let span = self.range(self.parser.peek_token_ref().span);
                return SqlError::parse(
                    "SQL parse failed. The statement is nested too deeply (recursion limit exceeded).",
                )
                .with_span(Some(span));
            }
            ParserError::ParserError(m) | ParserError::TokenizerError(m) => m,
        };
        let (detail, location) = split_location(&message);
        let at_eof = location.is_none() && detail.ends_with("found: EOF");
        let range = match location {
            Some(loc) => {
                let offset = location_to_offset(self.sql, loc.line, loc.column);
                let token = self
                    .token_spans
                    .iter()
                    .find(|s| s.start == loc)
                    .and_then(|s| span_of(self.sql, *s));
                Some(token.unwrap_or(offset..offset))
            }
            None if at_eof => Some(self.sql.len()..self.sql.len()),
            None => Some(self.range(self.parser.peek_token_ref().span)),
        };
        let encountered = match (&range, location) {
            (Some(r), Some(loc)) if !r.is_empty() => Some((
                self.sql.get(r.clone()).unwrap_or("").to_string(),
                loc.line,
                loc.column,
            )),
            _ if at_eof => {
                let (line, column) = end_location(self.sql);
                Some(("<EOF>".to_string(), line, column))
            }
            _ => None,
        };
        let text = match encountered {
            Some((token, line, column)) => format!(
                "SQL parse failed. Encountered \"{token}\" at line {line}, column {column}. {detail}"
            ),
            None => format!("SQL parse failed. {detail}"),
        };
        SqlError::parse(text).with_span(range)
    }
}

/// Splits sqlparser's " at Line: L, Column: C" suffix off an error message.
fn split_location(message: &str) -> (&str, Option<Location>) {
    let Some(at) = message.rfind(" at Line: ") else {
        return (message, None);
    };
    let rest = &message[at + " at Line: ".len()..];
    let mut parts = rest.splitn(2, ", Column: ");
    let line = parts.next().and_then(|l| l.trim().parse::<u64>().ok());
    let column = parts.next().and_then(|c| c.trim().parse::<u64>().ok());
    match (line, column) {
        (Some(line), Some(column)) => (&message[..at], Some(Location::new(line, column))),
        _ => (message, None),
    }
}

/// The line and column just past the end of `sql`.
fn end_location(sql: &str) -> (u64, u64) {
    let mut line = 1u64;
    let mut column = 1u64;
    for c in sql.chars() {
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
    }
    (line, column)
}

#[cfg(test)]
mod tests;
