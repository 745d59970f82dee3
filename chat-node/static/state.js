// @ts-check
// What the client knows, in one place that frame handlers change and render.js reads.
// No DOM here.

/** @typedef {import('./protocol.js').Message} Message */

/**
 * @typedef {object} User
 * @property {string} username
 * @property {boolean} online
 * @property {number} unread
 */

/** @typedef {"initial" | "older"} HistoryKind */

/**
 * @typedef {object} Conversation
 * @property {string} peer
 * @property {Message[]} messages confirmed messages, sorted by id
 * @property {Set<number>} ids
 * @property {boolean} loaded the newest page has arrived since the conversation was opened
 * @property {boolean} hasMore
 * @property {HistoryKind[]} historyQueue kinds of chatHistory requests in flight, answered in order
 */

/**
 * An own message the node has not acknowledged yet.
 * @typedef {object} OutboxItem
 * @property {string} peer
 * @property {string} text
 * @property {string} clientId
 * @property {string} createdAt
 * @property {boolean} sent sent on the current connection; a new connection sends it again
 * @property {number} [retryAt] not before this time (rate limited)
 * @property {string | null} failed why the node refused it, for good
 */

export const state = {
  /** @type {string | null} username of the logged-in user */
  me: null,
  /** @type {Map<string, User>} */
  users: new Map(),
  /** @type {Map<string, Conversation>} by peer */
  conversations: new Map(),
  /** @type {string | null} */
  openPeer: null,
  /** @type {OutboxItem[]} */
  outbox: [],
  maxId: 0, // highest message id seen in any frame
  /** @type {Set<number>} ids already counted for unread badges */
  seenIds: new Set(),
  /** @type {Map<string, ReturnType<typeof setTimeout>>} peer -> expiry timer for "is typing…" */
  typingFrom: new Map(),
};

/** Forgets everything of the user who logs out; the typing timers are cleared by their owner. */
export function resetState() {
  state.me = null;
  state.users.clear();
  state.conversations.clear();
  state.openPeer = null;
  state.outbox = [];
  state.maxId = 0;
  state.seenIds.clear();
}

/**
 * @param {string} peer
 * @returns {Conversation}
 */
export function conversation(peer) {
  let conv = state.conversations.get(peer);
  if (!conv) {
    conv = {
      peer,
      messages: [],
      ids: new Set(),
      loaded: false,
      hasMore: false,
      historyQueue: [],
    };
    state.conversations.set(peer, conv);
  }
  return conv;
}

/** @param {Message} message */
export function peerOf(message) {
  return message.from === state.me ? message.to : message.from;
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
  if (id > state.maxId) state.maxId = id;

  if (message.from === state.me && message.clientId != null) {
    const index = state.outbox.findIndex((item) => item.clientId === message.clientId);
    if (index !== -1) state.outbox.splice(index, 1);
  }

  const conv = conversation(peerOf(message));
  if (conv.ids.has(id)) return false;
  conv.ids.add(id);
  // Messages mostly arrive in order: search from the end.
  let at = conv.messages.length;
  while (at > 0 && conv.messages[at - 1].id > id) at -= 1;
  conv.messages.splice(at, 0, message);
  return true;
}
