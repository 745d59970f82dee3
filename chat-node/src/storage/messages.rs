//! Conversations and reading their messages. Messages are written by [`super::writer`].

use chat_common::protocol::ChatMessage;
use chat_common::MessageId;
use chrono::NaiveDateTime;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Datetime, Nullable, Text, Varchar};
use diesel_async::RunQueryDsl;

use super::prepared::Prepared;
use super::schema::{channels, messages};
use super::users::User;
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

pub(super) fn to_wire(
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
        // Without the hint MariaDB may pick a `ref` scan of the whole channel and skip the
        // rows newer than `before`; the hint keeps it one range scan of LIMIT rows (see
        // docs/design.md).
        let query = Prepared::new(
            "SELECT id, channel_id, sender_id, client_id, body, sent_at \
             FROM messages FORCE INDEX (messages_channel_id_idx) \
             WHERE channel_id = ? AND id < ? ORDER BY id DESC LIMIT ?",
            vec![
                channel_id,
                before.map_or(i64::MAX, i64::from),
                i64::from(limit) + 1,
            ],
        );
        let mut rows: Vec<MessageRow> = self.run(async |conn| query.load(conn).await).await?;
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
        let after = i64::from(after);
        let fetch = i64::from(limit) + 1;
        // Two range scans of at most `limit + 1` rows each (what the user sent, what they
        // received), merged: the cost never depends on the size of the user's history.
        let query = diesel::sql_query(
            "SELECT m.id, m.channel_id, s.username AS sender, r.username AS recipient, \
                    m.body, m.sent_at, m.client_id \
             FROM ((SELECT id FROM messages FORCE INDEX (messages_sender_id_idx) \
                    WHERE sender_id = ? AND id > ? ORDER BY id LIMIT ?) \
                   UNION ALL \
                   (SELECT id FROM messages FORCE INDEX (messages_recipient_id_idx) \
                    WHERE recipient_id = ? AND id > ? ORDER BY id LIMIT ?)) mine \
             JOIN messages m ON m.id = mine.id \
             JOIN users s ON s.id = m.sender_id \
             JOIN users r ON r.id = m.recipient_id \
             ORDER BY m.id LIMIT ?",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(fetch)
        .bind::<BigInt, _>(user_id)
        .bind::<BigInt, _>(after)
        .bind::<BigInt, _>(fetch)
        .bind::<BigInt, _>(fetch);
        let mut rows: Vec<SyncRow> = self.run(async |conn| query.load(conn).await).await?;
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
