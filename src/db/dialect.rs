//! The SQL differences between MySQL/MariaDB and PostgreSQL, in one place:
//! placeholders, identifier quoting, and rewriting `:named` parameters.

use std::collections::{BTreeMap, BTreeSet};

use crate::config::DatabaseKind;
use crate::db::SqlValue;
use crate::error::InputError;

/// `?` on MySQL, `$n` (1-based) on PostgreSQL.
pub fn placeholder(kind: DatabaseKind, position: usize) -> String {
    match kind {
        DatabaseKind::MySql => "?".to_string(),
        DatabaseKind::Postgres => format!("${position}"),
    }
}

/// Quotes an identifier (such as the reserved words `from` and `to`).
pub fn quote_ident(kind: DatabaseKind, name: &str) -> String {
    match kind {
        DatabaseKind::MySql => format!("`{}`", name.replace('`', "``")),
        DatabaseKind::Postgres => format!("\"{}\"", name.replace('"', "\"\"")),
    }
}

/// A query with `:named` parameters and their values, as a user writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct NamedQuery {
    pub sql: String,
    pub params: BTreeMap<String, SqlValue>,
    /// Run inside a read-only transaction (every `--sql` query is).
    pub read_only: bool,
}

/// A query ready for one dialect: placeholders in the text, values in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    pub sql: String,
    pub args: Vec<SqlValue>,
    /// Run inside a read-only transaction that is rolled back afterwards.
    pub read_only: bool,
}

impl NamedQuery {
    pub fn new(sql: impl Into<String>) -> Self {
        NamedQuery {
            sql: sql.into(),
            params: BTreeMap::new(),
            read_only: false,
        }
    }

    pub fn param(mut self, name: &str, value: SqlValue) -> Self {
        self.params.insert(name.to_string(), value);
        self
    }

    /// Rewrites `:name` into the dialect's placeholders and lines the values up.
    /// Every parameter in the text needs a value and every value a parameter.
    pub fn to_statement(&self, kind: DatabaseKind) -> Result<Statement, InputError> {
        let mut sql = String::with_capacity(self.sql.len());
        let mut args: Vec<SqlValue> = Vec::new();
        // PostgreSQL can reuse `$n` for a repeated name; MySQL binds each `?`.
        let mut positions: BTreeMap<String, usize> = BTreeMap::new();
        let mut used: BTreeSet<String> = BTreeSet::new();
        for piece in scan(&self.sql) {
            match piece {
                Piece::Text(text) => sql.push_str(text),
                Piece::Param(name) => {
                    if !name.is_ascii() {
                        return Err(InputError::Invalid(format!(
                            "the query's parameter :{name} may use only ASCII letters, digits and _ (not a digit first); rename it in the SQL and in --param"
                        )));
                    }
                    let value = self.params.get(name).ok_or_else(|| {
                        InputError::Invalid(format!(
                            "the query uses :{name} but no value was given; add --param {name}=VALUE"
                        ))
                    })?;
                    used.insert(name.to_string());
                    let position = match (kind, positions.get(name)) {
                        (DatabaseKind::Postgres, Some(&existing)) => existing,
                        _ => {
                            args.push(value.clone());
                            positions.insert(name.to_string(), args.len());
                            args.len()
                        }
                    };
                    sql.push_str(&placeholder(kind, position));
                }
            }
        }
        if let Some(unused) = self.params.keys().find(|name| !used.contains(*name)) {
            return Err(InputError::Invalid(format!(
                "--param {unused} is not used by the query (it has no :{unused}); check the spelling"
            )));
        }
        Ok(Statement {
            sql,
            args,
            read_only: self.read_only,
        })
    }

    /// The SQL with runs of white space folded and a trailing `;` removed, so
    /// that formatting does not change the cache key. Quoted text is kept as is.
    pub fn normalised_sql(&self) -> String {
        let mut out = String::with_capacity(self.sql.len());
        for piece in scan(&self.sql) {
            match piece {
                Piece::Text(text) if is_quoted(text) => out.push_str(text),
                Piece::Text(text) if text.trim().is_empty() => out.push(' '),
                Piece::Text(text) => {
                    for (i, word) in text.split_whitespace().enumerate() {
                        if i > 0 || text.starts_with(char::is_whitespace) {
                            out.push(' ');
                        }
                        out.push_str(word);
                    }
                    if text.ends_with(char::is_whitespace) {
                        out.push(' ');
                    }
                }
                Piece::Param(name) => {
                    out.push(':');
                    out.push_str(name);
                }
            }
        }
        let trimmed = out.trim().trim_end_matches(';').trim_end();
        trimmed.to_string()
    }
}

fn is_quoted(text: &str) -> bool {
    text.starts_with(['\'', '"', '`']) || text.starts_with("--") || text.starts_with("/*")
}

#[derive(Debug, PartialEq)]
enum Piece<'a> {
    Text(&'a str),
    Param(&'a str),
}

/// Splits SQL into plain text, quoted text/comments (returned whole) and
/// `:name` parameters. `::` casts and `:=` are not parameters.
fn scan(sql: &str) -> Vec<Piece<'_>> {
    fn flush<'a>(sql: &'a str, pieces: &mut Vec<Piece<'a>>, from: usize, to: usize) {
        if to > from {
            pieces.push(Piece::Text(&sql[from..to]));
        }
    }
    let bytes = sql.as_bytes();
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let quoted_end = match b {
            b'\'' | b'"' | b'`' => Some(end_of_quoted(bytes, i, b)),
            b'-' if bytes.get(i + 1) == Some(&b'-') => Some(
                bytes[i..]
                    .iter()
                    .position(|&c| c == b'\n')
                    .map_or(bytes.len(), |p| i + p),
            ),
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                Some(sql[i + 2..].find("*/").map_or(bytes.len(), |p| i + 2 + p + 2))
            }
            _ => None,
        };
        if let Some(end) = quoted_end {
            flush(sql, &mut pieces, start, i);
            pieces.push(Piece::Text(&sql[i..end]));
            i = end;
            start = end;
            continue;
        }
        if b == b':' {
            let next = bytes.get(i + 1).copied();
            let prev_colon = i > 0 && bytes[i - 1] == b':';
            if next == Some(b':') {
                i += 2; // a `::` cast
                continue;
            }
            // Names are ASCII, but a name with other letters is read whole
            // (`:straße`, not `:stra` + `ße`) so its error can name it.
            let starts_name = sql[i + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphabetic() || c == '_');
            if !prev_colon && next.is_some() && starts_name {
                let name_end = sql[i + 1..]
                    .char_indices()
                    .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
                    .map_or(bytes.len(), |(p, _)| i + 1 + p);
                flush(sql, &mut pieces, start, i);
                pieces.push(Piece::Param(&sql[i + 1..name_end]));
                i = name_end;
                start = name_end;
                continue;
            }
        }
        i += 1;
    }
    flush(sql, &mut pieces, start, bytes.len());
    pieces
}

/// Index just past the closing quote; doubled quotes and backslash escapes stay inside.
fn end_of_quoted(bytes: &[u8], open: usize, quote: u8) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if bytes[i] == b'\\' && quote == b'\'' {
            i += 2;
            continue;
        }
        if bytes[i] == quote {
            if bytes.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(sql: &str) -> NamedQuery {
        NamedQuery::new(sql)
            .param("id", SqlValue::Int(7))
            .param("name", SqlValue::Text("x".into()))
    }

    #[test]
    fn named_parameters_become_question_marks_on_mysql() {
        let s = query("SELECT * FROM t WHERE id = :id AND name = :name OR id = :id")
            .to_statement(DatabaseKind::MySql)
            .unwrap();
        assert_eq!(s.sql, "SELECT * FROM t WHERE id = ? AND name = ? OR id = ?");
        assert_eq!(
            s.args,
            vec![SqlValue::Int(7), SqlValue::Text("x".into()), SqlValue::Int(7)]
        );
    }

    #[test]
    fn named_parameters_become_numbered_and_reused_on_postgres() {
        let s = query("SELECT * FROM t WHERE id = :id AND name = :name OR id = :id")
            .to_statement(DatabaseKind::Postgres)
            .unwrap();
        assert_eq!(s.sql, "SELECT * FROM t WHERE id = $1 AND name = $2 OR id = $1");
        assert_eq!(s.args, vec![SqlValue::Int(7), SqlValue::Text("x".into())]);
    }

    #[test]
    fn colons_in_strings_comments_and_casts_are_not_parameters() {
        let q =
            NamedQuery::new("SELECT ':id', \":name\", `a:b`, x::text -- :nope\n, '1' /* :no */ FROM t WHERE id = :id")
                .param("id", SqlValue::Int(1));
        let s = q.to_statement(DatabaseKind::Postgres).unwrap();
        assert_eq!(
            s.sql,
            "SELECT ':id', \":name\", `a:b`, x::text -- :nope\n, '1' /* :no */ FROM t WHERE id = $1"
        );
    }

    #[test]
    fn escaped_quotes_do_not_end_a_string() {
        let q = NamedQuery::new("SELECT 'it''s :x', 'a\\':y' FROM t WHERE a = :id").param("id", SqlValue::Int(1));
        let s = q.to_statement(DatabaseKind::MySql).unwrap();
        assert_eq!(s.sql, "SELECT 'it''s :x', 'a\\':y' FROM t WHERE a = ?");
    }

    #[test]
    fn a_missing_value_names_the_parameter_and_the_fix() {
        let err = NamedQuery::new("SELECT :icao")
            .to_statement(DatabaseKind::MySql)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the query uses :icao but no value was given; add --param icao=VALUE"
        );
    }

    #[test]
    fn a_parameter_name_with_other_letters_is_read_whole_and_told_the_rule() {
        let err = NamedQuery::new("SELECT * FROM t WHERE city = :straße")
            .to_statement(DatabaseKind::MySql)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the query's parameter :straße may use only ASCII letters, digits and _ (not a digit first); rename it in the SQL and in --param"
        );
        // Letters after the colon inside quotes stay text.
        let quoted = NamedQuery::new("SELECT ':straße'")
            .to_statement(DatabaseKind::Postgres)
            .unwrap();
        assert_eq!(quoted.sql, "SELECT ':straße'");
    }

    #[test]
    fn an_unused_value_is_reported() {
        let err = NamedQuery::new("SELECT 1")
            .param("icoa", SqlValue::Int(1))
            .to_statement(DatabaseKind::MySql)
            .unwrap_err();
        assert!(err.to_string().starts_with("--param icoa is not used"));
    }

    #[test]
    fn normalising_folds_white_space_but_keeps_literals() {
        let a = NamedQuery::new("SELECT  *\n  FROM t\tWHERE n = 'a  b' AND id = :id ;");
        let b = NamedQuery::new("SELECT * FROM t WHERE n = 'a  b' AND id = :id");
        assert_eq!(a.normalised_sql(), b.normalised_sql());
        assert_eq!(b.normalised_sql(), "SELECT * FROM t WHERE n = 'a  b' AND id = :id");
    }

    #[test]
    fn identifiers_are_quoted_per_dialect() {
        assert_eq!(quote_ident(DatabaseKind::MySql, "from"), "`from`");
        assert_eq!(quote_ident(DatabaseKind::Postgres, "to"), "\"to\"");
    }
}
