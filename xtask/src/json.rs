//! A minimal JSON reader for the two documents xtask consumes: `cargo metadata` and criterion's
//! `estimates.json` / `benchmark.json`.
//!
//! It parses the whole grammar (objects, arrays, strings with escapes, numbers, literals) into a
//! small tree and offers lookups by key.
//! Numbers are kept as `f64`, which is enough for timings; nothing here needs exact integers.
//! There is no serializer: xtask never writes JSON.

#[cfg(test)]
mod tests;

use anyhow::{Context, bail};

/// A parsed JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(f64),
    /// A string, with escapes resolved.
    String(String),
    /// An array.
    Array(Vec<Value>),
    /// An object; key order is kept as written.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// Returns the member `key` of an object, or `None` for a missing key or a non-object.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Returns the string inside a `Value::String`.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// Returns the number inside a `Value::Number`.
    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// Returns the elements of a `Value::Array`.
    pub(crate) fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Parses a complete JSON document.
pub(crate) fn parse(text: &str) -> anyhow::Result<Value> {
    let mut parser = Parser {
        bytes: text.as_bytes(),
        pos: 0,
    };
    let value = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != parser.bytes.len() {
        bail!("trailing characters at byte {}", parser.pos);
    }
    Ok(value)
}

/// Nesting deeper than this is rejected instead of risking stack overflow.
const MAX_DEPTH: usize = 128;

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn expect(&mut self, byte: u8) -> anyhow::Result<()> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            bail!("expected `{}` at byte {}", char::from(byte), self.pos)
        }
    }

    fn value(&mut self, depth: usize) -> anyhow::Result<Value> {
        if depth > MAX_DEPTH {
            bail!("JSON nested deeper than {MAX_DEPTH} levels");
        }
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b'"') => Ok(Value::String(self.string()?)),
            Some(b't') => self.literal("true", Value::Bool(true)),
            Some(b'f') => self.literal("false", Value::Bool(false)),
            Some(b'n') => self.literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(other) => bail!("unexpected `{}` at byte {}", char::from(other), self.pos),
            None => bail!("unexpected end of JSON"),
        }
    }

    fn literal(&mut self, word: &str, value: Value) -> anyhow::Result<Value> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(value)
        } else {
            bail!("invalid literal at byte {}", self.pos)
        }
    }

    fn object(&mut self, depth: usize) -> anyhow::Result<Value> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Value::Object(members));
        }
        loop {
            self.skip_ws();
            let key = self.string()?;
            self.skip_ws();
            self.expect(b':')?;
            let value = self.value(depth + 1)?;
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Value::Object(members));
                }
                _ => bail!("expected `,` or `}}` at byte {}", self.pos),
            }
        }
    }

    fn array(&mut self, depth: usize) -> anyhow::Result<Value> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Value::Array(items));
        }
        loop {
            items.push(self.value(depth + 1)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Value::Array(items));
                }
                _ => bail!("expected `,` or `]` at byte {}", self.pos),
            }
        }
    }

    fn number(&mut self) -> anyhow::Result<Value> {
        let start = self.pos;
        while let Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        // The slice holds only ASCII bytes, so it is valid UTF-8.
        let text = core::str::from_utf8(&self.bytes[start..self.pos])?;
        let n = text
            .parse::<f64>()
            .with_context(|| format!("invalid number `{text}` at byte {start}"))?;
        Ok(Value::Number(n))
    }

    fn string(&mut self) -> anyhow::Result<String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            // Copy the run of plain characters up to the next quote or backslash in one go.
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(core::str::from_utf8(&self.bytes[run_start..self.pos])?);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let escape = self.peek().context("unterminated escape")?;
                    self.pos += 1;
                    match escape {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => out.push(self.unicode_escape()?),
                        other => bail!("invalid escape `\\{}`", char::from(other)),
                    }
                }
                _ => bail!("unterminated string starting before byte {run_start}"),
            }
        }
    }

    /// Reads the four hex digits after `\u`, and a low surrogate after a high one.
    fn unicode_escape(&mut self) -> anyhow::Result<char> {
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.bytes[self.pos..].starts_with(b"\\u") {
                bail!("lone high surrogate at byte {}", self.pos);
            }
            self.pos += 2;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                bail!("invalid low surrogate at byte {}", self.pos);
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else {
            high
        };
        char::from_u32(code).with_context(|| format!("invalid code point U+{code:04X}"))
    }

    fn hex4(&mut self) -> anyhow::Result<u32> {
        let digits = self
            .bytes
            .get(self.pos..self.pos + 4)
            .context("truncated `\\u` escape")?;
        let text = core::str::from_utf8(digits)?;
        let code = u32::from_str_radix(text, 16).with_context(|| format!("invalid `\\u{text}`"))?;
        self.pos += 4;
        Ok(code)
    }
}
