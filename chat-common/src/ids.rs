//! Message ids. The database assigns them (see docs/design.md for why that gives ids that
//! are unique in the cluster and ordered by storage); this type only guards the wire rule
//! that they stay exact in a JavaScript number.

use serde::{Deserialize, Deserializer, Serialize};

/// The largest integer a JavaScript number holds exactly.
pub const MAX_SAFE_ID: u64 = (1 << 53) - 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MessageId(u64);

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("message ids are integers from 0 to 2^53-1")]
pub struct IdOutOfRange;

impl MessageId {
    pub fn new(raw: u64) -> Result<Self, IdOutOfRange> {
        if raw <= MAX_SAFE_ID {
            Ok(Self(raw))
        } else {
            Err(IdOutOfRange)
        }
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl TryFrom<i64> for MessageId {
    type Error = IdOutOfRange;

    fn try_from(raw: i64) -> Result<Self, IdOutOfRange> {
        u64::try_from(raw)
            .map_err(|_| IdOutOfRange)
            .and_then(Self::new)
    }
}

impl From<MessageId> for i64 {
    fn from(id: MessageId) -> i64 {
        // MAX_SAFE_ID < i64::MAX, so this never wraps.
        id.0 as i64
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = u64::deserialize(d)?;
        Self::new(raw).map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_above_two_to_the_53_are_rejected() {
        assert!(MessageId::new(MAX_SAFE_ID).is_ok());
        assert_eq!(MessageId::new(MAX_SAFE_ID + 1), Err(IdOutOfRange));
        assert!(serde_json::from_str::<MessageId>("9007199254740992").is_err());
        assert!(serde_json::from_str::<MessageId>("-1").is_err());
        assert!(serde_json::from_str::<MessageId>("1.5").is_err());
    }

    #[test]
    fn ids_round_trip_through_json_and_i64() {
        let id: MessageId = serde_json::from_str("42").unwrap();
        assert_eq!(id.get(), 42);
        assert_eq!(serde_json::to_string(&id).ok().as_deref(), Some("42"));
        assert_eq!(MessageId::try_from(i64::from(id)), Ok(id));
        assert_eq!(MessageId::try_from(-5i64), Err(IdOutOfRange));
    }
}
