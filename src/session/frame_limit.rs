//! `FrameLimit`: how long a frame may be on each WebSocket route, and what a refusal of a longer
//! one leaves in the log and the metrics.

use docroom_actors::refusal_log::{Refusal, RefusalLog};
use tracing::{debug, warn};

use crate::settings::LimitSettings;

/// The frame limit of a route, and the setting it comes from (for the log).
#[derive(Clone, Copy, Debug)]
pub(super) struct FrameLimit {
    pub(super) bytes: usize,
    setting: &'static str,
}

impl FrameLimit {
    /// `/docs/{id}/ws`: JSON messages, each a whole document of at most
    /// `limits.max_document_bytes`.
    pub(super) fn json(max_frame_bytes: usize) -> Self {
        FrameLimit {
            bytes: max_frame_bytes,
            setting: "session.max_frame_bytes",
        }
    }

    /// `/yjs/{id}` and `/hocuspocus`: a frame may carry a whole document state.
    pub(super) fn yjs(limits: &LimitSettings) -> Self {
        FrameLimit {
            bytes: limits.yjs_frame_bytes(),
            setting: "limits.max_yjs_state_bytes",
        }
    }

    /// A frame over the limit: counted, logged once per document (`scope`; on `/hocuspocus`
    /// the document is not known), so a client resending it cannot flood the log.
    pub(super) fn refused(&self, refusals: &RefusalLog, scope: &str, declared: Option<u64>) {
        if refusals.note(scope, Refusal::FrameSize) {
            warn!(
                scope,
                declared = declared.map_or_else(|| "?".to_owned(), |d| d.to_string()),
                limit = self.bytes,
                setting = self.setting,
                "frame over the frame limit refused, closing that connection; repeats are counted, not logged"
            );
        } else {
            debug!(scope, "frame over the frame limit refused again");
        }
    }
}
