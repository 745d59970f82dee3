//! What each client frame does. Handling a frame runs to completion (stored, then
//! published) before the socket task looks at anything else, which is what lets a drain
//! promise that nothing acknowledged is unstored and nothing stored is unpublished. Each
//! frame gets at most one reply, of bounded size.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;

use actix_ws::AggregatedMessage;
use bytestring::ByteString;
use chat_common::error::ApiError;
use chat_common::protocol::{
    ChatMessage, ClientFrame, Conversation, ServerFrame, DIRECTORY_LIMIT, HISTORY_DEFAULT_LIMIT,
    SYNC_DEFAULT_LIMIT,
};
use chat_common::{ErrorCode, MessageId};

use super::rate::{FloodGuard, TokenBucket};
use super::SocketLimits;
use crate::bus::directory::listing;
use crate::bus::{frame_text, Closing, ConnId, Frame};
use crate::error::AppError;
use crate::state::AppState;
use crate::storage::rooms::Room;
use crate::storage::users::User;
use crate::storage::writer::{NewMessage, Recipient, Stored};

/// The messages of one `sync` or `chatHistory` reply take at most this many bytes of
/// JSON; the client pages on with `hasMore`. 500 long messages would otherwise be
/// megabytes per request.
pub const REPLY_MAX_BYTES: usize = 128 * 1024;

const FLOODING: Closing = Closing::new(1008, "too many frames past the rate limit");
const INTERNAL: Closing = Closing::new(1011, "internal error");

/// The two rates a frame can be refused by.
#[derive(Debug, Clone, Copy)]
enum Limit {
    /// Every frame.
    Frames,
    /// `sync` and `chatHistory`.
    Reads,
}

impl Limit {
    /// The `reason` label of `chat_ws_frames_refused_total`.
    fn label(self) -> &'static str {
        match self {
            Self::Frames => "rate",
            Self::Reads => "history_rate",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Self::Frames => "too many frames; this one was dropped",
            Self::Reads => "too many sync and chatHistory requests; this one was dropped",
        }
    }
}

pub struct Connection {
    pub(super) state: Arc<AppState>,
    pub(super) me: User,
    id: ConnId,
    /// Every frame, control frames included.
    bucket: TokenBucket,
    /// `sync` and `chatHistory`, which read up to 500 rows each.
    history: TokenBucket,
    /// Where the walk of the last `sync` answer with `hasMore` goes on: after this id.
    next_sync: Option<MessageId>,
    /// Where the last `chatHistory` page with `hasMore` goes on: this conversation,
    /// before this id.
    next_history: Option<Box<(Conversation, MessageId)>>,
    flood: FloodGuard,
    /// Conversation ids by peer id, and by room id negated (a room's channel never
    /// changes; membership is checked by the writer), so a busy chat does not look its
    /// channel up per frame.
    channels: HashMap<i64, i64>,
}

impl Connection {
    pub fn new(state: Arc<AppState>, me: User, id: ConnId, limits: &SocketLimits) -> Self {
        let bucket = TokenBucket::new(state.limits.ws_rate, state.limits.ws_burst);
        Self {
            state,
            me,
            id,
            bucket,
            history: TokenBucket::new(limits.history_rate, limits.history_burst),
            next_sync: None,
            next_history: None,
            flood: FloodGuard::default(),
            channels: HashMap::new(),
        }
    }

    pub fn user(&self) -> &User {
        &self.me
    }

    /// Subscribes, marks the user online and builds the `updateUsers` frame. Subscriptions
    /// are confirmed before presence is read, so no change falls between the two. Costs
    /// what this socket lists: the node's shared head of the directory, and the user's
    /// conversation peers when the head is not the whole directory.
    pub async fn setup(&mut self) -> Result<Vec<ByteString>, AppError> {
        let state = &self.state;
        let head = state
            .hub
            .head(|| state.db.directory_head(DIRECTORY_LIMIT + 1))
            .await?;
        let conversations = state.db.conversations(self.me.id).await?;
        let names = if head.is_complete() {
            state.hub.follow_everyone(self.id);
            listing(&head, Vec::new(), DIRECTORY_LIMIT).names
        } else {
            let listed = listing(&head, conversations.peers, DIRECTORY_LIMIT);
            state
                .hub
                .follow_head(self.id, &head, listed.cutoff, &listed.beyond);
            listed.names
        };
        if !state.hub.flush().await {
            return Err(AppError::SubscriberNotReady);
        }
        let rooms = self.follow_rooms().await?;
        let transition = state.presence.transition(self.me.id).await;
        if state
            .presence
            .connect(self.me.id, &self.me.username)
            .await?
        {
            state.metrics.presence_changed(true);
        }
        drop(transition);
        let online = state.presence.online(&names).await?;
        let peer_channels = &conversations.channels;
        let mut channels: Vec<i64> = peer_channels.iter().map(|(c, _)| *c).collect();
        channels.extend(rooms.iter().map(|r| r.channel_id));
        let unread = state.db.unread(self.me.id, &channels).await?;
        let unread_by_name: HashMap<&str, u64> = peer_channels
            .iter()
            .filter_map(|(c, peer)| unread.get(c).map(|n| (peer.username.as_str(), *n)))
            .collect();
        let rooms = rooms
            .iter()
            .map(|r| r.info(Some(unread.get(&r.channel_id).copied().unwrap_or(0))))
            .collect();
        Ok(vec![
            update_users(&names, &online, &unread_by_name)?,
            frame_text(&ServerFrame::Rooms { rooms })?,
        ])
    }

    /// The user's rooms, with their channels followed. Read once the user's channel is
    /// followed, so a room created meanwhile still arrives (as a `room` frame); read again
    /// once the rooms' channels are followed, so a removal in between is not missed.
    async fn follow_rooms(&self) -> Result<Vec<Room>, AppError> {
        let state = &self.state;
        let mut rooms = state.db.rooms_of(self.me.id).await?;
        if rooms.is_empty() {
            return Ok(rooms);
        }
        let ids: Vec<i64> = rooms.iter().map(|r| r.id).collect();
        state.hub.join_rooms(self.me.id, &ids);
        if !state.hub.flush().await {
            return Err(AppError::SubscriberNotReady);
        }
        let still = state.db.room_ids(self.me.id).await?;
        let gone: Vec<i64> = ids.into_iter().filter(|id| !still.contains(id)).collect();
        if !gone.is_empty() {
            state.hub.leave_rooms(self.me.id, &gone);
            rooms.retain(|r| still.contains(&r.id));
        }
        Ok(rooms)
    }

    /// The reply for this socket alone, if any; deliveries to others go through the bus.
    /// `Err` closes the socket: it keeps sending past its rate limit, or a reply could not
    /// be encoded (a bug).
    pub async fn handle(&mut self, msg: AggregatedMessage) -> Result<Option<Frame>, Closing> {
        let data = matches!(
            msg,
            AggregatedMessage::Text(_) | AggregatedMessage::Binary(_)
        );
        if !self.bucket.take() {
            return self.refuse(data, Limit::Frames);
        }
        match msg {
            AggregatedMessage::Text(text) => self.handle_text(&text).await,
            AggregatedMessage::Binary(_) => self.error(
                ApiError::new(ErrorCode::BadRequest, "frames are JSON text, not binary"),
                None,
            ),
            AggregatedMessage::Ping(payload) => Ok(Some(Frame::Pong(payload.to_vec()))),
            // The socket task closes on a close frame before asking.
            AggregatedMessage::Pong(_) | AggregatedMessage::Close(_) => Ok(None),
        }
    }

    /// A frame over a limit is dropped, and a data frame answered `rate_limited`. Counted,
    /// not logged: a flood would fill the log.
    fn refuse(&mut self, data: bool, limit: Limit) -> Result<Option<Frame>, Closing> {
        let metrics = &self.state.metrics;
        metrics
            .ws_frames_refused
            .with_label_values(&[limit.label()])
            .inc();
        if self.flood.refused() {
            tracing::warn!("closing a socket that keeps sending past its rate limit");
            metrics
                .ws_forced_closes
                .with_label_values(&["flooding"])
                .inc();
            return Err(FLOODING);
        }
        if !data {
            return Ok(None);
        }
        self.error(ApiError::new(ErrorCode::RateLimited, limit.message()), None)
    }

    fn error(&self, err: ApiError, reference: Option<String>) -> Result<Option<Frame>, Closing> {
        if err.code != ErrorCode::RateLimited {
            tracing::info!(code = %err.code, "frame refused");
        }
        self.state
            .metrics
            .client_errors
            .with_label_values(&[err.code.as_str()])
            .inc();
        encoded(frame_text(&ServerFrame::error(err, reference)))
    }

    async fn handle_text(&mut self, text: &str) -> Result<Option<Frame>, Closing> {
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(e) => return self.error(e.error, e.reference),
        };
        let reads = matches!(
            frame,
            ClientFrame::Sync { .. } | ClientFrame::ChatHistory { .. }
        );
        if reads && !self.history.take() {
            if !self.continues(&frame) {
                return self.refuse(true, Limit::Reads);
            }
            // A client paging on as PROTOCOL.md says is slowed to the rate, not refused.
            self.history.wait_take().await;
        }
        let reference = frame.client_id().map(str::to_owned);
        match self.dispatch(frame).await {
            Ok(reply) => Ok(reply.map(Frame::Text)),
            Err(err) => self.error(err.to_api(), reference),
        }
    }

    /// Whether `frame` asks for the page after the last one this socket was answered.
    fn continues(&self, frame: &ClientFrame) -> bool {
        match frame {
            ClientFrame::Sync { after, .. } => self.next_sync == Some(*after),
            ClientFrame::ChatHistory {
                peer,
                room,
                before: Some(before),
                ..
            } => self.next_history.as_deref().is_some_and(|(c, b)| {
                b == before
                    && match (c, peer, room) {
                        (Conversation::Peer(p), Some(peer), None) => p.eq_ignore_ascii_case(peer),
                        (Conversation::Room(r), None, Some(room)) => r == room,
                        _ => false,
                    }
            }),
            _ => false,
        }
    }

    async fn dispatch(&mut self, frame: ClientFrame) -> Result<Option<ByteString>, AppError> {
        match frame {
            ClientFrame::ChatHistory {
                peer,
                room,
                before,
                limit,
            } => {
                let conversation = Conversation::of(peer.as_deref(), room)?;
                self.history(conversation, before, limit.unwrap_or(HISTORY_DEFAULT_LIMIT))
                    .await
            }
            ClientFrame::ChatMessage {
                peer,
                room,
                text,
                client_id,
            } => {
                self.state.metrics.messages_received.inc();
                let (to, channel) = match Conversation::of(peer.as_deref(), room)? {
                    Conversation::Peer(name) => {
                        let peer = self.peer(&name).await?;
                        let channel = self.channel(&peer).await?;
                        (Recipient::User(peer), channel)
                    }
                    Conversation::Room(room) => {
                        let room = room_id(room)?;
                        (Recipient::Room(room), self.room_channel(room).await?)
                    }
                };
                self.send_message(to, channel, text, client_id).await
            }
            ClientFrame::Typing { peer, room } => self.relay_typing(peer, room, true).await,
            ClientFrame::DoneTyping { peer, room } => self.relay_typing(peer, room, false).await,
            ClientFrame::Sync { after, limit } => {
                let limit = limit.unwrap_or(SYNC_DEFAULT_LIMIT);
                let (mut messages, has_more) = self.state.db.sync(self.me.id, after, limit).await?;
                let has_more = fit(&mut messages, false) || has_more;
                self.next_sync = messages.last().filter(|_| has_more).map(|m| m.id);
                Ok(Some(frame_text(&ServerFrame::Sync { messages, has_more })?))
            }
            ClientFrame::CreateRoom {
                name,
                members,
                client_id,
            } => self.create_room(name, members, client_id).await,
            ClientFrame::AddMembers {
                room,
                members,
                client_id,
            } => self.add_members(room_id(room)?, members, client_id).await,
            ClientFrame::RemoveMember {
                room,
                username,
                client_id,
            } => {
                self.remove_member(room_id(room)?, &username, client_id)
                    .await
            }
            ClientFrame::MarkRead { peer, room, up_to } => {
                let conversation = Conversation::of(peer.as_deref(), room)?;
                self.mark_read(conversation, up_to).await
            }
        }
    }

    /// One page of a conversation's history, one-to-one or a room's (its membership
    /// checked in MySQL, every time).
    async fn history(
        &mut self,
        conversation: Conversation,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<Option<ByteString>, AppError> {
        let (channel, peer, room, (mut messages, has_more)) = match &conversation {
            Conversation::Peer(name) => {
                let peer = self.peer(name).await?;
                let channel = self.channel(&peer).await?;
                self.state.hub.watch(self.id, [peer.id]);
                let db = &self.state.db;
                let page = db
                    .peer_history(channel, (&self.me, &peer), before, limit)
                    .await?;
                (channel, Some(peer.username), None, page)
            }
            Conversation::Room(room) => {
                let channel = self.member_channel(room_id(*room)?).await?;
                let page = self.state.db.history(channel, before, limit).await?;
                (channel, None, Some(*room), page)
            }
        };
        // A page runs oldest first and the next one is older: keep the newest.
        let has_more = fit(&mut messages, true) || has_more;
        let conversation = match peer.as_ref() {
            Some(name) => Conversation::Peer(name.clone()),
            None => conversation,
        };
        self.next_history = messages
            .first()
            .filter(|_| has_more)
            .map(|m| Box::new((conversation, m.id)));
        Ok(Some(frame_text(&ServerFrame::ChatHistory {
            peer,
            room,
            channel: channel as u64,
            messages,
            has_more,
        })?))
    }

    /// Typing travels like a message but is never stored: to the peer alone, or to the
    /// room's other members.
    async fn relay_typing(
        &self,
        peer: Option<String>,
        room: Option<u64>,
        typing: bool,
    ) -> Result<Option<ByteString>, AppError> {
        let conversation = Conversation::of(peer.as_deref(), room)?;
        let from = self.me.username.clone();
        let room = match &conversation {
            Conversation::Room(room) => Some(*room),
            Conversation::Peer(_) => None,
        };
        let frame = if typing {
            ServerFrame::Typing { from, room }
        } else {
            ServerFrame::DoneTyping { from, room }
        };
        match conversation {
            Conversation::Peer(name) => {
                let peer = self.peer(&name).await?;
                self.state
                    .publisher
                    .to_user(peer.id, &frame, None, None)
                    .await?;
            }
            Conversation::Room(room) => {
                let room = room_id(room)?;
                if !self.state.hub.is_member(self.me.id, room) {
                    return Err(not_a_member());
                }
                self.state
                    .publisher
                    .to_room(room, &frame, self.me.id)
                    .await?;
            }
        }
        Ok(None)
    }

    /// Stores how far the user has read a conversation and tells their every device
    /// (this one included) with a `read` frame.
    async fn mark_read(
        &mut self,
        conversation: Conversation,
        up_to: MessageId,
    ) -> Result<Option<ByteString>, AppError> {
        let (channel, peer, room) = match conversation {
            Conversation::Peer(name) => {
                let peer = self.peer(&name).await?;
                (self.channel(&peer).await?, Some(peer.username), None)
            }
            Conversation::Room(room) => {
                let channel = self.member_channel(room_id(room)?).await?;
                (channel, None, Some(room))
            }
        };
        let now = self
            .state
            .db
            .mark_read(self.me.id, channel, i64::from(up_to))
            .await?;
        let up_to = MessageId::try_from(now)
            .map_err(|e| AppError::Internal(format!("a read mark out of range: {e}")))?;
        let frame = ServerFrame::Read { peer, room, up_to };
        self.state
            .publisher
            .to_user(self.me.id, &frame, None, None)
            .await?;
        Ok(None)
    }

    /// Returns once the message is committed and published (or could not be); the
    /// sender's acknowledgement arrives through its user channel like every delivery.
    async fn send_message(
        &mut self,
        to: Recipient,
        channel_id: i64,
        text: String,
        client_id: Option<String>,
    ) -> Result<Option<ByteString>, AppError> {
        let stored = self
            .state
            .writer
            .write(NewMessage {
                sender: self.me.clone(),
                to,
                channel_id,
                client_id,
                text,
            })
            .await;
        match stored {
            Ok(Stored::New(_)) => {
                self.state.metrics.messages_stored.inc();
                Ok(None)
            }
            // Published again: the acknowledgement arrives on the user channel, like every
            // delivery.
            Ok(Stored::Duplicate(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn peer(&self, name: &str) -> Result<User, AppError> {
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

    /// A room's channel, checked in MySQL the first time; the writer checks membership
    /// of every message.
    async fn room_channel(&mut self, room: i64) -> Result<i64, AppError> {
        if let Some(id) = self.channels.get(&-room) {
            return Ok(*id);
        }
        let id = self.member_channel(room).await?;
        self.channels.insert(-room, id);
        Ok(id)
    }

    /// A room's channel if the user is a member now, checked in MySQL each time.
    async fn member_channel(&self, room: i64) -> Result<i64, AppError> {
        self.state
            .db
            .room_channel(room, self.me.id)
            .await?
            .ok_or_else(not_a_member)
    }
}

/// The answer for a room that does not exist or is not the user's: the two are not told
/// apart.
pub(super) fn not_a_member() -> AppError {
    AppError::client(ErrorCode::NotAMember, "no such room among yours")
}

/// A room id from the wire; one MySQL cannot hold is no room of anyone's.
pub(super) fn room_id(room: u64) -> Result<i64, AppError> {
    i64::try_from(room).map_err(|_| not_a_member())
}

/// The `updateUsers` frame, written from the node's shared names: the JSON of
/// [`ServerFrame::UpdateUsers`] (a test compares them) without a `String` per user.
fn update_users(
    names: &[Arc<str>],
    online: &[bool],
    unread: &HashMap<&str, u64>,
) -> Result<ByteString, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Listed<'a> {
        username: &'a str,
        online: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        unread: Option<u64>,
    }
    #[derive(serde::Serialize)]
    #[serde(tag = "type", rename = "updateUsers")]
    struct UpdateUsers<'a> {
        users: Vec<Listed<'a>>,
    }
    let users = names
        .iter()
        .zip(online)
        .map(|(username, online)| Listed {
            username,
            online: *online,
            unread: unread.get(&**username).copied(),
        })
        .collect();
    // About 40 bytes a user: one allocation for the whole frame.
    let mut json = Vec::with_capacity(32 + names.len() * 48);
    serde_json::to_writer(&mut json, &UpdateUsers { users })?;
    ByteString::try_from(json).map_err(serde::ser::Error::custom)
}

/// A reply that could not be encoded is a bug: log it and close with 1011.
fn encoded(reply: Result<ByteString, serde_json::Error>) -> Result<Option<Frame>, Closing> {
    match reply {
        Ok(text) => Ok(Some(Frame::Text(text))),
        Err(e) => {
            tracing::error!(error = %e, "could not encode a reply");
            Err(INTERNAL)
        }
    }
}

/// Cuts `messages` to those whose JSON fits in [`REPLY_MAX_BYTES`], at least one, keeping
/// the newest or the oldest; true when it cut any.
fn fit(messages: &mut Vec<ChatMessage>, keep_newest: bool) -> bool {
    let mut left = REPLY_MAX_BYTES;
    let mut fits = |m: &&ChatMessage| {
        let len = json_len(m);
        let fits = len <= left;
        left = left.saturating_sub(len);
        fits
    };
    let kept = if keep_newest {
        messages.iter().rev().take_while(&mut fits).count()
    } else {
        messages.iter().take_while(&mut fits).count()
    };
    let kept = kept.max(1);
    if kept >= messages.len() {
        return false;
    }
    if keep_newest {
        messages.drain(..messages.len() - kept);
    } else {
        messages.truncate(kept);
    }
    true
}

/// The length of a message's JSON, counted without building it.
fn json_len(message: &ChatMessage) -> usize {
    struct Count(usize);
    impl io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A message that cannot be serialised fails the whole reply later, with its error.
    let _ = serde_json::to_writer(&mut count, message);
    count.0
}

#[cfg(test)]
mod tests {
    use chat_common::protocol::UserStatus;

    use super::*;

    fn message(id: u64, text: &str) -> ChatMessage {
        ChatMessage {
            id: MessageId::new(id).unwrap(),
            channel: 1,
            room: None,
            from: "ann".into(),
            to: Some("ben".into()),
            text: text.into(),
            sent_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
            client_id: None,
        }
    }

    fn ids(messages: &[ChatMessage]) -> Vec<u64> {
        messages.iter().map(|m| m.id.get()).collect()
    }

    #[test]
    fn update_users_is_the_protocol_frame() {
        let names: Vec<Arc<str>> = vec!["ann".into(), "b\"en".into()];
        let unread = HashMap::from([("ann", 3)]);
        let ours = update_users(&names, &[true, false], &unread).unwrap();
        let theirs = frame_text(&ServerFrame::UpdateUsers {
            users: vec![
                UserStatus {
                    username: "ann".into(),
                    online: true,
                    unread: Some(3),
                },
                UserStatus {
                    username: "b\"en".into(),
                    online: false,
                    unread: None,
                },
            ],
        })
        .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn json_len_is_the_length_of_the_json() {
        let m = message(7, "a \u{1} \"quoted\" é");
        assert_eq!(json_len(&m), serde_json::to_string(&m).unwrap().len());
    }

    #[test]
    fn replies_keep_what_fits_from_the_end_the_client_pages_from() {
        // Control characters are escaped as \u00XX: six bytes each on the wire.
        let long = "\u{1}".repeat(4000);
        let each = json_len(&message(1, &long));
        let fitting = REPLY_MAX_BYTES / each;
        let page: Vec<ChatMessage> = (1..=500).map(|id| message(id, &long)).collect();

        let mut sync = page.clone();
        assert!(fit(&mut sync, false));
        assert_eq!(ids(&sync), (1..=fitting as u64).collect::<Vec<_>>());

        let mut history = page.clone();
        assert!(fit(&mut history, true));
        assert_eq!(
            ids(&history),
            (501 - fitting as u64..=500).collect::<Vec<_>>()
        );

        let mut small: Vec<ChatMessage> = (1..=500).map(|id| message(id, "hi")).collect();
        assert!(!fit(&mut small, false), "500 short messages fit");
        assert_eq!(small.len(), 500);
    }

    #[test]
    fn a_reply_always_carries_one_message_so_paging_moves_on() {
        let huge = "\u{1}".repeat(REPLY_MAX_BYTES);
        let mut one = vec![message(1, &huge), message(2, "x")];
        assert!(fit(&mut one, false));
        assert_eq!(ids(&one), [1]);
        let mut none: Vec<ChatMessage> = Vec::new();
        assert!(!fit(&mut none, true));
    }
}
