//! The webhooks' change marks (`webhooks:changed`): every save of a replica with webhooks on
//! counts its document there, in the save's own script, so a `document.changed` is as durable
//! as the change (the recorder's side is `src/webhooks/marks.rs`).

use super::RedisCache;
use crate::doc::{DocId, Kind};
use crate::storage::redis_scripts::CLEAR_MARKS;
use crate::storage::CacheResult;

/// A document that saves of one replica changed (`webhooks:changed`), and how many saves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeMark {
    pub kind: Kind,
    pub replica: String,
    pub doc: DocId,
    pub count: i64,
    field: String,
}

impl ChangeMark {
    fn parse(field: String, count: i64) -> Option<ChangeMark> {
        let mut parts = field.splitn(3, '\n');
        let kind = Kind::parse(parts.next()?)?;
        let replica = parts.next()?.to_owned();
        let doc = DocId::parse(parts.next()?).ok()?;
        Some(ChangeMark {
            kind,
            replica,
            doc,
            count,
            field,
        })
    }

    /// A mark as the save script writes it (for tests).
    pub fn new(kind: Kind, replica: &str, doc: DocId, count: i64) -> ChangeMark {
        let field = format!("{}\n{replica}\n{}", kind.as_str(), doc.as_str());
        ChangeMark {
            kind,
            replica: replica.to_owned(),
            doc,
            count,
            field,
        }
    }
}

impl RedisCache {
    /// `webhooks:changed`: a hash of `KIND \n REPLICA \n ID` → how many saves of that replica
    /// changed the document since its marks were last cleared (see [`RedisCache::change_marks`]).
    pub(super) fn key_changed(&self) -> String {
        format!("{}webhooks:changed", self.settings.key_prefix)
    }

    /// The documents saves marked changed. Each replica's webhook recorder clears its own
    /// marks once their changes' windows are in PostgreSQL; marks a replica left behind (it was
    /// killed first) are found, and their windows written, by every other one.
    pub async fn change_marks(&self) -> CacheResult<Vec<ChangeMark>> {
        let mut conn = self.connection().await?;
        let all: Vec<(String, i64)> = self
            .call(
                redis::cmd("HGETALL")
                    .arg(self.key_changed())
                    .query_async(&mut conn),
            )
            .await?;
        Ok(all
            .into_iter()
            .filter_map(|(field, count)| ChangeMark::parse(field, count))
            .collect())
    }

    /// Clears these marks where their count is still the one read (a save since keeps the
    /// mark for the next write).
    pub async fn clear_change_marks(&self, marks: &[ChangeMark]) -> CacheResult<()> {
        if marks.is_empty() {
            return Ok(());
        }
        let mut conn = self.connection().await?;
        let mut invocation = CLEAR_MARKS.prepare_invoke();
        invocation.key(self.key_changed());
        for mark in marks {
            invocation.arg(&mark.field).arg(mark.count);
        }
        self.call(invocation.invoke_async::<i64>(&mut conn)).await?;
        Ok(())
    }
}
