// @ts-check
// Types of what the client and a node exchange (docs/protocol.md), so that an editor with
// checkJs catches a misspelt field. Types only: modules import them in JSDoc, never at run
// time, so the node does not serve this file.

/**
 * A stored message. Ids grow with storage order; `clientId` is echoed as the sender gave it.
 * @typedef {object} Message
 * @property {number} id
 * @property {number} channel
 * @property {string} from
 * @property {string} to
 * @property {string} text
 * @property {string} sentAt RFC 3339, UTC
 * @property {string | null} clientId
 */

/**
 * @typedef {object} DirectoryEntry
 * @property {string} username
 * @property {boolean} online
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
 * The answer to a `chatHistory` request; `peer` as stored, its casing may differ.
 * @typedef {object} ChatHistoryFrame
 * @property {"chatHistory"} type
 * @property {string} peer
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
 * @typedef {object} TypingFrame
 * @property {"typing" | "doneTyping"} type
 * @property {string} from
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
 * @property {string | null} ref the `clientId` of the failed `chatMessage`
 */

/**
 * @typedef {UpdateUsersFrame | PresenceFrame | ChatHistoryFrame | ChatMessageFrame
 *   | TypingFrame | SyncFrame | ErrorFrame} ServerFrame
 */

// ---------------------------------------------------------------------------
// Client to server

/**
 * @typedef {object} ChatHistoryRequest
 * @property {"chatHistory"} type
 * @property {string} peer
 * @property {number} [before] only messages older than this id
 * @property {number} [limit] 1 to 50, default 10
 */

/**
 * @typedef {object} ChatMessageRequest
 * @property {"chatMessage"} type
 * @property {string} peer
 * @property {string} text
 * @property {string} [clientId] a resend with the same id is stored once
 */

/**
 * @typedef {object} TypingRequest
 * @property {"typing" | "doneTyping"} type
 * @property {string} peer
 */

/**
 * @typedef {object} SyncRequest
 * @property {"sync"} type
 * @property {number} after the highest message id seen
 * @property {number} [limit] 1 to 500, default 100
 */

/** @typedef {ChatHistoryRequest | ChatMessageRequest | TypingRequest | SyncRequest} ClientFrame */

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
