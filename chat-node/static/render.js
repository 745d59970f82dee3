// @ts-check
// The page: the only module that touches the DOM, so the others can change state and send
// frames without knowing the markup. It reads state.js and never changes it; the `on…`
// functions attach listeners and hand each user intent to the action input.js names.
//
// All user-provided text goes into the DOM through textContent, never innerHTML.

import { state, conversation, openConversation, peerKey, roomKey, typingIn } from "./state.js";

/** @typedef {import('./protocol.js').Message} Message */
/** @typedef {import('./protocol.js').Credentials} Credentials */
/** @typedef {import('./state.js').User} User */
/** @typedef {import('./state.js').RoomInfo} RoomInfo */

/**
 * A pending message has no id yet and shows the time it was written.
 * @typedef {Omit<Message, "id" | "channel" | "from"> & { id: number | null, from: string | null }} ShownMessage
 */

/**
 * @typedef {object} Row
 * @property {string} key own messages by clientId, so the acknowledgement replaces the pending row in place
 * @property {ShownMessage} message
 * @property {boolean} pending
 * @property {string | null} [failed]
 * @property {boolean} [showFrom] the sender's name above the text: in a room, when the sender changes
 */

/**
 * The first visible message and its offset, or the scroll height when no message is visible.
 * @typedef {{ node: Element, offset: number, height?: undefined, scrollTop?: undefined }
 *   | { node: null, offset?: undefined, height: number, scrollTop: number }} ScrollAnchor
 */

const LOAD_OLDER_THRESHOLD_PX = 40;

/**
 * @template {HTMLElement} [T=HTMLElement]
 * @param {string} id
 * @returns {T}
 */
const $ = (id) => /** @type {T} */ (document.getElementById(id));

const el = {
  app: $("app"),
  boot: $("boot"),
  authView: $("auth-view"),
  /** @type {HTMLFormElement} */
  authForm: $("auth-form"),
  /** @type {HTMLInputElement} */
  username: $("username"),
  /** @type {HTMLInputElement} */
  password: $("password"),
  usernameError: $("username-error"),
  passwordError: $("password-error"),
  formError: $("form-error"),
  /** @type {HTMLButtonElement} */
  loginButton: $("login-button"),
  /** @type {HTMLButtonElement} */
  registerButton: $("register-button"),
  session: $("session"),
  me: $("me"),
  /** @type {HTMLButtonElement} */
  logoutButton: $("logout-button"),
  connectionStatus: $("connection-status"),
  chatView: $("chat-view"),
  userList: $("user-list"),
  userListEmpty: $("user-list-empty"),
  roomList: $("room-list"),
  roomListEmpty: $("room-list-empty"),
  /** @type {HTMLButtonElement} */
  newRoomButton: $("new-room-button"),
  conversationTitle: $("conversation-title"),
  conversationPresence: $("conversation-presence"),
  /** @type {HTMLButtonElement} */
  membersButton: $("members-button"),
  roomPanel: $("room-panel"),
  roomPanelTitle: $("room-panel-title"),
  memberList: $("member-list"),
  /** @type {HTMLButtonElement} */
  addMembersButton: $("add-members-button"),
  /** @type {HTMLButtonElement} */
  leaveRoomButton: $("leave-room-button"),
  /** @type {HTMLDialogElement} */
  roomDialog: $("room-dialog"),
  /** @type {HTMLFormElement} */
  roomForm: $("room-form"),
  roomDialogTitle: $("room-dialog-title"),
  roomNameField: $("room-name-field"),
  /** @type {HTMLInputElement} */
  roomName: $("room-name"),
  /** @type {HTMLInputElement} */
  memberFilter: $("member-filter"),
  memberChoices: $("member-choices"),
  memberChoicesEmpty: $("member-choices-empty"),
  memberPicked: $("member-picked"),
  roomFormError: $("room-form-error"),
  /** @type {HTMLButtonElement} */
  roomSubmit: $("room-submit"),
  /** @type {HTMLButtonElement} */
  roomCancel: $("room-cancel"),
  scroller: $("messages-scroller"),
  /** @type {HTMLButtonElement} */
  loadOlder: $("load-older"),
  historyStatus: $("history-status"),
  messages: $("messages"),
  emptyConversation: $("empty-conversation"),
  typingIndicator: $("typing-indicator"),
  /** @type {HTMLFormElement} */
  composer: $("composer"),
  /** @type {HTMLTextAreaElement} */
  input: $("message-input"),
  /** @type {HTMLButtonElement} */
  sendButton: $("send-button"),
  toast: $("toast"),
  announcer: $("announcer"),
};

/**
 * @param {string} tag
 * @param {Record<string, string>} [props]
 * @param {(Node | string)[]} [children]
 */
function h(tag, props = {}, children = []) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

const timeFormat = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
});
const fullFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "medium" });

/** @param {string} iso */
function formatTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const today = new Date();
  const sameDay = date.toDateString() === today.toDateString();
  return (sameDay ? timeFormat : dateTimeFormat).format(date);
}

// ---------------------------------------------------------------------------
// Notices

/** @type {ReturnType<typeof setTimeout> | undefined} */
let toastTimer;

/** @param {string} text */
export function showToast(text) {
  el.toast.textContent = text;
  el.toast.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.toast.hidden = true; }, 4000);
}

/** @param {string} text */
export function announce(text) {
  // Re-setting the same text would not be announced again; clear first.
  el.announcer.textContent = "";
  requestAnimationFrame(() => { el.announcer.textContent = text; });
}

export function pageVisible() {
  return document.visibilityState !== "hidden";
}

/** @param {string | null} text null when connected */
export function setConnectionStatus(text) {
  el.connectionStatus.textContent = text ?? "";
  el.connectionStatus.hidden = !text;
  document.body.classList.toggle("offline", Boolean(text));
}

// ---------------------------------------------------------------------------
// Views and the login form

/** @param {"auth" | "chat"} view */
function show(view) {
  el.boot.hidden = true;
  el.app.setAttribute("aria-busy", "false");
  el.authView.hidden = view !== "auth";
  el.chatView.hidden = view !== "chat";
  el.session.hidden = view !== "chat";
}

export function showAuth() {
  show("auth");
  el.username.focus();
}

/** @param {string} username */
export function showChat(username) {
  el.me.textContent = username;
  show("chat");
}

export function focusFirstUser() {
  el.userList.querySelector("button")?.focus();
}

/** Empties the chat view after logout. */
export function resetChat() {
  el.userList.replaceChildren();
  el.roomList.replaceChildren();
  el.memberList.replaceChildren();
  closeRoomDialog();
  roomPanelOpen = false;
  el.roomPanel.hidden = true;
  el.membersButton.hidden = true;
  el.messages.replaceChildren();
  el.chatView.classList.remove("has-conversation");
  el.input.value = "";
  el.input.disabled = true;
  el.sendButton.disabled = true;
  renderConversationHeader();
  document.title = "Chat";
}

/** @returns {Credentials} */
export function readCredentials() {
  return { username: el.username.value.trim(), password: el.password.value };
}

export function clearPassword() {
  el.password.value = "";
}

export function clearAuthErrors() {
  for (const node of [el.usernameError, el.passwordError, el.formError]) node.textContent = "";
  el.username.removeAttribute("aria-invalid");
  el.password.removeAttribute("aria-invalid");
}

/**
 * Puts an error of the node next to the field it is about.
 * @param {{ code?: string, message?: string } | undefined} error
 * @param {string} fallback
 */
export function showAuthError(error, fallback) {
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

/** @param {string} text */
export function showFormError(text) {
  el.formError.textContent = text;
}

/** @param {boolean} busy */
export function setAuthBusy(busy) {
  el.loginButton.disabled = busy;
  el.registerButton.disabled = busy;
  el.authForm.setAttribute("aria-busy", String(busy));
}

/** @param {boolean} busy */
export function setLogoutBusy(busy) {
  el.logoutButton.disabled = busy;
}

// ---------------------------------------------------------------------------
// People

/** @param {string} name */
function nameHue(name) {
  let hash = 0;
  for (const ch of name) hash = (hash * 31 + /** @type {number} */ (ch.codePointAt(0))) >>> 0;
  return hash % 360;
}

/** @param {string} name */
function avatarColor(name) {
  return `hsl(${nameHue(name)} 55% 45%)`;
}

export function renderUsers() {
  const users = [...state.users.values()].sort((a, b) =>
    a.username.localeCompare(b.username, undefined, { sensitivity: "base" }));
  /** @type {Map<string | undefined, HTMLElement>} */
  const existing = new Map();
  for (const item of /** @type {HTMLCollectionOf<HTMLElement>} */ (el.userList.children)) {
    existing.set(item.dataset.username, item);
  }

  users.forEach((user, index) => {
    let item = existing.get(user.username);
    existing.delete(user.username);
    if (!item) item = createUserItem(user.username);
    updateUserItem(item, user);
    if (el.userList.children[index] !== item) el.userList.insertBefore(item, el.userList.children[index] ?? null);
  });
  for (const stale of existing.values()) stale.remove();
  el.userListEmpty.hidden = users.length > 0;
  updateTitle();
}

/**
 * The node's counts stop at 100: show "99+" beyond 99.
 * @param {number} unread
 */
function badgeText(unread) {
  if (unread <= 0) return "";
  return unread > 99 ? "99+" : String(unread);
}

/** The page title counts every unread message, people and rooms. */
function updateTitle() {
  let unread = 0;
  for (const user of state.users.values()) unread += user.unread;
  for (const room of state.rooms.values()) unread += room.unread;
  document.title = unread > 0 ? `(${unread}) Chat` : "Chat";
}

/** @param {string} username */
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
  button.addEventListener("click", () => pickUser(username));
  const item = h("li", { className: "user-item" }, [button]);
  item.dataset.username = username;
  return item;
}

/**
 * @param {HTMLElement} item
 * @param {User} user
 */
function updateUserItem(item, user) {
  const button = /** @type {HTMLElement} */ (item.firstElementChild);
  const online = user.online ? "true" : "false";
  if (button.dataset.online !== online) button.dataset.online = online;
  const open = peerKey(user.username) === state.openKey;
  button.classList.toggle("active", open);
  if (open) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
  /** @type {HTMLElement} */ (button.querySelector(".user-status")).textContent = user.online ? "online" : "offline";
  const badge = /** @type {HTMLElement} */ (button.querySelector(".unread-badge"));
  badge.textContent = badgeText(user.unread);
  badge.hidden = user.unread === 0;
  const parts = [user.username, user.online ? "online" : "offline"];
  if (user.unread > 0) parts.push(`${badgeText(user.unread)} unread`);
  button.setAttribute("aria-label", parts.join(", "));
}

// ---------------------------------------------------------------------------
// Rooms

export function renderRooms() {
  const rooms = [...state.rooms.values()].sort((a, b) =>
    a.name.localeCompare(b.name, undefined, { sensitivity: "base" }) || a.id - b.id);
  /** @type {Map<string | undefined, HTMLElement>} */
  const existing = new Map();
  for (const item of /** @type {HTMLCollectionOf<HTMLElement>} */ (el.roomList.children)) {
    existing.set(item.dataset.roomId, item);
  }
  rooms.forEach((room, index) => {
    let item = existing.get(String(room.id));
    existing.delete(String(room.id));
    if (!item) item = createRoomItem(room.id);
    updateRoomItem(item, room);
    if (el.roomList.children[index] !== item) el.roomList.insertBefore(item, el.roomList.children[index] ?? null);
  });
  for (const stale of existing.values()) stale.remove();
  el.roomListEmpty.hidden = rooms.length > 0;
  updateTitle();
}

/** @param {number} id */
function createRoomItem(id) {
  const avatar = h("span", { className: "avatar room-avatar", "aria-hidden": "true", text: "#" });
  const name = h("span", { className: "user-name room-name" });
  const status = h("span", { className: "user-status room-status" });
  const badge = h("span", { className: "unread-badge", "data-testid": "unread-badge" });
  const button = h("button", { type: "button", className: "user-button room-button", "data-testid": "room" },
    [h("span", { className: "avatar-wrap" }, [avatar]), h("span", { className: "user-text" }, [name, status]), badge]);
  button.dataset.roomId = String(id);
  button.addEventListener("click", () => pickRoom(id));
  const item = h("li", { className: "user-item room-item" }, [button]);
  item.dataset.roomId = String(id);
  return item;
}

/**
 * @param {HTMLElement} item
 * @param {RoomInfo} room
 */
function updateRoomItem(item, room) {
  const button = /** @type {HTMLElement} */ (item.firstElementChild);
  const open = roomKey(room.id) === state.openKey;
  button.classList.toggle("active", open);
  if (open) button.setAttribute("aria-current", "true");
  else button.removeAttribute("aria-current");
  if (button.dataset.name !== room.name) button.dataset.name = room.name;
  const avatar = /** @type {HTMLElement} */ (button.querySelector(".avatar"));
  avatar.style.background = avatarColor(`#${room.id}`);
  /** @type {HTMLElement} */ (button.querySelector(".room-name")).textContent = room.name;
  const members = membersText(room.members.length);
  /** @type {HTMLElement} */ (button.querySelector(".room-status")).textContent = members;
  const badge = /** @type {HTMLElement} */ (button.querySelector(".unread-badge"));
  badge.textContent = badgeText(room.unread);
  badge.hidden = room.unread === 0;
  const parts = [`Room ${room.name}`, members];
  if (room.unread > 0) parts.push(`${badgeText(room.unread)} unread`);
  button.setAttribute("aria-label", parts.join(", "));
}

/** @param {number} count */
function membersText(count) {
  return count === 1 ? "1 member" : `${count} members`;
}

/** @returns {RoomInfo | null} the room on screen */
function openRoom() {
  const room = openConversation()?.target.room;
  return room != null ? state.rooms.get(room) ?? null : null;
}

/** Whether the member panel of the open room is shown; the members button toggles it. */
let roomPanelOpen = false;

export function toggleRoomPanel() {
  roomPanelOpen = !roomPanelOpen;
  renderRoomPanel();
  if (roomPanelOpen) el.roomPanel.focus();
}

export function renderRoomPanel() {
  const room = openRoom();
  el.membersButton.hidden = !room;
  el.membersButton.setAttribute("aria-expanded", String(Boolean(room) && roomPanelOpen));
  el.roomPanel.hidden = !room || !roomPanelOpen;
  if (!room || !roomPanelOpen) return;
  // Rebuilding the list drops a focused Remove button: keep focus in the panel.
  const hadFocus = el.memberList.contains(document.activeElement);
  el.roomPanelTitle.textContent = `Members (${room.members.length})`;
  const mine = room.owner === state.me;
  const members = [...room.members].sort((a, b) => {
    if (a === room.owner) return -1;
    if (b === room.owner) return 1;
    return a.localeCompare(b, undefined, { sensitivity: "base" });
  });
  el.memberList.replaceChildren(...members.map((name) => {
    const online = name === state.me || Boolean(state.users.get(name)?.online);
    const dot = h("span", { className: "member-dot", "aria-hidden": "true" });
    const label = h("span", { className: "member-name", text: name });
    const notes = [];
    if (name === state.me) notes.push("you");
    if (name === room.owner) notes.push("owner");
    notes.push(online ? "online" : "offline");
    const note = h("span", { className: "member-note", text: notes.join(" · ") });
    const children = [dot, h("span", { className: "member-text" }, [label, note])];
    if (mine && name !== state.me) {
      const remove = h("button", {
        type: "button", className: "button button-quiet button-small member-remove",
        "data-testid": "remove-member", "aria-label": `Remove ${name} from ${room.name}`, text: "Remove",
      });
      remove.addEventListener("click", () => pickRemove(name));
      children.push(remove);
    }
    const item = h("li", { className: "member", "data-testid": "member" }, children);
    item.dataset.username = name;
    item.dataset.online = String(online);
    return item;
  }));
  if (hadFocus && !el.roomPanel.contains(document.activeElement)) el.roomPanel.focus();
}

/** After leaving the room on screen: focus goes to the room list, not lost with the panel. */
export function focusRooms() {
  const target = el.roomList.querySelector("button") ?? el.newRoomButton;
  /** @type {HTMLElement} */ (target).focus();
}

// ---------------------------------------------------------------------------
// The room dialog: create a room, or add people to the open one

/** @type {{ mode: "create" | "add", room: number | null }} */
const dialog = { mode: "create", room: null };

/**
 * @param {"create" | "add"} mode
 * @param {number | null} roomId the room to add to
 */
export function openRoomDialog(mode, roomId) {
  dialog.mode = mode;
  dialog.room = roomId;
  const room = roomId != null ? state.rooms.get(roomId) : undefined;
  const exclude = new Set(room?.members ?? []);
  const people = [...state.users.keys()]
    .filter((name) => name !== state.me && !exclude.has(name))
    .sort((a, b) => a.localeCompare(b, undefined, { sensitivity: "base" }));
  el.roomDialogTitle.textContent = mode === "create" ? "New room" : `Add people to ${room?.name ?? "the room"}`;
  el.roomNameField.hidden = mode !== "create";
  el.roomName.value = "";
  el.roomName.removeAttribute("aria-invalid");
  el.memberFilter.value = "";
  el.roomFormError.textContent = "";
  el.roomSubmit.textContent = mode === "create" ? "Create room" : "Add";
  setRoomDialogBusy(false);
  el.memberChoices.replaceChildren(...people.map((name) => {
    const box = h("input", { type: "checkbox", value: name, "data-testid": "member-choice" });
    const label = h("label", { className: "choice" }, [box, h("span", { text: name })]);
    const item = h("li", {}, [label]);
    item.dataset.username = name;
    return item;
  }));
  el.memberChoicesEmpty.hidden = people.length > 0;
  renderPicked();
  if (!el.roomDialog.open) el.roomDialog.showModal();
  (mode === "create" ? el.roomName : el.memberFilter).focus();
}

/** @returns {{ mode: "create" | "add", room: number | null, name: string, members: string[] }} */
export function readRoomDialog() {
  const boxes = /** @type {NodeListOf<HTMLInputElement>} */ (el.memberChoices.querySelectorAll("input:checked"));
  return { mode: dialog.mode, room: dialog.room, name: el.roomName.value, members: Array.from(boxes, (box) => box.value) };
}

/** @param {string} text */
export function showRoomDialogError(text) {
  el.roomFormError.textContent = text;
  if (dialog.mode === "create" && /name/i.test(text)) {
    el.roomName.setAttribute("aria-invalid", "true");
    el.roomName.focus();
  }
}

/** @param {boolean} busy */
export function setRoomDialogBusy(busy) {
  el.roomSubmit.disabled = busy;
  el.roomForm.setAttribute("aria-busy", String(busy));
}

export function roomDialogOpen() {
  return el.roomDialog.open;
}

export function closeRoomDialog() {
  if (el.roomDialog.open) el.roomDialog.close();
}

/** Names who is picked, since the filter can hide a picked box. */
function renderPicked() {
  const { members, mode } = readRoomDialog();
  if (members.length === 0) {
    el.memberPicked.textContent = mode === "create" ? "Nobody picked yet: you can add people later." : "Nobody picked yet.";
  } else {
    el.memberPicked.textContent = `Picked (${members.length}): ${members.join(", ")}`;
  }
}

/** Shows only the people whose name contains the filter; picks stay as they are. */
function filterChoices() {
  const wanted = el.memberFilter.value.trim().toLowerCase();
  let shown = 0;
  for (const item of /** @type {HTMLCollectionOf<HTMLElement>} */ (el.memberChoices.children)) {
    const match = !wanted || (item.dataset.username ?? "").toLowerCase().includes(wanted);
    item.hidden = !match;
    if (match) shown += 1;
  }
  el.memberChoicesEmpty.hidden = shown > 0;
}

// ---------------------------------------------------------------------------
// The open conversation

/** Opens an empty conversation view; its messages follow with the history. */
export function showConversation() {
  el.messages.replaceChildren();
  el.chatView.classList.add("has-conversation");
  el.input.disabled = false;
  el.sendButton.disabled = false;
}

/** No conversation on screen (the open room was left). */
export function closeConversationView() {
  el.messages.replaceChildren();
  el.chatView.classList.remove("has-conversation");
  el.input.value = "";
  el.input.disabled = true;
  el.sendButton.disabled = true;
  el.input.placeholder = "Pick someone to chat with";
  el.emptyConversation.hidden = true;
}

export function renderConversationHeader() {
  const conv = openConversation();
  if (!conv) {
    el.conversationTitle.textContent = "Pick someone to chat with";
    el.conversationPresence.textContent = "";
    delete el.conversationPresence.dataset.online;
    return;
  }
  const { room, peer } = conv.target;
  if (room != null) {
    const info = state.rooms.get(room);
    el.conversationTitle.textContent = info?.name ?? "";
    el.input.placeholder = `Message ${info?.name ?? "the room"}`;
    el.conversationPresence.textContent = info ? membersText(info.members.length) : "";
    delete el.conversationPresence.dataset.online;
    return;
  }
  el.conversationTitle.textContent = peer ?? "";
  el.input.placeholder = `Message ${peer}`;
  const online = state.users.get(peer ?? "")?.online;
  el.conversationPresence.textContent = online ? "online" : "offline";
  el.conversationPresence.dataset.online = online ? "true" : "false";
}

/** @param {ShownMessage} message */
function messageKey(message) {
  return message.from === state.me && message.clientId != null ? `c:${message.clientId}` : `i:${message.id}`;
}

/**
 * @param {object} options
 * @param {boolean} [options.stickToBottom] scroll to the newest message if the reader was near it
 * @param {boolean} [options.forceBottom] scroll to the newest message
 */
export function renderMessages({ stickToBottom = false, forceBottom = false }) {
  const conv = openConversation();
  if (!conv) {
    el.messages.replaceChildren();
    el.emptyConversation.hidden = true;
    return;
  }
  const inRoom = conv.target.room != null;
  const nearBottom = el.scroller.scrollHeight - el.scroller.scrollTop - el.scroller.clientHeight < 80;

  /** @type {Row[]} */
  const rows = [];
  if (conv.loaded) {
    for (const message of conv.messages) rows.push({ key: messageKey(message), message, pending: false });
  }
  for (const item of state.outbox) {
    if (item.key !== conv.key) continue;
    rows.push({
      key: `c:${item.clientId}`,
      message: {
        id: null, from: state.me, to: item.target.peer ?? null, room: item.target.room ?? null,
        text: item.text, sentAt: item.createdAt, clientId: item.clientId,
      },
      pending: true,
      failed: item.failed,
    });
  }
  if (inRoom) {
    rows.forEach((row, index) => {
      row.showFrom = row.message.from !== state.me && (index === 0 || rows[index - 1].message.from !== row.message.from);
    });
  }

  /** @type {Map<string | undefined, HTMLElement>} */
  const existing = new Map();
  for (const node of /** @type {HTMLCollectionOf<HTMLElement>} */ (el.messages.children)) {
    existing.set(node.dataset.key, node);
  }
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

/** @param {Row} row */
function createMessageItem(row) {
  const own = row.message.from === state.me;
  const from = h("p", { className: "message-from", "data-testid": "message-from" });
  from.textContent = row.message.from ?? "";
  // The same hue as the sender's avatar; style.css picks a lightness readable on the bubble.
  from.style.setProperty("--sender-hue", String(nameHue(row.message.from ?? "")));
  from.hidden = true;
  const text = h("p", { className: "message-text", "data-testid": "message-text" });
  const time = h("time", { className: "message-time" });
  const status = h("span", { className: "message-status" });
  const meta = h("span", { className: "message-meta" }, [time, status]);
  const item = h("li", { className: `message ${own ? "own" : "theirs"}`, "data-testid": "message" },
    [h("div", { className: "bubble" }, [from, text, meta])]);
  item.dataset.key = row.key;
  item.dataset.own = own ? "true" : "false";
  text.textContent = row.message.text; // never innerHTML
  return item;
}

/**
 * @param {HTMLElement} node
 * @param {Row} row
 */
function updateMessageItem(node, row) {
  const { message } = row;
  if (message.id != null) node.dataset.id = String(message.id);
  else delete node.dataset.id;
  if (message.clientId != null) node.dataset.clientId = message.clientId;
  node.classList.toggle("pending", row.pending && !row.failed);
  node.classList.toggle("failed", Boolean(row.failed));
  const from = /** @type {HTMLElement} */ (node.querySelector(".message-from"));
  if (from.hidden === Boolean(row.showFrom)) from.hidden = !row.showFrom;
  const time = /** @type {HTMLTimeElement} */ (node.querySelector(".message-time"));
  if (time.dateTime !== message.sentAt) {
    time.dateTime = message.sentAt;
    time.textContent = formatTime(message.sentAt);
    const date = new Date(message.sentAt);
    time.title = Number.isNaN(date.getTime()) ? "" : fullFormat.format(date);
  }
  const status = /** @type {HTMLElement} */ (node.querySelector(".message-status"));
  const statusText = row.failed ? `Not sent: ${row.failed}` : row.pending ? "sending…" : "";
  if (status.textContent !== statusText) status.textContent = statusText;
  const label = `${message.from === state.me ? "You" : message.from}, ${formatTime(message.sentAt)}`;
  if (node.getAttribute("aria-label") !== label) node.setAttribute("aria-label", label);
}

function scrollToBottom() {
  el.scroller.scrollTop = el.scroller.scrollHeight;
}

/**
 * Remembers the first visible message and its offset so that prepending older messages
 * does not move what the reader is looking at.
 * @returns {ScrollAnchor}
 */
export function captureScrollAnchor() {
  const top = el.scroller.getBoundingClientRect().top;
  for (const node of el.messages.children) {
    const rect = node.getBoundingClientRect();
    if (rect.bottom > top) return { node, offset: rect.top - top };
  }
  return { node: null, height: el.scroller.scrollHeight, scrollTop: el.scroller.scrollTop };
}

/** @param {ScrollAnchor} anchor */
export function restoreScrollAnchor(anchor) {
  if (anchor.node && anchor.node.isConnected) {
    const top = el.scroller.getBoundingClientRect().top;
    const now = anchor.node.getBoundingClientRect().top - top;
    el.scroller.scrollTop += now - anchor.offset;
  } else if (anchor.height != null) {
    el.scroller.scrollTop = anchor.scrollTop + (el.scroller.scrollHeight - anchor.height);
  }
}

/** @param {boolean} connected older pages can only be asked for while connected */
export function renderHistoryControls(connected) {
  const conv = openConversation();
  const loadingOlder = conv?.historyQueue.includes("older");
  el.loadOlder.hidden = !conv || !conv.loaded || !conv.hasMore;
  el.loadOlder.disabled = Boolean(loadingOlder) || !connected;
  el.loadOlder.textContent = loadingOlder ? "Loading…" : "Load older messages";
  let status = "";
  if (conv && !conv.loaded) status = "Loading…";
  else if (conv && !conv.hasMore && conv.messages.length > 0) status = "Beginning of the conversation";
  el.historyStatus.textContent = status;
}

export function renderTyping() {
  const names = state.openKey ? typingIn(state.openKey) : [];
  el.typingIndicator.textContent = typingText(names);
  el.typingIndicator.classList.toggle("visible", names.length > 0);
}

/**
 * "alice is typing…", "alice and bob are typing…", "alice, bob and carol are typing…",
 * "alice, bob and 2 others are typing…".
 * @param {string[]} names in the order they started
 */
function typingText(names) {
  if (names.length === 0) return "";
  if (names.length === 1) return `${names[0]} is typing…`;
  if (names.length <= 3) return `${names.slice(0, -1).join(", ")} and ${names[names.length - 1]} are typing…`;
  return `${names[0]}, ${names[1]} and ${names.length - 2} others are typing…`;
}

// ---------------------------------------------------------------------------
// The composer

export function composerText() {
  return el.input.value;
}

export function clearComposer() {
  el.input.value = "";
  autoGrow();
}

export function focusComposer() {
  el.input.focus();
}

export function autoGrow() {
  el.input.style.height = "auto";
  el.input.style.height = `${Math.min(el.input.scrollHeight, 160)}px`;
}

// ---------------------------------------------------------------------------
// Listeners: each hands one user intent to its action

/** @type {(username: string) => void} */
let pickUser = () => {};
/** @type {(id: number) => void} */
let pickRoom = () => {};
/** @type {(username: string) => void} */
let pickRemove = () => {};

/**
 * A click (or Enter) on someone in the people list. Items come and go with the list, so
 * the handler is kept here for the items created later.
 * @param {(username: string) => void} handler
 */
export function onPickUser(handler) {
  pickUser = handler;
}

/**
 * A click (or Enter) on a room in the room list.
 * @param {(id: number) => void} handler
 */
export function onPickRoom(handler) {
  pickRoom = handler;
}

/**
 * The owner's "Remove" next to a member of the open room.
 * @param {(username: string) => void} handler
 */
export function onRemoveMember(handler) {
  pickRemove = handler;
}

/** @param {() => void} handler */
export function onNewRoom(handler) {
  el.newRoomButton.addEventListener("click", handler);
}

/** @param {() => void} handler */
export function onToggleRoomPanel(handler) {
  el.membersButton.addEventListener("click", handler);
}

/** @param {() => void} handler */
export function onAddMembers(handler) {
  el.addMembersButton.addEventListener("click", handler);
}

/** @param {() => void} handler */
export function onLeaveRoom(handler) {
  el.leaveRoomButton.addEventListener("click", handler);
}

/**
 * The room dialog's submit (its button, or Enter in the name field). Cancel and Escape
 * close it; a modal dialog gives focus back to what opened it.
 * @param {() => void} handler
 */
export function onSubmitRoomDialog(handler) {
  el.roomForm.addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
  el.roomCancel.addEventListener("click", closeRoomDialog);
  el.memberFilter.addEventListener("input", filterChoices);
  el.memberChoices.addEventListener("change", renderPicked);
  el.roomName.addEventListener("input", () => {
    el.roomFormError.textContent = "";
    el.roomName.removeAttribute("aria-invalid");
  });
  // Enter in the filter would submit the form: it only filters.
  el.memberFilter.addEventListener("keydown", (event) => {
    if (event.key === "Enter") event.preventDefault();
  });
}

/** @param {() => void} handler */
export function onLogin(handler) {
  el.authForm.addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
}

/** @param {() => void} handler */
export function onRegister(handler) {
  el.registerButton.addEventListener("click", handler);
}

/** @param {() => void} handler */
export function onLogout(handler) {
  el.logoutButton.addEventListener("click", handler);
}

/**
 * The send button, or Enter without Shift (Shift+Enter makes a new line; Enter that ends
 * an IME composition must not send).
 * @param {() => void} handler
 */
export function onSend(handler) {
  el.composer.addEventListener("submit", (event) => {
    event.preventDefault();
    handler();
  });
  el.input.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      handler();
    }
  });
}

/** @param {() => void} handler */
export function onComposerInput(handler) {
  el.input.addEventListener("input", handler);
}

/**
 * Scrolling or wheeling up near the top of the messages, or the "Load older" button.
 * The scroll listener also notes whether the reader is at the bottom, to keep the newest
 * message in view when the list is resized.
 * @param {() => void} handler
 */
export function onWantOlder(handler) {
  // Only a move upwards near the top pages back; landing near the top because the
  // first page barely overflows (we scroll to the bottom after it) must not.
  let lastScrollTop = 0;
  let pinnedToBottom = true;
  el.scroller.addEventListener("scroll", () => {
    const top = el.scroller.scrollTop;
    if (top < LOAD_OLDER_THRESHOLD_PX && top <= lastScrollTop) handler();
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
    if (event.deltaY < 0 && el.scroller.scrollTop < LOAD_OLDER_THRESHOLD_PX) handler();
  }, { passive: true });
  el.loadOlder.addEventListener("click", handler);
}

/** @param {() => void} handler */
export function onBackOnline(handler) {
  window.addEventListener("online", handler);
}

/**
 * The page was hidden, or is being left or reloaded.
 * @param {() => void} handler
 */
export function onPageHidden(handler) {
  window.addEventListener("pagehide", handler);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") handler();
  });
}

/** @param {() => void} handler */
export function onPageShown(handler) {
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") handler();
  });
}
