//! Edits on one shared type of a client's document, whatever its kind: Yjs lets any shared
//! type hold any other, except that XML nodes hold only XML nodes as children (an element
//! holds the others as attributes).

use yrs::types::xml::{XmlFragment, XmlFragmentPrelim, XmlIn, XmlOut, XmlTextPrelim};
use yrs::types::Attrs;
use yrs::{
    Any, Array, ArrayPrelim, ArrayRef, In, Map, MapPrelim, MapRef, Out, Text, TextPrelim, TextRef,
    TransactionMut, Xml, XmlElementPrelim, XmlElementRef, XmlFragmentRef, XmlTextRef,
};

use crate::program::Kind;

#[derive(Clone)]
pub enum Shared {
    Map(MapRef),
    Array(ArrayRef),
    Text(TextRef),
    Element(XmlElementRef),
    XmlText(XmlTextRef),
    Fragment(XmlFragmentRef),
}

/// What to insert: a plain value or a new, empty shared type.
pub enum Made {
    Any(Any),
    Shared(Kind),
}

impl Shared {
    pub fn text(&self) -> Option<TextRef> {
        match self {
            Shared::Text(t) => Some(t.clone()),
            Shared::XmlText(t) => Some(AsRef::<TextRef>::as_ref(t).clone()),
            _ => None,
        }
    }

    fn from_out(out: Out) -> Option<Self> {
        Some(match out {
            Out::YMap(m) => Shared::Map(m),
            Out::YArray(a) => Shared::Array(a),
            Out::YText(t) => Shared::Text(t),
            Out::YXmlElement(e) => Shared::Element(e),
            Out::YXmlText(t) => Shared::XmlText(t),
            Out::YXmlFragment(f) => Shared::Fragment(f),
            _ => return None,
        })
    }

    fn from_xml(out: XmlOut) -> Self {
        match out {
            XmlOut::Element(e) => Shared::Element(e),
            XmlOut::Text(t) => Shared::XmlText(t),
            XmlOut::Fragment(f) => Shared::Fragment(f),
        }
    }
}

fn prelim(kind: Kind) -> In {
    match kind {
        Kind::Map => In::Map(MapPrelim::default()),
        Kind::Array => In::Array(ArrayPrelim::default()),
        Kind::Text => In::Text(TextPrelim::default().into()),
        Kind::XmlElement => In::XmlElement(XmlElementPrelim::empty("p")),
        Kind::XmlText => In::XmlText(XmlTextPrelim::new("").into()),
        Kind::XmlFragment => In::XmlFragment(XmlFragmentPrelim::default()),
    }
}

/// XML nodes hold only XML nodes as children; other kinds go into an element's attributes.
fn xml_prelim(kind: Kind) -> Option<XmlIn> {
    match kind {
        Kind::XmlElement => Some(XmlElementPrelim::empty("p").into()),
        Kind::XmlText => Some(XmlTextPrelim::new("").into()),
        Kind::XmlFragment => Some(XmlFragmentPrelim::default().into()),
        _ => None,
    }
}

/// Inserts `value` into `into`; answers the new shared type, if one was made.
pub fn put(
    txn: &mut TransactionMut,
    into: &Shared,
    at: u16,
    key: &str,
    value: Made,
) -> Option<Shared> {
    let input = |value: Made| match value {
        Made::Any(any) => In::Any(any),
        Made::Shared(kind) => prelim(kind),
    };
    match into {
        Shared::Map(m) => Shared::from_out(m.insert(txn, key, input(value))),
        Shared::Array(a) => {
            let at = u32::from(at) % (a.len(txn) + 1);
            Shared::from_out(a.insert(txn, at, input(value)))
        }
        Shared::Text(_) | Shared::XmlText(_) => {
            let text = into.text()?;
            let at = u32::from(at) % (text.len(txn) + 1);
            embed(txn, &text, at, value)
        }
        Shared::Element(e) => match &value {
            Made::Shared(kind) if xml_prelim(*kind).is_some() => {
                let at = u32::from(at) % (XmlFragment::len(e, txn) + 1);
                Some(Shared::from_xml(e.insert(txn, at, xml_prelim(*kind)?)))
            }
            _ => Shared::from_out(e.insert_attribute(txn, key, input(value))),
        },
        Shared::Fragment(f) => {
            let Made::Shared(kind) = value else {
                return None;
            };
            let at = u32::from(at) % (f.len(txn) + 1);
            Some(Shared::from_xml(f.insert(txn, at, xml_prelim(kind)?)))
        }
    }
}

/// An embed in a text: a plain value or a shared type (Yjs allows both).
pub fn embed(txn: &mut TransactionMut, text: &TextRef, at: u32, value: Made) -> Option<Shared> {
    let kind = match value {
        Made::Any(any) => {
            text.insert_embed(txn, at, any);
            return None;
        }
        Made::Shared(kind) => kind,
    };
    Some(match kind {
        Kind::Map => Shared::Map(text.insert_embed(txn, at, MapPrelim::default())),
        Kind::Array => Shared::Array(text.insert_embed(txn, at, ArrayPrelim::default())),
        Kind::Text => Shared::Text(text.insert_embed(txn, at, TextPrelim::default())),
        Kind::XmlElement => {
            Shared::Element(text.insert_embed(txn, at, XmlElementPrelim::empty("p")))
        }
        Kind::XmlText => Shared::XmlText(text.insert_embed(txn, at, XmlTextPrelim::new(""))),
        Kind::XmlFragment => {
            Shared::Fragment(text.insert_embed(txn, at, XmlFragmentPrelim::default()))
        }
    })
}

/// Text, with attributes if given; into a type that holds no text, XML text or a string.
pub fn write(txn: &mut TransactionMut, into: &Shared, at: u16, chunk: &str, attrs: Option<Attrs>) {
    if let Some(text) = into.text() {
        let at = u32::from(at) % (text.len(txn) + 1);
        match attrs {
            Some(attrs) => text.insert_with_attributes(txn, at, chunk, attrs),
            None => text.insert(txn, at, chunk),
        }
        return;
    }
    match into {
        Shared::Element(e) => {
            let at = u32::from(at) % (XmlFragment::len(e, txn) + 1);
            e.insert(txn, at, XmlTextPrelim::new(chunk));
        }
        Shared::Fragment(f) => {
            let at = u32::from(at) % (f.len(txn) + 1);
            f.insert(txn, at, XmlTextPrelim::new(chunk));
        }
        other => {
            put(txn, other, at, "a", Made::Any(Any::from(chunk)));
        }
    }
}

/// Deletes a range (and all nested in it) or a key.
pub fn delete(txn: &mut TransactionMut, from: &Shared, at: u16, len: u16, key: &str) {
    match from {
        Shared::Map(m) => {
            m.remove(txn, key);
        }
        Shared::Array(a) => {
            let (at, len) = span(a.len(txn), at, len);
            a.remove_range(txn, at, len);
        }
        Shared::Text(_) | Shared::XmlText(_) => {
            let text = from.text().unwrap();
            let (at, len) = span(text.len(txn), at, len);
            text.remove_range(txn, at, len);
        }
        Shared::Element(e) if len % 2 == 0 => e.remove_attribute(txn, &key),
        Shared::Element(e) => {
            let (at, len) = span(XmlFragment::len(e, txn), at, len);
            e.remove_range(txn, at, len);
        }
        Shared::Fragment(f) => {
            let (at, len) = span(f.len(txn), at, len);
            f.remove_range(txn, at, len);
        }
    }
}

/// A range within a sequence of `total`.
pub fn span(total: u32, at: u16, len: u16) -> (u32, u32) {
    let at = u32::from(at) % (total + 1);
    (at, u32::from(len).min(total - at))
}
