//! The Redis side of sending: every PUBLISH of the node goes through [`Publisher`], so the
//! payload each channel carries is defined next to the channel names in
//! [`super::channel`] and the decoding in [`super::dispatch`]. Presence changes are the
//! one exception: the presence scripts publish them atomically with the state change,
//! with the payload from [`presence_payload`].

use std::sync::Arc;
use std::time::Instant;

use chat_common::protocol::ServerFrame;
use futures_util::FutureExt;
use redis::aio::ConnectionManager;

use super::channel::Channels;
use super::envelope::{now_us, RoomChange, RoomEvent, UserEvent};
use crate::metrics::Metrics;
use crate::redis_store::{Multiplexed, Redis, RedisError};
use crate::storage::rooms::Change;
use crate::storage::writer::{Committed, Deliver};

/// A Redis that stops answering must not hold the writer (and every sender behind it):
/// the batch is committed, so its senders are acknowledged directly and recipients
/// `sync`.
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    /// The node's write batches publish on their own multiplexed connection.
    shared: Multiplexed,
    channels: Channels,
    metrics: Metrics,
}

impl Publisher {
    pub fn new(redis: Redis, metrics: Metrics) -> Self {
        let channels = Channels::new(redis.keys.prefix());
        Self {
            redis,
            shared: Multiplexed::default(),
            channels,
            metrics,
        }
    }

    /// The writer's hook: each committed batch is published in one pipeline, in id order,
    /// before any of its senders is answered.
    pub fn deliver(&self) -> Deliver {
        let publisher = self.clone();
        Arc::new(move |batch| {
            let publisher = publisher.clone();
            async move {
                let published = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.messages(&batch))
                    .await
                    .unwrap_or_else(|_| {
                        Err(PublishError::Redis(RedisError::Pool(
                            "publishing timed out".into(),
                        )))
                    });
                match published {
                    Ok(()) => true,
                    Err(e) => {
                        tracing::error!(error = %e, messages = batch.len(), "publishing a committed batch failed");
                        false
                    }
                }
            }
            .boxed()
        })
    }

    /// Two events per one-to-one message, to the recipient's and the sender's channel, and
    /// one per room message, to the room's channel, as one pipeline. The sender's own
    /// socket acknowledges on seeing its message here, so the acknowledgement is ordered
    /// with everything else published to the user.
    pub async fn messages(&self, batch: &[Committed]) -> Result<(), PublishError> {
        let stored_at = now_us();
        let mut pipe = redis::pipe();
        for c in batch {
            // Serialised once; every envelope embeds the same bytes.
            let frame = serde_json::value::to_raw_value(&ServerFrame::ChatMessage {
                message: c.message.clone(),
            })?;
            if let Some(room_id) = c.room_id {
                let event = RoomEvent {
                    frame: Some(&*frame),
                    from: Some(c.sender_id),
                    not_to_sender: false,
                    stored_at_us: Some(stored_at),
                    change: None,
                };
                pipe.publish(self.channels.room(room_id), serde_json::to_string(&event)?)
                    .ignore();
                continue;
            }
            let recipient_id = c.recipient_id.unwrap_or(c.sender_id);
            let to_recipient = UserEvent::frame(&*frame, Some(c.sender_id), Some(stored_at));
            let to_sender = UserEvent::frame(&*frame, Some(recipient_id), Some(stored_at));
            pipe.publish(
                self.channels.user(recipient_id),
                serde_json::to_string(&to_recipient)?,
            )
            .ignore()
            .publish(
                self.channels.user(c.sender_id),
                serde_json::to_string(&to_sender)?,
            )
            .ignore();
        }
        let started = Instant::now();
        pipe.query_async::<()>(&mut self.shared().await?)
            .await
            .map_err(RedisError::from)?;
        self.metrics
            .redis_publish
            .observe(started.elapsed().as_secs_f64());
        self.metrics.messages_published.inc_by(batch.len() as u64);
        Ok(())
    }

    /// A membership change, as one pipeline: on the room's channel (the nodes of its
    /// members before the change, removed ones included), then on the channel of every
    /// added user (their nodes may not follow the room yet). A new room has no
    /// subscribers: its members' channels alone.
    pub async fn room_change(
        &self,
        change: &Change,
        by: i64,
        reference: Option<String>,
    ) -> Result<(), PublishError> {
        let event = RoomChange {
            room: change.room.info(None),
            member_ids: change.room.member_ids(),
            removed: change.removed.clone(),
            by,
            reference,
        };
        let mut pipe = redis::pipe();
        if !change.created {
            let on_room = RoomEvent::<()> {
                frame: None,
                from: None,
                not_to_sender: false,
                stored_at_us: None,
                change: Some(event.clone()),
            };
            pipe.publish(
                self.channels.room(change.room.id),
                serde_json::to_string(&on_room)?,
            )
            .ignore();
        }
        let joined = serde_json::to_string(&UserEvent::<()>::joined(event))?;
        for user_id in &change.added {
            pipe.publish(self.channels.user(*user_id), &joined).ignore();
        }
        pipe.query_async::<()>(&mut self.shared().await?)
            .await
            .map_err(RedisError::from)?;
        Ok(())
    }

    /// Typing in a room, for its other members.
    pub async fn to_room(
        &self,
        room_id: i64,
        frame: &ServerFrame,
        sender_id: i64,
    ) -> Result<(), PublishError> {
        let event = RoomEvent {
            frame: Some(frame),
            from: Some(sender_id),
            not_to_sender: true,
            stored_at_us: None,
            change: None,
        };
        let payload = serde_json::to_string(&event)?;
        self.publish(&self.channels.room(room_id), &payload).await
    }

    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// A frame for every socket of `user_id`, on any node. `peer_id` makes those sockets
    /// follow the other party's presence; `stored_at_us` times the fan-out.
    pub async fn to_user(
        &self,
        user_id: i64,
        frame: &ServerFrame,
        peer_id: Option<i64>,
        stored_at_us: Option<i64>,
    ) -> Result<(), PublishError> {
        let event = UserEvent::frame(frame, peer_id, stored_at_us);
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
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(payload)
            .query_async::<i64>(&mut self.shared().await?)
            .await
            .map_err(RedisError::from)?;
        Ok(())
    }

    async fn shared(&self) -> Result<ConnectionManager, RedisError> {
        self.shared.get(&self.redis).await
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
