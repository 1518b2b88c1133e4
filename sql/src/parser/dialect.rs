//! The Flink dialect for sqlparser, and the token rewrite done before parsing.
//!
//! The dialect keeps sqlparser's ANSI behaviour except where Flink differs: backtick-quoted
//! identifiers, `FOR SYSTEM_TIME AS OF`, `FILTER (WHERE ...)`, `MAP<K, V>` and `INTERVAL DAY TO
//! SECOND` types, and `TABLE t [PARTITION BY ...]` as a function argument (window TVFs). It
//! reports its own `TypeId`, so none of sqlparser's hard-wired per-dialect extensions apply.
//!
//! `TIMESTAMP[(p)] WITH LOCAL TIME ZONE` has no sqlparser form, so the token stream is rewritten
//! to `TIMESTAMP_LTZ[(p)]` first; the rewritten tokens keep spans that cover the original text.

use sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList, FunctionArguments, Ident,
    ObjectName,
};
use sqlparser::dialect::Dialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Span, Token, TokenWithSpan, Word};

use crate::ast::TABLE_ARG_FUNCTION;

/// Flink SQL as sqlparser should read it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlinkDialect;

impl Dialect for FlinkDialect {
    fn is_delimited_identifier_start(&self, ch: char) -> bool {
        ch == '`'
    }

    fn identifier_quote_style(&self, _identifier: &str) -> Option<char> {
        Some('`')
    }

    fn is_identifier_start(&self, ch: char) -> bool {
        ch.is_alphabetic() || ch == '_'
    }

    fn is_identifier_part(&self, ch: char) -> bool {
        ch.is_alphanumeric() || ch == '_' || ch == '$'
    }

    fn supports_filter_during_aggregation(&self) -> bool {
        true
    }

    fn supports_group_by_expr(&self) -> bool {
        true
    }

    fn supports_table_versioning(&self) -> bool {
        true
    }

    fn supports_unicode_string_literal(&self) -> bool {
        true
    }

    fn supports_window_clause_named_window_reference(&self) -> bool {
        true
    }

    fn supports_map_literal_with_angle_brackets(&self) -> bool {
        true
    }

    fn supports_interval_options(&self) -> bool {
        true
    }

    fn parse_prefix(&self, parser: &mut Parser) -> Option<Result<Expr, ParserError>> {
        // `TABLE name` is only ever a table argument; `TABLE (` is not an expression at all.
        if parser.peek_keyword(Keyword::TABLE)
            && matches!(parser.peek_nth_token_ref(1).token, Token::Word(_))
        {
            Some(parse_table_argument(parser))
        } else {
            None
        }
    }
}

/// Parses `TABLE name [PARTITION BY col | PARTITION BY (col, ...)]` into the `__TABLE` call
/// described in `crate::ast`.
fn parse_table_argument(parser: &mut Parser) -> Result<Expr, ParserError> {
    let table_kw = parser.expect_keyword(Keyword::TABLE)?;
    let name = parser.parse_object_name(false)?;
    let name_expr = {
        let mut idents: Vec<Ident> = name
            .0
            .iter()
            .filter_map(|part| part.as_ident().cloned())
            .collect();
        if idents.len() == 1 {
            Expr::Identifier(idents.remove(0))
        } else {
            Expr::CompoundIdentifier(idents)
        }
    };
    let mut args = vec![FunctionArg::Unnamed(FunctionArgExpr::Expr(name_expr))];
    if parser.parse_keywords(&[Keyword::PARTITION, Keyword::BY]) {
        let columns = if parser.consume_token(&Token::LParen) {
            let cols = parser.parse_comma_separated(|p| p.parse_identifier())?;
            parser.expect_token(&Token::RParen)?;
            cols
        } else {
            vec![parser.parse_identifier()?]
        };
        args.extend(
            columns
                .into_iter()
                .map(|c| FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Identifier(c)))),
        );
    }
    Ok(Expr::Function(Function {
        name: ObjectName::from(vec![Ident::with_span(table_kw.span, TABLE_ARG_FUNCTION)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses: vec![],
        }),
        within_group: vec![],
        filter: None,
        null_treatment: None,
        over: None,
    }))
}

/// Rewrites `TIMESTAMP [(p)] WITH LOCAL TIME ZONE` to `TIMESTAMP_LTZ [(p)]`.
pub(crate) fn rewrite_tokens(tokens: Vec<TokenWithSpan>) -> Vec<TokenWithSpan> {
    let mut out: Vec<TokenWithSpan> = Vec::with_capacity(tokens.len());
    let mut i = 0;
    while i < tokens.len() {
        if is_keyword(&tokens[i].token, Keyword::TIMESTAMP) {
            if let Some((paren_end, ltz_end)) = match_with_local_time_zone(&tokens, i) {
                let zone_span_end = tokens[ltz_end].span.end;
                let mut word = tokens[i].clone();
                word.token = Token::Word(Word {
                    value: "TIMESTAMP_LTZ".to_string(),
                    quote_style: None,
                    keyword: Keyword::NoKeyword,
                });
                if paren_end == i {
                    word.span = Span::new(word.span.start, zone_span_end);
                    out.push(word);
                } else {
                    out.push(word);
                    out.extend(tokens[i + 1..paren_end].iter().cloned());
                    let mut close = tokens[paren_end].clone();
                    close.span = Span::new(close.span.start, zone_span_end);
                    out.push(close);
                }
                i = ltz_end + 1;
                continue;
            }
        }
        out.push(tokens[i].clone());
        i += 1;
    }
    out
}

fn is_keyword(token: &Token, keyword: Keyword) -> bool {
    matches!(token, Token::Word(w) if w.keyword == keyword && w.quote_style.is_none())
}

fn next_significant(tokens: &[TokenWithSpan], from: usize) -> Option<usize> {
    (from..tokens.len()).find(|&j| !matches!(tokens[j].token, Token::Whitespace(_)))
}

/// For `TIMESTAMP` at `at`, returns (index of the last token of the type before `WITH`, index of
/// `ZONE`) when `WITH LOCAL TIME ZONE` follows.
fn match_with_local_time_zone(tokens: &[TokenWithSpan], at: usize) -> Option<(usize, usize)> {
    let mut type_end = at;
    let mut j = next_significant(tokens, at + 1)?;
    if tokens[j].token == Token::LParen {
        let n = next_significant(tokens, j + 1)?;
        if !matches!(tokens[n].token, Token::Number(..)) {
            return None;
        }
        let close = next_significant(tokens, n + 1)?;
        if tokens[close].token != Token::RParen {
            return None;
        }
        type_end = close;
        j = next_significant(tokens, close + 1)?;
    }
    if !is_keyword(&tokens[j].token, Keyword::WITH) {
        return None;
    }
    let mut last = j;
    for kw in [Keyword::LOCAL, Keyword::TIME, Keyword::ZONE] {
        last = next_significant(tokens, last + 1)?;
        if !is_keyword(&tokens[last].token, kw) {
            return None;
        }
    }
    Some((type_end, last))
}
