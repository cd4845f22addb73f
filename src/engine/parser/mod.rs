//! The condition parser: text → [`Expr`], following libsinsp's grammar (keywords are prefixes,
//! word operators need whitespace after them, `in`/`intersects`/`pmatch` do not, the whole input
//! must be consumed). Errors carry the byte offset where parsing failed.

use super::ast::{Call, Expr, FieldRef, Modifier, Multi, Op, Transformer, Value};

mod operand;

/// Falco's maximum nesting depth.
pub const MAX_DEPTH: usize = 1000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Byte offset in the condition text.
    pub offset: usize,
    pub message: String,
}

pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    p.blanks();
    if p.pos >= p.s.len() {
        return Err(p.error("empty condition"));
    }
    let expr = p.or_expr()?;
    p.blanks();
    if p.pos < p.s.len() {
        return Err(p.error(format!(
            "unexpected token after '{}', expecting 'or', 'and'",
            text[..p.pos].trim_end()
        )));
    }
    Ok(expr)
}

/// Parses a field expression alone (`proc.name`, `tolower(ka.user.name)`, `json.value[/a]`), as
/// exception `fields` and output tokens use. Returns the field and the bytes consumed.
pub fn parse_field_prefix(text: &str) -> Option<(FieldRef, usize)> {
    let mut p = Parser {
        s: text.as_bytes(),
        text,
        pos: 0,
        depth: 0,
    };
    let field = p.field_or_transformer().ok()??;
    Some((field, p.pos))
}

/// A transformer name as written before its `(`.
#[derive(Clone, Copy)]
enum Named {
    Single(Transformer),
    Multi(Multi),
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
    depth: usize,
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | 0x08 | b'\r' | b'\n')
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_bare(b: u8) -> bool {
    !matches!(b, b'(' | b')' | b'"' | b'\'' | b'=' | b',') && !is_space(b) && b != 0x08
}

impl<'a> Parser<'a> {
    fn error(&self, message: impl Into<String>) -> ParseError {
        ParseError {
            offset: self.pos,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn blanks(&mut self) -> usize {
        let start = self.pos;
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
        self.pos - start
    }

    fn starts_with(&self, word: &str) -> bool {
        self.s[self.pos..].starts_with(word.as_bytes())
    }

    /// `word` followed by a blank or `(`: consumes the word only.
    fn keyword(&mut self, word: &str) -> bool {
        if self.starts_with(word) {
            let next = self.s.get(self.pos + word.len()).copied();
            if next.is_some_and(|b| is_blank(b) || b == b'(') {
                self.pos += word.len();
                return true;
            }
        }
        false
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(format!("exceeded max depth limit of {MAX_DEPTH}")));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut items = vec![self.and_expr()?];
        loop {
            let save = self.pos;
            self.blanks();
            if self.keyword("or") {
                self.blanks();
                items.push(self.and_expr()?);
            } else {
                self.pos = save;
                break;
            }
        }
        self.depth -= 1;
        Ok(if items.len() == 1 {
            items.pop().unwrap()
        } else {
            Expr::Or(items)
        })
    }

    fn and_expr(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.not_expr()?];
        loop {
            let save = self.pos;
            self.blanks();
            if self.keyword("and") {
                self.blanks();
                items.push(self.not_expr()?);
            } else {
                self.pos = save;
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.pop().unwrap()
        } else {
            Expr::And(items)
        })
    }

    fn not_expr(&mut self) -> Result<Expr, ParseError> {
        let mut negations = 0;
        loop {
            if self.starts_with("not") {
                let next = self.s.get(self.pos + 3).copied();
                if next.is_some_and(is_space) {
                    self.pos += 3;
                    while self.peek().is_some_and(is_space) {
                        self.pos += 1;
                    }
                    negations += 1;
                    if self.depth + negations > MAX_DEPTH {
                        return Err(self.error(format!("exceeded max depth limit of {MAX_DEPTH}")));
                    }
                    continue;
                }
                if next == Some(b'(') {
                    self.pos += 3;
                    negations += 1;
                    break;
                }
            }
            break;
        }
        self.depth += negations;
        let mut expr = self.check()?;
        self.depth -= negations;
        for _ in 0..negations {
            expr = Expr::Not(Box::new(expr));
        }
        Ok(expr)
    }

    fn check(&mut self) -> Result<Expr, ParseError> {
        let offset = self.pos;
        if self.peek() == Some(b'(') {
            self.pos += 1;
            self.blanks();
            let inner = self.or_expr()?;
            self.blanks();
            if self.peek() != Some(b')') {
                return Err(self.error(format!(
                    "unexpected token after '{}', expecting 'or', 'and' or ')'",
                    self.text[offset..self.pos].trim_end()
                )));
            }
            self.pos += 1;
            return Ok(inner);
        }
        if let Some(field) = self.field_or_transformer()? {
            let (op, modifier, value) = self.condition()?;
            return Ok(Expr::Check {
                field,
                op,
                modifier,
                value,
                offset,
            });
        }
        if let Some(name) = self.identifier() {
            return Ok(Expr::Macro { name, offset });
        }
        Err(self.error("expected a field, a macro name, 'not' or '('"))
    }

    fn identifier(&mut self) -> Option<String> {
        let start = self.pos;
        let mut end = start;
        while self.s.get(end).is_some_and(|b| b.is_ascii_alphabetic()) {
            end += 1;
        }
        if end == start {
            return None;
        }
        while self
            .s
            .get(end)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            end += 1;
        }
        self.pos = end;
        Some(self.text[start..end].to_string())
    }

    /// `[a-zA-Z]+[a-zA-Z0-9_]*(\.[a-zA-Z]+[a-zA-Z0-9_]*)+` at the current position, if any.
    fn field_name_len(&self) -> usize {
        let s = &self.s[self.pos..];
        let segment = |from: usize| -> usize {
            let mut i = from;
            while s.get(i).is_some_and(|b| b.is_ascii_alphabetic()) {
                i += 1;
            }
            if i == from {
                return 0;
            }
            while s
                .get(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                i += 1;
            }
            i - from
        };
        let first = segment(0);
        if first == 0 {
            return 0;
        }
        let mut end = first;
        let mut dots = 0;
        while s.get(end) == Some(&b'.') {
            let next = segment(end + 1);
            if next == 0 {
                break;
            }
            end += 1 + next;
            dots += 1;
        }
        if dots == 0 {
            0
        } else {
            end
        }
    }

    /// A transformer's name and its `(` at the current position: (transformer, bytes).
    fn transformer_name(&self) -> Option<(Named, usize)> {
        let single = Transformer::ALL
            .iter()
            .map(|(t, name)| (Named::Single(*t), *name));
        let multi = Multi::ALL.iter().map(|(m, name)| (Named::Multi(*m), *name));
        single.chain(multi).find_map(|(t, name)| {
            let with_paren = self.s[self.pos..].starts_with(name.as_bytes())
                && self.s.get(self.pos + name.len()) == Some(&b'(');
            with_paren.then_some((t, name.len() + 1))
        })
    }

    /// A field (with optional argument), a transformer applied to one, or a multi-value
    /// transformer call.
    fn field_or_transformer(&mut self) -> Result<Option<FieldRef>, ParseError> {
        match self.transformer_name() {
            Some((Named::Single(t), len)) => {
                self.pos += len;
                self.blanks();
                self.enter()?;
                let inner = self.field_or_transformer()?;
                self.depth -= 1;
                let Some(mut inner) = inner else {
                    return Err(self.error(format!("expected a field inside {}()", t.name())));
                };
                self.blanks();
                if self.peek() != Some(b')') {
                    return Err(self.error(format!("expected ')' closing {}(", t.name())));
                }
                self.pos += 1;
                inner.transformers.insert(0, t);
                return Ok(Some(inner));
            }
            Some((Named::Multi(multi), len)) => {
                self.pos += len;
                self.enter()?;
                let args = self.call_args();
                self.depth -= 1;
                let args = args?;
                let arg = self.field_arg()?;
                return Ok(Some(FieldRef {
                    name: multi.name().to_string(),
                    arg,
                    transformers: Vec::new(),
                    call: Some(Box::new(Call { multi, args })),
                }));
            }
            None => {}
        }
        let len = self.field_name_len();
        if len == 0 {
            return Ok(None);
        }
        let name = self.text[self.pos..self.pos + len].to_string();
        self.pos += len;
        let arg = self.field_arg()?;
        Ok(Some(FieldRef::field(name, arg)))
    }

    /// An optional `[arg]` after a field or a call: bare (no brackets, quotes or spaces) or quoted.
    fn field_arg(&mut self) -> Result<Option<String>, ParseError> {
        if self.peek() != Some(b'[') {
            return Ok(None);
        }
        self.pos += 1;
        let arg = match self.peek() {
            Some(b'"') | Some(b'\'') => self.quoted()?,
            _ => {
                let start = self.pos;
                while self
                    .peek()
                    .is_some_and(|b| !matches!(b, b'[' | b']' | b'"' | b'\'') && !is_space(b))
                {
                    self.pos += 1;
                }
                if self.pos == start {
                    return Err(self.error(
                        "expected a valid field argument: a quoted string or a bare string",
                    ));
                }
                self.text[start..self.pos].to_string()
            }
        };
        if self.peek() != Some(b']') {
            return Err(self.error("expected a ']' token"));
        }
        self.pos += 1;
        Ok(Some(arg))
    }

    fn condition(&mut self) -> Result<(Op, Option<Modifier>, Value), ParseError> {
        self.blanks();
        const WORD_OPS: [(&str, Op); 9] = [
            ("icontains", Op::IContains),
            ("iglob", Op::IGlob),
            ("bcontains", Op::BContains),
            ("bstartswith", Op::BStartsWith),
            ("contains", Op::Contains),
            ("startswith", Op::StartsWith),
            ("endswith", Op::EndsWith),
            ("glob", Op::Glob),
            ("regex", Op::Regex),
        ];
        if self.starts_with("exists") {
            self.pos += 6;
            return Ok((Op::Exists, None, Value::None));
        }
        for (word, op) in [
            ("intersects", Op::Intersects),
            ("in", Op::In),
            ("pmatch", Op::PMatch),
        ] {
            if self.starts_with(word) {
                self.pos += word.len();
                self.blanks();
                return Ok((op, None, self.list_operand()?));
            }
        }
        for (word, op) in WORD_OPS {
            if self.starts_with(word)
                && self
                    .s
                    .get(self.pos + word.len())
                    .is_some_and(|b| is_blank(*b))
            {
                self.pos += word.len();
                self.blanks();
                return self.string_comparison(op, true);
            }
        }
        for (sym, op) in [("<=", Op::Le), (">=", Op::Ge), ("<", Op::Lt), (">", Op::Gt)] {
            if self.starts_with(sym) {
                self.pos += sym.len();
                self.blanks();
                return Ok((op, None, self.num_operand()?));
            }
        }
        for (sym, op) in [("==", Op::Eq), ("=", Op::Eq), ("!=", Op::Ne)] {
            if self.starts_with(sym) {
                self.pos += sym.len();
                let blank = self.blanks() > 0;
                return self.string_comparison(op, blank);
            }
        }
        Err(self.error("expected an operator"))
    }

    /// The right-hand side of a string operator: `oneof`/`anyof`/`allof` and a list (or a list's
    /// name) when the operator was followed by a blank, the modifier is followed by one and no
    /// `and`/`or`/`not` comes next; otherwise a plain value (`proc.name = oneof` compares with
    /// the word).
    fn string_comparison(
        &mut self,
        op: Op,
        blank_before: bool,
    ) -> Result<(Op, Option<Modifier>, Value), ParseError> {
        if blank_before {
            let saved = self.pos;
            if let Some(modifier) = self.modifier() {
                if self.blanks() > 0 && self.list_follows() && !self.bool_keyword_follows() {
                    return Ok((op, Some(modifier), self.modifier_list()?));
                }
            }
            self.pos = saved;
        }
        Ok((op, None, self.str_operand()?))
    }

    fn modifier(&mut self) -> Option<Modifier> {
        let (modifier, name) = Modifier::ALL
            .iter()
            .find(|(_, name)| self.starts_with(name))?;
        self.pos += name.len();
        Some(*modifier)
    }

    fn list_follows(&mut self) -> bool {
        if self.peek() == Some(b'(') {
            return true;
        }
        let saved = self.pos;
        let found = self.identifier().is_some();
        self.pos = saved;
        found
    }

    fn bool_keyword_follows(&self) -> bool {
        ["and", "or", "not"].iter().any(|kw| {
            self.starts_with(kw)
                && !self
                    .s
                    .get(self.pos + kw.len())
                    .is_some_and(u8::is_ascii_alphanumeric)
        })
    }

    /// A parenthesized list of strings, or a list's name (one identifier).
    fn modifier_list(&mut self) -> Result<Value, ParseError> {
        if self.peek() == Some(b'(') {
            return self.list_operand();
        }
        match self.identifier() {
            Some(name) => Ok(Value::List(vec![name])),
            None => Err(self.error("expected a list or an identifier")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Expr {
        parse(text).unwrap_or_else(|e| panic!("'{text}' should parse: {e:?}"))
    }

    fn bad(text: &str) {
        assert!(
            parse(text).is_err(),
            "'{text}' should not parse: {:?}",
            parse(text)
        );
    }

    #[test]
    fn precedence_and_keyword_spacing() {
        let e = ok("a.a=1 or b.b=2 and c");
        assert!(matches!(&e, Expr::Or(items) if matches!(items[1], Expr::And(_))));
        for text in [
            "a and(b)",
            "(a)or(b)",
            "not(a)",
            "not not a",
            "notb",
            "and_macro",
            "a.b = not",
        ] {
            ok(text);
        }
        for text in [
            "a andb",
            "aand b",
            "a not b",
            "(a)andnot(b)",
            "",
            "   ",
            "x.y = (a)",
            "x.y contains(a)",
        ] {
            bad(text);
        }
        assert!(matches!(ok("notb"), Expr::Macro { .. }));
    }

    #[test]
    fn operators_values_and_quoting() {
        ok("x.y in(a, 'b c', \"d\")");
        ok("x.y in ()");
        bad("x.y in (a,)");
        bad("x.y in (a,,b)");
        ok("ka.uri.param[command] = '/bin/sh'");
        ok("jevt.value[/requestObject/spec/volumes] exists");
        ok("ka.response.code >= 400");
        bad("ka.response.code >= abc");
        ok("tolower(proc.name) = val(proc.pname)");
        ok("len(ka.req.pod.containers.image) > 1");
        let e = ok(r#"x.y = "a\"b\x41""#);
        assert!(matches!(e, Expr::Check { value: Value::Str(ref s), .. } if s == "a\"bA"));
        bad(r#"x.y = "a\qb""#);
        bad(r#"x.y = "a\\""#);
        bad("f existsX");
    }

    #[test]
    fn printing_round_trips() {
        for text in [
            "a.b = c and not (d.e in (x, 'y z')) or m",
            r#"tolower(a.b) startswith "he said \"hi\"" and a.c['/x y'] exists"#,
            "a.b = val(c.d) or a.b intersects (q)",
        ] {
            let printed = ok(text).to_string();
            assert_eq!(
                ok(&printed).to_string(),
                printed,
                "{text} printed as {printed}"
            );
        }
    }

    // libsinsp's parse_str_op_modifier_accept / _reject cases (facts, restated).
    #[test]
    fn string_modifiers_parse_as_libsinsp_does() {
        for text in [
            "proc.name == oneof (cat, nginx)",
            "proc.name = allof (cat, nginx)",
            "proc.name != anyof (cat, nginx)",
            "proc.name == oneof ()",
            "proc.name == oneof ('cat', \"nginx\", bare)",
            "proc.name == oneof allowed_processes",
            "proc.name == oneof oneof",
            "evt.arg[0] == oneof (connect, accept)",
            "tolower(proc.name) == oneof (cat, nginx)",
            "b64(proc.cmdline) == allof (\"dGVzdA==\")",
            "proc.name == 'oneof'",
            "proc.name == oneof",
            "proc.name == oneof_something",
            "not proc.name == oneof (cat, nginx)",
            "(proc.name == oneof (cat, nginx))",
            "proc.name == anyof and fd.name exists",
            "proc.name == oneof or fd.name exists",
            "(proc.name == anyof) and fd.name exists",
            "proc.name contains oneof (cat, nginx)",
            "proc.name startswith anyof (/proc/, /sys/)",
            "proc.name glob oneof (cat*, *dog)",
            "proc.name iglob allof (cat*)",
            "proc.name icontains anyof (cat, nginx)",
        ] {
            ok(text);
        }
        for text in [
            "proc.name == oneof (cat,)",
            "proc.name == oneof (cat,,nginx)",
            "proc.name == oneof (,cat)",
            "proc.name == oneof (cat, nginx",
            "proc.name ==oneof (cat, nginx)",
            "proc.name == oneof(cat, nginx)",
            "proc.name == ONEOF (cat)",
            "proc.num > oneof (1, 2)",
            "proc.name contains oneof(cat, nginx)",
            "proc.name == oneof_something (cat)",
            "proc.name in oneof (cat)",
            "proc.name pmatch allof (cat)",
        ] {
            bad(text);
        }
        let e = ok("proc.name == anyof and fd.name exists");
        let Expr::And(items) = e else {
            panic!("an and")
        };
        assert!(
            matches!(&items[0], Expr::Check { modifier: None, value: Value::Str(s), .. } if s == "anyof")
        );
        assert!(matches!(
            ok("proc.name contains oneof (cat, nginx)"),
            Expr::Check {
                op: Op::Contains,
                modifier: Some(Modifier::OneOf),
                ..
            }
        ));
        for text in [
            "proc.name != anyof (cat, nginx, apache)",
            "proc.name startswith anyof (/etc/, /tmp/)",
            "proc.name glob allof (cat*, *nginx*)",
        ] {
            assert_eq!(ok(text).to_string(), text);
        }
    }

    // libsinsp's transformer-list and getopt-argument parser cases.
    #[test]
    fn multi_value_transformers_parse_as_libsinsp_does() {
        for text in [
            "join(\"-\" , (fd.name, fd.directory)) = /tmp",
            "join(\"-\", ()) = /tmp",
            "join('-->', (fd.name, fd.directory)) = /tmp/test",
            "join(\"-\", (tolower(toupper(fd.name)), fd.directory)) = /tmp/test",
            "join(\"-\", (proc.pid, 123)) contains 123",
            "join(\"-\", ( fd.name , fd.directory )) = /tmp",
            "evt.type = tolower(join(\"-\", (fd.name, fd.directory)))",
            "len(toupper(join(\"-\", (fd.name, fd.directory)))) >= 5",
            "concat(fd.directory, concat(\"aaa\", toupper(fd.name))) = x",
            "getopt(proc.args, \"nt:\")[t] = value",
            "getopt(proc.args, \"nt:\")[\"t\"] = value",
            "getopt(proc.args, \"nt:\")[\"\"] = value",
        ] {
            ok(text);
        }
        for text in [
            "join(\"-\", (fd.name, fd.directory) = /tmp",
            "join(\"-\", fd.name, fd.directory)) = /tmp",
            "join(\"-\", (,)) = /tmp",
            "join(\"-\", (,fd.name)) = /tmp",
            "join(\"-\", (fd.name,)) = /tmp",
            "join(\"-\", (fd.name,,fd.directory)) = /tmp",
            "join(\"-\", ((fd.name))) = /tmp",
            "join(\"-\", (macro)) = /tmp",
            "join(\"-\", (barestring)) = /tmp",
            "join() = foo",
        ] {
            bad(text);
        }
        let err = parse("getopt(proc.args, \"nt:\")[] = value").unwrap_err();
        assert_eq!(
            err.message,
            "expected a valid field argument: a quoted string or a bare string"
        );
        let err = parse("getopt(proc.args, \"nt:\")[\"t\" = value").unwrap_err();
        assert_eq!(err.message, "expected a ']' token");
        assert_eq!(
            ok("getopt(proc.args, \"nt:\")[\"t\"] = value").to_string(),
            "getopt(proc.args, \"nt:\")[t] = value"
        );
        let printed = ok("toupper(join(\"-\", (fd.name, \"a b\", 12))) = X").to_string();
        assert_eq!(ok(&printed).to_string(), printed);
    }
}
