//! The nesting bound at a document's edges (`limits.max_yjs_depth`): every update is walked by
//! [`nesting`](super::nesting) before anything decodes it, and a document stored deeper than
//! the bound is served but not rendered.

use yrs::sync::Message;

use super::nesting::{self, Admit, Nesting, Refused};
use super::{YjsDoc, YjsError, DEPTH_CEILING};

/// Whether yrs may decode stored content (a journal record, a cache entry, a stored state)
/// without recursing deeper than [`DEPTH_CEILING`]: the values it holds nest no deeper. What
/// the service stored was checked against `limits.max_yjs_depth`, which is at most that.
pub fn decodable(update: &[u8]) -> Result<(), String> {
    let ceiling = DEPTH_CEILING as u32;
    Nesting::default()
        .plan([update], ceiling, Admit::Stored)
        .map(drop)
        .map_err(|refused| format!("stored yjs content is unreadable: {refused:?}"))
}

impl YjsDoc {
    /// Walks updates against the document's nesting ([`nesting`]) before anything decodes them.
    pub(super) fn plan(&self, updates: &[&[u8]], admit: Admit) -> Result<nesting::Plan, YjsError> {
        self.plan_or_refusal(updates, admit)
            .map_err(|refused| self.refusal(refused, admit))
    }

    fn plan_or_refusal(&self, updates: &[&[u8]], admit: Admit) -> Result<nesting::Plan, Refused> {
        let max = u32::try_from(self.limits.max_depth).unwrap_or(u32::MAX);
        self.nesting.plan(updates.iter().copied(), max, admit)
    }

    fn refusal(&self, refused: Refused, admit: Admit) -> YjsError {
        let limit = self.limits.max_depth;
        match (refused, admit) {
            (Refused::Malformed(why), Admit::Member) => YjsError::BadUpdate(why.into()),
            (Refused::Malformed(why), Admit::Stored) => YjsError::BadState(why.into()),
            (Refused::TooDeep(depth), _) => YjsError::TooDeep(format!(
                "an update nests {depth} levels deep (limits.max_yjs_depth is {limit})"
            )),
            (Refused::DeletesInTooDeep(depth), _) => YjsError::TooDeep(format!(
                "the document nests {depth} levels deep, beyond limits.max_yjs_depth ({limit}): \
                 it takes no deletions"
            )),
        }
    }

    /// The nesting plan of a frame's document updates, or the refusal. A read-only sender's
    /// updates are walked only for their depth (and one that does not even walk is dropped
    /// later, as yrs could not decode it either); nothing of them is kept.
    pub(super) fn plan_frame(
        &self,
        messages: &[Message],
        may_write: bool,
    ) -> Result<Option<nesting::Plan>, YjsError> {
        let updates = super::document_updates(messages);
        if updates.is_empty() {
            return Ok(None);
        }
        match self.plan_or_refusal(&updates, Admit::Member) {
            Ok(plan) => Ok(may_write.then_some(plan)),
            // Dropped unapplied either way: only a depth its decoding would recurse into counts.
            Err(Refused::Malformed(_) | Refused::DeletesInTooDeep(_)) if !may_write => Ok(None),
            Err(refused) => Err(self.refusal(refused, Admit::Member)),
        }
    }

    /// Whether a rendering may walk the document: it nests within `limits.max_depth`.
    pub fn renderable(&self) -> Result<(), YjsError> {
        let depth = self.nesting.deepest();
        let limit = self.limits.max_depth;
        if usize::try_from(depth).map_or(true, |d| d > limit) {
            return Err(YjsError::TooDeep(format!(
                "the document nests {depth} levels deep, beyond limits.max_yjs_depth ({limit})"
            )));
        }
        Ok(())
    }
}
