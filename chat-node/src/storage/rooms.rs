//! Rooms and their members. Every change takes the writer's sequence lock and is
//! announced (published) before the lock is released, so membership changes sit in the
//! one global order with messages: a message stored after a member was removed is never
//! delivered to them, and the writer's membership check is exact (docs/design.md).

use std::collections::{HashMap, HashSet};

use chat_common::protocol::RoomInfo;
use diesel::dsl::count_star;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Varchar};
use diesel_async::{AsyncConnection, AsyncMysqlConnection, RunQueryDsl};

use super::prepared::Prepared;
use super::schema::{channels, room_members, rooms};
use super::users::User;
use super::{Db, StoreError};

/// How long a change waits for the sequence lock (the writer's batches hold it briefly).
const LOCK_WAIT_SECS: i64 = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub id: i64,
    pub channel_id: i64,
    pub name: String,
    pub owner: User,
    /// Longest-standing first.
    pub members: Vec<User>,
}

impl Room {
    pub fn info(&self, unread: Option<u64>) -> RoomInfo {
        RoomInfo {
            id: self.id as u64,
            name: self.name.clone(),
            owner: self.owner.username.clone(),
            members: self.members.iter().map(|m| m.username.clone()).collect(),
            unread,
        }
    }

    pub fn member_ids(&self) -> Vec<i64> {
        self.members.iter().map(|m| m.id).collect()
    }
}

/// The limits a change is checked against (flags of the node).
#[derive(Debug, Clone, Copy)]
pub struct RoomLimits {
    pub max_members: usize,
    pub rooms_per_user: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum RoomError {
    #[error("no such room among yours")]
    NotAMember,
    #[error("{0} is not a member of this room")]
    NotMember(String),
    #[error("only the owner removes others")]
    Forbidden,
    #[error("a room has at most {0} members")]
    RoomFull(usize),
    #[error("{0} already belongs to the most rooms allowed")]
    TooManyRooms(String),
    /// Committed, but the announcement did not go out.
    #[error("the change was stored but could not be published")]
    NotPublished,
    #[error("timed out waiting for the sequence lock")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<diesel::result::Error> for RoomError {
    fn from(e: diesel::result::Error) -> Self {
        Self::Store(StoreError::Query(e))
    }
}

/// What a change did, for its announcement.
#[derive(Debug, Clone)]
pub struct Change {
    /// The room after the change; no members when it is gone.
    pub room: Room,
    /// True for a new room: nobody is subscribed to its channel yet.
    pub created: bool,
    pub added: Vec<i64>,
    pub removed: Vec<i64>,
}

#[derive(QueryableByName)]
struct RoomRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = BigInt)]
    channel_id: i64,
    #[diesel(sql_type = Varchar)]
    name: String,
    #[diesel(sql_type = BigInt)]
    owner_id: i64,
}

#[derive(QueryableByName)]
struct MemberRow {
    #[diesel(sql_type = BigInt)]
    room_id: i64,
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Varchar)]
    username: String,
}

#[derive(QueryableByName)]
struct Granted {
    #[diesel(sql_type = Nullable<BigInt>)]
    granted: Option<i64>,
}

#[derive(QueryableByName)]
struct LastId {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Rooms with their members, from rows in room order.
fn assemble(rows: Vec<RoomRow>, members: Vec<MemberRow>) -> Result<Vec<Room>, StoreError> {
    let mut by_room: HashMap<i64, Vec<User>> = HashMap::new();
    for m in members {
        by_room.entry(m.room_id).or_default().push(User {
            id: m.id,
            username: m.username,
        });
    }
    rows.into_iter()
        .map(|r| {
            let members = by_room.remove(&r.id).unwrap_or_default();
            let owner = members
                .iter()
                .find(|m| m.id == r.owner_id)
                .cloned()
                .ok_or_else(|| StoreError::Range(format!("room {} has no owner", r.id)))?;
            Ok(Room {
                id: r.id,
                channel_id: r.channel_id,
                name: r.name,
                owner,
                members,
            })
        })
        .collect()
}

async fn load_room(
    conn: &mut AsyncMysqlConnection,
    room_id: i64,
) -> QueryResult<Option<(RoomRow, Vec<MemberRow>)>> {
    let row: Option<RoomRow> =
        diesel::sql_query("SELECT id, channel_id, name, owner_id FROM rooms WHERE id = ?")
            .bind::<BigInt, _>(room_id)
            .get_result(conn)
            .await
            .optional()?;
    let Some(row) = row else {
        return Ok(None);
    };
    let members = diesel::sql_query(
        "SELECT rm.room_id, u.id, u.username FROM room_members rm \
         JOIN users u ON u.id = rm.user_id WHERE rm.room_id = ? \
         ORDER BY rm.joined_at, rm.user_id",
    )
    .bind::<BigInt, _>(room_id)
    .load(conn)
    .await?;
    Ok(Some((row, members)))
}

/// The one room `room_id` as it is now, if it exists.
async fn room_now(
    conn: &mut AsyncMysqlConnection,
    room_id: i64,
) -> Result<Option<Room>, RoomError> {
    match load_room(conn, room_id).await? {
        Some((row, members)) => Ok(assemble(vec![row], members)?.pop()),
        None => Ok(None),
    }
}

/// Refuses when one of `users` already belongs to `limit` rooms.
async fn check_rooms_per_user(
    conn: &mut AsyncMysqlConnection,
    users: &[User],
    limit: usize,
) -> Result<(), RoomError> {
    let ids: Vec<i64> = users.iter().map(|u| u.id).collect();
    let counts: Vec<(i64, i64)> = room_members::table
        .filter(room_members::user_id.eq_any(&ids))
        .group_by(room_members::user_id)
        .select((room_members::user_id, count_star()))
        .load(conn)
        .await?;
    for (user_id, n) in counts {
        if n as usize >= limit {
            let name = users
                .iter()
                .find(|u| u.id == user_id)
                .map(|u| u.username.clone())
                .unwrap_or_default();
            return Err(RoomError::TooManyRooms(name));
        }
    }
    Ok(())
}

async fn insert_members(
    conn: &mut AsyncMysqlConnection,
    room_id: i64,
    users: &[User],
) -> QueryResult<()> {
    if users.is_empty() {
        return Ok(());
    }
    let rows: Vec<_> = users
        .iter()
        .map(|u| {
            (
                room_members::room_id.eq(room_id),
                room_members::user_id.eq(u.id),
            )
        })
        .collect();
    diesel::insert_into(room_members::table)
        .values(&rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// `users` without repeats and without `except`, in the order given.
fn distinct(users: &[User], except: i64) -> Vec<User> {
    let mut seen = HashSet::new();
    users
        .iter()
        .filter(|u| u.id != except && seen.insert(u.id))
        .cloned()
        .collect()
}

impl Db {
    /// Runs `change` holding the sequence lock; the lock is released however it ends
    /// (a connection that cannot release it is dropped, which does).
    async fn with_seq_lock<T>(
        &self,
        change: impl AsyncFnOnce(&mut AsyncMysqlConnection) -> Result<T, RoomError>,
    ) -> Result<T, RoomError> {
        let mut conn = self.conn().await?;
        let granted: Granted = diesel::sql_query("SELECT GET_LOCK(?, ?) AS granted")
            .bind::<Varchar, _>(&*self.seq_lock)
            .bind::<BigInt, _>(LOCK_WAIT_SECS)
            .get_result(&mut *conn)
            .await
            .map_err(StoreError::Query)?;
        if granted.granted != Some(1) {
            return Err(RoomError::Busy);
        }
        let result = change(&mut *conn).await;
        let released = diesel::sql_query("DO RELEASE_LOCK(?)")
            .bind::<Varchar, _>(&*self.seq_lock)
            .execute(&mut *conn)
            .await;
        if let Err(e) = released {
            tracing::error!(error = %e, "releasing the sequence lock failed");
            drop(diesel_async::pooled_connection::deadpool::Object::take(
                conn,
            ));
        }
        result
    }

    /// Creates a room owned by `owner` with `members` besides; `announce` publishes it
    /// before the lock is released.
    pub async fn create_room(
        &self,
        owner: &User,
        name: &str,
        members: &[User],
        limits: RoomLimits,
        announce: impl AsyncFnOnce(&Change) -> bool,
    ) -> Result<Room, RoomError> {
        let others = distinct(members, owner.id);
        if others.len() + 1 > limits.max_members {
            return Err(RoomError::RoomFull(limits.max_members));
        }
        self.with_seq_lock(async |conn| {
            let room = conn
                .transaction(async |conn| {
                    let mut everyone = vec![owner.clone()];
                    everyone.extend(others.iter().cloned());
                    check_rooms_per_user(conn, &everyone, limits.rooms_per_user).await?;
                    diesel::insert_into(channels::table)
                        .values((
                            channels::user_low.eq(None::<i64>),
                            channels::user_high.eq(None::<i64>),
                        ))
                        .execute(conn)
                        .await?;
                    let channel: LastId = diesel::sql_query("SELECT LAST_INSERT_ID() AS id")
                        .get_result(conn)
                        .await?;
                    diesel::insert_into(rooms::table)
                        .values((
                            rooms::channel_id.eq(channel.id),
                            rooms::name.eq(name),
                            rooms::owner_id.eq(owner.id),
                        ))
                        .execute(conn)
                        .await?;
                    let room: LastId = diesel::sql_query("SELECT LAST_INSERT_ID() AS id")
                        .get_result(conn)
                        .await?;
                    insert_members(conn, room.id, &everyone).await?;
                    Ok::<_, RoomError>(Room {
                        id: room.id,
                        channel_id: channel.id,
                        name: name.to_owned(),
                        owner: owner.clone(),
                        members: everyone,
                    })
                })
                .await?;
            let change = Change {
                added: room.member_ids(),
                room,
                created: true,
                removed: Vec::new(),
            };
            if !announce(&change).await {
                return Err(RoomError::NotPublished);
            }
            Ok(change.room)
        })
        .await
    }

    /// Any member adds users; those already in are left as they are.
    pub async fn add_members(
        &self,
        room_id: i64,
        by: &User,
        users: &[User],
        limits: RoomLimits,
        announce: impl AsyncFnOnce(&Change) -> bool,
    ) -> Result<Change, RoomError> {
        self.with_seq_lock(async |conn| {
            let change = conn
                .transaction(async |conn| {
                    let room = room_now(conn, room_id)
                        .await?
                        .ok_or(RoomError::NotAMember)?;
                    if !room.members.iter().any(|m| m.id == by.id) {
                        return Err(RoomError::NotAMember);
                    }
                    let new: Vec<User> = distinct(users, by.id)
                        .into_iter()
                        .filter(|u| !room.members.iter().any(|m| m.id == u.id))
                        .collect();
                    if room.members.len() + new.len() > limits.max_members {
                        return Err(RoomError::RoomFull(limits.max_members));
                    }
                    check_rooms_per_user(conn, &new, limits.rooms_per_user).await?;
                    insert_members(conn, room_id, &new).await?;
                    let mut room = room;
                    room.members.extend(new.iter().cloned());
                    Ok(Change {
                        room,
                        created: false,
                        added: new.iter().map(|u| u.id).collect(),
                        removed: Vec::new(),
                    })
                })
                .await?;
            if !announce(&change).await {
                return Err(RoomError::NotPublished);
            }
            Ok(change)
        })
        .await
    }

    /// The owner removes anyone; a member removes themself. An owner who leaves hands the
    /// room to the longest-standing member; a room without members is deleted.
    pub async fn remove_member(
        &self,
        room_id: i64,
        by: &User,
        target: &User,
        announce: impl AsyncFnOnce(&Change) -> bool,
    ) -> Result<Change, RoomError> {
        self.with_seq_lock(async |conn| {
            let change = conn
                .transaction(async |conn| {
                    let mut room = room_now(conn, room_id)
                        .await?
                        .ok_or(RoomError::NotAMember)?;
                    if !room.members.iter().any(|m| m.id == by.id) {
                        return Err(RoomError::NotAMember);
                    }
                    if !room.members.iter().any(|m| m.id == target.id) {
                        return Err(RoomError::NotMember(target.username.clone()));
                    }
                    if by.id != target.id && by.id != room.owner.id {
                        return Err(RoomError::Forbidden);
                    }
                    diesel::delete(
                        room_members::table.filter(
                            room_members::room_id
                                .eq(room_id)
                                .and(room_members::user_id.eq(target.id)),
                        ),
                    )
                    .execute(conn)
                    .await?;
                    room.members.retain(|m| m.id != target.id);
                    match <[User]>::first(&room.members) {
                        None => {
                            diesel::delete(rooms::table.find(room_id))
                                .execute(conn)
                                .await?;
                        }
                        Some(first) if room.owner.id == target.id => {
                            room.owner = first.clone();
                            diesel::update(rooms::table.find(room_id))
                                .set(rooms::owner_id.eq(first.id))
                                .execute(conn)
                                .await?;
                        }
                        Some(_) => {}
                    }
                    Ok::<_, RoomError>(Change {
                        room,
                        created: false,
                        added: Vec::new(),
                        removed: vec![target.id],
                    })
                })
                .await?;
            if !announce(&change).await {
                return Err(RoomError::NotPublished);
            }
            Ok(change)
        })
        .await
    }

    /// Every room `user_id` belongs to, with its members.
    pub async fn rooms_of(&self, user_id: i64) -> Result<Vec<Room>, StoreError> {
        // Prepared once per pooled connection: every socket's set-up reads them. Most
        // users have no room, and then the members are not asked for.
        let (rows, members) = self
            .run(async |conn| {
                let rows: Vec<RoomRow> = Prepared::new(
                    "SELECT r.id, r.channel_id, r.name, r.owner_id FROM room_members me \
                     JOIN rooms r ON r.id = me.room_id WHERE me.user_id = ? ORDER BY r.id",
                    vec![user_id],
                )
                .load(conn)
                .await?;
                if rows.is_empty() {
                    return Ok((rows, Vec::new()));
                }
                let members: Vec<MemberRow> = Prepared::new(
                    "SELECT rm.room_id, u.id, u.username FROM room_members me \
                     JOIN room_members rm ON rm.room_id = me.room_id \
                     JOIN users u ON u.id = rm.user_id WHERE me.user_id = ? \
                     ORDER BY rm.room_id, rm.joined_at, rm.user_id",
                    vec![user_id],
                )
                .load(conn)
                .await?;
                Ok((rows, members))
            })
            .await?;
        assemble(rows, members)
    }

    /// The room's channel when `user_id` is a member; `None` for a room that does not
    /// exist or is not theirs (the two are not told apart).
    pub async fn room_channel(
        &self,
        room_id: i64,
        user_id: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.run(async |conn| {
            rooms::table
                .inner_join(room_members::table)
                .filter(rooms::id.eq(room_id).and(room_members::user_id.eq(user_id)))
                .select(rooms::channel_id)
                .first(conn)
                .await
                .optional()
        })
        .await
    }

    /// The ids of every room `user_id` belongs to.
    pub async fn room_ids(&self, user_id: i64) -> Result<Vec<i64>, StoreError> {
        self.run(async |conn| {
            room_members::table
                .filter(room_members::user_id.eq(user_id))
                .select(room_members::room_id)
                .load(conn)
                .await
        })
        .await
    }

    /// The channels of every room `user_id` belongs to, for `sync`.
    pub async fn room_channels(&self, user_id: i64) -> Result<Vec<i64>, StoreError> {
        self.run(async |conn| {
            rooms::table
                .inner_join(room_members::table)
                .filter(room_members::user_id.eq(user_id))
                .select(rooms::channel_id)
                .load(conn)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64) -> User {
        User {
            id,
            username: format!("u{id}"),
        }
    }

    #[test]
    fn members_are_taken_once_and_never_the_actor() {
        let users = [user(2), user(1), user(2), user(3)];
        let ids: Vec<i64> = distinct(&users, 1).iter().map(|u| u.id).collect();
        assert_eq!(ids, [2, 3]);
    }

    #[test]
    fn a_room_is_assembled_with_its_owner_among_its_members() {
        let rows = vec![RoomRow {
            id: 7,
            channel_id: 70,
            name: "team".into(),
            owner_id: 2,
        }];
        let members = vec![
            MemberRow {
                room_id: 7,
                id: 1,
                username: "u1".into(),
            },
            MemberRow {
                room_id: 7,
                id: 2,
                username: "u2".into(),
            },
        ];
        let rooms = assemble(rows, members).unwrap();
        assert_eq!(rooms[0].owner, user(2));
        assert_eq!(rooms[0].info(Some(3)).members, ["u1", "u2"]);
        let orphan = vec![RoomRow {
            id: 8,
            channel_id: 80,
            name: "x".into(),
            owner_id: 9,
        }];
        assert!(assemble(orphan, Vec::new()).is_err());
    }
}
