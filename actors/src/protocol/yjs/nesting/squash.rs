//! Chains of blocks merged before yrs applies them.
//!
//! yrs merges ("squashes") an item into the one before it when the two were appended one after
//! the other by one client: text typed at the end of a paragraph becomes one item, not one per
//! keystroke. When one update brings a chain of such items, yrs merges them at the end of the
//! transaction from the right: the last item into the one before it, that into the one before,
//! so each step copies everything merged so far, and the copies are not freed before the
//! transaction ends. A chain of n items costs n² of memory: 40,000 one-character items (a
//! 240 KB frame) took 14 s and 950 MB, and a flush that folded an entry holding a few thousand
//! 1 KiB inserts peaked at 2 GiB. `yrs::merge_updates_v1` writes such chains (it does not
//! merge items), and so could any client.
//!
//! So an update's chains are merged here first, in its encoding: a chain's first block keeps
//! its header and takes the content of the whole chain, as the sender's own Yjs would have
//! written it had it merged them. A block continues a chain when it is the same kind of content
//! (text, JSON or `Any` values: the contents yrs merges by copying), comes right after the
//! previous block in the client's clock, names the previous block's last clock as its origin
//! and the same right origin, and is no map entry. Merging such items is what yrs does itself
//! once they are integrated, so the document is the same either way.

use yrs::encoding::write::Write;

use super::scan::{layout, Raw, Reader, HAS_PARENT_SUB};
use super::Id;

/// Chains shorter than this are left to yrs: their cost is the square of a small number.
const MIN_CHAIN: usize = 8;

/// Contents yrs merges by copying: JSON (2), text (4) and `Any` values (8).
const MERGED_BY_COPY: [u8; 3] = [2, 4, 8];

/// `update` with its chains merged, or `None` when it holds no chain worth merging (or cannot be
/// read: yrs then refuses it).
pub(crate) fn squash_chains(update: &[u8]) -> Option<Vec<u8>> {
    let layout = layout(update).ok()?;
    let groups: Vec<Vec<&[Raw]>> = layout
        .clients
        .iter()
        .map(|(_, _, blocks)| chains(blocks))
        .collect();
    if !groups
        .iter()
        .flatten()
        .any(|chain| chain.len() >= MIN_CHAIN)
    {
        return None;
    }
    let mut out = Vec::with_capacity(update.len());
    out.write_var(layout.clients.len() as u64);
    for ((client, first, _), chains) in layout.clients.iter().zip(&groups) {
        out.write_var(chains.len() as u64);
        out.write_var(*client);
        out.write_var(*first);
        for chain in chains {
            match chain {
                [one] => out.extend_from_slice(&update[one.start..one.end]),
                _ => merged(update, chain, &mut out)?,
            }
        }
    }
    out.extend_from_slice(&update[layout.deletes_at..]);
    Some(out)
}

/// A client's blocks, cut into chains (most of one block).
fn chains(blocks: &[Raw]) -> Vec<&[Raw]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=blocks.len() {
        if i == blocks.len() || !continues(&blocks[start], &blocks[i - 1], &blocks[i]) {
            out.push(&blocks[start..i]);
            start = i;
        }
    }
    out
}

/// Whether `next` continues the chain that starts at `head` and ends at `last`.
fn continues(head: &Raw, last: &Raw, next: &Raw) -> bool {
    let kind = |b: &Raw| b.info & 0b1111;
    let last_clock = last.id.clock.wrapping_add(last.len).wrapping_sub(1);
    last.len > 0
        && next.len > 0
        && MERGED_BY_COPY.contains(&kind(head))
        && kind(next) == kind(head)
        && head.info & HAS_PARENT_SUB == 0
        && next.info & HAS_PARENT_SUB == 0
        && next.id.clock == last.id.clock.wrapping_add(last.len)
        && next.origin
            == Some(Id {
                client: last.id.client,
                clock: last_clock,
            })
        && next.right == head.right
}

/// Writes a chain as one block: the first block's header, then every block's content.
fn merged(update: &[u8], chain: &[Raw], out: &mut Vec<u8>) -> Option<()> {
    let head = chain.first()?;
    out.extend_from_slice(&update[head.start..head.content]);
    let mut count = 0u64;
    let mut parts = Vec::with_capacity(chain.len());
    for block in chain {
        // Text is a length in bytes, then the bytes; JSON and `Any` a count, then the values.
        let mut r = Reader::new(&update[..block.end], block.content);
        count += u64::from(r.u32().ok()?);
        parts.push(&update[r.at..block.end]);
    }
    out.write_var(count);
    for part in parts {
        out.extend_from_slice(part);
    }
    Some(())
}

/// Decodes a v1 update to apply it: its chains merged first, and a panic in yrs's decoder an
/// error.
pub(crate) fn decode_squashed(update: &[u8]) -> Result<yrs::Update, String> {
    use yrs::updates::decoder::Decode;
    let squashed = squash_chains(update);
    let update = squashed.as_deref().unwrap_or(update);
    crate::protocol::yjs::guarded(|| yrs::Update::decode_v1(update))
        .and_then(|r| r.map_err(|e| e.to_string()))
}
