//! The Redis side of sending: every PUBLISH of the node goes through [`Publisher`], so the
//! payload each channel carries is defined next to the channel names in
//! [`super::channel`] and the decoding in [`super::dispatch`]. Presence changes are the
//! one exception: the presence scripts publish them atomically with the state change,
//! with the payload from [`presence_payload`].

use std::time::Instant;

use chat_common::protocol::ServerFrame;

use super::channel::Channels;
use super::envelope::UserEvent;
use crate::metrics::Metrics;
use crate::redis_store::{Redis, RedisError};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// A frame that does not serialise is a bug, not an outage.
    #[error("encoding an event: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Redis(#[from] RedisError),
}

/// The `presence` frame on a user's presence channel.
pub fn presence_payload(username: &str, online: bool) -> Result<String, serde_json::Error> {
    serde_json::to_string(&ServerFrame::Presence {
        username: username.to_owned(),
        online,
    })
}

#[derive(Clone)]
pub struct Publisher {
    redis: Redis,
    channels: Channels,
    metrics: Metrics,
}

impl Publisher {
    pub fn new(redis: Redis, metrics: Metrics) -> Self {
        let channels = Channels::new(redis.keys.prefix());
        Self {
            redis,
            channels,
            metrics,
        }
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// A frame for every socket of `user_id`, on any node. `peer` makes those sockets
    /// follow the other party's presence; `stored_at_us` times the fan-out.
    pub async fn to_user(
        &self,
        user_id: i64,
        frame: &ServerFrame,
        peer: Option<&str>,
        stored_at_us: Option<i64>,
    ) -> Result<(), PublishError> {
        let event = UserEvent::frame(frame, peer.map(str::to_owned), stored_at_us);
        let payload = serde_json::to_string(&event)?;
        let started = Instant::now();
        self.publish(&self.channels.user(user_id), &payload).await?;
        self.metrics
            .redis_publish
            .observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Closes the sockets of one login (the session `tag`) of `user_id`, on every node.
    pub async fn logout(&self, user_id: i64, tag: String) -> Result<(), PublishError> {
        let payload = serde_json::to_string(&UserEvent::<()>::logout(tag))?;
        self.publish(&self.channels.user(user_id), &payload).await
    }

    /// Announces a new account to the sockets that list the whole directory.
    pub async fn new_user(&self, username: &str) -> Result<(), PublishError> {
        let payload = presence_payload(username, false)?;
        self.publish(&self.channels.directory(), &payload).await
    }

    async fn publish(&self, channel: &str, payload: &str) -> Result<(), PublishError> {
        let mut conn = self.redis.conn().await?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(RedisError::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_payloads_are_presence_frames() {
        let v: serde_json::Value =
            serde_json::from_str(&presence_payload("bob", true).unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "presence", "username": "bob", "online": true})
        );
    }
}
