// @ts-check
// One-to-one conversations: what the client does with each frame from the node, and with
// what the user does in a conversation. It changes state.js, sends through socket.js and
// asks render.js to show the result.

import { state, conversation, peerOf, ensureUser, mergeMessage } from "./state.js";
import { send, isOpen } from "./socket.js";
import * as render from "./render.js";

/** @typedef {import('./protocol.js').Message} Message */
/** @typedef {import('./protocol.js').ServerFrame} ServerFrame */
/** @typedef {import('./protocol.js').UpdateUsersFrame} UpdateUsersFrame */
/** @typedef {import('./protocol.js').PresenceFrame} PresenceFrame */
/** @typedef {import('./protocol.js').ChatHistoryFrame} ChatHistoryFrame */
/** @typedef {import('./protocol.js').ChatMessageFrame} ChatMessageFrame */
/** @typedef {import('./protocol.js').ErrorFrame} ErrorFrame */
/** @typedef {import('./protocol.js').ChatHistoryRequest} ChatHistoryRequest */
/** @typedef {import('./state.js').Conversation} Conversation */
/** @typedef {import('./state.js').HistoryKind} HistoryKind */

const HISTORY_PAGE = 10;
const TYPING_RESEND_MS = 3000; // send `typing` again at most this often while keys keep coming
const TYPING_IDLE_MS = 2000; // send `doneTyping` after this long without a key press
const TYPING_EXPIRE_MS = 5000; // receiver hides "is typing…" this long after the last `typing`
const RATE_LIMIT_RETRY_MS = 1500;

// ---------------------------------------------------------------------------
// The link

export function linkOpened() {
  render.setConnectionStatus(null);
  for (const conv of state.conversations.values()) conv.historyQueue = [];
  if (state.openPeer) {
    const conv = conversation(state.openPeer);
    if (!conv.loaded) requestHistory(conv, "initial");
  }
  renderHistoryControls();
  flushOutbox();
}

export function linkClosed() {
  for (const item of state.outbox) item.sent = false;
  clearTyping();
}

export function linkLost() {
  render.setConnectionStatus("Connection lost — reconnecting…");
}

/** @param {ServerFrame} frame */
export function handleFrame(frame) {
  switch (frame.type) {
    case "updateUsers": return onUpdateUsers(frame);
    case "presence": return onPresence(frame);
    case "chatHistory": return onHistory(frame);
    case "chatMessage": return onChatMessage(frame);
    case "typing": return onTyping(frame.from, true);
    case "doneTyping": return onTyping(frame.from, false);
    case "error": return onErrorFrame(frame);
    default: return undefined; // newer server, older client: ignore
  }
}

/**
 * @param {Message[]} messages
 * @param {number} since messages sent before this time were probably seen before the drop
 * @param {boolean} done the last page: show the result
 */
export function handleSync(messages, since, done) {
  let touchedOpen = false;
  for (const message of messages) {
    mergeMessage(message);
    const recent = Date.parse(message.sentAt) >= since;
    noteIncoming(message, { countUnread: recent });
    if (peerOf(message) === state.openPeer) touchedOpen = true;
    ensureUser(peerOf(message));
  }
  if (!done) return;
  render.renderUsers();
  if (touchedOpen) render.renderMessages({ stickToBottom: true });
}

// ---------------------------------------------------------------------------
// Frames from the node

/** @param {UpdateUsersFrame} frame */
function onUpdateUsers(frame) {
  const listed = new Set();
  for (const entry of frame.users ?? []) {
    const user = ensureUser(entry.username);
    if (!user) continue;
    user.online = Boolean(entry.online);
    listed.add(entry.username);
  }
  // Users not in the list keep their entry only when we talk with them.
  for (const [name, user] of state.users) {
    if (!listed.has(name) && !state.conversations.has(name) && user.unread === 0) {
      state.users.delete(name);
    }
  }
  render.renderUsers();
  render.renderConversationHeader();
}

/** @param {PresenceFrame} frame */
function onPresence(frame) {
  const user = ensureUser(frame.username);
  if (!user) return;
  user.online = Boolean(frame.online);
  if (!user.online) onTyping(frame.username, false);
  render.renderUsers();
  render.renderConversationHeader();
}

/** @param {ChatMessageFrame} frame */
function onChatMessage(frame) {
  const message = frame.message;
  if (!message) return;
  const added = mergeMessage(message);
  const peer = peerOf(message);
  ensureUser(peer);
  if (message.from === peer) onTyping(peer, false);
  noteIncoming(message, { countUnread: true });
  if (added || message.from === state.me) render.renderUsers();
  if (peer === state.openPeer) {
    render.renderMessages(message.from === state.me ? { forceBottom: true } : { stickToBottom: true });
  }
}

/** @param {ChatHistoryFrame} frame */
function onHistory(frame) {
  const peer = frame.peer;
  if (!peer) return;
  const conv = conversation(peer);
  const kind = conv.historyQueue.shift() ?? "initial";
  const shown = peer === state.openPeer;
  const anchor = shown && kind === "older" ? render.captureScrollAnchor() : null;
  for (const message of frame.messages ?? []) {
    mergeMessage(message);
    state.seenIds.add(message.id);
  }
  conv.hasMore = Boolean(frame.hasMore);
  if (kind === "initial") conv.loaded = true;
  if (!shown) return;
  // Controls above the list change height too: update them before restoring the anchor.
  renderHistoryControls();
  if (anchor) {
    render.renderMessages({});
    render.restoreScrollAnchor(anchor);
  } else {
    render.renderMessages({ forceBottom: true });
  }
}

/** @param {ErrorFrame} frame */
function onErrorFrame(frame) {
  const item = frame.ref != null ? state.outbox.find((entry) => entry.clientId === frame.ref) : null;
  if (item && frame.code === "rate_limited") {
    item.sent = false;
    item.retryAt = Date.now() + RATE_LIMIT_RETRY_MS;
    setTimeout(flushOutbox, RATE_LIMIT_RETRY_MS + 10);
  } else if (item) {
    item.failed = frame.message || frame.code;
    if (item.peer === state.openPeer) render.renderMessages({});
  }
  if (frame.code === "rate_limited" && !item) {
    // A dropped typing or history frame: nothing to retry, history controls re-enable.
    for (const conv of state.conversations.values()) conv.historyQueue = [];
    renderHistoryControls();
  }
  render.showToast(frame.message || `Error: ${frame.code}`);
}

/**
 * Counts a message from a peer as unread when it is new to this page and its
 * conversation is not the one on screen.
 * @param {Message} message
 * @param {{ countUnread: boolean }} options
 */
function noteIncoming(message, { countUnread }) {
  const fresh = !state.seenIds.has(message.id);
  state.seenIds.add(message.id);
  if (!fresh || message.from === state.me) return;
  const peer = message.from;
  const user = ensureUser(peer);
  const visible = state.openPeer === peer && render.pageVisible();
  if (state.openPeer !== peer && countUnread && user) {
    user.unread += 1;
    render.renderUsers();
  }
  if (countUnread) {
    render.announce(visible ? `${peer}: ${message.text}` : `New message from ${peer}`);
  }
}

/**
 * @param {string} from
 * @param {boolean} typing
 */
function onTyping(from, typing) {
  if (!from) return;
  clearTimeout(state.typingFrom.get(from));
  state.typingFrom.delete(from);
  if (typing) {
    state.typingFrom.set(from, setTimeout(() => onTyping(from, false), TYPING_EXPIRE_MS));
  }
  if (from === state.openPeer) render.renderTyping();
}

export function clearTyping() {
  for (const timer of state.typingFrom.values()) clearTimeout(timer);
  state.typingFrom.clear();
  render.renderTyping();
}

// ---------------------------------------------------------------------------
// What the user does

function renderHistoryControls() {
  render.renderHistoryControls(isOpen());
}

function flushOutbox() {
  if (!isOpen()) return;
  for (const item of state.outbox) {
    if (item.failed || item.sent) continue;
    if (item.retryAt && item.retryAt > Date.now()) continue;
    item.sent = true;
    send({ type: "chatMessage", peer: item.peer, text: item.text, clientId: item.clientId });
  }
}

/**
 * @param {Conversation} conv
 * @param {HistoryKind} kind
 */
function requestHistory(conv, kind) {
  /** @type {ChatHistoryRequest} */
  const frame = { type: "chatHistory", peer: conv.peer, limit: HISTORY_PAGE };
  if (kind === "older") {
    const oldest = conv.messages[0];
    if (!oldest) return;
    frame.before = oldest.id;
  }
  if (send(frame)) conv.historyQueue.push(kind);
  renderHistoryControls();
}

/** @param {string} peer */
export function openConversation(peer) {
  if (state.openPeer && state.openPeer !== peer) stopTyping();
  state.openPeer = peer;
  const conv = conversation(peer);
  // Start from the newest page every time the conversation is opened, so paging with
  // `before` always continues a gap-free run of messages.
  conv.messages = [];
  conv.ids = new Set();
  conv.loaded = false;
  conv.hasMore = false;
  const user = state.users.get(peer);
  if (user) user.unread = 0;

  render.showConversation(peer);
  render.renderUsers();
  render.renderConversationHeader();
  render.renderTyping();
  render.renderMessages({});
  requestHistory(conv, "initial");
  render.focusComposer();
}

export function loadOlder() {
  const conv = state.openPeer ? conversation(state.openPeer) : null;
  if (!conv || !conv.loaded || !conv.hasMore || conv.historyQueue.length > 0) return;
  requestHistory(conv, "older");
}

const typingOut = {
  /** @type {string | null} */
  peer: null,
  lastSentAt: 0,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  idleTimer: undefined,
};

export function composerInput() {
  const peer = state.openPeer;
  if (!peer) return;
  render.autoGrow();
  const now = Date.now();
  if (typingOut.peer !== peer || now - typingOut.lastSentAt >= TYPING_RESEND_MS) {
    if (send({ type: "typing", peer })) {
      typingOut.peer = peer;
      typingOut.lastSentAt = now;
    }
  }
  clearTimeout(typingOut.idleTimer);
  typingOut.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

export function stopTyping() {
  clearTimeout(typingOut.idleTimer);
  typingOut.idleTimer = undefined;
  if (typingOut.peer) send({ type: "doneTyping", peer: typingOut.peer });
  typingOut.peer = null;
  typingOut.lastSentAt = 0;
}

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain http on a LAN address is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function sendMessage() {
  const peer = state.openPeer;
  const text = render.composerText();
  if (!peer || text.trim() === "") return;
  stopTyping();
  state.outbox.push({ peer, text, clientId: newClientId(), createdAt: new Date().toISOString(), sent: false, failed: null });
  render.clearComposer();
  flushOutbox();
  render.renderMessages({ forceBottom: true });
  render.focusComposer();
}
