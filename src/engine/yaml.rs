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

    /// A mapping's entries in order; none for anything else.
    pub fn entries(&self) -> &[(Node, Node)] {
        match self {
            Node::Map { entries, .. } => entries,
            _ => &[],
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

/// The most nodes a file may expand to (aliases count as copies of what they name): Falco's own
/// largest rules file has about 20,000. Guards against "billion laughs" alias bombs.
pub const MAX_NODES: usize = 2_000_000;
/// The most scalar text a file may expand to, in bytes.
pub const MAX_TEXT_BYTES: usize = 64 << 20;
/// The deepest nesting of sequences and mappings.
pub const MAX_NESTING: usize = 256;
/// The most documents in one file.
pub const MAX_DOCUMENTS: usize = 10_000;

/// Parses every document of `text`.
pub fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut builder = Builder {
        anchors: Vec::new(),
        stack: Vec::new(),
        docs: Vec::new(),
        nodes: 0,
        text_bytes: 0,
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

/// A scalar event as a node: plain `~`, `null` or nothing is null.
fn scalar(text: std::borrow::Cow<'_, str>, style: ScalarStyle, pos: Pos) -> Node {
    let quoted = !matches!(style, ScalarStyle::Plain);
    if !quoted && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
        Node::Null(pos)
    } else {
        Node::Scalar {
            text: text.into_owned(),
            quoted,
            pos,
        }
    }
}

struct Builder {
    /// Anchor id, the node, and its size in nodes, text bytes and depth.
    anchors: Vec<(usize, Node, (usize, usize, usize))>,
    stack: Vec<Open>,
    docs: Vec<Node>,
    nodes: usize,
    text_bytes: usize,
}

/// Nodes, scalar bytes and nesting depth of `node` (its depth is bounded by [`MAX_NESTING`]).
fn size(node: &Node) -> (usize, usize, usize) {
    let children: Vec<(usize, usize, usize)> = match node {
        Node::Null(_) => return (1, 0, 0),
        Node::Scalar { text, .. } => return (1, text.len(), 0),
        Node::Seq { items, .. } => items.iter().map(size).collect(),
        Node::Map { entries, .. } => entries
            .iter()
            .flat_map(|(k, v)| [size(k), size(v)])
            .collect(),
    };
    children
        .iter()
        .fold((1, 0, 1), |a, b| (a.0 + b.0, a.1 + b.1, a.2.max(b.2 + 1)))
}

impl Builder {
    /// Counts `nodes` more nodes and `bytes` more text, refusing past the limits.
    fn grow(&mut self, nodes: usize, bytes: usize, pos: Pos) -> Result<(), YamlError> {
        self.nodes += nodes;
        self.text_bytes += bytes;
        if self.nodes > MAX_NODES {
            return Err(YamlError {
                pos,
                message: format!(
                    "the document expands to more than {MAX_NODES} nodes (are aliases nested to multiply it?)"
                ),
            });
        }
        if self.text_bytes > MAX_TEXT_BYTES {
            return Err(YamlError {
                pos,
                message: format!(
                    "the document expands to more than {} MiB of text (are aliases nested to multiply it?)",
                    MAX_TEXT_BYTES >> 20
                ),
            });
        }
        Ok(())
    }

    fn open(&mut self, open: Open, pos: Pos) -> Result<(), YamlError> {
        if self.stack.len() >= MAX_NESTING {
            return Err(YamlError {
                pos,
                message: format!("sequences and mappings nest deeper than {MAX_NESTING} levels"),
            });
        }
        self.grow(1, 0, pos)?;
        self.stack.push(open);
        Ok(())
    }

    fn event(&mut self, event: Event<'_>, span: &Span) -> Result<(), YamlError> {
        let pos = Pos::of(span);
        match event {
            Event::DocumentStart(..) if self.docs.len() >= MAX_DOCUMENTS => {
                return Err(YamlError {
                    pos,
                    message: format!("more than {MAX_DOCUMENTS} documents in one file"),
                });
            }
            Event::Scalar(text, style, anchor, _tag) => {
                self.grow(1, text.len(), pos)?;
                self.push(scalar(text, style, pos), anchor);
            }
            Event::SequenceStart(_, anchor, _) => {
                self.open(Open::Seq(Vec::new(), pos, anchor), pos)?
            }
            Event::MappingStart(_, anchor, _) => {
                self.open(Open::Map(Vec::new(), None, pos, anchor), pos)?
            }
            Event::SequenceEnd | Event::MappingEnd => self.close(pos)?,
            Event::Alias(id) => self.alias(id, pos)?,
            _ => {}
        }
        Ok(())
    }

    /// The end of the innermost open sequence or mapping.
    fn close(&mut self, pos: Pos) -> Result<(), YamlError> {
        let (node, anchor) = match self.stack.pop() {
            Some(Open::Seq(items, pos, anchor)) => (Node::Seq { items, pos }, anchor),
            Some(Open::Map(entries, _, pos, anchor)) => (Node::Map { entries, pos }, anchor),
            None => {
                return Err(YamlError {
                    pos,
                    message: "unbalanced collection end".into(),
                })
            }
        };
        self.push(node, anchor);
        Ok(())
    }

    /// A copy of the anchored node, counted against the limits before it is copied, so a bomb
    /// is refused before it takes memory.
    fn alias(&mut self, id: usize, pos: Pos) -> Result<(), YamlError> {
        let anchored = self.anchors.iter().rev().find(|(a, ..)| *a == id);
        let (nodes, bytes, depth) =
            anchored
                .map(|(_, _, size)| *size)
                .ok_or_else(|| YamlError {
                    pos,
                    message: "alias to an unknown anchor".into(),
                })?;
        if self.stack.len() + depth > MAX_NESTING {
            return Err(YamlError {
                pos,
                message: format!("sequences and mappings nest deeper than {MAX_NESTING} levels"),
            });
        }
        self.grow(nodes, bytes, pos)?;
        let node = self
            .anchors
            .iter()
            .rev()
            .find(|(a, ..)| *a == id)
            .map(|(_, n, ..)| n.clone())
            .expect("found above");
        self.push(node, 0);
        Ok(())
    }

    fn push(&mut self, node: Node, anchor: usize) {
        if anchor > 0 {
            let size = size(&node);
            self.anchors.push((anchor, node.clone(), size));
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
