//! The marker every update carries: `~lg<conn>.<seq>.<sent_us>~`, plain ASCII so it survives
//! JSON re-serialization and appears verbatim inside an encoded Yjs update. A receiver finds it
//! by scanning the frame's bytes, which costs far less than decoding the update.

use std::fmt;
use std::sync::OnceLock;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The sending connection.
    pub conn: u64,
    pub seq: u64,
    /// When it was sent, in microseconds since [`epoch`].
    pub sent_us: u64,
}

impl fmt::Display for Marker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "~lg{}.{}.{}~", self.conn, self.seq, self.sent_us)
    }
}

/// The process-wide time origin: every timestamp is taken in this one process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Microseconds since the epoch.
pub fn now_us() -> u64 {
    epoch().elapsed().as_micros() as u64
}

/// Appends every marker found in `bytes` to `out`.
pub fn find_all(bytes: &[u8], out: &mut Vec<Marker>) {
    let mut rest = bytes;
    while let Some(start) = find(rest, b"~lg") {
        rest = &rest[start + 3..];
        if let Some((m, used)) = parse(rest) {
            out.push(m);
            rest = &rest[used..];
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses `conn.seq.sent_us~` and answers the marker and the bytes it took.
fn parse(bytes: &[u8]) -> Option<(Marker, usize)> {
    let mut fields = [0u64; 3];
    let mut field = 0;
    let mut digits = 0;
    for (i, &b) in bytes.iter().enumerate().take(64) {
        match b {
            b'0'..=b'9' => {
                fields[field] = fields[field]
                    .checked_mul(10)?
                    .checked_add(u64::from(b - b'0'))?;
                digits += 1;
            }
            b'.' if field < 2 && digits > 0 => {
                field += 1;
                digits = 0;
            }
            b'~' if field == 2 && digits > 0 => {
                let m = Marker {
                    conn: fields[0],
                    seq: fields[1],
                    sent_us: fields[2],
                };
                return Some((m, i + 1));
            }
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_are_found_among_other_bytes() {
        let a = Marker {
            conn: 1,
            seq: 2,
            sent_us: 3,
        };
        let b = Marker {
            conn: 40,
            seq: 0,
            sent_us: 99_999,
        };
        let text = format!("\x01\x02~lg~lg9.x~{a}\"junk\"{b}~lg1.2");
        let mut found = Vec::new();
        find_all(text.as_bytes(), &mut found);
        assert_eq!(found, vec![a, b]);
    }
}
