// @ts-check
// Logging in and out: the moves between the login form and the chat.

import * as api from "./api.js";
import * as socket from "./socket.js";
import { state, resetState } from "./state.js";
import { stopTyping, clearTyping } from "./chat.js";
import * as render from "./render.js";

/** @param {"login" | "register"} mode register first, then log in */
export async function submitAuth(mode) {
  render.clearAuthErrors();
  const credentials = render.readCredentials();
  render.setAuthBusy(true);
  try {
    if (mode === "register") {
      const registered = await api.register(credentials);
      if (!registered.ok) {
        render.showAuthError(registered.data?.error, `Could not create the account (${registered.status}).`);
        return;
      }
    }
    const login = await api.login(credentials);
    if (!login.ok) {
      render.showAuthError(login.data?.error, `Could not log in (${login.status}).`);
      return;
    }
    render.clearPassword();
    enterChat(login.data.username);
  } catch {
    render.showFormError("Cannot reach the server. Check your connection and try again.");
  } finally {
    render.setAuthBusy(false);
  }
}

export async function logout() {
  render.setLogoutBusy(true);
  try {
    await api.logout();
  } catch {
    // The local session ends regardless; the cookie is useless once the server drops it.
  } finally {
    render.setLogoutBusy(false);
    leaveChat();
  }
}

/** @param {string} username */
export function enterChat(username) {
  state.me = username;
  render.showChat(username);
  socket.start();
  render.renderUsers();
  render.renderRooms();
  render.focusFirstUser();
}

function leaveChat() {
  stopTyping();
  socket.stop();
  clearTyping();
  render.setConnectionStatus(null);
  resetState();
  render.resetChat();
  render.clearAuthErrors();
  render.showAuth();
}

export function sessionEnded() {
  leaveChat();
  render.showFormError("Your session has ended. Please log in again.");
}
