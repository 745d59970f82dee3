// @ts-check
// Browser client for the chat cluster: native ES modules, no build step, no dependencies.
// This entry module connects the others and starts the page:
//   protocol.js  types of every frame and HTTP body (docs/protocol.md)
//   state.js     what the client knows; no DOM
//   api.js       HTTP calls
//   socket.js    the WebSocket: reconnect with backoff, sync
//   chat.js      conversations and rooms: frames from the node, actions of the user
//   session.js   login, register, logout
//   render.js    the page: the only module that touches the DOM
//   input.js     which user intent starts which action

import * as api from "./api.js";
import * as socket from "./socket.js";
import { linkOpened, linkClosed, linkLost, handleFrame, handleSync } from "./chat.js";
import { enterChat, sessionEnded } from "./session.js";
import { wireInput } from "./input.js";
import { showAuth } from "./render.js";

async function boot() {
  socket.setHooks({
    opened: linkOpened,
    received: handleFrame,
    synced: handleSync,
    closed: linkClosed,
    reconnecting: linkLost,
    sessionEnded,
  });
  wireInput();
  try {
    const me = await api.getMe();
    if (me.ok && me.data?.username) {
      enterChat(me.data.username);
      return;
    }
  } catch {
    // Server unreachable: show the login form; logging in will report the problem.
  }
  showAuth();
}

boot();
