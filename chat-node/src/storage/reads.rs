//! How far each user has read each conversation, for unread counts on every device.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;

use super::{Db, StoreError};

/// Unread counts stop at this: a badge shows "99+", and counting a never-read
/// conversation of a million messages would cost a million index entries per connect.
pub const UNREAD_CAP: u64 = 100;

#[derive(QueryableByName)]
struct Unread {
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = BigInt)]
    unread: i64,
}

impl Db {
    /// Moves the user's read position in `channel_id` forward to `up_to` (never back);
    /// returns where it is now.
    pub async fn mark_read(
        &self,
        user_id: i64,
        channel_id: i64,
        up_to: i64,
    ) -> Result<i64, StoreError> {
        self.run(async |conn| {
            diesel::sql_query(
                "INSERT INTO read_marks (user_id, channel_id, up_to) VALUES (?, ?, ?) \
                 ON DUPLICATE KEY UPDATE up_to = GREATEST(up_to, VALUES(up_to))",
            )
            .bind::<BigInt, _>(user_id)
            .bind::<BigInt, _>(channel_id)
            .bind::<BigInt, _>(up_to)
            .execute(conn)
            .await?;
            super::schema::read_marks::table
                .find((user_id, channel_id))
                .select(super::schema::read_marks::up_to)
                .first(conn)
                .await
        })
        .await
    }

    /// Messages from others after the user's read position, per channel, each count at
    /// most [`UNREAD_CAP`]: one range scan of `(channel_id, id)` per channel. Channels
    /// with nothing unread are left out.
    pub async fn unread(
        &self,
        user_id: i64,
        channels: &[i64],
    ) -> Result<HashMap<i64, u64>, StoreError> {
        if channels.is_empty() {
            return Ok(HashMap::new());
        }
        let scans: Vec<String> = channels
            .iter()
            .map(|_| {
                "(SELECT CAST(? AS SIGNED) AS channel_id, COUNT(*) AS unread FROM (SELECT m.sender_id \
                   FROM messages m FORCE INDEX (messages_channel_id_idx) \
                   WHERE m.channel_id = ? AND m.id > COALESCE((SELECT up_to FROM read_marks \
                     WHERE user_id = ? AND channel_id = ?), 0) \
                   ORDER BY m.id LIMIT ?) t WHERE t.sender_id <> ?)"
                    .to_owned()
            })
            .collect();
        let mut query =
            diesel::sql_query(scans.join(" UNION ALL ")).into_boxed::<diesel::mysql::Mysql>();
        let cap = UNREAD_CAP as i64;
        for channel in channels {
            query = query
                .bind::<BigInt, _>(*channel)
                .bind::<BigInt, _>(*channel)
                .bind::<BigInt, _>(user_id)
                .bind::<BigInt, _>(*channel)
                .bind::<BigInt, _>(cap)
                .bind::<BigInt, _>(user_id);
        }
        let rows: Vec<Unread> = self.run(async |conn| query.load(conn).await).await?;
        Ok(rows
            .into_iter()
            .filter(|r| r.unread > 0)
            .map(|r| (r.channel_id, r.unread.unsigned_abs()))
            .collect())
    }
}
