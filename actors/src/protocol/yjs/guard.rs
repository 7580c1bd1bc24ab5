//! The frame guard: a cheap walk over a frame's y-protocols envelope before yrs decodes it.

/// Walks the y-protocols envelope of a frame and checks that every embedded payload (update,
/// state vector, awareness update) declares no more top-level entries than it has bytes. yrs
/// reserves room for the declared count before reading the entries, so a 7-byte frame claiming
/// a billion entries would otherwise make the server allocate and touch gigabytes (found by
/// `fuzz/fuzz_targets/yjs_frame.rs`).
pub(super) fn guard_counts(frame: &[u8]) -> Result<(), String> {
    let mut at = 0usize;
    while at < frame.len() {
        let tag = read_varint(frame, &mut at)?;
        match tag {
            0 => {
                read_varint(frame, &mut at)?; // sync step 1 / step 2 / update
                plausible_count(read_buf(frame, &mut at)?)?;
            }
            1 => plausible_count(read_buf(frame, &mut at)?)?,
            2 => {
                if read_varint(frame, &mut at)? == 0 {
                    read_buf(frame, &mut at)?; // the denial reason
                }
            }
            3 => {}
            _ => {
                read_buf(frame, &mut at)?;
            }
        }
    }
    Ok(())
}

/// Every declared entry needs at least one byte.
pub(super) fn plausible_count(payload: &[u8]) -> Result<(), String> {
    let mut at = 0;
    let count = read_varint(payload, &mut at)?;
    if count > payload.len() as u64 {
        return Err(format!(
            "declares {count} entries in {} bytes",
            payload.len()
        ));
    }
    Ok(())
}

fn read_varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("truncated varint")?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

fn read_buf<'a>(bytes: &'a [u8], at: &mut usize) -> Result<&'a [u8], String> {
    let len = read_varint(bytes, at)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|len| at.checked_add(len))
        .filter(|end| *end <= bytes.len())
        .ok_or("truncated buffer")?;
    let buf = &bytes[*at..end];
    *at = end;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::yjs::YjsDoc;

    #[test]
    fn a_frame_that_declares_more_entries_than_bytes_is_refused_before_decoding() {
        // Found by the yjs_frame fuzz target: a billion clients declared in four bytes.
        assert!(YjsDoc::load(&[0xff, 0xc9, 0x9a, 0x3b]).is_err());
        let mut doc = YjsDoc::new();
        for frame in [
            &[0u8, 1, 4, 0xff, 0xc9, 0x9a, 0x3b][..], // sync step 2
            &[0, 0, 4, 0xff, 0xc9, 0x9a, 0x3b],       // sync step 1 (state vector)
            &[1, 4, 0xff, 0xc9, 0x9a, 0x3b],          // awareness
        ] {
            assert!(doc.handle(frame, true).is_err(), "{frame:?}");
        }
    }

    #[test]
    fn real_frames_pass_the_guard() {
        let doc = YjsDoc::new();
        for frame in doc.greeting() {
            guard_counts(&frame).unwrap();
        }
        plausible_count(&doc.encode_state()).unwrap();
    }
}
