//! Durations in specs and records, written the way people write them: `90s`, `30m`, `2h`, `1d 12h`.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serializer};

/// Serialises a duration as `1h 30m`.
pub(crate) fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_str(&humantime::format_duration(*duration))
}

/// Parses `90s`, `30m`, `2h`, `1d 12h`.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    humantime::parse_duration(&text)
        .map_err(|error| serde::de::Error::custom(format!("`{text}` is not a duration like 90s, 30m or 2h: {error}")))
}

/// The same, for `Option<Duration>`.
pub(crate) mod option {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(duration: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        super::deserialize(deserializer).map(Some)
    }
}
