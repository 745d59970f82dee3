//! Accounts and the user directory.

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel_async::RunQueryDsl;

use super::schema::{channels, users};
use super::{Db, StoreError};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
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

    /// Everyone this user has a conversation with.
    pub async fn peers(&self, user_id: i64) -> Result<Vec<String>, StoreError> {
        let (low, high): (Vec<String>, Vec<String>) = self
            .run(async |conn| {
                let low = channels::table
                    .inner_join(users::table.on(users::id.eq(channels::user_high)))
                    .filter(channels::user_low.eq(user_id))
                    .select(users::username)
                    .load(conn)
                    .await?;
                let high = channels::table
                    .inner_join(users::table.on(users::id.eq(channels::user_low)))
                    .filter(channels::user_high.eq(user_id))
                    .select(users::username)
                    .load(conn)
                    .await?;
                Ok((low, high))
            })
            .await?;
        let mut all = low;
        all.extend(high);
        all.sort_by_key(|name| name.to_ascii_lowercase());
        Ok(all)
    }

    /// The `updateUsers` list: every user while they fit in `limit`; past that the user's
    /// conversation peers first, then the others by username, `limit` in all.
    pub async fn directory(&self, me: &User, limit: usize) -> Result<Directory, StoreError> {
        let wanted = i64::try_from(limit).map_err(|e| StoreError::Range(e.to_string()))?;
        // One name past the limit tells whether everyone fits, without a COUNT(*) that
        // InnoDB answers by scanning an index.
        let mut by_name = self.usernames_page(None, wanted + 1).await?;
        if by_name.len() <= limit {
            return Ok(Directory {
                names: by_name,
                complete: true,
            });
        }
        by_name.truncate(limit);
        let mut names = self.peers(me.id).await?;
        names.truncate(limit);
        let room = limit - names.len();
        // At most `limit - room` of the first `limit` names are peers, so `room` others
        // remain among them.
        let known: std::collections::HashSet<String> =
            names.iter().map(|n| n.to_ascii_lowercase()).collect();
        names.extend(
            by_name
                .into_iter()
                .filter(|n| !known.contains(&n.to_ascii_lowercase()))
                .take(room),
        );
        Ok(Directory {
            names,
            complete: false,
        })
    }
}

/// The users an `updateUsers` frame lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directory {
    pub names: Vec<String>,
    /// Every user is listed, so the socket should follow everyone's presence.
    pub complete: bool,
}
