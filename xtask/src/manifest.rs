//! A line-based reader for the parts of `Cargo.toml` that xtask checks and edits.
//!
//! This is deliberately not a TOML parser: it understands `[section]` headers, `key = value` lines,
//! values that continue over several lines (arrays and triple-quoted strings), comments, and
//! single-line inline tables.
//! That covers every manifest in the workspace; anything fancier shows up as a missing key, so a
//! check fails loudly rather than passing by accident.

#[cfg(test)]
mod tests;

/// One `key = value` pair of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The enclosing section header without brackets, e.g. `workspace.dependencies`; empty before
    /// the first header.
    pub(crate) section: String,
    /// The key as written, unquoted, e.g. `license.workspace`.
    pub(crate) key: String,
    /// The value with comments removed and continuation lines joined by spaces.
    pub(crate) value: String,
    /// The zero-based index of the line the entry starts on.
    pub(crate) line: usize,
}

impl Entry {
    /// Returns whether this entry sets `field`, either directly or as `field.workspace = true`.
    pub(crate) fn sets(&self, field: &str) -> bool {
        self.key == field || self.key.strip_suffix(".workspace") == Some(field)
    }
}

/// Returns every section header of `text`, in order, without brackets.
pub(crate) fn sections(text: &str) -> Vec<String> {
    text.lines().filter_map(section_header).collect()
}

/// Returns every `key = value` entry of `text`, in order.
pub(crate) fn entries(text: &str) -> Vec<Entry> {
    let mut out = Vec::new();
    let mut section = String::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, raw)) = lines.next() {
        if let Some(header) = section_header(raw) {
            section = header;
            continue;
        }
        let line = strip_comment(raw);
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let mut value = value.trim().to_owned();
        // Join continuation lines of multi-line arrays and strings.
        while is_unfinished(&value) {
            let Some((_, next)) = lines.next() else {
                break;
            };
            value.push(' ');
            value.push_str(strip_comment(next).trim());
        }
        out.push(Entry {
            section: section.clone(),
            key: unquote_key(key.trim()),
            value,
            line: index,
        });
    }
    out
}

/// Returns the entries of `section` in `entries`.
pub(crate) fn in_section<'a>(
    entries: &'a [Entry],
    section: &'a str,
) -> impl Iterator<Item = &'a Entry> {
    entries.iter().filter(move |e| e.section == section)
}

/// Parses a single-line inline table `{ a = 1, b = "x" }` into its top-level keys and raw values.
pub(crate) fn inline_table(value: &str) -> Option<Vec<(String, String)>> {
    let inner = value.trim().strip_prefix('{')?.strip_suffix('}')?;
    let mut out = Vec::new();
    for part in split_top_level(inner, ',') {
        if part.trim().is_empty() {
            continue;
        }
        let (key, val) = part.split_once('=')?;
        out.push((unquote_key(key.trim()), val.trim().to_owned()));
    }
    Some(out)
}

/// Returns the contents of a basic or literal string value (`"x"` or `'x'`), without unescaping.
pub(crate) fn string_value(value: &str) -> Option<&str> {
    let value = value.trim();
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
}

/// Parses an array of strings, such as `members = ["crates/*", "xtask"]`.
pub(crate) fn string_array(value: &str) -> Option<Vec<String>> {
    let inner = value.trim().strip_prefix('[')?.strip_suffix(']')?;
    split_top_level(inner, ',')
        .into_iter()
        .filter(|item| !item.trim().is_empty())
        .map(|item| string_value(item).map(str::to_owned))
        .collect()
}

/// Replaces the string value of `key` on one manifest line, keeping everything else (including a
/// version operator such as `=` inside the quotes) as written.
///
/// Works both for `key = "old"` lines and for `key` inside a single-line inline table.
/// Returns `None` when the line has no such key with a string value.
pub(crate) fn replace_string_value(line: &str, key: &str, new: &str) -> Option<String> {
    let mut search_from = 0;
    while let Some(found) = line[search_from..].find(key) {
        let start = search_from + found;
        search_from = start + key.len();
        // The key must stand alone: preceded by the line start, a space, `{` or `,`.
        let before_ok = line[..start]
            .chars()
            .next_back()
            .is_none_or(|c| matches!(c, ' ' | '\t' | '{' | ','));
        let rest = &line[start + key.len()..];
        let Some(after_eq) = rest.trim_start().strip_prefix('=') else {
            continue;
        };
        if !before_ok {
            continue;
        }
        let after_eq_trimmed = after_eq.trim_start();
        let Some(body) = after_eq_trimmed.strip_prefix('"') else {
            continue;
        };
        let close = body.find('"')?;
        let old = &body[..close];
        // Keep a requirement operator (`=`, `^`, `~`) that precedes the version number.
        let operator_len = old.len() - old.trim_start_matches(['=', '^', '~', ' ']).len();
        let value_start = line.len() - body.len() + operator_len;
        let value_end = line.len() - body.len() + close;
        let mut out = String::with_capacity(line.len() + new.len());
        out.push_str(&line[..value_start]);
        out.push_str(new);
        out.push_str(&line[value_end..]);
        return Some(out);
    }
    None
}

/// Returns the header of a `[section]` or `[[array.of.tables]]` line, without brackets.
fn section_header(line: &str) -> Option<String> {
    let line = strip_comment(line);
    let line = line.trim();
    let inner = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]"));
    let inner = inner.or_else(|| line.strip_prefix('[').and_then(|l| l.strip_suffix(']')))?;
    Some(inner.trim().to_owned())
}

/// Removes a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match quote {
            Some('"') if escaped => escaped = false,
            Some('"') if c == '\\' => escaped = true,
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '"' || c == '\'' => quote = Some(c),
            None if c == '#' => return &line[..i],
            None => {}
        }
    }
    line
}

/// Returns whether a value continues on the next line: an open array or triple-quoted string.
fn is_unfinished(value: &str) -> bool {
    for quotes in ["\"\"\"", "'''"] {
        if let Some(rest) = value.strip_prefix(quotes) {
            return !rest.contains(quotes);
        }
    }
    if value.starts_with('[') {
        let mut depth = 0_i32;
        let mut quote = None;
        for c in value.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '[') => depth += 1,
                (None, ']') => depth -= 1,
                (None, _) => {}
            }
        }
        return depth > 0;
    }
    false
}

/// Splits `text` at `sep` where it is outside strings, brackets and braces.
fn split_top_level(text: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0_i32;
    let mut quote = None;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, c) if c == sep && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + c.len_utf8();
            }
            (None, _) => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// Removes the quotes around a quoted key such as `"kmm-gfp"`.
fn unquote_key(key: &str) -> String {
    string_value(key).unwrap_or(key).to_owned()
}
