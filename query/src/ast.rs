//! The query AST.

/// A field a clause can address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldRef {
    Body,
    SeverityText,
    SeverityNumber,
    ScopeName,
    TraceId,
    SpanId,
    /// `attributes.<path>`; path as written (dots kept, e.g. `user.name`). Values
    /// match as whole values (exact, case-sensitive), like keyword fields.
    Attribute(String),
    /// `resource.<path>`, matched like [`FieldRef::Attribute`].
    Resource(String),
    /// `attributes_text.<path>`: the words of an attribute value (tokenized and
    /// lower-cased like `body`).
    AttributeText(String),
    /// `resource_text.<path>`.
    ResourceText(String),
}

/// One bound of a range.
#[derive(Debug, Clone, PartialEq)]
pub enum Bound {
    Unbounded,
    Included(String),
    Excluded(String),
}

/// What a clause compares its field with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A bare word; every token must occur (as a phrase when several).
    Term(String),
    /// A quoted phrase.
    Phrase(String),
    /// A bare word ending in `*`.
    Prefix(String),
    Range {
        lower: Bound,
        upper: Bound,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Matches everything (`*` or an empty query).
    All,
    Clause {
        field: FieldRef,
        value: Value,
    },
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
}
