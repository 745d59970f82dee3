// Browser client for the chat cluster. Plain ES2020, no build step, no dependencies.
//
// Layout of this file:
//   1. DOM helpers and small utilities
//   2. State (users, conversations, outbox) and how server messages are merged
//   3. HTTP: session check, register, login, logout
//   4. WebSocket: connect, reconnect with backoff, sync, outbox flushing
//   5. Rendering: user list, conversation, typing notice
//   6. Input: composer, typing signals, history paging
//
// Wire contract: PROTOCOL.md (v1). All user-provided text goes into the DOM through
// textContent, never innerHTML.

const HISTORY_PAGE = 10;
const TYPING_RESEND_MS = 3000; // send `typing` again at most this often while keys keep coming
const TYPING_IDLE_MS = 2000; // send `doneTyping` after this long without a key press
const TYPING_EXPIRE_MS = 5000; // receiver hides "is typing…" this long after the last `typing`
const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10000;
const RATE_LIMIT_RETRY_MS = 1500;
const LOAD_OLDER_THRESHOLD_PX = 40;
const CLOSE_SERVICE_RESTART = 1012;
const RESTART_SPREAD_MS = 1000;

// ---------------------------------------------------------------------------
// 1. DOM helpers and utilities

const $ = (id) => document.getElementById(id);

const el = {
  app: $("app"),
  boot: $("boot"),
  authView: $("auth-view"),
  authForm: $("auth-form"),
  username: $("username"),
  password: $("password"),
  usernameError: $("username-error"),
  passwordError: $("password-error"),
  formError: $("form-error"),
  loginButton: $("login-button"),
  registerButton: $("register-button"),
  session: $("session"),
  me: $("me"),
  logoutButton: $("logout-button"),
  connectionStatus: $("connection-status"),
  chatView: $("chat-view"),
  userList: $("user-list"),
  userListEmpty: $("user-list-empty"),
  conversationTitle: $("conversation-title"),
  conversationPresence: $("conversation-presence"),
  scroller: $("messages-scroller"),
  loadOlder: $("load-older"),
  historyStatus: $("history-status"),
  messages: $("messages"),
  emptyConversation: $("empty-conversation"),
  typingIndicator: $("typing-indicator"),
  composer: $("composer"),
  input: $("message-input"),
  sendButton: $("send-button"),
  toast: $("toast"),
  announcer: $("announcer"),
};

function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key === "dataset") Object.assign(node.dataset, value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function newClientId() {
  if (crypto.randomUUID) return crypto.randomUUID();
  // crypto.randomUUID needs a secure context; plain http on a LAN address is not one.
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
});
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return (sameDay ? timeFormat : dateTimeFormat).format(date);
}

let toastTimer = null;
function showToast(text) {
  el.toast.textContent = text;
  el.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.toast.hidden = true; }, 4000);
}

function announce(text) {
  // Re-setting the same text would not be announced again; clear first.
  el.announcer.textContent = "";
  requestAnimationFrame(() => { el.announcer.textContent = text; });
}

// ---------------------------------------------------------------------------
// 2. State

const state = {
  me: null, // username of the logged-in user
  users: new Map(), // username -> { username, online, unread }
  conversations: new Map(), // peer -> Conversation
  openPeer: null,
  outbox: [], // own messages not yet acknowledged: { peer, text, clientId, sentOn, failed }
  maxId: 0, // highest message id seen in any frame
  seenIds: new Set(), // ids already counted for unread badges
  typingFrom: new Map(), // peer -> expiry timer for "is typing…"
};

function conversation(peer) {
  let conv = state.conversations.get(peer);
  if (!conv) {
    conv = {
      peer,
      messages: [], // confirmed messages, sorted by id
      ids: new Set(),
      loaded: false, // newest page has arrived since the conversation was opened
      hasMore: false,
      historyQueue: [], // kinds of chatHistory requests in flight: "initial" | "older"
    };
    state.conversations.set(peer, conv);
  }
  return conv;
}

function peerOf(message) {
  return message.from === state.me ? message.to : message.from;
}

function ensureUser(username) {
  if (!username || username === state.me) return null;
  let user = state.users.get(username);
  if (!user) {
    user = { username, online: false, unread: 0 };
    state.users.set(username, user);
  }
  return user;
}

/// Inserts a server message into its conversation, deduplicating by id and replacing the
/// matching own pending message (by clientId). Returns true when the message was new there.
function mergeMessage(message) {
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

/// Counts a message from a peer as unread when it is new to this page and its
/// conversation is not the one on screen.
function noteIncoming(message, { countUnread }) {
  const fresh = !state.seenIds.has(message.id);
  state.seenIds.add(message.id);
  if (!fresh || message.from === state.me) return;
  const peer = message.from;
  const user = ensureUser(peer);
  const visible = state.openPeer === peer && document.visibilityState !== "hidden";
  if (state.openPeer !== peer && countUnread && user) {
    user.unread += 1;
    renderUsers();
  }
  if (countUnread) {
    announce(visible ? `${peer}: ${message.text}` : `New message from ${peer}`);
  }
}

// ---------------------------------------------------------------------------
// 3. HTTP

async function api(method, path, body) {
  const options = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  let data = null;
  const text = await response.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = null; }
  }
  return { status: response.status, ok: response.ok, data };
}

function clearAuthErrors() {
  for (const node of [el.usernameError, el.passwordError, el.formError]) node.textContent = "";
  el.username.removeAttribute("aria-invalid");
  el.password.removeAttribute("aria-invalid");
}

function showAuthError(error, fallback) {
  const code = error?.code ?? "";
  const message = error?.message || fallback;
  if (code === "invalid_username" || code === "username_taken") {
    el.usernameError.textContent = message;
    el.username.setAttribute("aria-invalid", "true");
    el.username.focus();
  } else if (code === "invalid_password") {
    el.passwordError.textContent = message;
    el.password.setAttribute("aria-invalid", "true");
    el.password.focus();
  } else {
    el.formError.textContent = message;
  }
}

async function submitAuth(mode) {
  clearAuthErrors();
  const credentials = { username: el.username.value.trim(), password: el.password.value };
  setAuthBusy(true);
  try {
    if (mode === "register") {
      const registered = await api("POST", "/api/register", credentials);
      if (!registered.ok) {
        showAuthError(registered.data?.error, `Could not create the account (${registered.status}).`);
        return;
      }
    }
    const login = await api("POST", "/api/login", credentials);
    if (!login.ok) {
      showAuthError(login.data?.error, `Could not log in (${login.status}).`);
      return;
    }
    el.password.value = "";
    enterChat(login.data.username);
  } catch {
    el.formError.textContent = "Cannot reach the server. Check your connection and try again.";
  } finally {
    setAuthBusy(false);
  }
}

function setAuthBusy(busy) {
  el.loginButton.disabled = busy;
  el.registerButton.disabled = busy;
  el.authForm.setAttribute("aria-busy", String(busy));
}

async function logout() {
  el.logoutButton.disabled = true;
  try {
    await api("POST", "/api/logout");
  } catch {
    // The local session ends regardless; the cookie is useless once the server drops it.
  } finally {
    el.logoutButton.disabled = false;
    leaveChat();
  }
}

// ---------------------------------------------------------------------------
// 4. WebSocket

const link = {
  socket: null,
  attempt: 0, // failed attempts since the last successful open
  timer: null,
  wanted: false, // false after logout: do not reconnect
  everOpened: false,
  disconnectedAt: 0,
  syncing: false,
};

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function isOpen() {
  return link.socket !== null && link.socket.readyState === WebSocket.OPEN;
}

function send(frame) {
  if (!isOpen()) return false;
  link.socket.send(JSON.stringify(frame));
  return true;
}

function connect() {
  clearTimeout(link.timer);
  link.timer = null;
  if (!link.wanted || link.socket) return;
  let socket;
  try {
    socket = new WebSocket(socketUrl());
  } catch {
    scheduleReconnect();
    return;
  }
  link.socket = socket;
  socket.addEventListener("open", () => onOpen(socket));
  socket.addEventListener("message", (event) => onFrame(socket, event));
  socket.addEventListener("close", (event) => onClose(socket, event));
  // "error" is always followed by "close"; nothing to do here.
}

function onOpen(socket) {
  if (socket !== link.socket) return;
  const reconnected = link.everOpened;
  link.everOpened = true;
  link.attempt = 0;
  setConnectionStatus(null);
  for (const conv of state.conversations.values()) conv.historyQueue = [];
  if (reconnected) {
    link.syncing = true;
    send({ type: "sync", after: state.maxId });
  }
  if (state.openPeer) {
    const conv = conversation(state.openPeer);
    if (!conv.loaded) requestHistory(conv, "initial");
  }
  updateHistoryControls();
  flushOutbox();
}

function onClose(socket, event) {
  if (socket !== link.socket) return;
  link.socket = null;
  for (const item of state.outbox) item.sentOn = null;
  clearTyping();
  if (!link.wanted) return;
  link.disconnectedAt = link.disconnectedAt || Date.now();
  setConnectionStatus("Connection lost — reconnecting…");
  if (event.code === CLOSE_SERVICE_RESTART) {
    // The node is draining: another node takes us within a second. The random delay
    // spreads a drained node's clients so they do not all arrive at once.
    link.attempt = 0;
    link.timer = setTimeout(() => {
      link.timer = null;
      connect();
    }, Math.random() * RESTART_SPREAD_MS);
    return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (!link.wanted || link.timer) return;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** link.attempt);
  const delay = base / 2 + Math.random() * (base / 2); // jitter: half to full
  link.attempt += 1;
  link.timer = setTimeout(async () => {
    link.timer = null;
    if (link.attempt >= 3 && !(await sessionStillValid())) {
      leaveChat();
      el.formError.textContent = "Your session has ended. Please log in again.";
      return;
    }
    connect();
  }, delay);
}

/// The WebSocket API hides the 401 of a refused upgrade; ask /api/me instead. A network
/// failure means the node is down, not that the session is gone.
async function sessionStillValid() {
  try {
    const me = await api("GET", "/api/me");
    return me.status !== 401;
  } catch {
    return true;
  }
}

function disconnect() {
  link.wanted = false;
  clearTimeout(link.timer);
  link.timer = null;
  const socket = link.socket;
  link.socket = null;
  if (socket) socket.close(1000, "logout");
}

function setConnectionStatus(text) {
  el.connectionStatus.textContent = text ?? "";
  el.connectionStatus.hidden = !text;
  document.body.classList.toggle("offline", Boolean(text));
}

function flushOutbox() {
  if (!isOpen()) return;
  for (const item of state.outbox) {
    if (item.failed || item.sentOn === link.socket) continue;
    if (item.retryAt && item.retryAt > Date.now()) continue;
    item.sentOn = link.socket;
    send({ type: "chatMessage", peer: item.peer, text: item.text, clientId: item.clientId });
  }
}

function onFrame(socket, event) {
  if (socket !== link.socket || typeof event.data !== "string") return;
  let frame;
  try {
    frame = JSON.parse(event.data);
  } catch {
    return;
  }
  switch (frame.type) {
    case "updateUsers": return onUpdateUsers(frame);
    case "presence": return onPresence(frame);
    case "chatHistory": return onHistory(frame);
    case "chatMessage": return onChatMessage(frame);
    case "sync": return onSync(frame);
    case "typing": return onTyping(frame.from, true);
    case "doneTyping": return onTyping(frame.from, false);
    case "error": return onErrorFrame(frame);
    default: return undefined; // newer server, older client: ignore
  }
}

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
  renderUsers();
  renderConversationHeader();
}

function onPresence(frame) {
  const user = ensureUser(frame.username);
  if (!user) return;
  user.online = Boolean(frame.online);
  if (!user.online) onTyping(frame.username, false);
  renderUsers();
  renderConversationHeader();
}

function onChatMessage(frame) {
  const message = frame.message;
  if (!message) return;
  const added = mergeMessage(message);
  const peer = peerOf(message);
  ensureUser(peer);
  if (message.from === peer) onTyping(peer, false);
  noteIncoming(message, { countUnread: true });
  if (added || message.from === state.me) renderUsers();
  if (peer === state.openPeer) {
    renderMessages(message.from === state.me ? { forceBottom: true } : { stickToBottom: true });
  }
}

function onSync(frame) {
  const messages = frame.messages ?? [];
  // Without any earlier id we asked for everything; only count what came while we were away.
  const since = link.disconnectedAt - 30000;
  let touchedOpen = false;
  for (const message of messages) {
    mergeMessage(message);
    const recent = Date.parse(message.sentAt) >= since;
    noteIncoming(message, { countUnread: recent });
    if (peerOf(message) === state.openPeer) touchedOpen = true;
    ensureUser(peerOf(message));
  }
  if (frame.hasMore && messages.length > 0) {
    send({ type: "sync", after: messages[messages.length - 1].id });
    return;
  }
  link.syncing = false;
  link.disconnectedAt = 0;
  renderUsers();
  if (touchedOpen) renderMessages({ stickToBottom: true });
}

function onHistory(frame) {
  const peer = frame.peer;
  if (!peer) return;
  const conv = conversation(peer);
  const kind = conv.historyQueue.shift() ?? "initial";
  const isOpen = peer === state.openPeer;
  const anchor = isOpen && kind === "older" ? captureScrollAnchor() : null;
  for (const message of frame.messages ?? []) {
    mergeMessage(message);
    state.seenIds.add(message.id);
  }
  conv.hasMore = Boolean(frame.hasMore);
  if (kind === "initial") conv.loaded = true;
  if (!isOpen) return;
  // Controls above the list change height too: update them before restoring the anchor.
  updateHistoryControls();
  if (anchor) {
    renderMessages({});
    restoreScrollAnchor(anchor);
  } else {
    renderMessages({ forceBottom: true });
  }
}

function onErrorFrame(frame) {
  const item = frame.ref != null ? state.outbox.find((entry) => entry.clientId === frame.ref) : null;
  if (item && frame.code === "rate_limited") {
    item.sentOn = null;
    item.retryAt = Date.now() + RATE_LIMIT_RETRY_MS;
    setTimeout(flushOutbox, RATE_LIMIT_RETRY_MS + 10);
  } else if (item) {
    item.failed = frame.message || frame.code;
    if (item.peer === state.openPeer) renderMessages({});
  }
  if (frame.code === "rate_limited" && !item) {
    // A dropped typing or history frame: nothing to retry, history controls re-enable.
    for (const conv of state.conversations.values()) conv.historyQueue = [];
    updateHistoryControls();
  }
  showToast(frame.message || `Error: ${frame.code}`);
}

// ---------------------------------------------------------------------------
// 5. Rendering

function avatarColor(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return `hsl(${hash % 360} 55% 45%)`;
}

function renderUsers() {
  const users = [...state.users.values()].sort((a, b) =>
    a.username.localeCompare(b.username, undefined, { sensitivity: "base" }));
  const existing = new Map();
  for (const item of el.userList.children) existing.set(item.dataset.username, item);

  users.forEach((user, index) => {
    let item = existing.get(user.username);
    existing.delete(user.username);
    if (!item) item = createUserItem(user.username);
    updateUserItem(item, user);
    if (el.userList.children[index] !== item) el.userList.insertBefore(item, el.userList.children[index] ?? null);
  });
  for (const stale of existing.values()) stale.remove();
  el.userListEmpty.hidden = users.length > 0;

  const unread = users.reduce((sum, user) => sum + user.unread, 0);
  document.title = unread > 0 ? `(${unread}) Chat` : "Chat";
}

function createUserItem(username) {
  const avatar = h("span", { className: "avatar", "aria-hidden": "true", text: username.slice(0, 1).toUpperCase() });
  avatar.style.background = avatarColor(username);
  const dot = h("span", { className: "presence-dot", "data-testid": "presence-dot" });
  const name = h("span", { className: "user-name", text: username });
  const status = h("span", { className: "user-status" });
  const badge = h("span", { className: "unread-badge", "data-testid": "unread-badge" });
  const button = h("button", { type: "button", className: "user-button", "data-testid": "user" },
    [h("span", { className: "avatar-wrap" }, [avatar, dot]), h("span", { className: "user-text" }, [name, status]), badge]);
  button.dataset.username = username;
  button.addEventListener("click", () => openConversation(username));
  const item = h("li", { className: "user-item" }, [button]);
  item.dataset.username = username;
  return item;
}

function updateUserItem(item, user) {
  const button = item.firstElementChild;
  const online = user.online ? "true" : "false";
  if (button.dataset.online !== online) button.dataset.online = online;
  button.classList.toggle("active", user.username === state.openPeer);
  if (user.username === state.openPeer) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
  button.querySelector(".user-status").textContent = user.online ? "online" : "offline";
  const badge = button.querySelector(".unread-badge");
  badge.textContent = user.unread > 0 ? String(user.unread) : "";
  badge.hidden = user.unread === 0;
  const parts = [user.username, user.online ? "online" : "offline"];
  if (user.unread > 0) parts.push(`${user.unread} unread`);
  button.setAttribute("aria-label", parts.join(", "));
}

function renderConversationHeader() {
  const peer = state.openPeer;
  if (!peer) {
    el.conversationTitle.textContent = "Pick someone to chat with";
    el.conversationPresence.textContent = "";
    return;
  }
  el.conversationTitle.textContent = peer;
  const online = state.users.get(peer)?.online;
  el.conversationPresence.textContent = online ? "online" : "offline";
  el.conversationPresence.dataset.online = online ? "true" : "false";
}

function messageKey(message) {
  return message.from === state.me && message.clientId != null ? `c:${message.clientId}` : `i:${message.id}`;
}

function renderMessages({ stickToBottom = false, forceBottom = false }) {
  const peer = state.openPeer;
  if (!peer) {
    el.messages.replaceChildren();
    el.emptyConversation.hidden = true;
    return;
  }
  const conv = conversation(peer);
  const nearBottom = el.scroller.scrollHeight - el.scroller.scrollTop - el.scroller.clientHeight < 80;

  const rows = [];
  if (conv.loaded) {
    for (const message of conv.messages) rows.push({ key: messageKey(message), message, pending: false });
  }
  for (const item of state.outbox) {
    if (item.peer !== peer) continue;
    rows.push({
      key: `c:${item.clientId}`,
      message: { id: null, from: state.me, to: peer, text: item.text, sentAt: item.createdAt, clientId: item.clientId },
      pending: true,
      failed: item.failed,
    });
  }

  const existing = new Map();
  for (const node of el.messages.children) existing.set(node.dataset.key, node);
  rows.forEach((row, index) => {
    let node = existing.get(row.key);
    existing.delete(row.key);
    if (!node) node = createMessageItem(row);
    updateMessageItem(node, row);
    if (el.messages.children[index] !== node) el.messages.insertBefore(node, el.messages.children[index] ?? null);
  });
  for (const stale of existing.values()) stale.remove();

  el.emptyConversation.hidden = !conv.loaded || rows.length > 0;
  if (forceBottom || (stickToBottom && nearBottom)) scrollToBottom();
}

function createMessageItem(row) {
  const own = row.message.from === state.me;
  const text = h("p", { className: "message-text", "data-testid": "message-text" });
  const time = h("time", { className: "message-time" });
  const status = h("span", { className: "message-status" });
  const meta = h("span", { className: "message-meta" }, [time, status]);
  const item = h("li", { className: `message ${own ? "own" : "theirs"}`, "data-testid": "message" },
    [h("div", { className: "bubble" }, [text, meta])]);
  item.dataset.key = row.key;
  item.dataset.own = own ? "true" : "false";
  text.textContent = row.message.text; // never innerHTML
  return item;
}

function updateMessageItem(node, row) {
  const { message } = row;
  if (message.id != null) node.dataset.id = String(message.id);
  else delete node.dataset.id;
  if (message.clientId != null) node.dataset.clientId = message.clientId;
  node.classList.toggle("pending", row.pending && !row.failed);
  node.classList.toggle("failed", Boolean(row.failed));
  const time = node.querySelector(".message-time");
  if (time.dateTime !== message.sentAt) {
    time.dateTime = message.sentAt;
    time.textContent = formatTime(message.sentAt);
    const date = new Date(message.sentAt);
    time.title = Number.isNaN(date.getTime()) ? "" : fullFormat.format(date);
  }
  const status = node.querySelector(".message-status");
  const statusText = row.failed ? `Not sent: ${row.failed}` : row.pending ? "sending…" : "";
  if (status.textContent !== statusText) status.textContent = statusText;
  const label = `${message.from === state.me ? "You" : message.from}, ${formatTime(message.sentAt)}`;
  if (node.getAttribute("aria-label") !== label) node.setAttribute("aria-label", label);
}

function scrollToBottom() {
  el.scroller.scrollTop = el.scroller.scrollHeight;
}

/// Remembers the first visible message and its offset so that prepending older messages
/// does not move what the reader is looking at.
function captureScrollAnchor() {
  const top = el.scroller.getBoundingClientRect().top;
  for (const node of el.messages.children) {
    const rect = node.getBoundingClientRect();
    if (rect.bottom > top) return { node, offset: rect.top - top };
  }
  return { node: null, height: el.scroller.scrollHeight, scrollTop: el.scroller.scrollTop };
}

function restoreScrollAnchor(anchor) {
  if (anchor.node && anchor.node.isConnected) {
    const top = el.scroller.getBoundingClientRect().top;
    const now = anchor.node.getBoundingClientRect().top - top;
    el.scroller.scrollTop += now - anchor.offset;
  } else if (anchor.height != null) {
    el.scroller.scrollTop = anchor.scrollTop + (el.scroller.scrollHeight - anchor.height);
  }
}

function updateHistoryControls() {
  const conv = state.openPeer ? conversation(state.openPeer) : null;
  const loadingOlder = conv?.historyQueue.includes("older");
  el.loadOlder.hidden = !conv || !conv.loaded || !conv.hasMore;
  el.loadOlder.disabled = Boolean(loadingOlder) || !isOpen();
  el.loadOlder.textContent = loadingOlder ? "Loading…" : "Load older messages";
  let status = "";
  if (conv && !conv.loaded) status = "Loading…";
  else if (conv && !conv.hasMore && conv.messages.length > 0) status = "Beginning of the conversation";
  el.historyStatus.textContent = status;
}

function renderTyping() {
  const peer = state.openPeer;
  if (peer && state.typingFrom.has(peer)) {
    el.typingIndicator.textContent = `${peer} is typing…`;
    el.typingIndicator.classList.add("visible");
  } else {
    el.typingIndicator.textContent = "";
    el.typingIndicator.classList.remove("visible");
  }
}

function onTyping(from, typing) {
  if (!from) return;
  clearTimeout(state.typingFrom.get(from));
  state.typingFrom.delete(from);
  if (typing) {
    state.typingFrom.set(from, setTimeout(() => onTyping(from, false), TYPING_EXPIRE_MS));
  }
  if (from === state.openPeer) renderTyping();
}

function clearTyping() {
  for (const timer of state.typingFrom.values()) clearTimeout(timer);
  state.typingFrom.clear();
  renderTyping();
}

// ---------------------------------------------------------------------------
// 6. Input

function requestHistory(conv, kind) {
  const frame = { type: "chatHistory", peer: conv.peer, limit: HISTORY_PAGE };
  if (kind === "older") {
    const oldest = conv.messages[0];
    if (!oldest) return;
    frame.before = oldest.id;
  }
  if (send(frame)) conv.historyQueue.push(kind);
  updateHistoryControls();
}

function openConversation(peer) {
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

  el.messages.replaceChildren();
  el.chatView.classList.add("has-conversation");
  el.input.disabled = false;
  el.sendButton.disabled = false;
  el.input.placeholder = `Message ${peer}`;
  renderUsers();
  renderConversationHeader();
  renderTyping();
  renderMessages({});
  requestHistory(conv, "initial");
  el.input.focus();
}

function loadOlder() {
  const conv = state.openPeer ? conversation(state.openPeer) : null;
  if (!conv || !conv.loaded || !conv.hasMore || conv.historyQueue.length > 0) return;
  requestHistory(conv, "older");
}

const typingOut = { peer: null, lastSentAt: 0, idleTimer: null };

function onComposerInput() {
  const peer = state.openPeer;
  if (!peer) return;
  autoGrow();
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

function stopTyping() {
  clearTimeout(typingOut.idleTimer);
  typingOut.idleTimer = null;
  if (typingOut.peer) send({ type: "doneTyping", peer: typingOut.peer });
  typingOut.peer = null;
  typingOut.lastSentAt = 0;
}

function sendMessage() {
  const peer = state.openPeer;
  const text = el.input.value;
  if (!peer || text.trim() === "") return;
  stopTyping();
  state.outbox.push({ peer, text, clientId: newClientId(), createdAt: new Date().toISOString(), sentOn: null, failed: null });
  el.input.value = "";
  autoGrow();
  flushOutbox();
  renderMessages({ forceBottom: true });
  el.input.focus();
}

function autoGrow() {
  el.input.style.height = "auto";
  el.input.style.height = `${Math.min(el.input.scrollHeight, 160)}px`;
}

// ---------------------------------------------------------------------------
// Views

function show(view) {
  el.boot.hidden = true;
  el.app.setAttribute("aria-busy", "false");
  el.authView.hidden = view !== "auth";
  el.chatView.hidden = view !== "chat";
  el.session.hidden = view !== "chat";
}

function enterChat(username) {
  state.me = username;
  el.me.textContent = username;
  show("chat");
  link.wanted = true;
  link.everOpened = false;
  connect();
  renderUsers();
  el.userList.querySelector("button")?.focus();
}

function leaveChat() {
  stopTyping();
  disconnect();
  clearTyping();
  setConnectionStatus(null);
  state.me = null;
  state.users.clear();
  state.conversations.clear();
  state.openPeer = null;
  state.outbox = [];
  state.maxId = 0;
  state.seenIds.clear();
  el.userList.replaceChildren();
  el.messages.replaceChildren();
  el.chatView.classList.remove("has-conversation");
  el.input.value = "";
  el.input.disabled = true;
  el.sendButton.disabled = true;
  renderConversationHeader();
  document.title = "Chat";
  clearAuthErrors();
  show("auth");
  el.username.focus();
}

function wireEvents() {
  el.authForm.addEventListener("submit", (event) => {
    event.preventDefault();
    submitAuth("login");
  });
  el.registerButton.addEventListener("click", () => submitAuth("register"));
  el.logoutButton.addEventListener("click", logout);

  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    sendMessage();
  });
  el.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      sendMessage();
    }
  });
  el.input.addEventListener("input", onComposerInput);

  // Only a move upwards near the top pages back; landing near the top because the
  // first page barely overflows (we scroll to the bottom after it) must not.
  let lastScrollTop = 0;
  let pinnedToBottom = true;
  el.scroller.addEventListener("scroll", () => {
    const top = el.scroller.scrollTop;
    if (top < LOAD_OLDER_THRESHOLD_PX && top <= lastScrollTop) loadOlder();
    lastScrollTop = top;
    pinnedToBottom = el.scroller.scrollHeight - top - el.scroller.clientHeight < 80;
  }, { passive: true });
  // Rotating a phone or opening its keyboard resizes the list: keep the newest in view.
  if (typeof ResizeObserver === "function") {
    new ResizeObserver(() => {
      if (pinnedToBottom) scrollToBottom();
    }).observe(el.scroller);
  }
  // When the page is not yet scrollable, a wheel or swipe upward still asks for more.
  el.scroller.addEventListener("wheel", (event) => {
    if (event.deltaY < 0 && el.scroller.scrollTop < LOAD_OLDER_THRESHOLD_PX) loadOlder();
  }, { passive: true });
  el.loadOlder.addEventListener("click", loadOlder);

  window.addEventListener("online", () => {
    if (link.wanted && !link.socket) {
      link.attempt = 0;
      connect();
    }
  });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && link.wanted && !link.socket) connect();
  });
}

async function boot() {
  wireEvents();
  try {
    const me = await api("GET", "/api/me");
    if (me.ok && me.data?.username) {
      enterChat(me.data.username);
      return;
    }
  } catch {
    // Server unreachable: show the login form; logging in will report the problem.
  }
  show("auth");
  el.username.focus();
}

boot();
