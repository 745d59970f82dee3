// @ts-check
// The WebSocket to whichever node the load balancer picks: connect, reconnect with backoff,
// and sync what was missed meanwhile. What frames mean is left to the hooks app.js sets, so
// this module knows nothing of the page.

import * as api from "./api.js";
import { state } from "./state.js";

/** @typedef {import('./protocol.js').ClientFrame} ClientFrame */
/** @typedef {import('./protocol.js').ServerFrame} ServerFrame */
/** @typedef {import('./protocol.js').SyncFrame} SyncFrame */
/** @typedef {import('./protocol.js').Message} Message */

/**
 * @typedef {object} LinkHooks
 * @property {() => void} opened
 * @property {(frame: ServerFrame) => void} received every frame but `sync`, which the link pages itself
 * @property {(messages: Message[], done: boolean) => void} synced a page of missed messages
 * @property {() => void} closed
 * @property {() => void} reconnecting
 * @property {() => void} sessionEnded the node refuses the session: reconnecting is pointless
 */

const BACKOFF_START_MS = 500;
const BACKOFF_MAX_MS = 10000;
const CLOSE_SERVICE_RESTART = 1012;
const RESTART_SPREAD_MS = 1000;

/** @type {LinkHooks} */
let hooks;

const link = {
  /** @type {WebSocket | null} */
  socket: null,
  attempt: 0, // failed attempts since the last successful open
  /** @type {ReturnType<typeof setTimeout> | undefined} */
  timer: undefined,
  wanted: false, // false after logout: do not reconnect
  everOpened: false,
};

/** @param {LinkHooks} linkHooks */
export function setHooks(linkHooks) {
  hooks = linkHooks;
}

/** Connects for a freshly logged-in user; the first open is not a reconnect. */
export function start() {
  link.wanted = true;
  link.everOpened = false;
  connect();
}

export function stop() {
  link.wanted = false;
  clearTimeout(link.timer);
  link.timer = undefined;
  const socket = link.socket;
  link.socket = null;
  if (socket) socket.close(1000, "logout");
}

/** The network is back: try at once instead of waiting out the backoff. */
export function reconnectNow() {
  if (link.wanted && !link.socket) {
    link.attempt = 0;
    connect();
  }
}

/** The page is visible again: browsers throttle timers of hidden pages, so do not wait for them. */
export function resume() {
  if (link.wanted && !link.socket) connect();
}

export function isOpen() {
  return link.socket !== null && link.socket.readyState === WebSocket.OPEN;
}

/**
 * @param {ClientFrame} frame
 * @returns {boolean} false when there is no open connection and the frame was dropped
 */
export function send(frame) {
  if (!isOpen()) return false;
  /** @type {WebSocket} */ (link.socket).send(JSON.stringify(frame));
  return true;
}

function socketUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

function connect() {
  clearTimeout(link.timer);
  link.timer = undefined;
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
  socket.addEventListener("message", (event) => onMessage(socket, event));
  socket.addEventListener("close", (event) => onClose(socket, event));
  // "error" is always followed by "close"; nothing to do here.
}

/** @param {WebSocket} socket */
function onOpen(socket) {
  if (socket !== link.socket) return;
  const reconnected = link.everOpened;
  link.everOpened = true;
  if (reconnected) send({ type: "sync", after: state.maxId });
  hooks.opened();
}

/**
 * @param {WebSocket} socket
 * @param {CloseEvent} event
 */
function onClose(socket, event) {
  if (socket !== link.socket) return;
  link.socket = null;
  hooks.closed();
  if (!link.wanted) return;
  hooks.reconnecting();
  if (event.code === CLOSE_SERVICE_RESTART) {
    // The node is draining: another node takes us within a second. The random delay
    // spreads a drained node's clients so they do not all arrive at once.
    link.attempt = 0;
    link.timer = setTimeout(() => {
      link.timer = undefined;
      connect();
    }, Math.random() * RESTART_SPREAD_MS);
    return;
  }
  // Everything else waits longer after each failed attempt, with jitter: 1013 (try again
  // later), and an upgrade the node refused because it admits sockets at a bounded rate
  // (503 with Retry-After, which browsers hide and report as 1006 before "open"). So a
  // storm of clients coming back spreads out instead of returning in step. An attempt
  // counts as failed until its `updateUsers` arrives.
  scheduleReconnect();
}

function scheduleReconnect() {
  if (!link.wanted || link.timer) return;
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** link.attempt);
  const delay = base / 2 + Math.random() * (base / 2); // jitter: half to full
  link.attempt += 1;
  link.timer = setTimeout(async () => {
    link.timer = undefined;
    if (link.attempt >= 3 && !(await sessionStillValid())) {
      hooks.sessionEnded();
      return;
    }
    connect();
  }, delay);
}

/**
 * The WebSocket API hides the 401 of a refused upgrade; ask /api/me instead. A network
 * failure means the node is down, not that the session is gone.
 */
async function sessionStillValid() {
  try {
    const me = await api.getMe();
    return me.status !== 401;
  } catch {
    return true;
  }
}

/**
 * @param {WebSocket} socket
 * @param {MessageEvent} event
 */
function onMessage(socket, event) {
  if (socket !== link.socket || typeof event.data !== "string") return;
  /** @type {ServerFrame} */
  let frame;
  try {
    frame = JSON.parse(event.data);
  } catch {
    return;
  }
  // The socket is set up: the next failure starts the backoff over.
  if (frame.type === "updateUsers") link.attempt = 0;
  if (frame.type === "sync") onSync(frame);
  else hooks.received(frame);
}

/** @param {SyncFrame} frame */
function onSync(frame) {
  const messages = frame.messages ?? [];
  const more = Boolean(frame.hasMore) && messages.length > 0;
  hooks.synced(messages, !more);
  if (more) {
    send({ type: "sync", after: messages[messages.length - 1].id });
  }
}
