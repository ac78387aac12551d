//! Is a `--sql` statement a read? A small lexer that skips comments, string
//! literals and quoted identifiers, then looks at the words that are left.
//!
//! The workshop measures reads, and runs a query once per run: a write given
//! with `--sql` would be repeated. This check refuses non-reads before
//! anything runs; the read-only transaction every `--sql` query runs in
//! (see [`crate::db::DbSession::fetch_timed`]) is the second line of defence,
//! for what no lexer can see (a function with side effects).

use crate::config::DatabaseKind;

/// What the tool accepts, for messages.
pub const READS: &str = "SELECT, WITH … SELECT, VALUES, TABLE or a parenthesised SELECT";

/// Why a statement is not a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotARead {
    /// It does not start with a reading keyword (e.g. UPDATE, DROP).
    StartsWith(String),
    /// Something follows the first `;`.
    SeveralStatements,
    /// `SELECT … INTO` writes a table, a file or variables.
    Into,
    /// `FOR UPDATE` / `FOR SHARE` / `LOCK IN SHARE MODE` lock rows.
    Locks,
    /// A data-modifying statement inside (PostgreSQL `WITH x AS (DELETE …)`).
    Modifies(String),
    /// MySQL's `/*! … */` comments are executed, so they cannot be skipped.
    ExecutableComment,
}

impl NotARead {
    /// The part of the one-line error that says what is wrong.
    pub fn reason(&self) -> String {
        match self {
            NotARead::StartsWith(word) if word.is_empty() => "it holds no statement".to_string(),
            NotARead::StartsWith(word) => format!("it starts with {word}"),
            NotARead::SeveralStatements => "it holds more than one statement".to_string(),
            NotARead::Into => "SELECT … INTO writes its result".to_string(),
            NotARead::Locks => "it locks rows (FOR UPDATE / FOR SHARE)".to_string(),
            NotARead::Modifies(word) => format!("it runs {word} inside the query"),
            NotARead::ExecutableComment => "it holds a /*! … */ comment, which MySQL executes".to_string(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, upper-cased (keywords and unquoted identifiers).
    Word(String),
    Open,
    Close,
    Semicolon,
    /// Anything else that is code: operators, numbers, commas, `:name`.
    Other,
}

/// Checks that `sql` is one read statement in the dialect of `kind`.
pub fn check(sql: &str, kind: DatabaseKind) -> Result<(), NotARead> {
    let tokens = tokenize(sql, kind)?;
    let statement_end = tokens.iter().position(|t| *t == Token::Semicolon);
    if let Some(end) = statement_end {
        if tokens[end + 1..].iter().any(|t| *t != Token::Semicolon) {
            return Err(NotARead::SeveralStatements);
        }
    }
    let tokens = &tokens[..statement_end.unwrap_or(tokens.len())];
    let first = tokens.iter().find(|t| **t != Token::Open);
    match first {
        Some(Token::Word(word)) if matches!(word.as_str(), "SELECT" | "WITH" | "VALUES" | "TABLE") => {}
        Some(Token::Word(word)) => return Err(NotARead::StartsWith(word.clone())),
        _ => return Err(NotARead::StartsWith(String::new())),
    }
    for (i, token) in tokens.iter().enumerate() {
        let Token::Word(word) = token else { continue };
        let next = tokens.get(i + 1);
        let next_word = |expected: &[&str]| matches!(next, Some(Token::Word(w)) if expected.contains(&w.as_str()));
        match word.as_str() {
            "INTO" => return Err(NotARead::Into),
            // FOR UPDATE, FOR NO KEY UPDATE, FOR SHARE, FOR KEY SHARE; not SUBSTRING(x FROM 1 FOR 2).
            "FOR" if next_word(&["UPDATE", "SHARE", "NO", "KEY"]) => return Err(NotARead::Locks),
            "LOCK" if next_word(&["IN"]) => return Err(NotARead::Locks),
            // MySQL's INSERT(str, pos, len, new) is a string function: a word followed by `(`.
            "INSERT" | "UPDATE" | "DELETE" if next != Some(&Token::Open) => {
                return Err(NotARead::Modifies(word.clone()))
            }
            // MERGE is not reserved, so it may name a column; as a statement it follows `(`.
            "MERGE" if i > 0 && tokens[i - 1] == Token::Open => return Err(NotARead::Modifies(word.clone())),
            _ => {}
        }
    }
    Ok(())
}

fn tokenize(sql: &str, kind: DatabaseKind) -> Result<Vec<Token>, NotARead> {
    let bytes = sql.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let next = bytes.get(i + 1).copied();
        match b {
            _ if b.is_ascii_whitespace() => i += 1,
            b'-' if next == Some(b'-') => i = line_end(bytes, i),
            b'#' if kind == DatabaseKind::MySql => i = line_end(bytes, i),
            b'/' if next == Some(b'*') => {
                if kind == DatabaseKind::MySql && matches!(bytes.get(i + 2), Some(b'!') | Some(b'M')) {
                    // `/*!50100 … */` and MariaDB's `/*M! … */` are run as code.
                    if bytes.get(i + 2) == Some(&b'!') || bytes.get(i + 3) == Some(&b'!') {
                        return Err(NotARead::ExecutableComment);
                    }
                }
                i = block_comment_end(bytes, i, kind == DatabaseKind::Postgres);
            }
            b'\'' => {
                // PostgreSQL: backslashes escape only in E'…' strings.
                let escapes = match kind {
                    DatabaseKind::MySql => true,
                    DatabaseKind::Postgres => {
                        i > 0 && matches!(bytes[i - 1], b'e' | b'E') && !is_word_byte_before(bytes, i - 1)
                    }
                };
                i = quoted_end(bytes, i, b'\'', escapes);
                tokens.push(Token::Other);
            }
            b'"' => {
                i = quoted_end(bytes, i, b'"', kind == DatabaseKind::MySql);
                tokens.push(Token::Other);
            }
            b'`' if kind == DatabaseKind::MySql => {
                i = quoted_end(bytes, i, b'`', false);
                tokens.push(Token::Other);
            }
            b'$' if kind == DatabaseKind::Postgres => match dollar_tag(bytes, i) {
                Some(tag) => {
                    let body = i + tag.len();
                    i = find(bytes, body, tag).map_or(bytes.len(), |at| at + tag.len());
                    tokens.push(Token::Other);
                }
                None => {
                    i += 1;
                    tokens.push(Token::Other);
                }
            },
            b'(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            b')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            b';' => {
                tokens.push(Token::Semicolon);
                i += 1;
            }
            _ if is_word_byte(b) && !b.is_ascii_digit() => {
                let start = i;
                while i < bytes.len() && is_word_byte(bytes[i]) {
                    i += 1;
                }
                // After a dot it is a column or table name (`t.delete`), never a keyword.
                if start > 0 && bytes[start - 1] == b'.' {
                    tokens.push(Token::Other);
                } else {
                    tokens.push(Token::Word(sql[start..i].to_ascii_uppercase()));
                }
            }
            _ => {
                // Numbers, operators, `:name` parameters: one token per run of such bytes
                // is enough, they never change whether a statement reads.
                i += 1;
                while i < bytes.len() && !is_boundary(bytes[i]) {
                    i += 1;
                }
                tokens.push(Token::Other);
            }
        }
    }
    Ok(tokens)
}

fn is_word_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b >= 0x80
}

fn is_word_byte_before(bytes: &[u8], at: usize) -> bool {
    at > 0 && is_word_byte(bytes[at - 1])
}

fn is_boundary(b: u8) -> bool {
    b.is_ascii_whitespace()
        || matches!(b, b'(' | b')' | b';' | b'\'' | b'"' | b'`' | b'#' | b'-' | b'/' | b'$')
        || (is_word_byte(b) && !b.is_ascii_digit())
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(bytes.len(), |p| from + p + 1)
}

/// Past the `*/` that closes the comment at `open`; PostgreSQL nests them.
fn block_comment_end(bytes: &[u8], open: usize, nests: bool) -> usize {
    let mut depth = 0usize;
    let mut i = open;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') if depth == 0 || nests => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// Past the closing quote; a doubled quote (and, where `escapes`, a backslash) stays inside.
fn quoted_end(bytes: &[u8], open: usize, quote: u8, escapes: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        if escapes && bytes[i] == b'\\' {
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

/// `$tag$` or `$$` opening a dollar-quoted string at `at` (not `$1`, a parameter).
fn dollar_tag(bytes: &[u8], at: usize) -> Option<&[u8]> {
    if is_word_byte_before(bytes, at) {
        return None;
    }
    let mut end = at + 1;
    while end < bytes.len() && bytes[end] != b'$' {
        let c = bytes[end];
        let allowed = c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 || (end > at + 1 && c.is_ascii_digit());
        if !allowed {
            return None;
        }
        end += 1;
    }
    (end < bytes.len()).then(|| &bytes[at..=end])
}

fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes[from..]
        .windows(needle.len())
        .position(|window| window == needle)
        .map(|p| from + p)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MY: DatabaseKind = DatabaseKind::MySql;
    const PG: DatabaseKind = DatabaseKind::Postgres;

    fn both(sql: &str) -> [Result<(), NotARead>; 2] {
        [check(sql, MY), check(sql, PG)]
    }

    #[test]
    fn reads_are_accepted_on_both_dialects() {
        for sql in [
            "SELECT 1",
            "select * from airport where airport_id = :id;",
            "  (SELECT 1) UNION (SELECT 2)",
            "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
            "VALUES (1, 2)",
            "TABLE airport",
            "-- a comment first\nSELECT 1",
            "/* leading */ SELECT 1 ;  ",
            "SELECT SUBSTRING(name FROM 1 FOR 3) FROM airport",
            "SELECT 'DELETE FROM t; DROP TABLE x' AS text",
            "SELECT \"update\" FROM t",
            "SELECT replace(name, 'a', 'b'), merge FROM t",
            "SELECT t.delete, t.update, s.into FROM t JOIN s ON s.id = t.id",
        ] {
            assert_eq!(both(sql), [Ok(()), Ok(())], "{sql}");
        }
        assert_eq!(check("SELECT INSERT('Quadratic', 3, 4, 'What')", MY), Ok(()));
        assert_eq!(check("SELECT `delete` FROM t # DELETE", MY), Ok(()));
        assert_eq!(check("SELECT $$ ; DELETE FROM t $$, $tag$ it's $tag$", PG), Ok(()));
        assert_eq!(
            check("SELECT x::text, $1 FROM t /* a /* nested */ DELETE */", PG),
            Ok(())
        );
    }

    #[test]
    fn writes_and_ddl_are_refused_by_their_first_word() {
        for (sql, word) in [
            ("UPDATE airport SET name = 'x'", "UPDATE"),
            ("delete from booking", "DELETE"),
            ("INSERT INTO t VALUES (1)", "INSERT"),
            ("DROP TABLE airport", "DROP"),
            ("/* SELECT */ TRUNCATE t", "TRUNCATE"),
            ("-- SELECT\nCALL p()", "CALL"),
            ("SET @a = 1", "SET"),
            ("REPLACE INTO t VALUES (1)", "REPLACE"),
            ("EXPLAIN ANALYZE DELETE FROM t", "EXPLAIN"),
        ] {
            let expected = Err(NotARead::StartsWith(word.to_string()));
            assert_eq!(both(sql), [expected.clone(), expected], "{sql}");
        }
        assert_eq!(check("", MY), Err(NotARead::StartsWith(String::new())));
        assert_eq!(
            check("  -- only a comment", PG),
            Err(NotARead::StartsWith(String::new()))
        );
    }

    #[test]
    fn a_second_statement_is_refused_even_after_a_read() {
        for sql in [
            "SELECT 1; DELETE FROM t",
            "SELECT 1;SELECT 2",
            "SELECT ';' ; DROP TABLE t",
        ] {
            assert_eq!(
                both(sql),
                [Err(NotARead::SeveralStatements), Err(NotARead::SeveralStatements)],
                "{sql}"
            );
        }
    }

    #[test]
    fn into_locks_and_modifying_ctes_are_refused() {
        assert_eq!(both("SELECT * INTO copy FROM airport")[1], Err(NotARead::Into));
        assert_eq!(both("SELECT 1 INTO OUTFILE '/tmp/x'")[0], Err(NotARead::Into));
        assert_eq!(both("SELECT * FROM t FOR UPDATE")[0], Err(NotARead::Locks));
        assert_eq!(both("SELECT * FROM t FOR NO KEY UPDATE")[1], Err(NotARead::Locks));
        assert_eq!(both("SELECT * FROM t FOR SHARE")[1], Err(NotARead::Locks));
        assert_eq!(both("SELECT * FROM t LOCK IN SHARE MODE")[0], Err(NotARead::Locks));
        assert_eq!(
            check(
                "WITH gone AS (DELETE FROM booking RETURNING *) SELECT count(*) FROM gone",
                PG
            ),
            Err(NotARead::Modifies("DELETE".into()))
        );
        assert_eq!(
            check(
                "WITH x AS MATERIALIZED (UPDATE t SET a = 1 RETURNING a) SELECT * FROM x",
                PG
            ),
            Err(NotARead::Modifies("UPDATE".into()))
        );
        assert_eq!(
            check(
                "WITH x AS (MERGE INTO t USING s ON true WHEN MATCHED THEN DELETE) SELECT 1",
                PG
            ),
            Err(NotARead::Modifies("MERGE".into()))
        );
        assert_eq!(
            check("with x as (insert into t values (1) returning *) select * from x", PG),
            Err(NotARead::Modifies("INSERT".into()))
        );
    }

    #[test]
    fn quoting_rules_follow_the_dialect() {
        // PostgreSQL: a backslash does not escape in a standard string, so the
        // string ends after it and the DELETE is code.
        assert_eq!(
            check(r"SELECT 'a\' ; DELETE FROM t; --'", PG),
            Err(NotARead::SeveralStatements)
        );
        // MySQL: the backslash escapes the quote, so all of it is one string.
        assert_eq!(check(r"SELECT 'a\' ; DELETE FROM t; --'", MY), Ok(()));
        // E'…' escapes on PostgreSQL too.
        assert_eq!(check(r"SELECT E'a\' ; DELETE FROM t; --'", PG), Ok(()));
        // `#` starts a comment on MySQL only (on PostgreSQL it is an operator).
        assert_eq!(check("SELECT 1 # ; DROP TABLE t", MY), Ok(()));
        assert_eq!(
            check("SELECT 1 # 2; DROP TABLE t", PG),
            Err(NotARead::SeveralStatements)
        );
        // MySQL nests no comments: the first */ ends it.
        assert_eq!(
            check("SELECT 1 /* /* */ ; DROP TABLE t */", MY),
            Err(NotARead::SeveralStatements)
        );
    }

    #[test]
    fn executable_comments_are_refused_on_mysql() {
        assert_eq!(
            check("SELECT 1 /*!50000 ; DROP TABLE t */", MY),
            Err(NotARead::ExecutableComment)
        );
        assert_eq!(check("SELECT 1 /*M! , 2 */", MY), Err(NotARead::ExecutableComment));
        assert_eq!(check("SELECT 1 /*! , 2 */", PG), Ok(()));
    }
}
