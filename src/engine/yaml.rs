//! The YAML layer of rules files. Falco reads every scalar as its source text (yaml-cpp), so this
//! builds a small tree of scalars-as-text with positions from a YAML event parser, instead of typed
//! values: `items: [80, =]` yields the strings `80` and `=`. The parser is granit-parser (a
//! saphyr-parser fork, already used by serde-saphyr): saphyr-parser refuses a flow sequence closed
//! at its parent's indentation, which Falco's own rules files contain and yaml-cpp accepts.

use granit_parser::{Event, Parser, ScalarStyle, Span};

/// A 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl Pos {
    fn of(span: &Span) -> Pos {
        Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    /// `~`, `null`, or nothing at all.
    Null(Pos),
    Scalar {
        text: String,
        quoted: bool,
        pos: Pos,
    },
    Seq {
        items: Vec<Node>,
        pos: Pos,
    },
    Map {
        entries: Vec<(Node, Node)>,
        pos: Pos,
    },
}

impl Node {
    pub fn pos(&self) -> Pos {
        match self {
            Node::Null(pos)
            | Node::Scalar { pos, .. }
            | Node::Seq { pos, .. }
            | Node::Map { pos, .. } => *pos,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Node::Null(_))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map { entries, .. } => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// yaml-cpp's boolean conversion.
    pub fn as_bool(&self) -> Option<bool> {
        match self.as_str()? {
            "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
                Some(true)
            }
            "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n"
            | "N" => Some(false),
            _ => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Node::Null(_) => "null",
            Node::Scalar { .. } => "a scalar",
            Node::Seq { .. } => "a sequence",
            Node::Map { .. } => "a mapping",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses every document of `text`.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut builder = Builder {
        anchors: Vec::new(),
        stack: Vec::new(),
        docs: Vec::new(),
    };
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError {
            pos: Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            },
            message: e.info(),
        })?;
        builder.event(event, &span)?;
    }
    Ok(builder.docs)
}

enum Open {
    Seq(Vec<Node>, Pos, usize),
    Map(Vec<(Node, Node)>, Option<Node>, Pos, usize),
}

struct Builder {
    anchors: Vec<(usize, Node)>,
    stack: Vec<Open>,
    docs: Vec<Node>,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let pos = Pos::of(span);
        match event {
            Event::Scalar(text, style, anchor, _tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain);
                let node =
                    if !quoted && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                        Node::Null(pos)
                    } else {
                        Node::Scalar {
                            text: text.into_owned(),
                            quoted,
                            pos,
                        }
                    };
                self.push(node, anchor);
            }
            Event::SequenceStart(_, anchor, _) => {
                self.stack.push(Open::Seq(Vec::new(), pos, anchor))
            }
            Event::MappingStart(_, anchor, _) => {
                self.stack.push(Open::Map(Vec::new(), None, pos, anchor))
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (node, anchor) = match self.stack.pop() {
                    Some(Open::Seq(items, pos, anchor)) => (Node::Seq { items, pos }, anchor),
                    Some(Open::Map(entries, _, pos, anchor)) => {
                        (Node::Map { entries, pos }, anchor)
                    }
                    None => {
                        return Err(YamlError {
                            pos,
                            message: "unbalanced collection end".into(),
                        })
                    }
                };
                self.push(node, anchor);
            }
            Event::Alias(id) => {
                let node = self
                    .anchors
                    .iter()
                    .rev()
                    .find(|(a, _)| *a == id)
                    .map(|(_, n)| n.clone())
                    .ok_or_else(|| YamlError {
                        pos,
                        message: "alias to an unknown anchor".into(),
                    })?;
                self.push(node, 0);
            }
            _ => {}
        }
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            self.anchors.push((anchor, node.clone()));
        }
        match self.stack.last_mut() {
            None => self.docs.push(node),
            Some(Open::Seq(items, ..)) => items.push(node),
            Some(Open::Map(entries, key, ..)) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scalars_stay_text_and_carry_positions() {
        let docs = parse_documents("- list: ports\n  items: [80, =, \"a b\"]\n-\n").unwrap();
        let Node::Seq { items, .. } = &docs[0] else {
            panic!()
        };
        assert!(items[1].is_null(), "a bare '-' is a null item");
        let list = items[0].get("items").unwrap();
        let Node::Seq { items: values, .. } = list else {
            panic!()
        };
        let texts: Vec<_> = values.iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(texts, ["80", "=", "a b"]);
        assert_eq!(values[1].pos(), Pos { line: 2, col: 15 });
    }

    #[test]
    fn errors_have_positions() {
        let err = parse_documents("- rule: x\n  desc: [unclosed\n").unwrap_err();
        assert!(err.pos.line >= 2, "{err:?}");
    }
}
