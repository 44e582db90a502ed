//! Compile an [`Expr`] into a tantivy query over the log index.
//!
//! Text values are tokenized with the index's own analyzer, so a
//! clause matches exactly when the indexed tokens do: one token gives a term query,
//! several a phrase query. JSON (attribute/resource) values are also tried as the
//! numbers and booleans tantivy indexes typed JSON values as.

use std::ops::Bound as StdBound;

use storage::index::IndexFields;
use tantivy::Term;
use tantivy::query::{
    AllQuery, BooleanQuery, EmptyQuery, InvertedIndexRangeQuery, Occur, PhrasePrefixQuery,
    PhraseQuery, Query, RangeQuery, TermQuery,
};
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::tokenizer::TextAnalyzer;

use crate::QueryError;
use crate::ast::{Bound, Expr, FieldRef, Value};

/// Compiles expressions against one index's fields and tokenizer.
pub struct Compiler {
    fields: IndexFields,
    analyzer: TextAnalyzer,
}

fn invalid(message: impl Into<String>) -> QueryError {
    QueryError::InvalidParam {
        field: "q",
        message: message.into(),
    }
}

fn boolean(clauses: Vec<(Occur, Box<dyn Query>)>) -> Box<dyn Query> {
    Box::new(BooleanQuery::new(clauses))
}

fn any_of(queries: Vec<Box<dyn Query>>) -> Box<dyn Query> {
    match queries.len() {
        0 => Box::new(EmptyQuery),
        1 => queries.into_iter().next().expect("one element"),
        _ => boolean(queries.into_iter().map(|q| (Occur::Should, q)).collect()),
    }
}

fn terms_query(terms: Vec<Term>) -> Box<dyn Query> {
    match terms.len() {
        0 => Box::new(EmptyQuery),
        1 => Box::new(TermQuery::new(
            terms.into_iter().next().expect("one term"),
            IndexRecordOption::WithFreqs,
        )),
        _ => Box::new(PhraseQuery::new(terms)),
    }
}

/// A parsed numeric literal in the forms tantivy may have indexed it.
enum Number {
    Int(i64),
    Float(f64),
}

fn parse_number(text: &str) -> Option<Number> {
    if let Ok(v) = text.parse::<i64>() {
        return Some(Number::Int(v));
    }
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .map(Number::Float)
}

impl Compiler {
    pub fn new(index: &storage::index::LogIndex) -> Compiler {
        let analyzer = index.analyzer();
        Compiler {
            fields: index.fields(),
            analyzer,
        }
    }

    fn tokens(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut out = Vec::new();
        stream.process(&mut |token| out.push(token.text.clone()));
        out
    }

    pub fn compile(&self, expr: &Expr) -> Result<Box<dyn Query>, QueryError> {
        match expr {
            Expr::All => Ok(Box::new(AllQuery)),
            Expr::Clause { field, value } => self.clause(field, value),
            Expr::Or(parts) => Ok(any_of(
                parts
                    .iter()
                    .map(|p| self.compile(p))
                    .collect::<Result<_, _>>()?,
            )),
            Expr::And(parts) => {
                let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
                for part in parts {
                    match part {
                        Expr::Not(inner) => clauses.push((Occur::MustNot, self.compile(inner)?)),
                        other => clauses.push((Occur::Must, self.compile(other)?)),
                    }
                }
                if clauses.iter().all(|(occur, _)| *occur == Occur::MustNot) {
                    clauses.push((Occur::Must, Box::new(AllQuery)));
                }
                Ok(boolean(clauses))
            }
            Expr::Not(inner) => Ok(boolean(vec![
                (Occur::Must, Box::new(AllQuery)),
                (Occur::MustNot, self.compile(inner)?),
            ])),
        }
    }

    fn clause(&self, field: &FieldRef, value: &Value) -> Result<Box<dyn Query>, QueryError> {
        let f = &self.fields;
        match field {
            FieldRef::Body => self.text_clause(f.body, "body", value),
            FieldRef::SeverityText => {
                let text = self.text_clause(f.severity_text, "severity_text", value)?;
                // `level:error` also finds records that carry only a severity number.
                match value {
                    Value::Term(t) | Value::Phrase(t) => match crate::values::level_range(t) {
                        Some((lo, hi)) => Ok(any_of(vec![
                            text,
                            Box::new(RangeQuery::new(
                                StdBound::Included(Term::from_field_i64(f.severity_number, lo)),
                                StdBound::Included(Term::from_field_i64(f.severity_number, hi)),
                            )),
                        ])),
                        None => Ok(text),
                    },
                    _ => Ok(text),
                }
            }
            FieldRef::SeverityNumber => {
                self.number_clause(f.severity_number, "severity_number", value)
            }
            FieldRef::ScopeName => self.keyword_clause(f.scope_name, value, false),
            FieldRef::TraceId => self.keyword_clause(f.trace_id, value, true),
            FieldRef::SpanId => self.keyword_clause(f.span_id, value, true),
            FieldRef::Attribute(path) => {
                self.exact_clause(f.attributes, f.attributes_ip, path, value)
            }
            FieldRef::Resource(path) => self.exact_clause(f.resource, f.resource_ip, path, value),
            FieldRef::AttributeText(path) => {
                self.json_clause(f.attributes_text, f.attributes, path, value)
            }
            FieldRef::ResourceText(path) => {
                self.json_clause(f.resource_text, f.resource, path, value)
            }
        }
    }

    /// Numbers and booleans as tantivy indexes typed JSON values.
    fn typed_options(field: Field, path: &str, text: &str, options: &mut Vec<Box<dyn Query>>) {
        let typed = |append: &dyn Fn(&mut Term)| -> Box<dyn Query> {
            let mut term = Self::json_term(field, path);
            append(&mut term);
            Box::new(TermQuery::new(term, IndexRecordOption::Basic))
        };
        match parse_number(text) {
            Some(Number::Int(v)) => {
                options.push(typed(&|t| t.append_type_and_fast_value(v)));
                options.push(typed(&|t| t.append_type_and_fast_value(v as f64)));
                if v >= 0 {
                    options.push(typed(&|t| t.append_type_and_fast_value(v as u64)));
                }
            }
            Some(Number::Float(v)) => options.push(typed(&|t| t.append_type_and_fast_value(v))),
            None => {}
        }
        match text {
            "true" => options.push(typed(&|t| t.append_type_and_fast_value(true))),
            "false" => options.push(typed(&|t| t.append_type_and_fast_value(false))),
            _ => {}
        }
    }

    /// Attribute/resource values: whole values (case-sensitive), a trailing `*` a
    /// prefix of the whole value, `addr/len` a CIDR (see `crate::values`).
    fn exact_clause(
        &self,
        field: Field,
        ip_field: Field,
        path: &str,
        value: &Value,
    ) -> Result<Box<dyn Query>, QueryError> {
        match value {
            Value::Term(text) | Value::Phrase(text) => {
                if let (Value::Term(_), Some(prefix)) = (value, crate::values::cidr_prefix(text)) {
                    let prefix = prefix.map_err(invalid)?;
                    let mut term = Self::json_term(ip_field, path);
                    term.append_type_and_str(&prefix);
                    return Ok(Box::new(PhrasePrefixQuery::new(vec![term])));
                }
                let mut term = Self::json_term(field, path);
                term.append_type_and_str(text);
                let mut options: Vec<Box<dyn Query>> =
                    vec![Box::new(TermQuery::new(term, IndexRecordOption::Basic))];
                Self::typed_options(field, path, text, &mut options);
                Ok(any_of(options))
            }
            Value::Prefix(prefix) => {
                let mut term = Self::json_term(field, path);
                term.append_type_and_str(prefix);
                Ok(Box::new(PhrasePrefixQuery::new(vec![term])))
            }
            Value::Range { lower, upper } => self.json_range(field, path, lower, upper),
        }
    }

    fn text_clause(
        &self,
        field: Field,
        name: &str,
        value: &Value,
    ) -> Result<Box<dyn Query>, QueryError> {
        match value {
            Value::Term(text) | Value::Phrase(text) => {
                let terms = self
                    .tokens(text)
                    .into_iter()
                    .map(|t| Term::from_field_text(field, &t))
                    .collect();
                Ok(terms_query(terms))
            }
            Value::Prefix(prefix) => {
                let terms: Vec<Term> = self
                    .tokens(prefix)
                    .into_iter()
                    .map(|t| Term::from_field_text(field, &t))
                    .collect();
                if terms.is_empty() {
                    return Ok(Box::new(AllQuery));
                }
                // One token: a prefix query; several: a phrase whose last word is a prefix.
                Ok(Box::new(PhrasePrefixQuery::new(terms)))
            }
            Value::Range { .. } => Err(invalid(format!(
                "{name} is a text field; ranges apply to severity_number and numeric attributes"
            ))),
        }
    }

    fn keyword_clause(
        &self,
        field: Field,
        value: &Value,
        lowercase: bool,
    ) -> Result<Box<dyn Query>, QueryError> {
        let norm = |s: &str| {
            if lowercase {
                s.to_ascii_lowercase()
            } else {
                s.to_string()
            }
        };
        match value {
            Value::Term(text) | Value::Phrase(text) => Ok(Box::new(TermQuery::new(
                Term::from_field_text(field, &norm(text)),
                IndexRecordOption::Basic,
            ))),
            Value::Prefix(prefix) => Ok(Box::new(PhrasePrefixQuery::new(vec![
                Term::from_field_text(field, &norm(prefix)),
            ]))),
            Value::Range { .. } => Err(invalid(
                "ranges apply to severity_number and numeric attributes",
            )),
        }
    }

    fn number_clause(
        &self,
        field: Field,
        name: &str,
        value: &Value,
    ) -> Result<Box<dyn Query>, QueryError> {
        let parse = |text: &str| {
            text.parse::<i64>()
                .map_err(|_| invalid(format!("{name} needs an integer, got {text:?}")))
        };
        match value {
            Value::Term(text) | Value::Phrase(text) => Ok(Box::new(TermQuery::new(
                Term::from_field_i64(field, parse(text)?),
                IndexRecordOption::Basic,
            ))),
            Value::Prefix(_) => Err(invalid(format!(
                "{name} is numeric; use a range instead of '*'"
            ))),
            Value::Range { lower, upper } => {
                let bound = |b: &Bound| -> Result<StdBound<Term>, QueryError> {
                    Ok(match b {
                        Bound::Unbounded => StdBound::Unbounded,
                        Bound::Included(v) => {
                            StdBound::Included(Term::from_field_i64(field, parse(v)?))
                        }
                        Bound::Excluded(v) => {
                            StdBound::Excluded(Term::from_field_i64(field, parse(v)?))
                        }
                    })
                };
                let (lo, hi) = (bound(lower)?, bound(upper)?);
                if matches!((&lo, &hi), (StdBound::Unbounded, StdBound::Unbounded)) {
                    return Ok(Box::new(AllQuery));
                }
                Ok(Box::new(RangeQuery::new(lo, hi)))
            }
        }
    }

    fn json_term(field: Field, path: &str) -> Term {
        Term::from_field_json_path(field, path, true)
    }

    /// The words of an attribute value. The words field leaves out what the exact
    /// field already holds as one token (a single lower-case word, numbers,
    /// booleans), so a one-word clause also looks there: an exact value equal to a
    /// lower-case word is that word.
    fn json_clause(
        &self,
        field: Field,
        exact: Field,
        path: &str,
        value: &Value,
    ) -> Result<Box<dyn Query>, QueryError> {
        let term_in = |f: Field, token: &str| {
            let mut term = Self::json_term(f, path);
            term.append_type_and_str(token);
            term
        };
        match value {
            Value::Term(text) | Value::Phrase(text) => {
                let mut options: Vec<Box<dyn Query>> = Vec::new();
                let tokens = self.tokens(text);
                if let [one] = tokens.as_slice() {
                    options.push(Box::new(TermQuery::new(
                        term_in(exact, one),
                        IndexRecordOption::Basic,
                    )));
                }
                let terms: Vec<Term> = tokens.iter().map(|t| term_in(field, t)).collect();
                if !terms.is_empty() {
                    options.push(terms_query(terms));
                }
                Self::typed_options(field, path, text, &mut options);
                Self::typed_options(exact, path, text, &mut options);
                Ok(any_of(options))
            }
            Value::Prefix(prefix) => {
                let tokens = self.tokens(prefix);
                let [token] = tokens.as_slice() else {
                    return Err(invalid(
                        "a prefix on a words field must be a single word (for existence, use attributes.<key>:*)",
                    ));
                };
                Ok(any_of(vec![
                    Box::new(PhrasePrefixQuery::new(vec![term_in(field, token)])),
                    Box::new(PhrasePrefixQuery::new(vec![term_in(exact, token)])),
                ]))
            }
            Value::Range { lower, upper } => Ok(any_of(vec![
                self.json_range(field, path, lower, upper)?,
                self.json_range(exact, path, lower, upper)?,
            ])),
        }
    }

    fn json_range(
        &self,
        field: Field,
        path: &str,
        lower: &Bound,
        upper: &Bound,
    ) -> Result<Box<dyn Query>, QueryError> {
        let texts = [lower, upper].map(|b| match b {
            Bound::Unbounded => None,
            Bound::Included(v) | Bound::Excluded(v) => Some(v.as_str()),
        });
        let numeric = texts.iter().flatten().all(|t| parse_number(t).is_some());
        if texts.iter().all(Option::is_none) {
            return Ok(Box::new(AllQuery));
        }
        if !numeric {
            return Err(invalid(format!(
                "range on {path:?} needs numeric bounds, got {:?}",
                texts.iter().flatten().collect::<Vec<_>>()
            )));
        }
        // Integers are indexed as i64 (u64 beyond i64::MAX) and floats as f64; a range
        // over either representation must match both.
        let make = |as_float: bool| -> Box<dyn Query> {
            let bound = |b: &Bound| -> StdBound<Term> {
                let to_term = |v: &str| {
                    let mut term = Self::json_term(field, path);
                    let number = parse_number(v).expect("checked numeric");
                    match (number, as_float) {
                        (Number::Int(i), false) => term.append_type_and_fast_value(i),
                        (Number::Int(i), true) => term.append_type_and_fast_value(i as f64),
                        (Number::Float(f), false) => {
                            // Round toward the inside of the range for integer terms.
                            term.append_type_and_fast_value(f as i64)
                        }
                        (Number::Float(f), true) => term.append_type_and_fast_value(f),
                    }
                    term
                };
                match b {
                    Bound::Unbounded => StdBound::Unbounded,
                    Bound::Included(v) => StdBound::Included(to_term(v)),
                    Bound::Excluded(v) => StdBound::Excluded(to_term(v)),
                }
            };
            let (lo, hi) = (bound(lower), bound(upper));
            // A one-sided range over a JSON path must stay within that path and type:
            // close the open side with the extreme value of the type.
            let close = |b: StdBound<Term>, low: bool| -> StdBound<Term> {
                match b {
                    StdBound::Unbounded => {
                        let mut term = Self::json_term(field, path);
                        match (as_float, low) {
                            (false, true) => term.append_type_and_fast_value(i64::MIN),
                            (false, false) => term.append_type_and_fast_value(i64::MAX),
                            (true, true) => term.append_type_and_fast_value(f64::MIN),
                            (true, false) => term.append_type_and_fast_value(f64::MAX),
                        }
                        StdBound::Included(term)
                    }
                    bounded => bounded,
                }
            };
            // RangeQuery refuses non-fast JSON fields; the term-dictionary range is exact here
            // because both ends are closed within this path and type.
            Box::new(InvertedIndexRangeQuery::new(
                close(lo, true),
                close(hi, false),
            ))
        };
        Ok(any_of(vec![make(false), make(true)]))
    }
}
