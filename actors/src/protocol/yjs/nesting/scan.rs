//! A walk over a v1 update's encoding, before yrs decodes any of it: which blocks it holds, what
//! each one refers to, and how deeply the values inside it nest. yrs's decoder recurses into
//! nested values (one update holding an array nested 7,500 deep overflowed the stack), so this
//! walk keeps its own counters and never recurses. It reads exactly what yrs 0.28's `Update`
//! decoder reads, in the same order, so a block's clock here is its clock there.

use super::Id;

/// How a block names its parent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Parent {
    /// A root type (by name).
    Root,
    /// A nested type: the item holding it.
    Item(Id),
    /// Not written: the parent of its origins (yrs takes the left one's, then the right one's).
    Origins { left: Option<Id>, right: Option<Id> },
}

/// One block of an update: `len` clocks of one client starting at `clock`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Block {
    pub id: Id,
    pub len: u32,
    /// `None` for a GC range: nothing that nests.
    pub parent: Option<Parent>,
    /// How deeply the block's values nest below it: 0 for text, scalars and types (a type's
    /// children are blocks of their own), 1 for `[1]`, 2 for `[[1]]`.
    pub value_depth: u32,
    /// It holds a shared type (children may name it as their parent).
    pub is_type: bool,
}

/// Why a walk stopped.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ScanError {
    Malformed(&'static str),
    /// A value nests deeper than the bound the walk was given.
    TooDeep(u32),
}

type Scan<T> = Result<T, ScanError>;

/// Walks `update`, handing each block to `each` in the order yrs reads them, then returns the
/// delete set as `(client, clock, len)` ranges. Stops at the first value nesting deeper than
/// `max_value_depth`, before reading further.
pub(super) fn scan(
    update: &[u8],
    max_value_depth: u32,
    mut each: impl FnMut(Block) -> Scan<()>,
) -> Scan<Vec<(u64, u32, u32)>> {
    let mut r = Reader::new(update, 0);
    let clients = r.u32()?;
    for _ in 0..clients {
        let blocks = r.u32()?;
        let client = r.u64()?;
        let mut clock = r.u32()?;
        for _ in 0..blocks {
            let id = Id { client, clock };
            let (len, block) = r.block(id, max_value_depth)?;
            clock = clock.wrapping_add(len);
            if let Some(block) = block {
                each(block)?;
            }
        }
    }
    let mut deletes = Vec::new();
    for _ in 0..r.u32()? {
        let client = r.u64()?;
        for _ in 0..r.u32()? {
            let clock = r.u32()?;
            let len = r.u32()?;
            deletes.push((client, clock, len));
        }
    }
    Ok(deletes)
}

/// One block as it is written: where its bytes are, and what decides whether it continues the
/// block before it (see `squash.rs`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Raw {
    pub start: usize,
    /// Where its content starts; `end` for blocks without content (GC ranges, skips).
    pub content: usize,
    pub end: usize,
    pub info: u8,
    pub id: Id,
    pub len: u32,
    pub origin: Option<Id>,
    pub right: Option<Id>,
}

/// An update's blocks per client (its client, its first clock, the blocks), and where its
/// delete set starts.
pub(super) struct Layout {
    pub clients: Vec<(u64, u32, Vec<Raw>)>,
    pub deletes_at: usize,
}

/// Walks `update` as [`scan`] does, answering where each block is.
pub(super) fn layout(update: &[u8]) -> Scan<Layout> {
    let mut r = Reader::new(update, 0);
    let mut clients = Vec::new();
    for _ in 0..r.u32()? {
        let blocks = r.u32()?;
        let client = r.u64()?;
        let first = r.u32()?;
        let mut clock = first;
        let mut raws = Vec::new();
        for _ in 0..blocks {
            let start = r.at;
            let id = Id { client, clock };
            let (len, block) = r.block(id, u32::MAX)?;
            let (origin, right) = match block.and_then(|b| b.parent) {
                Some(Parent::Origins { left, right }) => (left, right),
                _ => (None, None),
            };
            let info = update[start];
            let content = match info {
                GC | SKIP => r.at,
                _ => r.content_at,
            };
            raws.push(Raw {
                start,
                content,
                end: r.at,
                info,
                id,
                len,
                origin,
                right,
            });
            clock = clock.wrapping_add(len);
        }
        clients.push((client, first, raws));
    }
    Ok(Layout {
        clients,
        deletes_at: r.at,
    })
}

const GC: u8 = 0;
const SKIP: u8 = 10;
const TYPE: u8 = 7;
const HAS_ORIGIN: u8 = 0b1000_0000;
const HAS_RIGHT_ORIGIN: u8 = 0b0100_0000;
pub(super) const HAS_PARENT_SUB: u8 = 0b0010_0000;

pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    pub at: usize,
    /// Where the last block's content starts (after its info byte, origins and parent).
    content_at: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(bytes: &'a [u8], at: usize) -> Self {
        Reader {
            bytes,
            at,
            content_at: at,
        }
    }

    /// The clocks a block takes, and the block to place. A skip takes clocks but holds nothing
    /// of them: their blocks come in another update, and are measured then.
    fn block(&mut self, id: Id, max_value_depth: u32) -> Scan<(u32, Option<Block>)> {
        let info = self.byte()?;
        if info == GC || info == SKIP {
            let len = self.u32()?;
            if len == 0 {
                return Err(ScanError::Malformed("empty block"));
            }
            if info == SKIP {
                return Ok((len, None));
            }
            return Ok((
                len,
                Some(Block {
                    id,
                    len,
                    parent: None,
                    value_depth: 0,
                    is_type: false,
                }),
            ));
        }
        let left = (info & HAS_ORIGIN != 0).then(|| self.id()).transpose()?;
        let right = (info & HAS_RIGHT_ORIGIN != 0)
            .then(|| self.id())
            .transpose()?;
        let parent = if left.is_none() && right.is_none() {
            let parent = match self.u32()? == 1 {
                true => {
                    self.string()?;
                    Parent::Root
                }
                false => Parent::Item(self.id()?),
            };
            if info & HAS_PARENT_SUB != 0 {
                self.string()?;
            }
            parent
        } else {
            Parent::Origins { left, right }
        };
        let kind = info & 0b1111;
        self.content_at = self.at;
        let (len, value_depth) = self.content(kind, max_value_depth)?;
        // yrs drops an item without content without advancing the clock.
        let block = Block {
            id,
            len,
            parent: Some(parent),
            value_depth,
            is_type: kind == TYPE,
        };
        Ok((len, (len > 0).then_some(block)))
    }

    /// An item's content: its length in clocks and how deeply its values nest.
    fn content(&mut self, kind: u8, max: u32) -> Scan<(u32, u32)> {
        Ok(match kind {
            1 => (self.u32()?, 0), // deleted
            2 => {
                // JSON: strings yrs parses as JSON when the item is read
                let count = self.u32()?;
                let mut depth = 0;
                for _ in 0..count {
                    depth = depth.max(json_depth(self.string()?, max)?);
                }
                (count, depth)
            }
            3 => {
                self.buf()?; // binary
                (1, 0)
            }
            4 => (self.string()?.encode_utf16().count() as u32, 0),
            5 => (1, json_depth(self.string()?, max)?), // embed
            6 => {
                self.string()?; // format: key, then a JSON value
                (1, json_depth(self.string()?, max)?)
            }
            TYPE => {
                match self.byte()? {
                    3 => {
                        self.string()?; // an XML element's name
                    }
                    0 | 1 | 2 | 4 | 5 | 6 | 9 | 15 => {}
                    _ => return Err(ScanError::Malformed("unknown type")),
                }
                (1, 0)
            }
            8 => {
                let count = self.u32()?;
                let mut depth = 0;
                for _ in 0..count {
                    depth = depth.max(self.any(max)?);
                }
                (count, depth)
            }
            9 => {
                self.string()?; // a subdocument: its guid and options
                (1, self.any(max)?)
            }
            _ => return Err(ScanError::Malformed("unknown content")),
        })
    }

    /// Skips one lib0 `Any` value, answering how deeply it nests. Arrays and maps are counted on
    /// a stack of "values left to read" per open level instead of by recursion.
    fn any(&mut self, max: u32) -> Scan<u32> {
        let mut open: Vec<(u64, bool)> = Vec::new(); // values left, and whether keys precede them
        let mut deepest = 0u32;
        loop {
            let tag = self.byte()?;
            match tag {
                127 | 126 | 121 | 120 => {}
                125 => self.signed()?,
                124 => self.skip(4)?,
                123 | 122 => self.skip(8)?,
                119 => {
                    self.string()?;
                }
                116 => {
                    self.buf()?;
                }
                117 | 118 => {
                    let len = self.u64()?;
                    let depth = open.len() as u32 + 1;
                    if depth > max {
                        return Err(ScanError::TooDeep(depth));
                    }
                    deepest = deepest.max(depth);
                    open.push((len, tag == 118));
                }
                _ => return Err(ScanError::Malformed("unknown value")),
            }
            // Close every level whose values are all read; read the key of the next map entry.
            loop {
                let Some((left, keyed)) = open.last_mut() else {
                    return Ok(deepest);
                };
                if *left == 0 {
                    open.pop();
                    continue;
                }
                *left -= 1;
                if *keyed {
                    self.string()?;
                }
                break;
            }
        }
    }

    fn id(&mut self) -> Scan<Id> {
        Ok(Id {
            client: self.u64()?,
            clock: self.u32()?,
        })
    }

    fn byte(&mut self) -> Scan<u8> {
        let b = *self
            .bytes
            .get(self.at)
            .ok_or(ScanError::Malformed("truncated"))?;
        self.at += 1;
        Ok(b)
    }

    fn skip(&mut self, n: usize) -> Scan<()> {
        let end = self.at.checked_add(n).filter(|e| *e <= self.bytes.len());
        self.at = end.ok_or(ScanError::Malformed("truncated"))?;
        Ok(())
    }

    /// An unsigned varint as yrs reads it: seven bits a byte, shifts wrapping, at most 70 bits.
    fn u64(&mut self) -> Scan<u64> {
        let mut value = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value |= u64::wrapping_shl(u64::from(b & 0x7f), shift);
            shift += 7;
            if b < 0x80 {
                return Ok(value);
            }
            if shift > 70 {
                return Err(ScanError::Malformed("varint too long"));
            }
        }
    }

    /// The same for a 32-bit field: yrs wraps the shifts at 32 bits too.
    pub(super) fn u32(&mut self) -> Scan<u32> {
        let mut value = 0u32;
        let mut shift = 0u32;
        loop {
            let b = self.byte()?;
            value |= u32::wrapping_shl(u32::from(b & 0x7f), shift);
            shift += 7;
            if b < 0x80 {
                return Ok(value);
            }
            if shift > 70 {
                return Err(ScanError::Malformed("varint too long"));
            }
        }
    }

    /// A signed varint (its value does not matter here, only where it ends).
    fn signed(&mut self) -> Scan<()> {
        let mut shift = 6u32;
        let mut b = self.byte()?;
        while b >= 0x80 {
            b = self.byte()?;
            shift += 7;
            if shift > 70 {
                return Err(ScanError::Malformed("varint too long"));
            }
        }
        Ok(())
    }

    fn buf(&mut self) -> Scan<&[u8]> {
        let len = usize::try_from(self.u32()?).map_err(|_| ScanError::Malformed("length"))?;
        let start = self.at;
        self.skip(len)?;
        Ok(&self.bytes[start..self.at])
    }

    fn string(&mut self) -> Scan<&str> {
        std::str::from_utf8(self.buf()?).map_err(|_| ScanError::Malformed("not utf-8"))
    }
}

/// How deeply a JSON text's arrays and objects nest, counted without parsing it.
pub(super) fn json_depth(text: &str, max: u32) -> Scan<u32> {
    let (mut depth, mut deepest) = (0u32, 0u32);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Err(ScanError::TooDeep(depth));
                }
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(deepest)
}
