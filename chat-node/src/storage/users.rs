//! Accounts and the user directory.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::RunQueryDsl;

use super::prepared::Prepared;
use super::schema::users;
use super::{Db, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub username: String,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserWithHash {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("username taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Db {
    pub async fn create_user(&self, username: &str, hash: &str) -> Result<User, CreateUserError> {
        let created = self
            .run(async |conn| {
                diesel::insert_into(users::table)
                    .values((users::username.eq(username), users::password_hash.eq(hash)))
                    .execute(conn)
                    .await?;
                users::table
                    .filter(users::username.eq(username))
                    .select(User::as_select())
                    .first(conn)
                    .await
            })
            .await;
        match created {
            Err(StoreError::Query(DieselError::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _,
            ))) => Err(CreateUserError::Taken),
            other => Ok(other?),
        }
    }

    /// Case-insensitive, through the column's collation.
    pub async fn user_with_hash(&self, username: &str) -> Result<Option<UserWithHash>, StoreError> {
        self.run(async |conn| {
            users::table
                .filter(users::username.eq(username))
                .select(UserWithHash::as_select())
                .first(conn)
                .await
                .optional()
        })
        .await
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.run(async |conn| {
            users::table
                .filter(users::username.eq(username))
                .select(User::as_select())
                .first(conn)
                .await
                .optional()
        })
        .await
    }

    pub async fn user_by_id(&self, id: i64) -> Result<Option<User>, StoreError> {
        self.run(async |conn| {
            users::table
                .find(id)
                .select(User::as_select())
                .first(conn)
                .await
                .optional()
        })
        .await
    }

    /// Usernames after `after` in directory order, at most `limit`.
    pub async fn usernames_page(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let mut query = users::table
            .select(users::username)
            .order(users::username.asc())
            .limit(limit)
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(users::username.gt(after.to_owned()));
        }
        self.run(async |conn| query.load(conn).await).await
    }

    /// The first `limit` users in directory order: what a node shares between its sockets.
    pub async fn directory_head(&self, limit: usize) -> Result<Vec<User>, StoreError> {
        let limit = i64::try_from(limit).map_err(|e| StoreError::Range(e.to_string()))?;
        self.run(async |conn| {
            users::table
                .select(User::as_select())
                .order(users::username.asc())
                .limit(limit)
                .load(conn)
                .await
        })
        .await
    }

    /// The user's conversations, in one statement kept prepared: a socket's set-up reads
    /// them for its directory listing, its presence and its unread counts.
    pub async fn conversations(&self, user_id: i64) -> Result<Conversations, StoreError> {
        #[derive(QueryableByName)]
        struct Row {
            /// `None` for someone met in a room.
            #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
            channel_id: Option<i64>,
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            id: i64,
            #[diesel(sql_type = diesel::sql_types::Varchar)]
            username: String,
        }
        let query = Prepared::new(
            "SELECT c.id AS channel_id, u.id, u.username FROM channels c \
               JOIN users u ON u.id = c.user_high WHERE c.user_low = ? \
             UNION ALL \
             SELECT c.id, u.id, u.username FROM channels c \
               JOIN users u ON u.id = c.user_low WHERE c.user_high = ? \
             UNION ALL \
             SELECT DISTINCT NULL, u.id, u.username FROM room_members me \
               JOIN room_members rm ON rm.room_id = me.room_id AND rm.user_id <> me.user_id \
               JOIN users u ON u.id = rm.user_id WHERE me.user_id = ?",
            vec![user_id, user_id, user_id],
        );
        let rows: Vec<Row> = self.run(async |conn| query.load(conn).await).await?;
        let mut conversations = Conversations::default();
        for row in rows {
            let user = User {
                id: row.id,
                username: row.username,
            };
            if let Some(channel) = row.channel_id {
                conversations.channels.push((channel, user.clone()));
            }
            conversations.peers.push(user);
        }
        conversations
            .peers
            .sort_by(|a, b| directory_order(&a.username, &b.username));
        conversations.peers.dedup_by_key(|u| u.id);
        Ok(conversations)
    }
}

/// What [`Db::conversations`] reads.
#[derive(Debug, Default)]
pub struct Conversations {
    /// Each one-to-one conversation: its channel and the other user.
    pub channels: Vec<(i64, User)>,
    /// Everyone the user has a conversation with, one-to-one or in a room, once each, in
    /// directory order.
    pub peers: Vec<User>,
}

/// The order of `users.username` (`ascii_general_ci` compares ASCII upper-cased, so `_`
/// sorts after letters), for lists merged outside MySQL.
pub fn directory_order(a: &str, b: &str) -> std::cmp::Ordering {
    a.bytes()
        .map(|c| c.to_ascii_uppercase())
        .cmp(b.bytes().map(|c| c.to_ascii_uppercase()))
}

#[cfg(test)]
mod tests {
    use super::directory_order;

    #[test]
    fn directory_order_is_mysqls_ascii_general_ci() {
        // `SELECT … ORDER BY u COLLATE ascii_general_ci` over the same names, on MariaDB.
        let mut names = ["b", "a~", "a_b", "AZ", "aab", "a0", "A.c", "a-z"];
        names.sort_by(|a, b| directory_order(a, b));
        assert_eq!(names, ["a-z", "A.c", "a0", "aab", "AZ", "a_b", "a~", "b"]);
    }
}
