//! The key of data-arrival's claim marker ([`crate::stage::claim`]): one object per object
//! version under `<state prefix>data-arrival/objects/`.

use sha2::{Digest, Sha256};

use super::DataArrival;
use crate::event::SourceObject;
use crate::port::{EventBus, ObjectStore};

impl<S: ObjectStore, B: EventBus> DataArrival<'_, S, B> {
    pub(super) fn marker_key(&self, s: &SourceObject) -> String {
        // Version id and ETag together: unversioned buckets report version id "null" for every
        // write, so only the ETag tells an overwrite with new content apart.
        let mut h = Sha256::new();
        let parts = [
            s.bucket.as_str(),
            s.key.as_str(),
            s.version_id.as_deref().unwrap_or(""),
            s.etag.as_deref().unwrap_or(""),
        ];
        for part in parts {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!(
            "{}data-arrival/objects/{}.json",
            self.settings.state_prefix,
            hex::encode(h.finalize())
        )
    }
}
