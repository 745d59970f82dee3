//! What each client frame does. Handling a frame runs to completion (stored, then
//! published) before the socket task looks at anything else, which is what lets a drain
//! promise that nothing acknowledged is unstored and nothing stored is unpublished.

use std::collections::HashMap;
use std::time::Instant;

use bytestring::ByteString;
use chat_common::error::ApiError;
use chat_common::protocol::{
    ClientFrame, ServerFrame, UserStatus, DIRECTORY_LIMIT, HISTORY_DEFAULT_LIMIT,
    SYNC_DEFAULT_LIMIT,
};
use chat_common::ErrorCode;

use super::rate::TokenBucket;
use crate::bus::{frame_text, now_us, ConnId};
use crate::error::AppError;
use crate::state::AppState;
use crate::storage::messages::{StoreMessageError, Stored};
use crate::storage::users::{Directory, User};

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
                self.send_message(&peer, channel, &text, client_id.as_deref())
                    .await
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

    async fn send_message(
        &mut self,
        peer: &User,
        channel: i64,
        text: &str,
        client_id: Option<&str>,
    ) -> Result<Vec<ByteString>, AppError> {
        let started = Instant::now();
        let stored = self
            .state
            .db
            .store_message(&self.me, peer, channel, client_id, text)
            .await;
        let message = match stored {
            Ok(Stored::New(message)) => message,
            Ok(Stored::Duplicate(message)) => {
                return Ok(vec![frame_text(&ServerFrame::ChatMessage { message })?]);
            }
            Err(StoreMessageError::ClientIdReused) => {
                return Err(AppError::client(
                    ErrorCode::BadRequest,
                    "this clientId was already used in another conversation",
                ));
            }
            Err(StoreMessageError::Store(e)) => return Err(e.into()),
        };
        self.state
            .metrics
            .db_write
            .observe(started.elapsed().as_secs_f64());
        self.state.metrics.messages_stored.inc();
        let stored_at = now_us();
        let frame = ServerFrame::ChatMessage {
            message: message.clone(),
        };
        let publisher = &self.state.publisher;
        let to_peer = publisher
            .to_user(peer.id, &frame, Some(&self.me.username), Some(stored_at))
            .await;
        let to_me = publisher
            .to_user(self.me.id, &frame, Some(&peer.username), Some(stored_at))
            .await;
        match (to_peer, to_me) {
            (Ok(()), Ok(())) => {
                self.state.metrics.messages_published.inc();
                Ok(vec![])
            }
            (peer_result, me_result) => {
                // Stored but not fully published: acknowledge directly so the sender does
                // not resend; the peer gets it through `sync` when it reconnects.
                for err in [peer_result.err(), me_result.err()].into_iter().flatten() {
                    tracing::error!(error = %err, message_id = %message.id, "publish failed after store");
                }
                Ok(vec![frame_text(&frame)?])
            }
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
