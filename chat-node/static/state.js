// @ts-check
// What the client knows, in one place that frame handlers change and render.js reads.
// No DOM here.
//
// A conversation is either one-to-one (with a peer) or a room. Both are found by a key:
// `peer:<username>` or `room:<id>` (usernames cannot contain a colon, room ids are numbers).

/** @typedef {import('./protocol.js').Message} Message */
/** @typedef {import('./protocol.js').Target} Target */

/**
 * @typedef {object} User
 * @property {string} username
 * @property {boolean} online
 * @property {number} unread
 */

/**
 * A room of the user, as the node last described it.
 * @typedef {object} RoomInfo
 * @property {number} id
 * @property {string} name
 * @property {string} owner
 * @property {string[]} members
 * @property {number} unread
 */

/** @typedef {"initial" | "older"} HistoryKind */

/**
 * @typedef {object} Conversation
 * @property {string} key
 * @property {Target} target
 * @property {Message[]} messages confirmed messages, sorted by id
 * @property {Set<number>} ids
 * @property {boolean} loaded the newest page has arrived since the conversation was opened
 * @property {boolean} hasMore
 * @property {HistoryKind[]} historyQueue kinds of chatHistory requests in flight, answered in order
 * @property {number} readUpTo the highest id this client told the node (or the node told it) was read
 * @property {number[]} unreadIds ids counted into the unread badge on this page, ascending
 */

/**
 * An own message the node has not acknowledged yet.
 * @typedef {object} OutboxItem
 * @property {string} key the conversation's key
 * @property {Target} target
 * @property {string} text
 * @property {string} clientId
 * @property {string} createdAt
 * @property {boolean} sent sent on the current connection; a new connection sends it again
 * @property {number} [retryAt] not before this time (rate limited)
 * @property {string | null} failed why the node refused it, for good
 */

/**
 * A room request waiting for its `room` answer (or `error`), by clientId.
 * @typedef {{ kind: "create" | "add" | "remove" | "leave", room: number | null }} PendingRoomRequest
 */

export const state = {
  /** @type {string | null} username of the logged-in user */
  me: null,
  /** @type {Map<string, User>} */
  users: new Map(),
  /** @type {Map<number, RoomInfo>} by id */
  rooms: new Map(),
  /** @type {Map<string, Conversation>} by key */
  conversations: new Map(),
  /** @type {string | null} key of the conversation on screen */
  openKey: null,
  /** @type {OutboxItem[]} */
  outbox: [],
  /** @type {Map<string, PendingRoomRequest>} by clientId */
  roomRequests: new Map(),
  maxId: 0, // highest message id seen in any frame, rooms included: the `sync` cursor
  /** @type {Set<number>} ids already counted for unread badges */
  seenIds: new Set(),
  /** @type {Map<string, Map<string, ReturnType<typeof setTimeout>>>} key -> who -> expiry of "is typing…" */
  typingFrom: new Map(),
};

/** Forgets everything of the user who logs out; the typing timers are cleared by their owner. */
export function resetState() {
  state.me = null;
  state.users.clear();
  state.rooms.clear();
  state.conversations.clear();
  state.openKey = null;
  state.outbox = [];
  state.roomRequests.clear();
  state.maxId = 0;
  state.seenIds.clear();
}

/**
 * @param {Target} target
 * @returns {string}
 */
export function keyOf(target) {
  return target.room != null ? `room:${target.room}` : `peer:${target.peer}`;
}

/**
 * @param {string} key
 * @returns {Target}
 */
export function targetOf(key) {
  if (key.startsWith("room:")) return { room: Number(key.slice(5)) };
  return { peer: key.slice(5) };
}

/** @param {string} username */
export const peerKey = (username) => `peer:${username}`;
/** @param {number} id */
export const roomKey = (id) => `room:${id}`;

/**
 * @param {string} key
 * @returns {Conversation}
 */
export function conversation(key) {
  let conv = state.conversations.get(key);
  if (!conv) {
    conv = {
      key,
      target: targetOf(key),
      messages: [],
      ids: new Set(),
      loaded: false,
      hasMore: false,
      historyQueue: [],
      readUpTo: 0,
      unreadIds: [],
    };
    state.conversations.set(key, conv);
  }
  return conv;
}

/** @returns {Conversation | null} */
export function openConversation() {
  return state.openKey ? conversation(state.openKey) : null;
}

/**
 * The conversation a message belongs to.
 * @param {Message} message
 * @returns {string}
 */
export function keyOfMessage(message) {
  if (message.room != null) return roomKey(Number(message.room));
  return peerKey(message.from === state.me ? message.to ?? "" : message.from);
}

/**
 * The badge count of a conversation lives on its user or room.
 * @param {string} key
 * @returns {{ unread: number } | null}
 */
export function unreadHolder(key) {
  const target = targetOf(key);
  if (target.room != null) return state.rooms.get(target.room) ?? null;
  return state.users.get(target.peer) ?? null;
}

/**
 * @param {string} username
 * @returns {User | null} null for oneself, who is not listed
 */
export function ensureUser(username) {
  if (!username || username === state.me) return null;
  let user = state.users.get(username);
  if (!user) {
    user = { username, online: false, unread: 0 };
    state.users.set(username, user);
  }
  return user;
}

/**
 * Inserts a server message into its conversation, deduplicating by id and replacing the
 * matching own pending message (by clientId). Returns true when the message was new there.
 * @param {Message} message
 */
export function mergeMessage(message) {
  const id = Number(message.id);
  if (!Number.isSafeInteger(id)) return false;
  message.id = id;
  if (message.room != null) message.room = Number(message.room);
  if (id > state.maxId) state.maxId = id;

  if (message.from === state.me && message.clientId != null) {
    const index = state.outbox.findIndex((item) => item.clientId === message.clientId);
    if (index !== -1) state.outbox.splice(index, 1);
  }

  const conv = conversation(keyOfMessage(message));
  if (conv.ids.has(id)) return false;
  conv.ids.add(id);
  // Messages mostly arrive in order: search from the end.
  let at = conv.messages.length;
  while (at > 0 && conv.messages[at - 1].id > id) at -= 1;
  conv.messages.splice(at, 0, message);
  return true;
}

/**
 * Who is typing in a conversation, in the order they started.
 * @param {string} key
 * @returns {string[]}
 */
export function typingIn(key) {
  return [...(state.typingFrom.get(key)?.keys() ?? [])];
}
