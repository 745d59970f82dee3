//! Accounts and the user directory.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::RunQueryDsl;

use super::schema::{channels, users};
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

    /// Everyone this user has a conversation with, one-to-one or in a room, in directory
    /// order.
    pub async fn peers(&self, user_id: i64) -> Result<Vec<User>, StoreError> {
        let (low, high): (Vec<User>, Vec<User>) = self
            .run(async |conn| {
                let low = channels::table
                    .inner_join(users::table.on(users::id.nullable().eq(channels::user_high)))
                    .filter(channels::user_low.eq(user_id))
                    .select(User::as_select())
                    .load(conn)
                    .await?;
                let mut high = channels::table
                    .inner_join(users::table.on(users::id.nullable().eq(channels::user_low)))
                    .filter(channels::user_high.eq(user_id))
                    .select(User::as_select())
                    .load(conn)
                    .await?;
                // Room members count as conversation peers (for presence).
                let co_members: Vec<User> = diesel::sql_query(
                    "SELECT DISTINCT u.id, u.username FROM room_members me \
                     JOIN room_members rm ON rm.room_id = me.room_id AND rm.user_id <> me.user_id \
                     JOIN users u ON u.id = rm.user_id WHERE me.user_id = ?",
                )
                .bind::<diesel::sql_types::BigInt, _>(user_id)
                .load(conn)
                .await?;
                high.extend(co_members);
                Ok((low, high))
            })
            .await?;
        let mut all = low;
        all.extend(high);
        all.sort_by(|a, b| directory_order(&a.username, &b.username));
        all.dedup_by_key(|u| u.id);
        Ok(all)
    }
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
