//! `RefusedFrames`: the frames a document refused for its state limit, remembered so that the
//! same frame sent again is refused for the cost of hashing it.
//!
//! Refusing an update for the state limit costs the whole document: the limit is on the merged
//! state, and only merging tells how much of an update the document already holds (a
//! reconnecting client's sync step 2 repeats its whole delete set, and may repeat content the
//! document got from elsewhere), so an update's length is no lower bound on its growth. A
//! provider refused closes, reconnects and sends the same unsynced state again, at once and for
//! as long as its tab stays open: each attempt would merge the whole document again.
//!
//! What was refused stays refused as long as nothing could have made room for it:
//!
//! - the merged size only grows while the document only gains content: more blocks encode to
//!   more bytes, and an insertion that extends a block still adds its content. Only a deletion
//!   can shrink the document (its content is collected, leaving a block's header). So any
//!   deletion the document takes forgets every remembered frame;
//! - an update stops growing the document once the document holds what it carries (another
//!   connection, or another replica, sent the same edits). So a remembered frame also notes
//!   where the document stood, for every client whose blocks the frame carries, and is trusted
//!   only while the document has no more of those clients' blocks than then.
//!
//! Frames are matched by length first, then by SHA-256, so a frame of another length costs a
//! comparison and an equal one a hash: no decoding, no walk over the document.

use sha2::{Digest, Sha256};
use yrs::ClientID;

/// Refused frames one document remembers, the most recent ones: a few clients retrying at once.
const REMEMBERED: usize = 8;

#[derive(Debug, Default)]
pub(super) struct RefusedFrames {
    frames: Vec<Refused>,
}

#[derive(Debug)]
struct Refused {
    len: usize,
    digest: [u8; 32],
    /// For every client whose blocks the frame carries: the document's clock for that client
    /// when the frame was refused.
    clocks: Vec<(ClientID, u32)>,
    /// Why it was refused, said again to every retry.
    why: String,
}

impl RefusedFrames {
    /// Why `frame` was refused before, if it is a frame refused before and still would be:
    /// `clock` answers the document's clock for a client now.
    pub(super) fn refused(&self, frame: &[u8], clock: impl Fn(ClientID) -> u32) -> Option<&str> {
        if !self.frames.iter().any(|r| r.len == frame.len()) {
            return None;
        }
        let digest: [u8; 32] = Sha256::digest(frame).into();
        self.frames
            .iter()
            .find(|r| r.len == frame.len() && r.digest == digest)
            .filter(|r| r.clocks.iter().all(|(c, k)| clock(*c) == *k))
            .map(|r| r.why.as_str())
    }

    /// Remembers `frame`, refused for `why`; `clocks` as in [`Refused::clocks`].
    pub(super) fn remember(&mut self, frame: &[u8], clocks: Vec<(ClientID, u32)>, why: &str) {
        if self.frames.len() >= REMEMBERED {
            self.frames.remove(0);
        }
        self.frames.push(Refused {
            len: frame.len(),
            digest: Sha256::digest(frame).into(),
            clocks,
            why: why.to_owned(),
        });
    }

    /// The document took a deletion: it may have room now for any of them.
    pub(super) fn forget(&mut self) {
        self.frames.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: ClientID = ClientID::new(1);

    #[test]
    fn a_frame_is_refused_again_while_the_document_has_no_more_of_its_clients_blocks() {
        let mut refused = RefusedFrames::default();
        refused.remember(b"big frame", vec![(ALICE, 10)], "too big");

        assert_eq!(refused.refused(b"big frame", |_| 10), Some("too big"));
        assert_eq!(refused.refused(b"big frams", |_| 10), None, "same length");
        assert_eq!(refused.refused(b"other", |_| 10), None);
        assert_eq!(
            refused.refused(b"big frame", |_| 11),
            None,
            "the document got more of Alice's blocks"
        );
        refused.forget();
        assert_eq!(refused.refused(b"big frame", |_| 10), None);
    }

    #[test]
    fn only_the_latest_frames_are_remembered() {
        let mut refused = RefusedFrames::default();
        for i in 0..=REMEMBERED {
            refused.remember(format!("frame {i}").as_bytes(), Vec::new(), "too big");
        }
        assert_eq!(refused.refused(b"frame 0", |_| 0), None);
        assert!(refused
            .refused(format!("frame {REMEMBERED}").as_bytes(), |_| 0)
            .is_some());
    }
}
