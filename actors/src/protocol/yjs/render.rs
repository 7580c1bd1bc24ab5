//! A Yjs document rendered as JSON (`GET /docs/{id}` of a Yjs document).

use yrs::types::ToJson;
use yrs::{GetString, Map, Out, ReadTxn};

/// Each root type under its name.
pub(super) fn document<T: ReadTxn>(txn: &T) -> serde_json::Value {
    let names: Vec<String> = txn.root_refs().map(|(name, _)| name.to_string()).collect();
    let mut root = serde_json::Map::new();
    for name in names {
        let value = match txn.root_refs().find(|(n, _)| *n == name).map(|(_, v)| v) {
            Some(Out::UndefinedRef(_)) | None => render_untyped(txn, &name),
            Some(out) => json_of(&out.to_json(txn)),
        };
        root.insert(name, value);
    }
    serde_json::Value::Object(root)
}

/// A root that no one on this server asked for by type carries no type in the encoding; infer
/// it from its content: keys make a map; a sequence of one-character strings is text; XML
/// elements make an XML fragment (rendered as XML, as Tiptap documents are); any other sequence
/// is an array. An empty root is `null`: it could be any of them.
fn render_untyped<T: ReadTxn>(txn: &T, name: &str) -> serde_json::Value {
    use serde_json::Value;
    if let Some(map) = txn.get_map(name).filter(|m| m.len(txn) > 0) {
        return json_of(&map.to_json(txn));
    }
    let Some(array) = txn.get_array(name) else {
        return Value::Null;
    };
    let items: Vec<Out> = yrs::Array::iter(&array, txn).collect();
    if items.is_empty() {
        return Value::Null;
    }
    let is_char = |o: &Out| matches!(o, Out::Any(yrs::Any::String(s)) if s.chars().count() == 1);
    if items
        .iter()
        .any(|o| matches!(o, Out::YXmlElement(_) | Out::YXmlText(_)))
    {
        let xml = txn.get_xml_fragment(name).map(|f| f.get_string(txn));
        return xml.map_or(Value::Null, Value::String);
    }
    if items.iter().all(is_char) {
        let text = txn.get_text(name).map(|t| t.get_string(txn));
        return text.map_or(Value::Null, Value::String);
    }
    json_of(&array.to_json(txn))
}

fn json_of(any: &yrs::Any) -> serde_json::Value {
    serde_json::to_value(any).unwrap_or(serde_json::Value::Null)
}
