//! Conversations and their messages.
//!
//! Ordering guarantee: a message is inserted while its transaction holds the row locks of
//! both members (taken in id order, so no deadlock). Every message a user can see is
//! therefore allocated its AUTO_INCREMENT id after all earlier messages of that user
//! committed, so `sync` from the highest id a client saw never skips one.

use chat_common::protocol::ChatMessage;
use chat_common::MessageId;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Nullable, Text, Varchar};
use diesel_async::scoped_futures::ScopedFutureExt;
use diesel_async::{AsyncConnection, RunQueryDsl};

use super::schema::{channels, messages, users};
use super::users::{LastId, User};
use super::{Db, StoreError};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = messages)]
struct MessageRow {
    id: i64,
    channel_id: i64,
    sender_id: i64,
    client_id: Option<String>,
    body: String,
    sent_at: NaiveDateTime,
}

#[derive(QueryableByName)]
struct SyncRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Varchar)]
    sender: String,
    #[diesel(sql_type = Varchar)]
    recipient: String,
    #[diesel(sql_type = Text)]
    body: String,
    #[diesel(sql_type = Datetime)]
    sent_at: NaiveDateTime,
    #[diesel(sql_type = Nullable<Varchar>)]
    client_id: Option<String>,
}

/// What `store_message` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    New(ChatMessage),
    /// The sender's `clientId` was already stored: the original, to acknowledge again.
    Duplicate(ChatMessage),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreMessageError {
    #[error("clientId was already used in another conversation")]
    ClientIdReused,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn to_wire(
    id: i64,
    channel: i64,
    from: &str,
    to: &str,
    text: String,
    sent_at: NaiveDateTime,
    client_id: Option<String>,
) -> Result<ChatMessage, StoreError> {
    Ok(ChatMessage {
        id: MessageId::try_from(id).map_err(|e| StoreError::Range(e.to_string()))?,
        channel: u64::try_from(channel).map_err(|e| StoreError::Range(e.to_string()))?,
        from: from.to_owned(),
        to: to.to_owned(),
        text,
        sent_at: sent_at.and_utc(),
        client_id,
    })
}

impl From<diesel::result::Error> for StoreMessageError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(e.into())
    }
}

impl MessageRow {
    fn into_wire(self, me: &User, peer: &User) -> Result<ChatMessage, StoreError> {
        let (from, to) = if self.sender_id == me.id {
            (me, peer)
        } else {
            (peer, me)
        };
        to_wire(
            self.id,
            self.channel_id,
            &from.username,
            &to.username,
            self.body,
            self.sent_at,
            self.client_id,
        )
    }
}

/// Now, cut to the microseconds MySQL keeps, so the acknowledgement equals the stored row.
fn now_micros() -> NaiveDateTime {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros())
        .unwrap_or(now)
        .naive_utc()
}

impl Db {
    /// The conversation of two distinct users, created on first use.
    pub async fn channel_between(&self, a: i64, b: i64) -> Result<i64, StoreError> {
        let (low, high) = if a < b { (a, b) } else { (b, a) };
        let mut conn = self.conn().await?;
        diesel::insert_or_ignore_into(channels::table)
            .values((channels::user_low.eq(low), channels::user_high.eq(high)))
            .execute(&mut conn)
            .await?;
        Ok(channels::table
            .filter(channels::user_low.eq(low).and(channels::user_high.eq(high)))
            .select(channels::id)
            .first(&mut conn)
            .await?)
    }

    pub async fn store_message(
        &self,
        sender: &User,
        peer: &User,
        channel_id: i64,
        client_id: Option<&str>,
        text: &str,
    ) -> Result<Stored, StoreMessageError> {
        let mut conn = self.conn().await?;
        let (low, high) = if sender.id < peer.id {
            (sender.id, peer.id)
        } else {
            (peer.id, sender.id)
        };
        let sent_at = now_micros();
        let result = conn
            .transaction::<_, StoreMessageError, _>(|conn| {
                async move {
                    users::table
                        .filter(users::id.eq_any([low, high]))
                        .order(users::id)
                        .select(users::id)
                        .for_update()
                        .load::<i64>(conn)
                        .await
                        .map_err(StoreError::from)?;
                    if let Some(cid) = client_id {
                        let existing = messages::table
                            .filter(messages::sender_id.eq(sender.id))
                            .filter(messages::client_id.eq(cid))
                            .select(MessageRow::as_select())
                            .first(conn)
                            .await
                            .optional()
                            .map_err(StoreError::from)?;
                        if let Some(row) = existing {
                            if row.channel_id != channel_id {
                                return Err(StoreMessageError::ClientIdReused);
                            }
                            return Ok(Stored::Duplicate(row.into_wire(sender, peer)?));
                        }
                    }
                    diesel::insert_into(messages::table)
                        .values((
                            messages::channel_id.eq(channel_id),
                            messages::sender_id.eq(sender.id),
                            messages::client_id.eq(client_id),
                            messages::body.eq(text),
                            messages::sent_at.eq(sent_at),
                        ))
                        .execute(conn)
                        .await
                        .map_err(StoreError::from)?;
                    let id = diesel::sql_query("SELECT CAST(LAST_INSERT_ID() AS SIGNED) AS id")
                        .get_result::<LastId>(conn)
                        .await
                        .map_err(StoreError::from)?
                        .id;
                    let row = MessageRow {
                        id,
                        channel_id,
                        sender_id: sender.id,
                        client_id: client_id.map(str::to_owned),
                        body: text.to_owned(),
                        sent_at,
                    };
                    Ok(Stored::New(row.into_wire(sender, peer)?))
                }
                .scope_boxed()
            })
            .await?;
        Ok(result)
    }

    /// The newest `limit` messages of the conversation older than `before`, oldest first,
    /// and whether older ones remain.
    pub async fn history(
        &self,
        channel_id: i64,
        me: &User,
        peer: &User,
        before: Option<MessageId>,
        limit: u32,
    ) -> Result<(Vec<ChatMessage>, bool), StoreError> {
        let mut conn = self.conn().await?;
        // Without the hint MariaDB may pick a `ref` scan of the whole channel and skip the
        // rows newer than `before`; the hint keeps it one range scan of LIMIT rows (see
        // docs/design.md).
        let mut rows: Vec<MessageRow> = diesel::sql_query(
            "SELECT id, channel_id, sender_id, client_id, body, sent_at \
             FROM messages FORCE INDEX (messages_channel_id_idx) \
             WHERE channel_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
        )
        .bind::<BigInt, _>(channel_id)
        .bind::<BigInt, _>(before.map_or(i64::MAX, i64::from))
        .bind::<BigInt, _>(i64::from(limit) + 1)
        .load(&mut conn)
        .await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        rows.reverse();
        let messages = rows
            .into_iter()
            .map(|r| r.into_wire(me, peer))
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
        let mut conn = self.conn().await?;
        let mut rows: Vec<SyncRow> = diesel::sql_query(
            "SELECT m.id, m.channel_id, s.username AS sender, r.username AS recipient, \
                    m.body, m.sent_at, m.client_id \
             FROM messages m \
             JOIN channels c ON c.id = m.channel_id \
             JOIN users s ON s.id = m.sender_id \
             JOIN users r ON r.id = IF(c.user_low = m.sender_id, c.user_high, c.user_low) \
             WHERE (c.user_low = ? OR c.user_high = ?) AND m.id > ? \
             ORDER BY m.id LIMIT ?",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<BigInt, _>(user_id)
        .bind::<BigInt, _>(i64::from(after))
        .bind::<BigInt, _>(i64::from(limit) + 1)
        .load(&mut conn)
        .await?;
        let has_more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let messages = rows
            .into_iter()
            .map(|r| {
                to_wire(
                    r.id,
                    r.channel_id,
                    &r.sender,
                    &r.recipient,
                    r.body,
                    r.sent_at,
                    r.client_id,
                )
            })
            .collect::<Result<_, _>>()?;
        Ok((messages, has_more))
    }
}
