//! Loading YAML text into a tree of nodes that remember their position.
//!
//! saphyr's parser is driven event by event here rather than through its
//! recursive `load`, so that hostile input is refused before it can hurt:
//! nesting deeper than [`MAX_DEPTH`] (counting what aliases expand to),
//! collections used as mapping keys (which would let aliases multiply
//! memory behind the loader's alias budget), more than one document.
//! Scalars are kept as written (`early_parse(false)`); [`view`] types them
//! with the YAML 1.2 core schema when asked.

use std::collections::HashMap;

use saphyr::{AnnotatedMapping, MarkedYaml, Scalar, YamlData, YamlLoader};
use saphyr_parser::{Event, Parser, Span, SpannedEventReceiver};

pub(crate) type Node<'i> = MarkedYaml<'i>;
pub(crate) type Mapping<'i> = AnnotatedMapping<'i, Node<'i>>;

/// Deepest nesting accepted. A manifest needs about eight levels.
pub(crate) const MAX_DEPTH: usize = 64;
/// Most nodes that alias expansion may create in one document.
const ALIAS_BUDGET: usize = 10_000;

/// Why a text could not be loaded: a 1-based line (when known) and a message.
#[derive(Debug)]
pub(crate) struct LoadError {
    pub line: Option<usize>,
    pub message: String,
}

fn at(span: Span, message: impl Into<String>) -> LoadError {
    LoadError {
        line: Some(span.start.line()),
        message: message.into(),
    }
}

/// Loads exactly one document. `Ok(None)` means the text holds no document
/// at all (empty, or only comments).
pub(crate) fn load(text: &str) -> Result<Option<Node<'_>>, LoadError> {
    let mut parser = Parser::new_from_str(text);
    let mut loader: YamlLoader<'_, Node<'_>> = YamlLoader::default();
    loader.early_parse(false);
    loader.alias_limit(ALIAS_BUDGET);
    let mut guard = Guard::default();
    let mut documents = 0usize;
    for item in &mut parser {
        let (event, span) = item.map_err(|e| LoadError {
            line: Some(e.marker().line()),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        if matches!(event, Event::DocumentStart(_)) {
            documents += 1;
            if documents > 1 {
                return Err(at(
                    span,
                    "a second YAML document starts here; a manifest must be a single document",
                ));
            }
        }
        guard.check(&event, span)?;
        loader.on_event(event, span);
        if let Some(e) = loader.error() {
            return Err(LoadError {
                line: Some(e.marker().line()),
                message: format!("invalid YAML: {}", e.info()),
            });
        }
    }
    Ok(loader.into_documents().into_iter().next())
}

/// Tracks the shape of what the loader is building, from events alone.
#[derive(Default)]
struct Guard {
    stack: Vec<Frame>,
    /// Height of each anchored node (0 for a scalar), for aliases.
    anchors: HashMap<usize, usize>,
}

struct Frame {
    anchor: usize,
    /// For mappings: whether the next node is a key.
    expect_key: Option<bool>,
    /// Height of the tallest child so far.
    tallest: usize,
}

impl Guard {
    fn in_key_position(&self) -> bool {
        self.stack
            .last()
            .is_some_and(|f| f.expect_key == Some(true))
    }

    fn check(&mut self, event: &Event<'_>, span: Span) -> Result<(), LoadError> {
        match event {
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.in_key_position() {
                    return Err(at(
                        span,
                        "a mapping key must be a plain value, not a collection",
                    ));
                }
                if self.stack.len() >= MAX_DEPTH {
                    return Err(at(
                        span,
                        format!("nesting deeper than {MAX_DEPTH} levels is not accepted"),
                    ));
                }
                let is_map = matches!(event, Event::MappingStart(..));
                self.stack.push(Frame {
                    anchor: *anchor,
                    expect_key: is_map.then_some(true),
                    tallest: 0,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(frame) = self.stack.pop() {
                    self.complete(frame.tallest + 1, frame.anchor, span)?;
                }
            }
            Event::Scalar(_, _, anchor, _) => self.complete(0, *anchor, span)?,
            Event::Alias(id) => {
                let height = self.anchors.get(id).copied().unwrap_or(0);
                if height > 0 && self.in_key_position() {
                    return Err(at(
                        span,
                        "a mapping key must be a plain value, not a collection",
                    ));
                }
                self.complete(height, 0, span)?;
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart(_)
            | Event::DocumentEnd => {}
        }
        Ok(())
    }

    /// A node of `height` is finished at the current depth.
    fn complete(&mut self, height: usize, anchor: usize, span: Span) -> Result<(), LoadError> {
        if self.stack.len() + height > MAX_DEPTH {
            return Err(at(
                span,
                format!("nesting deeper than {MAX_DEPTH} levels is not accepted"),
            ));
        }
        if anchor > 0 {
            self.anchors.insert(anchor, height);
        }
        if let Some(top) = self.stack.last_mut() {
            top.tallest = top.tallest.max(height);
            if let Some(k) = top.expect_key.as_mut() {
                *k = !*k;
            }
        }
        Ok(())
    }
}

/// 1-based line where a node starts.
pub(crate) fn line(node: &Node<'_>) -> usize {
    node.span.start.line()
}

/// What a node holds, with tags looked through and scalars typed.
pub(crate) enum View<'a, 'i> {
    Null,
    Scalar {
        text: &'a str,
        kind: Kind,
    },
    Seq(&'a [Node<'i>]),
    Map(&'a Mapping<'i>),
    /// A scalar whose explicit core tag does not fit (`!!int abc`), or an
    /// alias to an unknown anchor.
    Invalid,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    Str,
    Int(i64),
    Float,
    Bool,
}

pub(crate) fn view<'a, 'i>(node: &'a Node<'i>) -> View<'a, 'i> {
    let mut data = &node.data;
    loop {
        return match data {
            YamlData::Tagged(_, inner) => {
                data = &inner.data;
                continue;
            }
            YamlData::Representation(text, style, tag) => {
                match Scalar::parse_from_cow_and_metadata(text.clone(), *style, tag.as_ref()) {
                    None => View::Invalid,
                    Some(Scalar::Null) => View::Null,
                    Some(scalar) => View::Scalar {
                        text: text.as_ref(),
                        kind: match scalar {
                            Scalar::Boolean(_) => Kind::Bool,
                            Scalar::Integer(i) => Kind::Int(i),
                            Scalar::FloatingPoint(_) => Kind::Float,
                            Scalar::Null | Scalar::String(_) => Kind::Str,
                        },
                    },
                }
            }
            // Not produced with early parsing off; handled for completeness.
            YamlData::Value(Scalar::Null) => View::Null,
            YamlData::Value(Scalar::String(s)) => View::Scalar {
                text: s.as_ref(),
                kind: Kind::Str,
            },
            YamlData::Value(_) => View::Invalid,
            YamlData::Sequence(items) => View::Seq(items),
            YamlData::Mapping(map) => View::Map(map),
            YamlData::Alias(_) | YamlData::BadValue => View::Invalid,
        };
    }
}

/// The text of a scalar node as written, whatever its type (for keys).
pub(crate) fn raw_text<'a>(node: &'a Node<'_>) -> Option<&'a str> {
    let mut data = &node.data;
    loop {
        return match data {
            YamlData::Tagged(_, inner) => {
                data = &inner.data;
                continue;
            }
            YamlData::Representation(text, _, _) => Some(text.as_ref()),
            YamlData::Value(Scalar::String(s)) => Some(s.as_ref()),
            _ => None,
        };
    }
}

/// "a string", "a mapping", ...: what was found, for type errors.
pub(crate) fn describe(view: &View<'_, '_>) -> String {
    match view {
        View::Null => "null".into(),
        View::Scalar { kind, .. } => match kind {
            Kind::Str => "a string".into(),
            Kind::Int(i) if *i < 0 => format!("a negative integer ({i})"),
            Kind::Int(_) => "an integer".into(),
            Kind::Float => "a float".into(),
            Kind::Bool => "a boolean".into(),
        },
        View::Seq(_) => "a sequence".into(),
        View::Map(_) => "a mapping".into(),
        View::Invalid => "an invalid value".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> LoadError {
        match load(text) {
            Err(e) => e,
            Ok(_) => panic!("expected a load error for {text:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_refused() {
        // The scanner itself stops flow nesting at 255 levels.
        let text = "[".repeat(10_000);
        let e = err(&text);
        assert!(
            e.message.contains("nesting") || e.message.contains("recursion"),
            "{e:?}"
        );
        let text = "[".repeat(100);
        assert!(err(&text).message.contains("nesting"));
        let text = "- ".repeat(10_000) + "x";
        assert!(err(&text).message.contains("nesting"));
        let ok = "- ".repeat(MAX_DEPTH) + "x";
        assert!(load(&ok).is_ok());
    }

    #[test]
    fn aliases_count_towards_depth() {
        // Each anchor adds ~30 levels on top of the previous one.
        let mut text = String::new();
        let mut prev = String::from("x");
        for i in 0..4 {
            let open = "[".repeat(30);
            let close = "]".repeat(30);
            text.push_str(&format!("a{i}: &a{i} {open}{prev}{close}\n"));
            prev = format!("*a{i}");
        }
        assert!(err(&text).message.contains("nesting"));
    }

    #[test]
    fn collection_keys_are_refused() {
        assert!(err("? [a, b]\n: c\n").message.contains("mapping key"));
        assert!(err("a: &x [1]\n*x : 2\n").message.contains("mapping key"));
        assert!(load("a: &x k\n*x : 2\n").is_ok());
        assert!(load("a: &x k\n? *x\n: 2\n").is_ok());
        assert!(load("a: 1\na: 2\n").is_err(), "duplicate key");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        assert!(err(&text).message.contains("alias"));
    }

    #[test]
    fn second_document_is_refused_with_its_line() {
        let e = err("a: 1\n---\nb: 2\n");
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("second YAML document"));
    }

    #[test]
    fn empty_text_has_no_document() {
        assert!(matches!(load(""), Ok(None)));
        assert!(matches!(load("# nothing\n"), Ok(None)));
    }
}
