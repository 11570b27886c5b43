//! Pipeline stages: pure decisions, generic over the ports they use, with no SDK types.
//! The same stage runs in Lambda and in the local dev stack.

pub mod build;
pub mod claim;
pub mod data_arrival;
pub mod deploy;
pub mod latest;
pub mod ledger;
pub mod prepare;
pub mod registry;
pub mod secret;
pub mod serving;
pub mod training;

/// Now, as claims and markers record it (RFC 3339, milliseconds, UTC).
pub(crate) fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Whether a claim taken at `claimed_at` is older than `lease`; an unreadable time counts as
/// expired, so a damaged claim cannot block its object forever.
pub(crate) fn lease_expired(claimed_at: &str, lease: std::time::Duration) -> bool {
    chrono::DateTime::parse_from_rfc3339(claimed_at).map_or(true, |t| {
        chrono::Utc::now()
            .signed_duration_since(t)
            .to_std()
            .is_ok_and(|age| age > lease)
    })
}
