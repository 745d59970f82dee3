//! Conversations and reading their messages. Messages are written by [`super::writer`].

use std::sync::LazyLock;

use chat_common::protocol::ChatMessage;
use chat_common::MessageId;
use chrono::NaiveDateTime;
use diesel::mysql::Mysql;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Nullable, Text, Varchar};
use diesel_async::RunQueryDsl;

use super::prepared::Prepared;
use super::schema::channels;
use super::users::User;
use super::{Db, StoreError};

/// A message row with its names resolved, as history and `sync` read it.
#[derive(QueryableByName)]
struct WireRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    room_id: Option<i64>,
    #[diesel(sql_type = Varchar)]
    sender: String,
    #[diesel(sql_type = Nullable<Varchar>)]
    recipient: Option<String>,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Datetime)]
    sent_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Varchar>)]
    client_id: Option<String>,
}

impl WireRow {
    fn into_wire(self) -> Result<ChatMessage, StoreError> {
        to_wire(Wire {
            id: self.id,
            channel: self.channel_id,
            room: self.room_id,
            from: &self.sender,
            to: self.recipient.as_deref(),
            text: self.body,
            sent_at: self.sent_at,
            client_id: self.client_id,
        })
    }
}

/// A message row of a one-to-one conversation, whose two users the caller knows.
#[derive(QueryableByName)]
struct PeerRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    sender_id: i64,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Datetime)]
    sent_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Varchar>)]
    client_id: Option<String>,
}

/// What a wire message is made of, wherever it was read or written.
pub(super) struct Wire<'a> {
    pub id: i64,
    pub channel: i64,
    pub room: Option<i64>,
    pub from: &'a str,
    pub to: Option<&'a str>,
    pub text: String,
    pub sent_at: NaiveDateTime,
    pub client_id: Option<String>,
}

fn range(e: impl std::fmt::Display) -> StoreError {
    StoreError::Range(e.to_string())
}

pub(super) fn to_wire(w: Wire<'_>) -> Result<ChatMessage, StoreError> {
    Ok(ChatMessage {
        id: MessageId::try_from(w.id).map_err(range)?,
        channel: u64::try_from(w.channel).map_err(range)?,
        room: w.room.map(u64::try_from).transpose().map_err(range)?,
        from: w.from.to_owned(),
        to: w.to.map(str::to_owned),
        text: w.text,
        sent_at: w.sent_at.and_utc(),
        client_id: w.client_id,
    })
}

/// The columns of [`WireRow`] for the message rows `m` picked by a subquery `mine`.
const WIRE_SELECT: &str = "SELECT m.id, m.channel_id, ro.id AS room_id, s.username AS sender, \
        r.username AS recipient, m.body, m.sent_at, m.client_id \
     FROM mine JOIN messages m ON m.id = mine.id \
     JOIN users s ON s.id = m.sender_id \
     LEFT JOIN users r ON r.id = m.recipient_id \
     LEFT JOIN rooms ro ON ro.channel_id = m.channel_id";

/// One page of a conversation: fixed text, so it stays prepared (see [`Prepared`]).
static HISTORY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH mine AS (SELECT id FROM messages FORCE INDEX (messages_channel_id_idx) \
           WHERE channel_id = ? AND id < ? ORDER BY id DESC LIMIT ?) \
         {WIRE_SELECT} ORDER BY m.id DESC"
    )
});

/// One page of a one-to-one conversation: one range scan, no join (both names are known).
const PEER_HISTORY: &str = "SELECT id, sender_id, body, sent_at, client_id \
     FROM messages FORCE INDEX (messages_channel_id_idx) \
     WHERE channel_id = ? AND id < ? ORDER BY id DESC LIMIT ?";

impl Db {
    /// The conversation of two distinct users, created on first use.
    pub async fn channel_between(&self, a: i64, b: i64) -> Result<i64, StoreError> {
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        self.run(async |conn| {
            diesel::insert_or_ignore_into(channels::table)
                .values((channels::user_low.eq(low), channels::user_high.eq(high)))
                .execute(conn)
                .await?;
            channels::table
                .filter(channels::user_low.eq(low).and(channels::user_high.eq(high)))
                .select(channels::id)
                .first(conn)
                .await
        })
        .await
    }

    /// The newest `limit` messages of a room's conversation older than `before`, oldest
    /// first, and whether older ones remain (one-to-one: [`Self::peer_history`]).
    pub async fn history(
        &self,
        channel_id: i64,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        // Without the hint MariaDB may pick a `ref` scan of the whole channel and skip the
        // rows newer than `before`; the hint keeps it one range scan of LIMIT rows (see
        // docs/design.md).
        let (rows, has_more) = self
            .page::<WireRow>(&HISTORY, channel_id, before, limit)
            .await?;
        let messages = rows
            .into_iter()
            .map(WireRow::into_wire)
            .collect::<Result<_, _>>()?;
        Ok((messages, has_more))
    }

    /// The rows of a page query (`?`s: channel, before, `limit + 1`), oldest first, at
    /// most `limit` of them, and whether older ones remain.
    async fn page<R>(
        &self,
        sql: &'static str,
        channel_id: i64,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<R>, bool), StoreError>
    where
        R: QueryableByName<Mysql> + Send + 'static,
    {
        let query = Prepared::new(
            sql,
            vec![
                channel_id,
                before.map_or(i64::MAX, i64::from),
                i64::from(limit) + 1,
            ],
        );
        let mut rows: Vec<R> = self.run(async |conn| query.load(conn).await).await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        rows.reverse();
        Ok((rows, has_more))
    }

    /// Like [`Self::history`] for the one-to-one conversation `channel_id` of `me` and
    /// `peer`: names come from the two users instead of joins, which halves MariaDB's
    /// time per page (it plans a prepared statement again on every execution).
    pub async fn peer_history(
        &self,
        channel_id: i64,
        (me, peer): (&User, &User),
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let (rows, has_more) = self
            .page::<PeerRow>(PEER_HISTORY, channel_id, before, limit)
            .await?;
        let messages = rows
            .into_iter()
            .map(|row| {
                let (from, to) = if row.sender_id == me.id {
                    (me, peer)
                } else if row.sender_id == peer.id {
                    (peer, me)
                } else {
                    return Err(StoreError::Range(format!(
                        "message {} of channel {channel_id} is from user {}",
                        row.id, row.sender_id
                    )));
                };
                to_wire(Wire {
                    id: row.id,
                    channel: channel_id,
                    room: None,
                    from: &from.username,
                    to: Some(&to.username),
                    text: row.body,
                    sent_at: row.sent_at,
                    client_id: row.client_id,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok((messages, has_more))
    }

    /// Every message of the user's conversations after `after`, oldest first.
    pub async fn sync(
        &self,
        user_id: i64,
        after: MessageId,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let after = i64::from(after);
        let fetch = i64::from(limit) + 1;
        let rooms = self.room_channels(user_id).await?;
        // Range scans of at most `limit + 1` rows each: what the user sent, what they
        // received, and each of their rooms (at most the rooms-per-user limit), merged.
        // `UNION` drops a room message the user sent, which two scans find.
        let mut scans = vec![
            "(SELECT id FROM messages FORCE INDEX (messages_sender_id_idx) \
              WHERE sender_id = ? AND id > ? ORDER BY id LIMIT ?)"
                .to_owned(),
            "(SELECT id FROM messages FORCE INDEX (messages_recipient_id_idx) \
              WHERE recipient_id = ? AND id > ? ORDER BY id LIMIT ?)"
                .to_owned(),
        ];
        scans.extend(rooms.iter().map(|_| {
            "(SELECT id FROM messages FORCE INDEX (messages_channel_id_idx) \
              WHERE channel_id = ? AND id > ? ORDER BY id LIMIT ?)"
                .to_owned()
        }));
        let sql = format!(
            "WITH mine AS ({}) {WIRE_SELECT} ORDER BY m.id LIMIT ?",
            scans.join(" UNION ")
        );
        let mut query = diesel::sql_query(sql)
            .into_boxed::<diesel::mysql::Mysql>()
            .bind::<BigInt, _>(user_id)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(fetch)
            .bind::<BigInt, _>(user_id)
            .bind::<BigInt, _>(after)
            .bind::<BigInt, _>(fetch);
        for channel in rooms {
            query = query
                .bind::<BigInt, _>(channel)
                .bind::<BigInt, _>(after)
                .bind::<BigInt, _>(fetch);
        }
        let query = query.bind::<BigInt, _>(fetch);
        let mut rows: Vec<WireRow> = self.run(async |conn| query.load(conn).await).await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let messages = rows
            .into_iter()
            .map(WireRow::into_wire)
            .collect::<Result<_, _>>()?;
        Ok((messages, has_more))
    }
}
