//! Reading S3's XML replies into a small element tree, and escaping text for the two XML
//! request bodies (CompleteMultipartUpload, DeleteObjects).
//!
//! S3 replies are small (a listing page of 1000 keys is a few hundred KB), so a tree is cheap
//! and keeps each reply's parser a few lines of lookups. Namespaces are ignored: S3 puts every
//! element in one default namespace, and some compatible servers omit it.

use quick_xml::Reader;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::Event;

/// One element: its local name, its text (concatenated, entities resolved) and its children.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Element {
    pub name: String,
    pub text: String,
    pub children: Vec<Element>,
}

impl Element {
    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }

    /// Every child with this name, in document order.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |child| child.name == name)
    }

    /// The text of the first child with this name.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|child| child.text.as_str())
    }
}

/// Why a body is not the XML we expected.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("malformed XML in reply: {0}")]
pub struct XmlError(pub String);

/// Parses a whole document and returns its root element.
pub fn parse_document(body: &[u8]) -> Result<Element, XmlError> {
    let text = std::str::from_utf8(body).map_err(|_| XmlError("not UTF-8".into()))?;
    let mut reader = Reader::from_str(text);
    // Open elements, innermost last; the root is returned when its end tag closes it.
    let mut open: Vec<Element> = Vec::new();
    loop {
        let event = reader.read_event().map_err(|e| XmlError(format!("{e} at byte {}", reader.buffer_position())))?;
        match event {
            Event::Start(start) => {
                open.push(Element { name: start.local_name().as_ref().to_owned(), ..Element::default() })
            }
            Event::Empty(start) => {
                let element = Element { name: start.local_name().as_ref().to_owned(), ..Element::default() };
                match open.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::End(_) => {
                let element = open.pop().ok_or_else(|| XmlError("unbalanced end tag".into()))?;
                match open.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => return Ok(element),
                }
            }
            Event::Text(text) => {
                if let Some(current) = open.last_mut() {
                    current.text.push_str(&text.xml10_content());
                }
            }
            Event::CData(data) => {
                if let Some(current) = open.last_mut() {
                    current.text.push_str(&data.xml10_content());
                }
            }
            Event::GeneralRef(reference) => {
                let Some(current) = open.last_mut() else {
                    continue;
                };
                if let Some(c) = reference.resolve_char_ref().map_err(|e| XmlError(e.to_string()))? {
                    current.text.push(c);
                } else {
                    let name = reference.xml10_content();
                    let resolved =
                        resolve_predefined_entity(&name).ok_or_else(|| XmlError(format!("unknown entity &{name};")))?;
                    current.text.push_str(resolved);
                }
            }
            Event::Eof => return Err(XmlError("no root element".into())),
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
        }
    }
}

/// Escapes text for an element's content. CR, LF and TAB become character references so that
/// the server's XML parser does not normalise them away (a key `a\r\nb` must stay that key).
/// Returns `None` for characters XML 1.0 cannot carry at all (the other C0 controls).
pub fn escape_text(text: &str) -> Option<String> {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&apos;"),
            '\r' => escaped.push_str("&#13;"),
            '\n' => escaped.push_str("&#10;"),
            '\t' => escaped.push_str("&#9;"),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => return None,
            c => escaped.push(c),
        }
    }
    Some(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_become_trees_with_entities_and_char_refs_resolved() {
        let doc = parse_document(
            br#"<?xml version="1.0" encoding="UTF-8"?>
<Root xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><A>x &amp; &quot;y&quot; &#13;&#10;z</A><B/><A>2</A><s3:C xmlns:s3="u"><![CDATA[<raw>]]></s3:C></Root>"#,
        )
        .unwrap();
        assert_eq!(doc.name, "Root");
        assert_eq!(doc.child_text("A"), Some("x & \"y\" \r\nz"));
        assert_eq!(doc.children_named("A").count(), 2);
        assert_eq!(doc.child_text("B"), Some(""));
        assert_eq!(doc.child_text("C"), Some("<raw>"));
    }

    #[test]
    fn truncated_and_empty_documents_are_errors() {
        assert!(parse_document(b"<Root><A>x</A>").is_err());
        assert!(parse_document(b"").is_err());
        assert!(parse_document(b"\xff").is_err());
    }

    #[test]
    fn escaping_keeps_line_breaks_as_references_and_refuses_other_controls() {
        assert_eq!(escape_text("a<b>&'\"\r\n\tc").as_deref(), Some("a&lt;b&gt;&amp;&apos;&quot;&#13;&#10;&#9;c"));
        assert_eq!(escape_text("bell\u{7}"), None);
        let round_trip = parse_document(format!("<K>{}</K>", escape_text("x\r\ny&z").unwrap()).as_bytes()).unwrap();
        assert_eq!(round_trip.text, "x\r\ny&z");
    }
}
