// @ts-check
// Types of what the client and a node exchange (docs/protocol.md), so that an editor with
// checkJs catches a misspelt field. Types only: modules import them in JSDoc, never at run
// time, so the node does not serve this file.

/**
 * A stored message. Ids grow with storage order; `clientId` is echoed as the sender gave it.
 * In a room `room` is the room's id and `to` is null; in a one-to-one conversation `room`
 * is null (or absent, from a node older than rooms).
 * @typedef {object} Message
 * @property {number} id
 * @property {number} channel
 * @property {number | null} [room]
 * @property {string} from
 * @property {string | null} to
 * @property {string} text
 * @property {string} sentAt RFC 3339, UTC
 * @property {string | null} clientId
 */

/**
 * `unread`: messages from the peer after what the user marked read (`markRead`), on any
 * device; absent from a node without read state.
 * @typedef {object} DirectoryEntry
 * @property {string} username
 * @property {boolean} online
 * @property {number} [unread]
 */

/**
 * A room the user belongs to. `unread` as in DirectoryEntry, in the `rooms` frame.
 * @typedef {object} Room
 * @property {number} id
 * @property {string} name
 * @property {string} owner
 * @property {string[]} members usernames
 * @property {number} [unread]
 */

/**
 * Whom a frame is about: a peer (one-to-one) or a room.
 * @typedef {{ peer: string, room?: undefined } | { room: number, peer?: undefined }} Target
 */

// ---------------------------------------------------------------------------
// Server to client

/**
 * The first frame on every socket.
 * @typedef {object} UpdateUsersFrame
 * @property {"updateUsers"} type
 * @property {DirectoryEntry[]} users
 */

/**
 * @typedef {object} PresenceFrame
 * @property {"presence"} type
 * @property {string} username
 * @property {boolean} online
 */

/**
 * The answer to a `chatHistory` request; `peer` as stored, its casing may differ. A room's
 * history carries `room` instead of `peer`.
 * @typedef {object} ChatHistoryFrame
 * @property {"chatHistory"} type
 * @property {string | null} [peer] null for a room
 * @property {number | null} [room]
 * @property {number} channel
 * @property {Message[]} messages oldest first
 * @property {boolean} hasMore
 */

/**
 * A message was stored; the sender's own sockets get it too, as the acknowledgement.
 * @typedef {object} ChatMessageFrame
 * @property {"chatMessage"} type
 * @property {Message} message
 */

/**
 * `room` when `from` types in a room, else `from` types to this user.
 * @typedef {object} TypingFrame
 * @property {"typing" | "doneTyping"} type
 * @property {string} from
 * @property {number | null} [room]
 */

/**
 * Right after `updateUsers`: every room the user belongs to.
 * @typedef {object} RoomsFrame
 * @property {"rooms"} type
 * @property {Room[]} rooms
 */

/**
 * A room of the user was created or changed, or the user was added to it. `ref` is the
 * `clientId` of the request that caused it, on the requester's sockets.
 * @typedef {object} RoomFrame
 * @property {"room"} type
 * @property {Room} room
 * @property {string | null} [ref]
 */

/**
 * The user left or was removed from the room; nothing more of it arrives.
 * @typedef {object} RoomLeftFrame
 * @property {"roomLeft"} type
 * @property {number} room
 */

/**
 * The user read a conversation up to `upTo` on one of their sockets (this one included).
 * @typedef {object} ReadFrame
 * @property {"read"} type
 * @property {string} [peer]
 * @property {number | null} [room]
 * @property {number} upTo
 */

/**
 * The answer to a `sync` request.
 * @typedef {object} SyncFrame
 * @property {"sync"} type
 * @property {Message[]} messages oldest first
 * @property {boolean} hasMore
 */

/**
 * A request failed; the socket stays open.
 * @typedef {object} ErrorFrame
 * @property {"error"} type
 * @property {string} code
 * @property {string} message
 * @property {string | null} ref the `clientId` of the failed request
 */

/**
 * @typedef {UpdateUsersFrame | PresenceFrame | ChatHistoryFrame | ChatMessageFrame
 *   | TypingFrame | RoomsFrame | RoomFrame | RoomLeftFrame | ReadFrame | SyncFrame
 *   | ErrorFrame} ServerFrame
 */

// ---------------------------------------------------------------------------
// Client to server

/**
 * @typedef {Target & {
 *   type: "chatHistory",
 *   before?: number,
 *   limit?: number,
 * }} ChatHistoryRequest `before`: only messages older than this id; `limit` 1 to 50, default 10
 */

/**
 * @typedef {Target & {
 *   type: "chatMessage",
 *   text: string,
 *   clientId?: string,
 * }} ChatMessageRequest a resend with the same `clientId` is stored once
 */

/** @typedef {Target & { type: "typing" | "doneTyping" }} TypingRequest */

/**
 * The user has seen the conversation up to `upTo` (a message id): its unread count drops
 * on every device of the user.
 * @typedef {Target & { type: "markRead", upTo: number }} MarkReadRequest
 */

/**
 * Creates a room owned by the sender, who is a member; answered by `room` with `ref`.
 * @typedef {object} CreateRoomRequest
 * @property {"createRoom"} type
 * @property {string} name 1 to 64 characters, not blank
 * @property {string[]} members
 * @property {string} [clientId]
 */

/**
 * @typedef {object} AddMembersRequest
 * @property {"addMembers"} type
 * @property {number} room
 * @property {string[]} members
 * @property {string} [clientId]
 */

/**
 * The owner removes anyone; a member removes themself (leaves).
 * @typedef {object} RemoveMemberRequest
 * @property {"removeMember"} type
 * @property {number} room
 * @property {string} username
 * @property {string} [clientId]
 */

/**
 * @typedef {object} SyncRequest
 * @property {"sync"} type
 * @property {number} after the highest message id seen
 * @property {number} [limit] 1 to 500, default 100
 */

/**
 * @typedef {ChatHistoryRequest | ChatMessageRequest | TypingRequest | MarkReadRequest
 *   | CreateRoomRequest | AddMembersRequest | RemoveMemberRequest | SyncRequest} ClientFrame
 */

// ---------------------------------------------------------------------------
// HTTP bodies

/**
 * @typedef {object} Credentials
 * @property {string} username
 * @property {string} password
 */

/**
 * @typedef {object} Account
 * @property {number} id
 * @property {string} username
 */

/**
 * @typedef {object} ApiErrorBody
 * @property {{ code: string, message: string }} error
 */

// Makes this file a module, which `import('./protocol.js')` in JSDoc requires.
export {};
