// @ts-check
// Which action each thing the user does starts. render.js attaches the listeners, as the
// only module that touches the page; this is the one place to read what the UI can do.

import * as render from "./render.js";
import * as socket from "./socket.js";
import { submitAuth, logout } from "./session.js";
import {
  openPeer, openRoom, loadOlder, composerInput, sendMessage, pageShown, pageHidden, startCreateRoom,
  startAddMembers, submitRoomDialog, removeMember, leaveRoom, toggleRoomPanel,
} from "./chat.js";

export function wireInput() {
  render.onLogin(() => submitAuth("login"));
  render.onRegister(() => submitAuth("register"));
  render.onLogout(logout);
  render.onSend(sendMessage);
  render.onComposerInput(composerInput);
  render.onWantOlder(loadOlder);
  render.onPickUser(openPeer);
  render.onPickRoom(openRoom);
  render.onNewRoom(startCreateRoom);
  render.onSubmitRoomDialog(submitRoomDialog);
  render.onToggleRoomPanel(toggleRoomPanel);
  render.onAddMembers(startAddMembers);
  render.onLeaveRoom(leaveRoom);
  render.onRemoveMember(removeMember);
  render.onBackOnline(socket.reconnectNow);
  render.onPageHidden(pageHidden);
  render.onPageShown(() => {
    socket.resume();
    pageShown();
  });
}
