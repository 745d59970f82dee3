//! What the room frames do: `createRoom`, `addMembers`, `removeMember`. Each change is
//! made in MySQL under the sequence lock and announced before the lock is released
//! (`storage::rooms`); the answer, a `room` frame with the request's `clientId` as `ref`,
//! reaches the sender's sockets through that announcement, like every member's.

use std::collections::HashSet;

use bytestring::ByteString;
use chat_common::ErrorCode;

use super::frames::Connection;
use crate::error::AppError;
use crate::storage::rooms::Change;
use crate::storage::users::User;

/// Rooms a user may create count over this window.
const CREATION_WINDOW_SECS: u64 = 60;

impl Connection {
    pub(super) async fn create_room(
        &mut self,
        name: String,
        members: Vec<String>,
        client_id: Option<String>,
    ) -> Result<Option<ByteString>, AppError> {
        let state = &self.state;
        let users = self.resolve_all(&members).await?;
        let key = state.redis.keys.room_creations(self.me.id);
        let limit = state.limits.room_creations_per_minute;
        if let Some(after) = state
            .redis
            .count_attempt(&[(key, limit)], CREATION_WINDOW_SECS)
            .await?
        {
            return Err(AppError::retry_later(
                ErrorCode::RateLimited,
                format!("at most {limit} new rooms a minute"),
                after,
            ));
        }
        let publisher = &state.publisher;
        let by = self.me.id;
        state
            .db
            .create_room(
                &self.me,
                &name,
                &users,
                state.limits.rooms,
                async |change| announce(publisher, change, by, client_id).await,
            )
            .await?;
        Ok(None)
    }

    pub(super) async fn add_members(
        &mut self,
        room: i64,
        members: Vec<String>,
        client_id: Option<String>,
    ) -> Result<Option<ByteString>, AppError> {
        let state = &self.state;
        let users = self.resolve_all(&members).await?;
        let publisher = &state.publisher;
        let by = self.me.id;
        state
            .db
            .add_members(room, &self.me, &users, state.limits.rooms, async |change| {
                announce(publisher, change, by, client_id).await
            })
            .await?;
        Ok(None)
    }

    pub(super) async fn remove_member(
        &mut self,
        room: i64,
        username: &str,
        client_id: Option<String>,
    ) -> Result<Option<ByteString>, AppError> {
        let state = &self.state;
        let target = state.resolve_user(username).await?;
        let publisher = &state.publisher;
        let by = self.me.id;
        state
            .db
            .remove_member(room, &self.me, &target, async |change| {
                announce(publisher, change, by, client_id).await
            })
            .await?;
        Ok(None)
    }

    /// Every named user, or `unknown_user` for the first that does not exist. A list
    /// naming more users than a room may hold is `room_full` before any is looked up, so
    /// a 64 KiB frame of names costs no thousands of queries.
    async fn resolve_all(&self, names: &[String]) -> Result<Vec<User>, AppError> {
        let max = self.state.limits.rooms.max_members;
        let distinct: HashSet<String> = names.iter().map(|n| n.to_ascii_lowercase()).collect();
        if distinct.len() > max {
            return Err(AppError::client(
                ErrorCode::RoomFull,
                format!("a room has at most {max} members"),
            ));
        }
        let mut users = Vec::with_capacity(distinct.len());
        for name in names {
            users.push(self.state.resolve_user(name).await?);
        }
        Ok(users)
    }
}

/// Publishes a committed change; false (logged) when Redis did not take it.
async fn announce(
    publisher: &crate::bus::Publisher,
    change: &Change,
    by: i64,
    reference: Option<String>,
) -> bool {
    match publisher.room_change(change, by, reference).await {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(error = %e, room = change.room.id, "announcing a room change failed");
            false
        }
    }
}
