//! The design's one-way data flow, checked on the sources: exercises and
//! patterns return data and never reach up into `report` (the only code that
//! prints). A file that imports it fails this test by name and line.

use std::path::{Path, PathBuf};

/// Where `report` must never be named as a path.
const DOMAIN_FOLDERS: [&str; 2] = ["src/exercises", "src/patterns"];

fn rust_files(folder: &Path, found: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(folder)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The source without comments, string and char literals (replaced by
/// spaces, newlines kept), so a word in a message or a doc line is no import.
fn code_only(source: &str) -> String {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                out.push(' ');
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !prev_is_ident(&chars, i) {
            // A raw string: r"…", r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    Some(_) => j += 1,
                }
            }
            for &skipped in &chars[i..j.min(chars.len())] {
                out.push(blank(skipped));
            }
            i = j;
        } else if c == '"' {
            out.push(' ');
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' {
                    out.push(' ');
                    i += 1;
                }
                if i < chars.len() {
                    out.push(blank(chars[i]));
                    i += 1;
                }
            }
            out.push(' ');
            i += 1;
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            out.push_str("   ");
            i += 3;
        } else if c == '\'' && next == Some('\\') {
            // '\n', '\'', '\u{..}'
            out.push(' ');
            i += 1;
            while i < chars.len() && !(chars[i] == '\'' && chars[i - 1] != '\\') {
                out.push(' ');
                i += 1;
            }
            out.push(' ');
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// Lines (1-based) where `report` is named as a path: `crate::report`,
/// `report::x`, or inside a `use` statement (`use crate::{db, report};`).
fn report_imports(source: &str) -> Vec<usize> {
    let code = code_only(source);
    #[derive(PartialEq)]
    enum Token {
        Word(String),
        Path,
        Other(char),
    }
    let mut tokens: Vec<(Token, usize)> = Vec::new();
    let mut line = 1;
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '\n' {
            line += 1;
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            tokens.push((Token::Word(chars[start..i].iter().collect()), line));
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            tokens.push((Token::Path, line));
            i += 2;
        } else {
            tokens.push((Token::Other(c), line));
            i += 1;
        }
    }
    let mut hits = Vec::new();
    let mut in_use = false;
    for (index, (token, line)) in tokens.iter().enumerate() {
        match token {
            Token::Word(word) if word == "use" => in_use = true,
            Token::Other(';') => in_use = false,
            Token::Word(word) if word == "report" => {
                let before = index.checked_sub(1).map(|i| &tokens[i].0);
                let after = tokens.get(index + 1).map(|t| &t.0);
                if in_use || before == Some(&Token::Path) || after == Some(&Token::Path) {
                    hits.push(*line);
                }
            }
            _ => {}
        }
    }
    hits.dedup();
    hits
}

#[test]
fn no_exercise_or_pattern_imports_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for folder in DOMAIN_FOLDERS {
        rust_files(&root.join(folder), &mut files);
    }
    assert!(files.len() > 20, "too few sources found: {files:?}");
    let mut offenders = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for line in report_imports(&source) {
            offenders.push(format!("{}:{line}", file.strip_prefix(root).unwrap().display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "exercises and patterns return data; only report/ prints. These name report:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_import_check_finds_every_way_of_naming_report() {
    let source = "use crate::report::Output;\n\
                  use crate::{db,\n    report};\n\
                  fn f() { crate::report::fatal(\"x\"); }\n\
                  use super::super::report as r;\n\
                  fn g() { report::warn(); }\n";
    assert_eq!(report_imports(source), vec![1, 3, 4, 5, 6]);
}

#[test]
fn the_import_check_ignores_words_in_comments_strings_and_variables() {
    let source = "//! the report above\n\
                  /* use crate::report; */\n\
                  let report = check();\n\
                  report.ok = true;\n\
                  let m = \"use crate::report::x; please report it\";\n\
                  let r = r#\"crate::report\"#;\n\
                  struct ReadReport;\n";
    assert_eq!(report_imports(source), Vec::<usize>::new());
}
