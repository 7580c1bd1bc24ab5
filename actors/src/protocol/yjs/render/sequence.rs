//! What a sequence holds (an array, an XML node's children, an untyped root), read in time
//! linear in it.
//!
//! yrs's element reads (`Array::iter`, `to_json`, `get`) go through one cursor that reads a
//! text item a character at a time, each read starting over from the item's first character:
//! a text of n characters costs n²/2 steps (a 1 MiB text, minutes). Worse, the cursor counts an
//! item in the document's offsets (UTF-8 bytes) but reads it in characters, so on an item with
//! a character of more than one byte it never reaches the item's end and spins forever. Its
//! text read (`get_string`) walks the items once and is safe; the cursor is safe and linear on
//! every other kind of item. So text comes from the text read, and the cursor is used only on
//! sequences that hold no text item.

use yrs::branch::BranchPtr;
use yrs::{Array, ArrayRef, GetString, Out, ReadTxn, TextRef};

pub(crate) enum Sequence {
    /// Nothing visible.
    Empty,
    /// The text of the sequence's text items. Other elements beside them are left out: only a
    /// Y.Text with embedded objects holds both, and Y.Text's own `toString` leaves them out too.
    Text(String),
    /// Every element, none of them text.
    Elements(Vec<Out>),
}

pub(crate) fn read<T: ReadTxn>(branch: BranchPtr, txn: &T) -> Sequence {
    let text = TextRef::from(branch).get_string(txn);
    if !text.is_empty() {
        return Sequence::Text(text);
    }
    let elements: Vec<Out> = ArrayRef::from(branch).iter(txn).collect();
    if elements.is_empty() {
        Sequence::Empty
    } else {
        Sequence::Elements(elements)
    }
}
