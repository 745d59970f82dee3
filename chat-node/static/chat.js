// @ts-check
// Conversations, one-to-one and rooms alike: what the client does with each frame from the
// node, and with what the user does. It changes state.js, sends through socket.js and asks
// render.js to show the result. Sections: the link; frames of conversations (messages,
// history, typing, read state); what the user does in a conversation; rooms (the room list
// and its membership from `rooms`, `room` and `roomLeft`, and creating, adding, leaving).

import {
  state, conversation, openConversation as openConv, keyOf, keyOfMessage, peerKey, roomKey,
  targetOf, unreadHolder, ensureUser, mergeMessage,
} from "./state.js";
import { send, isOpen } from "./socket.js";
import * as render from "./render.js";

/** @typedef {import('./protocol.js').Message} Message */
/** @typedef {import('./protocol.js').Target} Target */
/** @typedef {import('./protocol.js').ServerFrame} ServerFrame */
/** @typedef {import('./protocol.js').UpdateUsersFrame} UpdateUsersFrame */
/** @typedef {import('./protocol.js').PresenceFrame} PresenceFrame */
/** @typedef {import('./protocol.js').ChatHistoryFrame} ChatHistoryFrame */
/** @typedef {import('./protocol.js').ChatMessageFrame} ChatMessageFrame */
/** @typedef {import('./protocol.js').TypingFrame} TypingFrame */
/** @typedef {import('./protocol.js').ReadFrame} ReadFrame */
/** @typedef {import('./protocol.js').ErrorFrame} ErrorFrame */
/** @typedef {import('./protocol.js').ChatHistoryRequest} ChatHistoryRequest */
/** @typedef {import('./protocol.js').ClientFrame} ClientFrame */
/** @typedef {import('./protocol.js').Room} Room */
/** @typedef {import('./state.js').RoomInfo} RoomInfo */
/** @typedef {import('./state.js').Conversation} Conversation */
/** @typedef {import('./state.js').HistoryKind} HistoryKind */

const HISTORY_PAGE = 10;
const TYPING_RESEND_MS = 3000; // send `typing` again at most this often while keys keep coming
const TYPING_IDLE_MS = 2000; // send `doneTyping` after this long without a key press
const TYPING_EXPIRE_MS = 5000; // receiver hides "is typing…" this long after the last `typing`
const RATE_LIMIT_RETRY_MS = 1500;
const MAX_ROOM_NAME = 64;
const MARK_READ_INTERVAL_MS = 1000; // at most one `markRead` this often

// ---------------------------------------------------------------------------
// The link

export function linkOpened() {
  render.setConnectionStatus(null);
  for (const conv of state.conversations.values()) conv.historyQueue = [];
  const conv = openConv();
  if (conv && !conv.loaded) requestHistory(conv, "initial");
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
    case "typing": return onTypingFrame(frame, true);
    case "doneTyping": return onTypingFrame(frame, false);
    case "read": return onRead(frame);
    case "rooms": return onRooms(frame.rooms ?? []);
    case "room": return frame.room ? onRoom(frame.room, frame.ref ?? null) : undefined;
    case "roomLeft": return onRoomLeft(Number(frame.room));
    case "error": return onRoomError(frame) || onErrorFrame(frame);
    default: return undefined; // newer server, older client: ignore
  }
}

/**
 * Missed messages after a reconnect. They are not counted as unread here: the counts in
 * the fresh `updateUsers` and `rooms` frames include them already.
 * @param {Message[]} messages
 * @param {boolean} done the last page: show the result
 */
export function handleSync(messages, done) {
  let touchedOpen = false;
  for (const message of messages) {
    mergeMessage(message);
    noteIncoming(message, { countUnread: false });
    if (keyOfMessage(message) === state.openKey) touchedOpen = true;
    if (message.room == null) ensureUser(message.from === state.me ? message.to ?? "" : message.from);
  }
  if (!done) return;
  render.renderUsers();
  render.renderRooms();
  if (touchedOpen) render.renderMessages({ stickToBottom: true });
  markOpenRead();
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
    // The node keeps read state: its count (absent when none) is the truth after every
    // (re)connect, on every device of the user.
    setUnreadFromNode(peerKey(entry.username), user, Number(entry.unread ?? 0));
    listed.add(entry.username);
  }
  // Users not in the list keep their entry only when we talk with them.
  for (const [name, user] of state.users) {
    if (!listed.has(name) && !state.conversations.has(peerKey(name)) && user.unread === 0) {
      state.users.delete(name);
    }
  }
  render.renderUsers();
  render.renderConversationHeader();
  render.renderRoomPanel();
}

/**
 * A count from the node replaces what this page counted; the conversation on screen reads
 * what arrives, so it shows none.
 * @param {string} key
 * @param {{ unread: number }} holder
 * @param {number} unread
 */
function setUnreadFromNode(key, holder, unread) {
  const conv = state.conversations.get(key);
  if (conv) conv.unreadIds = [];
  holder.unread = key === state.openKey && render.pageVisible() ? 0 : Math.max(0, unread);
}

/** @param {PresenceFrame} frame */
function onPresence(frame) {
  const user = ensureUser(frame.username);
  if (!user) return;
  user.online = Boolean(frame.online);
  if (!user.online) {
    for (const key of state.typingFrom.keys()) setTyping(key, frame.username, false);
  }
  render.renderUsers();
  render.renderConversationHeader();
  render.renderRoomPanel();
}

/** @param {ChatMessageFrame} frame */
function onChatMessage(frame) {
  const message = frame.message;
  if (!message) return;
  const added = mergeMessage(message);
  const key = keyOfMessage(message);
  if (message.room == null) ensureUser(message.from === state.me ? message.to ?? "" : message.from);
  if (message.from !== state.me) setTyping(key, message.from, false);
  noteIncoming(message, { countUnread: true });
  if (added || message.from === state.me) {
    render.renderUsers();
    render.renderRooms();
  }
  if (key === state.openKey) {
    render.renderMessages(message.from === state.me ? { forceBottom: true } : { stickToBottom: true });
    markOpenRead();
  }
}

/** @param {ChatHistoryFrame} frame */
function onHistory(frame) {
  /** @type {Target | null} */
  const target = frame.room != null ? { room: Number(frame.room) } : frame.peer ? { peer: frame.peer } : null;
  if (!target) return;
  const conv = conversation(historyKey(target));
  const kind = conv.historyQueue.shift() ?? "initial";
  const shown = conv.key === state.openKey;
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
    markOpenRead();
  }
}

/**
 * The node answers with the peer's name as stored, whose casing may differ from the one
 * the request used: find the conversation that asked.
 * @param {Target} target
 */
function historyKey(target) {
  const key = keyOf(target);
  if (target.room != null || state.conversations.get(key)?.historyQueue.length) return key;
  const lower = (target.peer ?? "").toLowerCase();
  for (const conv of state.conversations.values()) {
    if (conv.target.peer?.toLowerCase() === lower && conv.historyQueue.length > 0) return conv.key;
  }
  return key;
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
    if (item.key === state.openKey) render.renderMessages({});
  }
  if (frame.code === "rate_limited" && !item) {
    // A dropped typing or history frame: nothing to retry, history controls re-enable.
    for (const conv of state.conversations.values()) conv.historyQueue = [];
    renderHistoryControls();
  }
  render.showToast(frame.message || `Error: ${frame.code}`);
}

/**
 * Counts a message from someone else as unread when it is new to this page and its
 * conversation is not on screen; a message that arrives on screen is read at once.
 * @param {Message} message
 * @param {{ countUnread: boolean }} options
 */
function noteIncoming(message, { countUnread }) {
  const fresh = !state.seenIds.has(message.id);
  state.seenIds.add(message.id);
  if (!fresh || message.from === state.me) return;
  const key = keyOfMessage(message);
  const conv = conversation(key);
  const visible = state.openKey === key && render.pageVisible();
  const holder = unreadHolder(key);
  if (!visible && countUnread && holder && message.id > conv.readUpTo) {
    holder.unread += 1;
    conv.unreadIds.push(message.id);
  }
  if (!countUnread) return;
  const where = message.room != null ? ` in ${state.rooms.get(message.room)?.name ?? "a room"}` : "";
  render.announce(visible ? `${message.from}: ${message.text}` : `New message from ${message.from}${where}`);
}

/**
 * The user read a conversation on one of their devices (this page included).
 * @param {ReadFrame} frame
 */
function onRead(frame) {
  /** @type {Target | null} */
  const target = frame.room != null ? { room: Number(frame.room) } : frame.peer ? { peer: frame.peer } : null;
  const upTo = Number(frame.upTo);
  if (!target || !Number.isSafeInteger(upTo)) return;
  const key = keyOf(target);
  const conv = conversation(key);
  if (upTo > conv.readUpTo) conv.readUpTo = upTo;
  conv.unreadIds = conv.unreadIds.filter((id) => id > upTo);
  const holder = unreadHolder(key);
  if (holder) holder.unread = Math.min(holder.unread, conv.unreadIds.length);
  render.renderUsers();
  render.renderRooms();
}

// ---------------------------------------------------------------------------
// Read state

const readOut = {
  lastSentAt: 0,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer: undefined,
};

/**
 * Tells the node (and so the user's other devices) that the conversation on screen is read
 * up to its newest message, when the page is visible and there is something new. The badge
 * here clears at once; `markRead` goes out at most once per MARK_READ_INTERVAL_MS, with the
 * newest id, so a busy room does not spend the socket's rate limit on it.
 */
export function markOpenRead() {
  const conv = openConv();
  if (!conv || !conv.loaded || !render.pageVisible()) return;
  const holder = unreadHolder(conv.key);
  if (holder && holder.unread > 0) {
    holder.unread = 0;
    render.renderUsers();
    render.renderRooms();
  }
  conv.unreadIds = [];
  if (newestId(conv) <= conv.readUpTo || readOut.timer) return;
  const wait = readOut.lastSentAt + MARK_READ_INTERVAL_MS - Date.now();
  if (wait > 0) {
    readOut.timer = setTimeout(() => {
      readOut.timer = undefined;
      markOpenRead();
    }, wait);
    return;
  }
  const upTo = newestId(conv);
  if (send({ type: "markRead", ...conv.target, upTo })) {
    conv.readUpTo = upTo;
    readOut.lastSentAt = Date.now();
  }
}

/**
 * Leaving a conversation with a `markRead` still waiting for its turn: send it now.
 * @param {Conversation | null} conv
 */
function flushRead(conv) {
  if (!readOut.timer) return;
  clearTimeout(readOut.timer);
  readOut.timer = undefined;
  if (!conv || newestId(conv) <= conv.readUpTo) return;
  const upTo = newestId(conv);
  if (send({ type: "markRead", ...conv.target, upTo })) {
    conv.readUpTo = upTo;
    readOut.lastSentAt = Date.now();
  }
}

/** @param {Conversation} conv */
function newestId(conv) {
  return conv.messages[conv.messages.length - 1]?.id ?? 0;
}

// ---------------------------------------------------------------------------
// Typing

/**
 * @param {TypingFrame} frame
 * @param {boolean} typing
 */
function onTypingFrame(frame, typing) {
  if (!frame.from || frame.from === state.me) return;
  const key = frame.room != null ? roomKey(Number(frame.room)) : peerKey(frame.from);
  setTyping(key, frame.from, typing);
}

/**
 * @param {string} key the conversation
 * @param {string} from who types
 * @param {boolean} typing
 */
function setTyping(key, from, typing) {
  let who = state.typingFrom.get(key);
  if (!who && !typing) return;
  if (!who) {
    who = new Map();
    state.typingFrom.set(key, who);
  }
  const had = who.has(from);
  clearTimeout(who.get(from));
  who.delete(from);
  if (typing) {
    // Over 5 s after the last `typing` even without `doneTyping`: a lost frame or a dead
    // node never leaves "is typing…" stuck.
    who.set(from, setTimeout(() => setTyping(key, from, false), TYPING_EXPIRE_MS));
  }
  if (who.size === 0) state.typingFrom.delete(key);
  if (key === state.openKey && (had !== typing)) render.renderTyping();
}

/** @param {string} key forget who types in a conversation that is gone */
function forgetTyping(key) {
  for (const timer of state.typingFrom.get(key)?.values() ?? []) clearTimeout(timer);
  state.typingFrom.delete(key);
  if (key === state.openKey) render.renderTyping();
}

export function clearTyping() {
  for (const who of state.typingFrom.values()) {
    for (const timer of who.values()) clearTimeout(timer);
  }
  state.typingFrom.clear();
  render.renderTyping();
}

// ---------------------------------------------------------------------------
// What the user does

function renderHistoryControls() {
  render.renderHistoryControls(isOpen());
}

export function flushOutbox() {
  if (!isOpen()) return;
  for (const item of state.outbox) {
    if (item.failed || item.sent) continue;
    if (item.retryAt && item.retryAt > Date.now()) continue;
    item.sent = true;
    send({ type: "chatMessage", ...item.target, text: item.text, clientId: item.clientId });
  }
}

/**
 * @param {Conversation} conv
 * @param {HistoryKind} kind
 */
function requestHistory(conv, kind) {
  /** @type {ChatHistoryRequest} */
  const frame = { type: "chatHistory", ...conv.target, limit: HISTORY_PAGE };
  if (kind === "older") {
    const oldest = conv.messages[0];
    if (!oldest) return;
    frame.before = oldest.id;
  }
  if (send(frame)) conv.historyQueue.push(kind);
  renderHistoryControls();
}

/** @param {string} username */
export function openPeer(username) {
  openConversation(peerKey(username));
}

/** @param {number} id */
export function openRoom(id) {
  openConversation(roomKey(id));
}

/** @param {string} key */
export function openConversation(key) {
  if (state.openKey && state.openKey !== key) {
    stopTyping();
    flushRead(openConv());
  }
  state.openKey = key;
  const conv = conversation(key);
  // Start from the newest page every time the conversation is opened, so paging with
  // `before` always continues a gap-free run of messages.
  conv.messages = [];
  conv.ids = new Set();
  conv.loaded = false;
  conv.hasMore = false;
  conv.unreadIds = [];
  const holder = unreadHolder(key);
  if (holder) holder.unread = 0;

  render.showConversation();
  render.renderUsers();
  render.renderRooms();
  render.renderConversationHeader();
  render.renderRoomPanel();
  render.renderTyping();
  render.renderMessages({});
  requestHistory(conv, "initial");
  render.focusComposer();
}

/** Back to no conversation, as when the room on screen is left. */
export function closeConversation() {
  stopTyping();
  state.openKey = null;
  render.closeConversationView();
  render.renderUsers();
  render.renderRooms();
  render.renderConversationHeader();
  render.renderRoomPanel();
  render.renderTyping();
  render.renderMessages({});
  renderHistoryControls();
}

export function loadOlder() {
  const conv = openConv();
  if (!conv || !conv.loaded || !conv.hasMore || conv.historyQueue.length > 0) return;
  requestHistory(conv, "older");
}

/** The page is shown again: what arrived on screen meanwhile is read now. */
export function pageShown() {
  markOpenRead();
}

/** The page is hidden or unloads (a reload, a closed tab): a waiting `markRead` goes now. */
export function pageHidden() {
  flushRead(openConv());
}

const typingOut = {
  /** @type {string | null} key of the conversation we said we type in */
  key: null,
  lastSentAt: 0,
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  idleTimer: undefined,
};

export function composerInput() {
  const key = state.openKey;
  if (!key) return;
  render.autoGrow();
  const now = Date.now();
  if (typingOut.key !== key || now - typingOut.lastSentAt >= TYPING_RESEND_MS) {
    if (send({ type: "typing", ...targetOf(key) })) {
      typingOut.key = key;
      typingOut.lastSentAt = now;
    }
  }
  clearTimeout(typingOut.idleTimer);
  typingOut.idleTimer = setTimeout(stopTyping, TYPING_IDLE_MS);
}

export function stopTyping() {
  clearTimeout(typingOut.idleTimer);
  typingOut.idleTimer = undefined;
  const key = typingOut.key;
  typingOut.key = null;
  typingOut.lastSentAt = 0;
  // A room we just left would answer not_a_member.
  if (key && (!key.startsWith("room:") || state.rooms.has(Number(key.slice(5))))) {
    send({ type: "doneTyping", ...targetOf(key) });
  }
}

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain http on a LAN address is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export function sendMessage() {
  const key = state.openKey;
  const text = render.composerText();
  if (!key || text.trim() === "") return;
  stopTyping();
  state.outbox.push({
    key, target: targetOf(key), text, clientId: newClientId(), createdAt: new Date().toISOString(), sent: false, failed: null,
  });
  render.clearComposer();
  flushOutbox();
  render.renderMessages({ forceBottom: true });
  render.focusComposer();
}

// ---------------------------------------------------------------------------
// Rooms: the list and its membership

/**
 * @param {Room} room
 * @returns {RoomInfo | null}
 */
function upsert(room) {
  const id = Number(room.id);
  if (!Number.isSafeInteger(id)) return null;
  let info = state.rooms.get(id);
  if (!info) {
    info = { id, name: "", owner: "", members: [], unread: 0 };
    state.rooms.set(id, info);
  }
  info.name = String(room.name ?? "");
  info.owner = String(room.owner ?? "");
  info.members = Array.isArray(room.members) ? room.members.map(String) : [];
  // Present in the `rooms` frame after each (re)connect, absent from a `room` change.
  if (typeof room.unread === "number") setUnreadFromNode(roomKey(id), info, room.unread);
  return info;
}

/** @param {Room[]} rooms every room of the user, after each (re)connect */
function onRooms(rooms) {
  const listed = new Set();
  for (const room of rooms) {
    const info = upsert(room);
    if (info) listed.add(info.id);
  }
  for (const id of [...state.rooms.keys()]) {
    if (!listed.has(id)) dropRoom(id);
  }
  renderAll();
}

/**
 * @param {Room} room
 * @param {string | null} ref
 */
function onRoom(room, ref) {
  const info = upsert(room);
  const request = ref != null ? state.roomRequests.get(ref) : undefined;
  if (ref != null) state.roomRequests.delete(ref);
  renderAll();
  if (!info || !request) return;
  if (request.kind === "create") {
    render.closeRoomDialog();
    openRoom(info.id);
  } else if (request.kind === "add") {
    render.closeRoomDialog();
    render.showToast(`Added to ${info.name}`);
  }
}

/** @param {number} id */
function onRoomLeft(id) {
  const info = state.rooms.get(id);
  if (!info) return;
  let left = false;
  for (const [clientId, request] of state.roomRequests) {
    if (request.kind === "leave" && request.room === id) {
      state.roomRequests.delete(clientId);
      left = true;
    }
  }
  const wasOpen = state.openKey === roomKey(id);
  dropRoom(id);
  renderAll();
  if (wasOpen) render.focusRooms();
  render.showToast(left ? `You left ${info.name}` : `You are no longer a member of ${info.name}`);
}

/**
 * Forgets a room the user is no longer in: its messages, unsent ones and who typed there.
 * @param {number} id
 */
function dropRoom(id) {
  const key = roomKey(id);
  state.rooms.delete(id);
  state.outbox = state.outbox.filter((item) => item.key !== key);
  forgetTyping(key);
  if (state.openKey === key) closeConversation();
  state.conversations.delete(key);
}

/**
 * An error that answers one of our room requests.
 * @param {ErrorFrame} frame
 */
function onRoomError(frame) {
  const request = frame.ref != null ? state.roomRequests.get(frame.ref) : undefined;
  if (!request || frame.ref == null) return false;
  state.roomRequests.delete(frame.ref);
  const text = roomErrorText(frame.code, frame.message);
  if ((request.kind === "create" || request.kind === "add") && render.roomDialogOpen()) {
    render.showRoomDialogError(text);
    render.setRoomDialogBusy(false);
  } else {
    render.showToast(text);
  }
  return true;
}

/**
 * @param {string} code
 * @param {string} message
 */
function roomErrorText(code, message) {
  switch (code) {
    case "room_full": return "A room holds at most 1000 members.";
    case "invalid_room_name": return "Give the room a name of 1 to 64 characters.";
    case "unknown_user": return message || "One of the people picked does not exist.";
    case "forbidden": return "Only the room's owner can remove others.";
    case "not_a_member": return "You are not a member of that room.";
    default: return message || `Error: ${code}`;
  }
}

function renderAll() {
  render.renderRooms();
  render.renderConversationHeader();
  render.renderRoomPanel();
  render.renderMessages({});
}

// ---------------------------------------------------------------------------
// What the user does with rooms

/**
 * Sends a room request and remembers it until its `room` (or `error`) answer.
 * @param {"create" | "add" | "remove" | "leave"} kind
 * @param {number | null} room
 * @param {(clientId: string) => ClientFrame} frame
 */
function request(kind, room, frame) {
  const clientId = newClientId();
  if (!send(frame(clientId))) {
    render.showToast("Not connected — try again in a moment.");
    return false;
  }
  state.roomRequests.set(clientId, { kind, room });
  return true;
}

export function startCreateRoom() {
  render.openRoomDialog("create", null);
}

export function startAddMembers() {
  const id = openRoomId();
  if (id != null) render.openRoomDialog("add", id);
}

export function submitRoomDialog() {
  const { mode, room, name, members } = render.readRoomDialog();
  if (mode === "create") {
    const trimmed = name.trim();
    if (trimmed === "" || [...name].length > MAX_ROOM_NAME) {
      render.showRoomDialogError(roomErrorText("invalid_room_name", ""));
      return;
    }
    render.setRoomDialogBusy(true);
    if (!request("create", null, (clientId) => ({ type: "createRoom", name: trimmed, members, clientId }))) {
      render.setRoomDialogBusy(false);
    }
  } else if (room != null) {
    if (members.length === 0) {
      render.showRoomDialogError("Pick at least one person to add.");
      return;
    }
    render.setRoomDialogBusy(true);
    if (!request("add", room, (clientId) => ({ type: "addMembers", room, members, clientId }))) {
      render.setRoomDialogBusy(false);
    }
  }
}

/** @param {string} username the owner removes someone */
export function removeMember(username) {
  const id = openRoomId();
  if (id == null || !username) return;
  request("remove", id, (clientId) => ({ type: "removeMember", room: id, username, clientId }));
}

export function leaveRoom() {
  const id = openRoomId();
  if (id == null || !state.me) return;
  const me = state.me;
  request("leave", id, (clientId) => ({ type: "removeMember", room: id, username: me, clientId }));
}

export function toggleRoomPanel() {
  render.toggleRoomPanel();
}

/** @returns {number | null} */
function openRoomId() {
  const key = state.openKey;
  if (!key || !key.startsWith("room:")) return null;
  const id = conversation(key).target.room;
  return id != null && state.rooms.has(id) ? id : null;
}
