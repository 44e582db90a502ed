//! A Lucene-like query parser.
//!
//! ```text
//! query    := or
//! or       := and (("OR" | "||") and)*
//! and      := unary (("AND" | "&&")? unary)*        adjacent clauses are ANDed
//! unary    := ("NOT" | "!" | "-") unary | "+"? primary
//! primary  := "(" or ")" | field ":" value | value
//! value    := "\"phrase\"" | word | word* | ">" word | ">=" word | "<" word | "<=" word
//!           | ("[" | "{") word "TO" word ("]" | "}") | "(" or ")"   (field applies inside)
//! ```
//! Bare words search `body`. `*` alone matches everything. Backslash escapes any
//! character. Errors name the byte position where parsing failed.

use crate::QueryError;
use crate::ast::{Bound, Expr, FieldRef, Value};

/// The longest query text accepted, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;
/// The deepest nesting of parenthesised groups and `NOT`s accepted.
pub const MAX_QUERY_DEPTH: usize = 32;
/// The most clauses (field:value comparisons) one query may hold.
pub const MAX_QUERY_CLAUSES: usize = 1024;

/// Parse a query string. An empty (or all-whitespace) query matches everything.
///
/// Input-controlled recursion is bounded: nesting deeper than [`MAX_QUERY_DEPTH`],
/// more than [`MAX_QUERY_CLAUSES`] clauses or text over [`MAX_QUERY_BYTES`] is a
/// syntax error naming the limit and the position where it was exceeded.
pub fn parse(input: &str) -> Result<Expr, QueryError> {
    if input.len() > MAX_QUERY_BYTES {
        return Err(QueryError::syntax(
            MAX_QUERY_BYTES,
            format!(
                "query is {} bytes; the limit is {MAX_QUERY_BYTES}",
                input.len()
            ),
        ));
    }
    let mut parser = Parser {
        input,
        pos: 0,
        depth: 0,
        clauses: 0,
    };
    parser.skip_ws();
    if parser.at_end() {
        return Ok(Expr::All);
    }
    let expr = parser.parse_or(&FieldRef::Body)?;
    parser.skip_ws();
    if !parser.at_end() {
        let found = parser.peek().unwrap_or(' ');
        return Err(QueryError::syntax(
            parser.pos,
            format!("unexpected {found:?}"),
        ));
    }
    Ok(expr)
}

/// Resolve a field name as written in a query.
pub fn field_ref(name: &str) -> Option<FieldRef> {
    match name {
        "body" | "message" => Some(FieldRef::Body),
        "severity_text" | "severity" | "level" => Some(FieldRef::SeverityText),
        "severity_number" => Some(FieldRef::SeverityNumber),
        "scope.name" | "scope_name" => Some(FieldRef::ScopeName),
        "trace_id" => Some(FieldRef::TraceId),
        "span_id" => Some(FieldRef::SpanId),
        _ => {
            if let Some(path) = name.strip_prefix("attributes.") {
                return (!path.is_empty()).then(|| FieldRef::Attribute(path.to_string()));
            }
            if let Some(path) = name.strip_prefix("resource.") {
                return (!path.is_empty()).then(|| FieldRef::Resource(path.to_string()));
            }
            if let Some(path) = name.strip_prefix("attributes_text.") {
                return (!path.is_empty()).then(|| FieldRef::AttributeText(path.to_string()));
            }
            if let Some(path) = name.strip_prefix("resource_text.") {
                return (!path.is_empty()).then(|| FieldRef::ResourceText(path.to_string()));
            }
            None
        }
    }
}

/// Lucene operators this language does not implement: refusing them beats a count
/// that is silently wrong.
fn unsupported(position: usize, ch: char) -> QueryError {
    let what = match ch {
        '~' => "fuzzy and proximity search ('~')",
        '^' => "boosting ('^')",
        _ => "single-character wildcards ('?')",
    };
    QueryError::syntax(
        position,
        format!("{what} is not supported; escape it with '\\' to search for the character"),
    )
}

struct Parser<'a> {
    input: &'a str,
    pos: usize,
    /// Groups and `NOT`s currently open.
    depth: usize,
    /// Clauses produced so far.
    clauses: usize,
}

impl<'a> Parser<'a> {
    fn at_end(&self) -> bool {
        self.pos >= self.input.len()
    }

    fn peek(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    /// Enter one level of nesting, refusing past [`MAX_QUERY_DEPTH`].
    fn enter(&mut self) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_QUERY_DEPTH {
            return Err(QueryError::syntax(
                self.pos,
                format!("query nests too deeply (the limit is {MAX_QUERY_DEPTH} levels)"),
            ));
        }
        Ok(())
    }

    fn clause(&mut self, field: &FieldRef, value: Value) -> Result<Expr, QueryError> {
        if let (FieldRef::Attribute(_) | FieldRef::Resource(_), Value::Term(text)) = (field, &value)
            && let Some(Err(message)) = crate::values::cidr_prefix(text)
        {
            return Err(QueryError::syntax(self.pos, message));
        }
        self.clauses += 1;
        if self.clauses > MAX_QUERY_CLAUSES {
            return Err(QueryError::syntax(
                self.pos,
                format!("query has too many clauses (the limit is {MAX_QUERY_CLAUSES})"),
            ));
        }
        Ok(Expr::Clause {
            field: field.clone(),
            value,
        })
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
    }

    /// Consume `keyword` if it is next and followed by a delimiter.
    fn eat_keyword(&mut self, keyword: &str) -> bool {
        let rest = self.rest();
        if !rest.starts_with(keyword) {
            return false;
        }
        let after = rest[keyword.len()..].chars().next();
        let symbolic = !keyword.chars().all(char::is_alphabetic);
        if symbolic || after.is_none_or(|c| c.is_whitespace() || c == '(' || c == '"') {
            self.pos += keyword.len();
            return true;
        }
        false
    }

    fn parse_or(&mut self, field: &FieldRef) -> Result<Expr, QueryError> {
        let mut parts = vec![self.parse_and(field)?];
        loop {
            self.skip_ws();
            if self.eat_keyword("OR") || self.eat_keyword("||") {
                parts.push(self.parse_and(field)?);
            } else {
                break;
            }
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    fn parse_and(&mut self, field: &FieldRef) -> Result<Expr, QueryError> {
        let mut parts = vec![self.parse_unary(field)?];
        loop {
            self.skip_ws();
            let save = self.pos;
            if self.at_end() || self.peek() == Some(')') {
                break;
            }
            if self.eat_keyword("OR") || self.eat_keyword("||") {
                self.pos = save;
                break;
            }
            let explicit = self.eat_keyword("AND") || self.eat_keyword("&&");
            self.skip_ws();
            if explicit && (self.at_end() || self.peek() == Some(')')) {
                return Err(QueryError::syntax(self.pos, "expected a clause after AND"));
            }
            parts.push(self.parse_unary(field)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::And(parts)
        })
    }

    fn parse_unary(&mut self, field: &FieldRef) -> Result<Expr, QueryError> {
        self.skip_ws();
        if self.eat_keyword("NOT") || self.eat_keyword("!") || self.eat_keyword("-") {
            self.enter()?;
            let inner = self.parse_unary(field)?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.eat_keyword("+");
        self.parse_primary(field)
    }

    fn parse_primary(&mut self, field: &FieldRef) -> Result<Expr, QueryError> {
        self.skip_ws();
        let start = self.pos;
        match self.peek() {
            None => Err(QueryError::syntax(
                self.pos,
                "expected a clause, found end of query",
            )),
            Some('(') => self.parse_group(field),
            Some(')') => Err(QueryError::syntax(self.pos, "unexpected ')'")),
            Some('"') => {
                let phrase = self.parse_phrase()?;
                self.clause(field, Value::Phrase(phrase))
            }
            Some(_) => {
                // A field name is a word immediately followed by ':'.
                if let Some((name, after)) = self.field_prefix() {
                    let Some(target) = field_ref(name) else {
                        return Err(QueryError::syntax(
                            start,
                            format!(
                                "unknown field {name:?}: use body, severity_text, severity_number, \
                                 scope.name, trace_id, span_id, attributes.<key>, resource.<key>, \
                                 attributes_text.<key> or resource_text.<key>"
                            ),
                        ));
                    };
                    self.pos = after;
                    return self.parse_value(&target);
                }
                self.parse_value(field)
            }
        }
    }

    fn parse_group(&mut self, field: &FieldRef) -> Result<Expr, QueryError> {
        let open = self.pos;
        self.enter()?;
        self.bump(); // '('
        self.skip_ws();
        if self.peek() == Some(')') {
            return Err(QueryError::syntax(self.pos, "empty group"));
        }
        let inner = self.parse_or(field)?;
        self.skip_ws();
        if self.bump() != Some(')') {
            return Err(QueryError::syntax(
                open,
                "unclosed '(': expected ')' before the end of the query",
            ));
        }
        self.depth -= 1;
        Ok(inner)
    }

    /// If the input at `pos` is `name:`, return the name and the position after ':'.
    fn field_prefix(&self) -> Option<(&'a str, usize)> {
        let rest = self.rest();
        let end = rest.find(|c: char| !(c.is_alphanumeric() || "._-@/".contains(c)))?;
        if end == 0 || !rest[end..].starts_with(':') {
            return None;
        }
        Some((&rest[..end], self.pos + end + 1))
    }

    fn parse_phrase(&mut self) -> Result<String, QueryError> {
        let open = self.pos;
        self.bump(); // '"'
        let mut text = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(QueryError::syntax(
                        open,
                        "unterminated phrase: missing '\"'",
                    ));
                }
                Some('"') => {
                    if let Some(ch @ ('~' | '^')) = self.peek() {
                        return Err(unsupported(self.pos, ch));
                    }
                    return Ok(text);
                }
                Some('\\') => match self.bump() {
                    Some(ch) => text.push(ch),
                    None => return Err(QueryError::syntax(self.pos, "dangling escape '\\'")),
                },
                Some(ch) => text.push(ch),
            }
        }
    }

    /// A bare word: up to whitespace, ')' or (outside escapes) '"'. Returns the
    /// unescaped text and whether its only unescaped '*' is the last character.
    fn parse_word(&mut self, stop_at_bracket: bool) -> Result<(String, bool), QueryError> {
        let start = self.pos;
        let mut text = String::new();
        let mut trailing_star = false;
        let mut stars = 0usize;
        while let Some(ch) = self.peek() {
            if ch.is_whitespace() || ch == ')' || ch == '(' || ch == '"' {
                break;
            }
            if stop_at_bracket && (ch == ']' || ch == '}') {
                break;
            }
            if matches!(ch, '~' | '^' | '?') {
                return Err(unsupported(self.pos, ch));
            }
            self.bump();
            trailing_star = false;
            if ch == '\\' {
                match self.bump() {
                    Some(escaped) => text.push(escaped),
                    None => return Err(QueryError::syntax(self.pos, "dangling escape '\\'")),
                }
            } else if ch == '*' {
                trailing_star = true;
                stars += 1;
                text.push(ch);
            } else {
                text.push(ch);
            }
        }
        if self.pos == start {
            return Err(QueryError::syntax(start, "expected a value"));
        }
        if stars > 1 || (stars == 1 && !trailing_star) {
            return Err(QueryError::syntax(
                start,
                "only a trailing '*' (prefix) is supported",
            ));
        }
        Ok((text, trailing_star))
    }

    fn parse_value(&mut self, field: &FieldRef) -> Result<Expr, QueryError> {
        let start = self.pos;
        match self.peek() {
            None => Err(QueryError::syntax(start, "expected a value after ':'")),
            Some(c) if c.is_whitespace() => {
                Err(QueryError::syntax(start, "expected a value after ':'"))
            }
            Some('(') => self.parse_group(field),
            Some('"') => {
                let phrase = self.parse_phrase()?;
                self.clause(field, Value::Phrase(phrase))
            }
            Some('[') | Some('{') => self.parse_range(field),
            Some('>') | Some('<') => {
                let greater = self.bump() == Some('>');
                let inclusive = self.peek() == Some('=');
                if inclusive {
                    self.bump();
                }
                if self.at_end() || self.peek().is_some_and(char::is_whitespace) {
                    return Err(QueryError::syntax(
                        self.pos,
                        "expected a value after comparison",
                    ));
                }
                let (word, _) = self.parse_word(false)?;
                let bound = if inclusive {
                    Bound::Included(word)
                } else {
                    Bound::Excluded(word)
                };
                let value = if greater {
                    Value::Range {
                        lower: bound,
                        upper: Bound::Unbounded,
                    }
                } else {
                    Value::Range {
                        lower: Bound::Unbounded,
                        upper: bound,
                    }
                };
                self.clause(field, value)
            }
            Some(_) => {
                let (word, trailing_star) = self.parse_word(false)?;
                if trailing_star && word == "*" {
                    if *field == FieldRef::Body {
                        return Ok(Expr::All);
                    }
                    if matches!(
                        field,
                        FieldRef::AttributeText(_) | FieldRef::ResourceText(_)
                    ) {
                        return Err(QueryError::syntax(
                            start,
                            "'*' alone on a words field: use attributes.<key>:* to ask whether a value exists",
                        ));
                    }
                    return self.clause(field, Value::Prefix(String::new()));
                }
                if trailing_star {
                    let prefix = word[..word.len() - 1].to_string();
                    if matches!(
                        field,
                        FieldRef::AttributeText(_) | FieldRef::ResourceText(_)
                    ) && !prefix.chars().all(char::is_alphanumeric)
                    {
                        return Err(QueryError::syntax(
                            start,
                            "a prefix on a words field must be one word of letters and digits",
                        ));
                    }
                    return self.clause(field, Value::Prefix(prefix));
                }
                self.clause(field, Value::Term(word))
            }
        }
    }

    fn parse_range(&mut self, field: &FieldRef) -> Result<Expr, QueryError> {
        let open_pos = self.pos;
        let lower_inclusive = self.bump() == Some('[');
        self.skip_ws();
        let (lower, _) = self.parse_word(true)?;
        self.skip_ws();
        if !self.eat_keyword("TO") {
            return Err(QueryError::syntax(self.pos, "expected 'TO' in range"));
        }
        self.skip_ws();
        let (upper, _) = self.parse_word(true)?;
        self.skip_ws();
        let upper_inclusive = match self.bump() {
            Some(']') => true,
            Some('}') => false,
            _ => {
                return Err(QueryError::syntax(
                    open_pos,
                    "unclosed range: expected ']' or '}'",
                ));
            }
        };
        let make = |word: String, inclusive: bool| {
            if word == "*" {
                Bound::Unbounded
            } else if inclusive {
                Bound::Included(word)
            } else {
                Bound::Excluded(word)
            }
        };
        let value = Value::Range {
            lower: make(lower, lower_inclusive),
            upper: make(upper, upper_inclusive),
        };
        self.clause(field, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(field: FieldRef, t: &str) -> Expr {
        Expr::Clause {
            field,
            value: Value::Term(t.into()),
        }
    }

    fn check(input: &str, expected: Expr) {
        assert_eq!(parse(input).unwrap(), expected, "input: {input}");
    }

    fn check_err(input: &str, position: usize, fragment: &str) {
        let shown = &input[..input.len().min(60)];
        match parse(input) {
            Err(QueryError::Syntax {
                position: p,
                message,
            }) => {
                assert_eq!(p, position, "{shown}: {message}");
                assert!(message.contains(fragment), "{shown}: {message}");
            }
            other => panic!("{shown}: expected syntax error, got {other:?}"),
        }
    }

    #[test]
    fn terms_and_implicit_and() {
        check("", Expr::All);
        check("*", Expr::All);
        check("error", term(FieldRef::Body, "error"));
        check(
            "failed login",
            Expr::And(vec![
                term(FieldRef::Body, "failed"),
                term(FieldRef::Body, "login"),
            ]),
        );
    }

    #[test]
    fn fields_phrases_and_booleans() {
        check(
            "attributes.user.name:alice AND body:\"failed login\"",
            Expr::And(vec![
                term(FieldRef::Attribute("user.name".into()), "alice"),
                Expr::Clause {
                    field: FieldRef::Body,
                    value: Value::Phrase("failed login".into()),
                },
            ]),
        );
        check(
            "a OR b c",
            Expr::Or(vec![
                term(FieldRef::Body, "a"),
                Expr::And(vec![term(FieldRef::Body, "b"), term(FieldRef::Body, "c")]),
            ]),
        );
        check("NOT a", Expr::Not(Box::new(term(FieldRef::Body, "a"))));
        check("-a", Expr::Not(Box::new(term(FieldRef::Body, "a"))));
        check(
            "resource.service.name:(auth OR billing)",
            Expr::Or(vec![
                term(FieldRef::Resource("service.name".into()), "auth"),
                term(FieldRef::Resource("service.name".into()), "billing"),
            ]),
        );
        check(
            "attributes.ip:10.0.0.1:8080",
            term(FieldRef::Attribute("ip".into()), "10.0.0.1:8080"),
        );
        check("ORACLE", term(FieldRef::Body, "ORACLE"));
        check("a\\*b", term(FieldRef::Body, "a*b"));
    }

    #[test]
    fn ranges() {
        check(
            "severity_number:>=13",
            Expr::Clause {
                field: FieldRef::SeverityNumber,
                value: Value::Range {
                    lower: Bound::Included("13".into()),
                    upper: Bound::Unbounded,
                },
            },
        );
        check(
            "severity_number:[9 TO 12}",
            Expr::Clause {
                field: FieldRef::SeverityNumber,
                value: Value::Range {
                    lower: Bound::Included("9".into()),
                    upper: Bound::Excluded("12".into()),
                },
            },
        );
        check(
            "attributes.code:<500",
            Expr::Clause {
                field: FieldRef::Attribute("code".into()),
                value: Value::Range {
                    lower: Bound::Unbounded,
                    upper: Bound::Excluded("500".into()),
                },
            },
        );
    }

    #[test]
    fn errors_point_at_the_position() {
        check_err("(a OR b", 0, "unclosed '('");
        check_err("a AND", 5, "after AND");
        check_err("body:\"open", 5, "unterminated phrase");
        check_err("nosuch:x", 0, "unknown field \"nosuch\"");
        check_err("a )", 2, "unexpected ')'");
        check_err("severity_number:[1 TO 5", 16, "unclosed range");
        check_err("body:", 5, "expected a value");
        check_err("a*b", 0, "trailing '*'");
    }

    #[test]
    fn input_controlled_recursion_and_size_are_bounded() {
        // 2,000 nested groups once overflowed the stack and aborted the process.
        let deep = format!("{}a{}", "(".repeat(2000), ")".repeat(2000));
        check_err(&deep, MAX_QUERY_DEPTH, "nests too deeply");
        let nots = "NOT ".repeat(3000) + "a";
        check_err(&nots, 4 * (MAX_QUERY_DEPTH + 1) - 1, "nests too deeply");
        let mixed = "(NOT ".repeat(1000) + "a";
        assert!(parse(&mixed).is_err());
        let field_groups = "body:(".repeat(1000) + "a";
        check_err(&field_groups, 5 + 6 * MAX_QUERY_DEPTH, "nests too deeply");
        // At the limit it still parses.
        let ok = format!(
            "{}a{}",
            "(".repeat(MAX_QUERY_DEPTH),
            ")".repeat(MAX_QUERY_DEPTH)
        );
        check(&ok, term(FieldRef::Body, "a"));
        let many = vec!["a"; MAX_QUERY_CLAUSES + 1].join(" OR ");
        check_err(&many, many.len(), "too many clauses");
        let long = "a ".repeat(MAX_QUERY_BYTES);
        check_err(&long, MAX_QUERY_BYTES, "limit is 16384");
    }

    #[test]
    fn unsupported_lucene_syntax_is_an_error_not_a_wrong_count() {
        check_err("\"failed login\"~2", 14, "proximity");
        check_err("roo?", 3, "'?'");
        check_err("root~1", 4, "fuzzy");
        check_err("root^2", 4, "boosting");
        check_err("body:\"x\"^2", 8, "boosting");
        check("a\\?b", term(FieldRef::Body, "a?b"));
    }
}
