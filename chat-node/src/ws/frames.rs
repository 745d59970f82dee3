//! What each client frame does. Handling a frame runs to completion (stored, then
//! published) before the socket task looks at anything else, which is what lets a drain
//! promise that nothing acknowledged is unstored and nothing stored is unpublished.

use bytestring::ByteString;
use chat_common::error::ApiError;
use chat_common::protocol::{
    ClientFrame, ServerFrame, UserStatus, DIRECTORY_LIMIT, HISTORY_DEFAULT_LIMIT,
    SYNC_DEFAULT_LIMIT,
};
use chat_common::ErrorCode;
use std::collections::HashMap;

use super::rate::TokenBucket;
use crate::bus::{frame_text, ConnId};
use crate::error::AppError;
use crate::state::AppState;
use crate::storage::users::{Directory, User};
use crate::storage::writer::{NewMessage, Stored};

pub struct Connection {
    state: AppState,
    me: User,
    id: ConnId,
    bucket: TokenBucket,
    /// Conversation ids by peer id, so a busy chat does not look its channel up per frame.
    channels: HashMap<i64, i64>,
}

impl Connection {
    pub fn new(state: AppState, me: User, id: ConnId) -> Self {
        let bucket = TokenBucket::new(state.limits.ws_rate, state.limits.ws_burst);
        Self {
            state,
            me,
            id,
            bucket,
            channels: HashMap::new(),
        }
    }

    /// Subscribes, marks the user online and builds the `updateUsers` frame. Subscriptions
    /// are confirmed before presence is read, so no change falls between the two.
    pub async fn setup(&mut self) -> Result<ByteString, AppError> {
        let Directory { names, complete } =
            self.state.db.directory(&self.me, DIRECTORY_LIMIT).await?;
        if complete {
            self.state.hub.follow_everyone(self.id);
        } else {
            self.state
                .hub
                .watch(self.id, names.iter().map(String::as_str));
        }
        if !self.state.hub.flush().await {
            return Err(AppError::SubscriberNotReady);
        }
        let transition = self.state.presence.transition().await;
        if self.state.presence.connect(&self.me.username).await? {
            self.state.metrics.presence_changed(true);
        }
        drop(transition);
        let online = self.state.presence.online(&names).await?;
        let users = names
            .into_iter()
            .zip(online)
            .map(|(username, online)| UserStatus { username, online })
            .collect();
        Ok(frame_text(&ServerFrame::UpdateUsers { users })?)
    }

    fn error(&self, err: ApiError, reference: Option<String>) -> Result<ByteString, AppError> {
        tracing::info!(code = %err.code, "frame refused");
        self.state
            .metrics
            .client_errors
            .with_label_values(&[err.code.as_str()])
            .inc();
        Ok(frame_text(&ServerFrame::error(err, reference))?)
    }

    pub fn reject_binary(&self) -> Result<ByteString, AppError> {
        self.error(
            ApiError::new(ErrorCode::BadRequest, "frames are JSON text, not binary"),
            None,
        )
    }

    /// Replies for this socket alone; deliveries to others go through the bus. An error
    /// here is a reply that could not be encoded: a bug, and the socket closes.
    pub async fn handle_text(&mut self, text: &str) -> Result<Vec<ByteString>, AppError> {
        if !self.bucket.take() {
            let err = ApiError::new(
                ErrorCode::RateLimited,
                "too many frames; this one was dropped",
            );
            return Ok(vec![self.error(err, None)?]);
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => return Ok(vec![self.error(e.error, e.reference)?]),
        };
        let reference = match &frame {
            ClientFrame::ChatMessage { client_id, .. } => client_id.clone(),
            _ => None,
        };
        match self.dispatch(frame).await {
            Ok(replies) => Ok(replies),
            Err(err) => Ok(vec![self.error(err.to_api(), reference)?]),
        }
    }

    async fn dispatch(&mut self, frame: ClientFrame) -> Result<Vec<ByteString>, AppError> {
        match frame {
            ClientFrame::ChatHistory {
                peer,
                before,
                limit,
            } => {
                let peer = self.peer(&peer).await?;
                let channel = self.channel(&peer).await?;
                self.state.hub.watch(self.id, [peer.username.as_str()]);
                let limit = limit.unwrap_or(HISTORY_DEFAULT_LIMIT);
                let (messages, has_more) = self
                    .state
                    .db
                    .history(channel, &self.me, &peer, before, limit)
                    .await?;
                Ok(vec![frame_text(&ServerFrame::ChatHistory {
                    peer: peer.username,
                    channel: channel as u64,
                    messages,
                    has_more,
                })?])
            }
            ClientFrame::ChatMessage {
                peer,
                text,
                client_id,
            } => {
                self.state.metrics.messages_received.inc();
                let peer = self.peer(&peer).await?;
                let channel = self.channel(&peer).await?;
                self.send_message(peer, channel, text, client_id).await
            }
            ClientFrame::Typing { peer } => self.relay_typing(&peer, true).await,
            ClientFrame::DoneTyping { peer } => self.relay_typing(&peer, false).await,
            ClientFrame::Sync { after, limit } => {
                let limit = limit.unwrap_or(SYNC_DEFAULT_LIMIT);
                let (messages, has_more) = self.state.db.sync(self.me.id, after, limit).await?;
                Ok(vec![frame_text(&ServerFrame::Sync { messages, has_more })?])
            }
        }
    }

    /// Typing travels like a message but is never stored, and goes to the peer alone.
    async fn relay_typing(&self, peer: &str, typing: bool) -> Result<Vec<ByteString>, AppError> {
        let peer = self.peer(peer).await?;
        let from = self.me.username.clone();
        let frame = if typing {
            ServerFrame::Typing { from }
        } else {
            ServerFrame::DoneTyping { from }
        };
        self.state
            .publisher
            .to_user(peer.id, &frame, None, None)
            .await?;
        Ok(vec![])
    }

    /// Returns once the message is committed and published (or could not be); the
    /// sender's acknowledgement arrives through its user channel like every delivery.
    async fn send_message(
        &mut self,
        peer: User,
        channel_id: i64,
        text: String,
        client_id: Option<String>,
    ) -> Result<Vec<ByteString>, AppError> {
        let stored = self
            .state
            .writer
            .write(NewMessage {
                sender: self.me.clone(),
                recipient: peer,
                channel_id,
                client_id,
                text,
            })
            .await;
        match stored {
            Ok(Stored::New {
                published: true, ..
            }) => {
                self.state.metrics.messages_stored.inc();
                Ok(vec![])
            }
            Ok(Stored::New {
                message,
                published: false,
            }) => {
                // Stored but not published: acknowledge directly so the sender does not
                // resend; the peer gets it through `sync` when it reconnects.
                self.state.metrics.messages_stored.inc();
                Ok(vec![frame_text(&ServerFrame::ChatMessage { message })?])
            }
            Ok(Stored::Duplicate(message)) => {
                Ok(vec![frame_text(&ServerFrame::ChatMessage { message })?])
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn peer(&self, name: &str) -> Result<User, AppError> {
        let peer = self.state.resolve_user(name).await?;
        if peer.id == self.me.id {
            return Err(AppError::client(
                ErrorCode::BadRequest,
                "conversations are between two different users",
            ));
        }
        Ok(peer)
    }

    async fn channel(&mut self, peer: &User) -> Result<i64, AppError> {
        if let Some(id) = self.channels.get(&peer.id) {
            return Ok(*id);
        }
        let id = self.state.db.channel_between(self.me.id, peer.id).await?;
        self.channels.insert(peer.id, id);
        Ok(id)
    }
}
