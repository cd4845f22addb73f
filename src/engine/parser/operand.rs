//! Right-hand operands: `val(field)` and transformers, strings (bare or quoted, with libsinsp's
//! escapes), numbers, and parenthesized lists.

use super::{is_bare, ParseError, Parser};
use crate::engine::ast::{TArg, Value};

impl Parser<'_> {
    /// `val(field)` or a transformer: a field-valued right-hand side.
    pub(super) fn field_operand(&mut self) -> Result<Option<Value>, ParseError> {
        if self.starts_with("val(") {
            self.pos += 4;
            self.blanks();
            let Some(field) = self.field_or_transformer()? else {
                return Err(self.error("expected a field inside val()"));
            };
            self.blanks();
            if self.peek() != Some(b')') {
                return Err(self.error("expected ')' closing val("));
            }
            self.pos += 1;
            return Ok(Some(Value::Field(field)));
        }
        if self.transformer_name().is_some() {
            return Ok(self.field_or_transformer()?.map(Value::Field));
        }
        Ok(None)
    }

    pub(super) fn str_operand(&mut self) -> Result<Value, ParseError> {
        if let Some(v) = self.field_operand()? {
            return Ok(v);
        }
        match self.peek() {
            Some(b'"') | Some(b'\'') => Ok(Value::Str(self.quoted()?)),
            _ => self
                .bare()
                .map(Value::Str)
                .ok_or_else(|| self.error("expected a value")),
        }
    }

    pub(super) fn num_operand(&mut self) -> Result<Value, ParseError> {
        if let Some(v) = self.field_operand()? {
            return Ok(v);
        }
        self.number()
            .map(Value::Str)
            .ok_or_else(|| self.error("expected a number"))
    }

    /// A hex or decimal number (libsinsp's number syntax), as written.
    fn number(&mut self) -> Option<String> {
        let s = &self.s[self.pos..];
        if s.len() > 2 && s[0] == b'0' && matches!(s[1], b'x' | b'X') && s[2].is_ascii_hexdigit() {
            let mut end = 2;
            while s.get(end).is_some_and(|b| b.is_ascii_hexdigit()) {
                end += 1;
            }
            let text = self.text[self.pos..self.pos + end].to_string();
            self.pos += end;
            return Some(text);
        }
        let mut i = 0;
        if matches!(s.first(), Some(b'+') | Some(b'-')) {
            i += 1;
        }
        let digits = i;
        while s.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == digits {
            return None;
        }
        if s.get(i) == Some(&b'.') {
            i += 1;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        if matches!(s.get(i), Some(b'e') | Some(b'E'))
            && matches!(s.get(i + 1), Some(b'+') | Some(b'-'))
            && s.get(i + 2).is_some_and(u8::is_ascii_digit)
        {
            i += 2;
            while s.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        let text = self.text[self.pos..self.pos + i].to_string();
        self.pos += i;
        Some(text)
    }

    /// The arguments of a multi-value transformer after its `(`, through the closing `)`.
    pub(super) fn call_args(&mut self) -> Result<Vec<TArg>, ParseError> {
        let args = self.comma_separated(Self::call_arg)?;
        if self.peek() != Some(b')') {
            return Err(self.error("expected a ')' token closing the transformer"));
        }
        self.pos += 1;
        Ok(args)
    }

    /// One or more `item`s separated by commas (blanks around each), up to what follows the last.
    fn comma_separated(
        &mut self,
        item: fn(&mut Self) -> Result<TArg, ParseError>,
    ) -> Result<Vec<TArg>, ParseError> {
        let mut items = Vec::new();
        loop {
            self.blanks();
            items.push(item(self)?);
            self.blanks();
            if self.peek() != Some(b',') {
                return Ok(items);
            }
            self.pos += 1;
        }
    }

    /// A number, a quoted string, a transformer list, a transformer or a field.
    fn call_arg(&mut self) -> Result<TArg, ParseError> {
        if let Some(n) = self.number() {
            return Ok(TArg::Str(n));
        }
        if matches!(self.peek(), Some(b'"') | Some(b'\'')) {
            return Ok(TArg::Str(self.quoted()?));
        }
        if self.peek() == Some(b'(') {
            self.pos += 1;
            return self.transformer_list();
        }
        match self.field_or_transformer()? {
            Some(field) => Ok(TArg::Field(field)),
            None => Err(self.error(
                "expected field transformer argument: field, transformer, quoted string, number, or transformer list",
            )),
        }
    }

    /// A transformer list after its `(`: fields, transformers, quoted strings and numbers.
    fn transformer_list(&mut self) -> Result<TArg, ParseError> {
        self.blanks();
        if self.peek() == Some(b')') {
            self.pos += 1;
            return Ok(TArg::List(Vec::new()));
        }
        let items = self.comma_separated(Self::list_arg)?;
        if self.peek() != Some(b')') {
            return Err(self.error("expected ')'"));
        }
        self.pos += 1;
        Ok(TArg::List(items))
    }

    fn list_arg(&mut self) -> Result<TArg, ParseError> {
        if self.field_name_len() > 0 || self.transformer_name().is_some() {
            if let Some(field) = self.field_or_transformer()? {
                return Ok(TArg::Field(field));
            }
        }
        if matches!(self.peek(), Some(b'"') | Some(b'\'')) {
            return Ok(TArg::Str(self.quoted()?));
        }
        if let Some(n) = self.number() {
            return Ok(TArg::Str(n));
        }
        Err(self.error(
            "expected transformer list argument: field, transformer, quoted string, or number",
        ))
    }

    pub(super) fn list_operand(&mut self) -> Result<Value, ParseError> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            self.blanks();
            let mut items = Vec::new();
            if self.peek() == Some(b')') {
                self.pos += 1;
                return Ok(Value::List(items));
            }
            loop {
                let item = match self.peek() {
                    Some(b'"') | Some(b'\'') => self.quoted()?,
                    _ => self
                        .bare()
                        .ok_or_else(|| self.error("expected a list item"))?,
                };
                items.push(item);
                self.blanks();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.blanks();
                    }
                    Some(b')') => {
                        self.pos += 1;
                        return Ok(Value::List(items));
                    }
                    _ => return Err(self.error("expected ',' or ')' in the list")),
                }
            }
        }
        if let Some(v) = self.field_operand()? {
            return Ok(v);
        }
        // A single identifier stands for a one-element list.
        match self.identifier() {
            Some(name) => Ok(Value::List(vec![name])),
            None => Err(self.error("expected a list")),
        }
    }

    pub(super) fn bare(&mut self) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(is_bare) {
            self.pos += 1;
        }
        (self.pos > start).then(|| self.text[start..self.pos].to_string())
    }

    /// A quoted string: ends at the first delimiter not right after a backslash, then unescapes.
    pub(super) fn quoted(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let delim = self.s[start];
        let mut i = start + 1;
        loop {
            match self.s.get(i) {
                None => {
                    return Err(ParseError {
                        offset: start,
                        message: "unterminated string".into(),
                    })
                }
                Some(&b) if b == delim && self.s[i - 1] != b'\\' => break,
                _ => i += 1,
            }
        }
        let raw = &self.s[start + 1..i];
        self.pos = i + 1;
        unescape(raw, delim).map_err(|message| ParseError {
            offset: start,
            message,
        })
    }
}

fn unescape(raw: &[u8], delim: u8) -> Result<String, String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(&next) = raw.get(i + 1) else {
            out.push(b'\\');
            break;
        };
        i += 2;
        match next {
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'\\' => out.push(b'\\'),
            b'/' => out.push(b'/'),
            b' ' => out.push(b'\\'),
            b'x' => {
                let hex = raw.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                let byte = hex.and_then(|h| u8::from_str_radix(h, 16).ok());
                match byte {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => return Err("invalid \\x escape in string".into()),
                }
            }
            b if b == delim => out.push(b),
            other => {
                return Err(format!(
                    "invalid escape sequence '\\{}' in string",
                    other as char
                ))
            }
        }
    }
    String::from_utf8(out).map_err(|_| "string is not valid UTF-8 after unescaping".into())
}
