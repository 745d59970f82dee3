// Browser end-to-end test: two chat nodes on one database and Redis prefix, everything
// asserted through the DOM of the shipped client. First two users in two browser contexts
// (user A on node 1, user B on node 2) chat one-to-one; then three users on the two nodes
// share a room: create it, chat, see who types and the unread counts, one leaves.
//
// Run: CHAT_NODE_BIN=/path/to/chat-node node --test browser.test.mjs
// Needs MariaDB (root, no password) on 127.0.0.1:3306, Redis on 127.0.0.1:6379 and
// Debian's chromium at /usr/bin/chromium (./ensure-chromium.sh installs it).

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createWriteStream, existsSync, mkdirSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SHOTS = path.join(HERE, "screenshots");
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
const READY_TIMEOUT_MS = 60_000;
const STEP_TIMEOUT_MS = 15_000;
const RECONNECT_TIMEOUT_MS = 45_000;

const hex = (bytes) => randomBytes(bytes).toString("hex");
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const BIN = process.env.CHAT_NODE_BIN;
const DB_NAME = `chat_e2e_${hex(6)}`;
const REDIS_PREFIX = `e2e_${hex(6)}`;
const SESSION_KEY = hex(48); // 96 characters, shared by both nodes

const nodes = {}; // name -> { port, url, child, log }
const metricsPorts = {}; // name -> port of the node's internal /metrics listener
let browser = null;
const pageErrors = [];

// ---------------------------------------------------------------------------
// Cluster

function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

function nodeEnv(name, port) {
  return {
    ...process.env,
    CHAT_LISTEN: `127.0.0.1:${port}`,
    CHAT_METRICS_LISTEN: `127.0.0.1:${metricsPorts[name]}`,
    DATABASE_URL: `mysql://root@127.0.0.1:3306/${DB_NAME}`,
    REDIS_URL: "redis://127.0.0.1:6379",
    CHAT_REDIS_PREFIX: REDIS_PREFIX,
    CHAT_SESSION_KEY: SESSION_KEY,
    CHAT_BCRYPT_COST: "4",
    CHAT_NODE_ID: `e2e-${name}`,
    RUST_LOG: process.env.RUST_LOG || "info",
  };
}

function startNode(name, port) {
  mkdirSync(SHOTS, { recursive: true });
  const log = createWriteStream(path.join(SHOTS, `node-${name}.log`), { flags: "a" });
  const child = spawn(BIN, [], { env: nodeEnv(name, port), stdio: ["ignore", "pipe", "pipe"] });
  child.stdout.pipe(log, { end: false });
  child.stderr.pipe(log, { end: false });
  const node = { name, port, url: `http://127.0.0.1:${port}`, child, log, exited: null };
  child.on("exit", (code, signal) => { node.exited = { code, signal }; });
  nodes[name] = node;
  return node;
}

async function waitReady(node) {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let last = "no answer";
  while (Date.now() < deadline) {
    if (node.exited) {
      throw new Error(`node ${node.name} exited early (${JSON.stringify(node.exited)}); see screenshots/node-${node.name}.log`);
    }
    try {
      const response = await fetch(`${node.url}/readyz`);
      if (response.status === 200) return;
      last = `status ${response.status}`;
    } catch (error) {
      last = error.cause?.code ?? error.message;
    }
    await sleep(250);
  }
  throw new Error(`node ${node.name} not ready within ${READY_TIMEOUT_MS} ms (${last})`);
}

function killNode(node, signal = "SIGKILL") {
  return new Promise((resolve) => {
    if (!node || node.exited) return resolve();
    node.child.once("exit", () => resolve());
    node.child.kill(signal);
  });
}

function cleanupStores() {
  try {
    execFileSync("mariadb", ["-uroot", "-h127.0.0.1", "-P3306", "-e", `DROP DATABASE IF EXISTS \`${DB_NAME}\``], { stdio: "pipe" });
  } catch (error) {
    console.error(`could not drop ${DB_NAME}: ${error.stderr ?? error.message}`);
  }
  try {
    const keys = execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "--scan", "--pattern", `${REDIS_PREFIX}:*`], { encoding: "utf8" })
      .split("\n").filter(Boolean);
    for (let i = 0; i < keys.length; i += 200) {
      execFileSync("redis-cli", ["-h", "127.0.0.1", "-p", "6379", "DEL", ...keys.slice(i, i + 200)], { stdio: "pipe" });
    }
  } catch (error) {
    console.error(`could not delete redis keys ${REDIS_PREFIX}:*: ${error.message}`);
  }
}

// ---------------------------------------------------------------------------
// Browser helpers

async function newUserPage(url) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 720 } });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT_MS);
  page.dialogs = [];
  page.on("dialog", async (dialog) => {
    page.dialogs.push(dialog.message());
    await dialog.dismiss();
  });
  page.on("pageerror", (error) => pageErrors.push(`${url}: ${error.message}`));
  if (process.env.E2E_DEBUG) {
    page.on("console", (message) => console.error(`[${url}] ${message.text()}`));
    page.on("websocket", (socket) => {
      socket.on("framereceived", ({ payload }) => console.error(`[${url}] <= ${String(payload).slice(0, 200)}`));
      socket.on("framesent", ({ payload }) => console.error(`[${url}] => ${String(payload).slice(0, 200)}`));
      socket.on("close", () => console.error(`[${url}] socket closed`));
    });
  }
  await page.goto(url);
  return page;
}

async function shot(page, name) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`) });
}

function userButton(page, username) {
  return page.locator(`#user-list button[data-username="${username}"]`);
}

/** Message list items of the open conversation whose text is exactly `text`. */
function messagesWithText(page, text) {
  return page.locator("#messages li.message").filter({
    has: page.locator(".message-text", { hasText: new RegExp(`^${escapeRegExp(text)}$`) }),
  });
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

async function messageTexts(page) {
  return page.locator("#messages li.message .message-text").allTextContents();
}

async function waitUntil(page, fn, arg, timeout = STEP_TIMEOUT_MS) {
  await page.waitForFunction(fn, arg, { timeout, polling: 100 });
}

async function register(page, username, password) {
  await page.locator("#auth-view").waitFor();
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.click("#register-button");
  await page.locator("#chat-view").waitFor();
  assert.equal(await page.textContent("#me"), username);
}

async function login(page, username, password) {
  await page.locator("#auth-view").waitFor();
  await page.fill("#username", username);
  await page.fill("#password", password);
  await page.click("#login-button");
  await page.locator("#chat-view").waitFor();
}

/** Sends through the composer and waits until the server acknowledged it (not pending). */
async function sendMessage(page, text) {
  await page.fill("#message-input", text);
  await page.press("#message-input", "Enter");
  await messagesWithText(page, text).and(page.locator("li.message[data-id]:not(.pending)")).first().waitFor();
}

function roomButton(page, name) {
  return page.locator(`#room-list button[data-name="${name}"]`);
}

async function openRoom(page, name) {
  await roomButton(page, name).click();
  await waitUntil(page, (title) => document.querySelector("#conversation-title")?.textContent === title, name);
  await page.locator("#history-status", { hasText: "Loading" }).waitFor({ state: "hidden" });
}

/** The room's unread badge in the room list: its number, or "" when hidden. */
async function roomBadge(page, name) {
  const badge = roomButton(page, name).locator(".unread-badge");
  return (await badge.isVisible()) ? (await badge.textContent()).trim() : "";
}

async function waitRoomBadge(page, name, text, timeout = STEP_TIMEOUT_MS) {
  const badge = roomButton(page, name).locator(".unread-badge");
  if (text === "") await badge.waitFor({ state: "hidden", timeout });
  else await badge.filter({ hasText: new RegExp(`^${text}$`) }).waitFor({ timeout });
}

async function openConversation(page, peer) {
  await userButton(page, peer).click();
  await waitUntil(page, (name) => document.querySelector("#conversation-title")?.textContent === name, peer);
  await page.locator("#history-status", { hasText: "Loading" }).waitFor({ state: "hidden" });
}

// ---------------------------------------------------------------------------
// The scenario

before(async () => {
  assert.ok(BIN, "CHAT_NODE_BIN must point to the built chat-node binary (cargo build -p chat-node)");
  assert.ok(existsSync(CHROMIUM), `no browser at ${CHROMIUM}: run ./ensure-chromium.sh`);
  const [portA, portB] = [await freePort(), await freePort()];
  [metricsPorts.a, metricsPorts.b] = [await freePort(), await freePort()];
  // Node 1 first: it creates the database and runs the migrations.
  await waitReady(startNode("a", portA));
  await waitReady(startNode("b", portB));
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
});

after(async () => {
  try {
    if (browser) await browser.close();
  } finally {
    await Promise.all(Object.values(nodes).map((node) => killNode(node)));
    for (const node of Object.values(nodes)) node.log.end();
    cleanupStores();
  }
});

test("the client's modules typecheck (checkJs, strict: static/jsconfig.json)", () => {
  const tsc = path.join(HERE, "node_modules", "typescript", "bin", "tsc");
  const project = path.join(HERE, "..", "static", "jsconfig.json");
  try {
    execFileSync(process.execPath, [tsc, "-p", project], { encoding: "utf8", stdio: "pipe" });
  } catch (error) {
    assert.fail(`tsc found errors:\n${error.stdout}${error.stderr}`);
  }
});

test("two users chat through two nodes in real browsers", async (t) => {
  const password = `pw-${hex(6)}`;
  const userA = `alice_${hex(3)}`;
  const userB = `bob_${hex(3)}`;
  const conversation = []; // every text of the A–B conversation, in the order it was stored
  let pageA;
  let pageB;

  await t.test("1. both register, log in and see each other online", async () => {
    pageA = await newUserPage(nodes.a.url);
    pageB = await newUserPage(nodes.b.url);

    // Field errors land next to the right field.
    await pageA.locator("#auth-view").waitFor();
    await pageA.fill("#username", "x");
    await pageA.fill("#password", password);
    await pageA.click("#register-button");
    await pageA.locator("#username-error").filter({ hasText: /\S/ }).waitFor();
    await pageA.fill("#username", `short_${hex(2)}`);
    await pageA.fill("#password", "short");
    await pageA.click("#register-button");
    await pageA.locator("#password-error").filter({ hasText: /\S/ }).waitFor();
    await pageA.fill("#username", `nobody_${hex(3)}`);
    await pageA.fill("#password", password);
    await pageA.click("#login-button");
    await pageA.locator("#form-error").filter({ hasText: /\S/ }).waitFor();

    await register(pageA, userA, password);
    await register(pageB, userB, password);

    await userButton(pageB, userA).and(pageB.locator('[data-online="true"]')).waitFor();
  });

  await t.test("1b. A, already connected, sees B appear online without reloading", async () => {
    await userButton(pageA, userB).and(pageA.locator('[data-online="true"]')).waitFor({ timeout: 5000 });
  });

  await t.test("1c. after a reload (straight to the chat via GET /api/me) A sees B online", async () => {
    await pageA.reload();
    await pageA.locator("#chat-view").waitFor();
    await userButton(pageA, userB).and(pageA.locator('[data-online="true"]')).waitFor();
  });

  await t.test("2. messages go both ways and show on both sides", async () => {
    await openConversation(pageA, userB);
    // Keyboard only: the people list holds buttons; Enter opens the conversation.
    await userButton(pageB, userA).focus();
    await pageB.keyboard.press("Enter");
    await waitUntil(pageB, (name) => document.querySelector("#conversation-title")?.textContent === name, userA);
    assert.equal(await pageB.evaluate(() => document.activeElement?.id), "message-input", "focus moves to the composer");
    await pageB.locator("#history-status", { hasText: "Loading" }).waitFor({ state: "hidden" });

    const hello = `Hi ${userB}, this is ${userA} on node a`;
    await sendMessage(pageA, hello);
    conversation.push(hello);
    await messagesWithText(pageB, hello).waitFor();

    const reply = `Hello ${userA}! Answering from node b.`;
    await sendMessage(pageB, reply);
    conversation.push(reply);
    await messagesWithText(pageA, reply).waitFor();

    for (const [page, text] of [
      [pageA, "Two nodes, one conversation: this went through Redis to node b."],
      [pageB, "And it came back just as fast. Lunch at noon?"],
    ]) {
      await sendMessage(page, text);
      conversation.push(text);
      await messagesWithText(page === pageA ? pageB : pageA, text).waitFor();
    }

    // Own messages on one side, the peer's on the other, each with a time.
    assert.equal(await messagesWithText(pageA, hello).getAttribute("data-own"), "true");
    assert.equal(await messagesWithText(pageA, reply).getAttribute("data-own"), "false");
    assert.equal(await messagesWithText(pageB, hello).getAttribute("data-own"), "false");
    assert.match(await messagesWithText(pageB, hello).locator("time").textContent(), /\d/);
    await shot(pageA, "2-chat-a");
    await shot(pageB, "2-chat-b");
  });

  await t.test("3. B sees A typing, and the notice goes away", async () => {
    const typingText = `${userA} is typing…`;
    const notice = pageB.locator("#typing-indicator");

    await pageA.locator("#message-input").pressSequentially("Let me think", { delay: 60 });
    await notice.filter({ hasText: typingText }).waitFor();
    await shot(pageB, "3-typing-b");
    // After 2 s without a key press A sends doneTyping.
    await waitUntil(pageB, () => document.querySelector("#typing-indicator").textContent === "", null, 4000);

    await pageA.locator("#message-input").pressSequentially(" about it", { delay: 60 });
    await notice.filter({ hasText: typingText }).waitFor();
    const sent = "Let me think about it";
    await pageA.press("#message-input", "Enter");
    conversation.push(sent);
    await messagesWithText(pageB, sent).waitFor();
    await waitUntil(pageB, () => document.querySelector("#typing-indicator").textContent === "", null, 1500);
  });

  await t.test("4. reopening shows the newest 10, scrolling up pages back to all 25", async () => {
    for (let i = conversation.length + 1; i <= 24; i += 1) {
      const text = `Message number ${i}`;
      await sendMessage(i % 2 === 0 ? pageA : pageB, text);
      conversation.push(text);
    }
    await messagesWithText(pageB, "Message number 24").waitFor();
    // B read all 24 on screen; its client sends markRead at most once a second, so let the
    // last one go out before the reload (the one sent as the page unloads may be lost).
    await sleep(1500);

    // Unread badge: B has no conversation open while A writes the 25th.
    await pageB.reload();
    await pageB.locator("#chat-view").waitFor();
    await userButton(pageB, userA).and(pageB.locator('[data-online="true"]')).waitFor();
    await sendMessage(pageA, "Message number 25");
    conversation.push("Message number 25");
    await userButton(pageB, userA).locator(".unread-badge", { hasText: "1" }).waitFor();
    assert.equal(conversation.length, 25);

    await openConversation(pageB, userA);
    await userButton(pageB, userA).locator(".unread-badge").waitFor({ state: "hidden" });
    assert.deepEqual(await messageTexts(pageB), conversation.slice(-10), "the newest 10 messages, oldest first");
    await shot(pageB, "4-newest-10");

    const scroller = pageB.locator("#messages-scroller");
    let count = 10;
    for (let round = 0; round < 5 && count < conversation.length; round += 1) {
      // Where the first loaded message sits, measured from the top of the scrolled content.
      const firstId = await pageB.locator("#messages li.message").first().getAttribute("data-id");
      const first = pageB.locator(`#messages li.message[data-id="${firstId}"]`);
      const offsetAtTop = await first.evaluate((node) => {
        const scrollerNode = document.querySelector("#messages-scroller");
        return node.getBoundingClientRect().top - scrollerNode.getBoundingClientRect().top + scrollerNode.scrollTop;
      });
      await scroller.evaluate((node) => {
        node.scrollTop = 0;
        node.dispatchEvent(new Event("scroll"));
      });
      await waitUntil(pageB, (n) => document.querySelectorAll("#messages li.message").length > n, count);
      await pageB.locator("#load-older", { hasText: "Loading" }).waitFor({ state: "hidden" });
      const offsetNow = await first.evaluate((node) =>
        node.getBoundingClientRect().top - document.querySelector("#messages-scroller").getBoundingClientRect().top);
      assert.ok(Math.abs(offsetNow - offsetAtTop) < 4,
        `the view kept its place when older messages were prepended (moved ${offsetNow - offsetAtTop}px)`);
      count = await pageB.locator("#messages li.message").count();
      if (round === 0) assert.equal(count, 20, "one page of 10 older messages");
    }
    assert.deepEqual(await messageTexts(pageB), conversation, "all 25 messages, in order");
    await pageB.locator("#history-status", { hasText: "Beginning of the conversation" }).waitFor();
    await shot(pageB, "4-all-messages");
  });

  await t.test("5. node b dies and comes back; B reconnects and misses nothing", async () => {
    const status = pageB.locator("#connection-status");
    assert.equal(await status.isVisible(), false, "no reconnect notice while connected");

    await killNode(nodes.b, "SIGKILL");
    await status.filter({ hasText: "reconnecting…" }).waitFor();
    await shot(pageB, "5-reconnecting");

    const meanwhile = [`While b was down 1 ${hex(2)}`, `While b was down 2 ${hex(2)}`, `While b was down 3 ${hex(2)}`];
    const restart = (async () => {
      await sleep(1500);
      await waitReady(startNode("b", nodes.b.port));
    })();
    for (const text of meanwhile) {
      await sendMessage(pageA, text);
      conversation.push(text);
      await sleep(400);
    }
    // B writes while disconnected: kept in the outbox, sent once after reconnecting.
    const offline = `Written by ${userB} while offline`;
    await pageB.fill("#message-input", offline);
    await pageB.press("#message-input", "Enter");
    await messagesWithText(pageB, offline).and(pageB.locator(".pending")).waitFor();

    await restart;
    await status.waitFor({ state: "hidden", timeout: RECONNECT_TIMEOUT_MS });
    for (const text of meanwhile) {
      await messagesWithText(pageB, text).first().waitFor();
    }
    await messagesWithText(pageA, offline).first().waitFor();
    conversation.push(offline);
    await messagesWithText(pageB, offline).and(pageB.locator("[data-id]:not(.pending)")).waitFor();
    await sleep(1000); // let any duplicate arrive before counting
    for (const text of [...meanwhile, offline]) {
      assert.equal(await messagesWithText(pageB, text).count(), 1, `"${text}" shown once on B`);
      assert.equal(await messagesWithText(pageA, text).count(), 1, `"${text}" shown once on A`);
    }
    assert.deepEqual(await messageTexts(pageB), conversation, "B's view holds every message in order");
    // The directory came back: A is listed and online again.
    await userButton(pageB, userA).and(pageB.locator('[data-online="true"]')).waitFor();
  });

  await t.test("5b. node b drains (SIGTERM, close 1012) and restarts; B comes back on its own", async () => {
    const status = pageB.locator("#connection-status");
    const drained = killNode(nodes.b, "SIGTERM");
    await status.filter({ hasText: "reconnecting…" }).waitFor();
    await drained;
    const text = `Sent while b was draining ${hex(2)}`;
    await sendMessage(pageA, text);
    conversation.push(text);
    await waitReady(startNode("b", nodes.b.port));
    await status.waitFor({ state: "hidden", timeout: RECONNECT_TIMEOUT_MS });
    await messagesWithText(pageB, text).waitFor();
    await sleep(500);
    assert.equal(await messagesWithText(pageB, text).count(), 1);
    assert.deepEqual(await messageTexts(pageB), conversation, "B's view holds every message in order");
  });

  await t.test("6. markup in a message is shown as text", async () => {
    const nasty = "<script>alert(1)</script><b>x</b>";
    await sendMessage(pageA, nasty);
    conversation.push(nasty);
    await messagesWithText(pageB, nasty).waitFor();
    for (const page of [pageA, pageB]) {
      assert.equal(await page.locator("#messages b").count(), 0, "no <b> element created");
      assert.equal(await page.locator("#messages script").count(), 0, "no <script> element created");
    }
    await sleep(300);
    assert.deepEqual(pageA.dialogs, []);
    assert.deepEqual(pageB.dialogs, []);
    await shot(pageA, "6-chat-a");
  });

  await t.test("6b. at phone width the people list sits above the conversation", async () => {
    await pageA.setViewportSize({ width: 390, height: 760 });
    const sidebar = await pageA.locator(".sidebar").boundingBox();
    const conversationBox = await pageA.locator("#conversation").boundingBox();
    assert.ok(sidebar.y + sidebar.height <= conversationBox.y + 1, "stacked, not side by side");
    assert.ok(conversationBox.width >= 380, "the conversation takes the full width");
    const overflow = await pageA.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, "no horizontal scrolling of the page");
    await shot(pageA, "6b-phone-a");
    await pageA.setViewportSize({ width: 1100, height: 720 });
  });

  await t.test("7. B logs out and A sees B offline", async () => {
    await pageB.click("#logout-button");
    await pageB.locator("#auth-view").waitFor();
    // Offline at once on a clean close; the protocol allows up to 30 s should a stale
    // entry of the killed node b still count.
    await userButton(pageA, userB).and(pageA.locator('[data-online="false"]')).waitFor({ timeout: 35_000 });
    await pageB.reload();
    await pageB.locator("#auth-view").waitFor();
    assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  });
});

test("three users on two nodes share a room", async (t) => {
  const password = `pw-${hex(6)}`;
  const owner = `olga_${hex(3)}`; // node a
  const member = `max_${hex(3)}`; // node b
  const third = `kim_${hex(3)}`; // node b, and a second device on node a
  const room = `Lunch crew ${hex(2)}`;
  const said = []; // every text of the room, in the order it was stored
  let pageO;
  let pageM;
  let pageK;
  let pageK2;

  await t.test("R1. three users register on two nodes and see each other", async () => {
    pageO = await newUserPage(nodes.a.url);
    pageM = await newUserPage(nodes.b.url);
    pageK = await newUserPage(nodes.b.url);
    await register(pageO, owner, password);
    await register(pageM, member, password);
    await register(pageK, third, password);
    for (const [page, others] of [[pageO, [member, third]], [pageM, [owner, third]], [pageK, [owner, member]]]) {
      for (const other of others) await userButton(page, other).and(page.locator('[data-online="true"]')).waitFor();
      await page.locator("#room-list-empty").waitFor(); // "No rooms yet."
    }
  });

  await t.test("R2. the owner creates the room with the keyboard only; all three see it", async () => {
    await pageO.locator("#new-room-button").focus();
    await pageO.keyboard.press("Enter");
    await pageO.locator("#room-dialog[open]").waitFor();
    assert.equal(await pageO.evaluate(() => document.activeElement?.id), "room-name", "focus starts in the name field");

    // A blank name is refused in the dialog, nothing is sent.
    await pageO.keyboard.press("Enter");
    await pageO.locator("#room-form-error").filter({ hasText: /\S/ }).waitFor();

    await pageO.keyboard.type(room);
    for (const [index, name] of [member, third].entries()) {
      // Tab to the filter (Shift+Tab back to it from a box), narrow the list to one person,
      // Tab to their box, Space ticks it.
      await pageO.keyboard.press(index === 0 ? "Tab" : "Shift+Tab");
      assert.equal(await pageO.evaluate(() => document.activeElement?.id), "member-filter");
      await pageO.keyboard.press("Control+A");
      await pageO.keyboard.type(name);
      await pageO.keyboard.press("Tab");
      assert.equal(await pageO.evaluate(() => document.activeElement?.getAttribute("value")), name);
      await pageO.keyboard.press("Space");
    }
    await shot(pageO, "R2-create-room-dialog");
    await pageO.keyboard.press("Tab");
    assert.equal(await pageO.evaluate(() => document.activeElement?.id), "room-submit");
    await pageO.keyboard.press("Enter");

    // The creator lands in the new room, composer focused.
    await pageO.locator("#room-dialog[open]").waitFor({ state: "detached" });
    await waitUntil(pageO, (title) => document.querySelector("#conversation-title")?.textContent === title, room);
    assert.equal(await pageO.evaluate(() => document.activeElement?.id), "message-input");
    await pageO.locator("#conversation-presence", { hasText: "3 members" }).waitFor();
    for (const page of [pageM, pageK]) {
      await roomButton(page, room).waitFor();
      await roomButton(page, room).locator(".room-status", { hasText: "3 members" }).waitFor();
    }
  });

  await t.test("R3. messages reach every member on both nodes with the sender's name; unread counts", async () => {
    await openRoom(pageM, room);
    const first = `Hello ${member} and ${third}, this is ${owner} on node a`;
    await sendMessage(pageO, first);
    said.push(first);
    await messagesWithText(pageM, first).waitFor();
    assert.equal(await messagesWithText(pageM, first).locator(".message-from").textContent(), owner,
      "a room message shows who sent it");
    assert.equal(await messagesWithText(pageM, first).locator(".message-from").isVisible(), true);
    assert.equal(await messagesWithText(pageO, first).locator(".message-from").isVisible(), false,
      "no name over one's own messages");
    await waitRoomBadge(pageK, room, "1");

    const second = `Hi all, ${member} here on node b`;
    await sendMessage(pageM, second);
    said.push(second);
    await messagesWithText(pageO, second).waitFor();
    assert.equal(await messagesWithText(pageO, second).locator(".message-from").textContent(), member);
    await waitRoomBadge(pageK, room, "2");
    assert.equal(await roomBadge(pageM, room), "", "no badge on the room that is open");
    assert.equal(await roomBadge(pageO, room), "");
    assert.match(await pageK.title(), /^\(2\) /, "the page title counts unread room messages");
  });

  await t.test("R4. unread counts come from the node: a second device of the third user sees them", async () => {
    pageK2 = await newUserPage(nodes.a.url);
    await login(pageK2, third, password);
    await waitRoomBadge(pageK2, room, "2");
  });

  await t.test("R5. reading on one device clears the count on the other", async () => {
    await openRoom(pageK, room);
    await waitRoomBadge(pageK, room, "");
    assert.deepEqual(await messageTexts(pageK), said);
    await waitRoomBadge(pageK2, room, "");
    // And it stays read after a reload: the node stored it.
    await pageK2.reload();
    await pageK2.locator("#chat-view").waitFor();
    await roomButton(pageK2, room).waitFor();
    await sleep(500);
    assert.equal(await roomBadge(pageK2, room), "", "read state survives a reload");

    // The third member answers from node b; the second device, on node a, shows it too.
    const fromThird = "Count me in. 12:30 at the usual place?";
    await sendMessage(pageK, fromThird);
    said.push(fromThird);
    for (const page of [pageO, pageM]) {
      await messagesWithText(page, fromThird).waitFor();
      assert.equal(await messagesWithText(page, fromThird).locator(".message-from").textContent(), third);
    }
  });

  await t.test("R5b. a room open in a hidden tab counts as unread until the tab is shown", async () => {
    const setVisibility = (page, state) => page.evaluate((value) => {
      Object.defineProperty(document, "visibilityState", { configurable: true, get: () => value });
      document.dispatchEvent(new Event("visibilitychange"));
    }, state);
    await setVisibility(pageK, "hidden");
    const text = `While ${third} looked away ${hex(2)}`;
    await sendMessage(pageO, text);
    said.push(text);
    await messagesWithText(pageK, text).waitFor();
    await waitRoomBadge(pageK, room, "1");
    await waitRoomBadge(pageK2, room, "1");
    await setVisibility(pageK, "visible");
    await waitRoomBadge(pageK, room, "");
    await waitRoomBadge(pageK2, room, "");
  });

  await t.test("R6. the typing line names who is typing, several in a room", async () => {
    const notice = pageO.locator("#typing-indicator");
    await pageM.locator("#message-input").pressSequentially("Pasta", { delay: 60 });
    await notice.filter({ hasText: `${member} is typing…` }).waitFor();
    await pageK.locator("#message-input").pressSequentially("Sushi", { delay: 60 });
    await waitUntil(pageO, ([a, b]) => {
      const text = document.querySelector("#typing-indicator").textContent;
      return text.includes(a) && text.includes(b) && text.endsWith("are typing…");
    }, [member, third], 3000);
    await shot(pageO, "R6-two-typing"); // docs/screenshot.png, the README's picture
    // Nobody sees themself typing.
    assert.equal(await pageM.locator("#typing-indicator").textContent(), `${third} is typing…`);
    // 2 s without a key press: both send doneTyping and the line empties.
    await waitUntil(pageO, () => document.querySelector("#typing-indicator").textContent === "", null, 5000);

    // A `typing` whose `doneTyping` never comes (a lost frame, a dead node) expires 5 s
    // after it arrived: sent here from a second socket of the member, outside the client.
    const roomId = Number(await roomButton(pageM, room).getAttribute("data-room-id"));
    await pageM.evaluate((id) => new Promise((resolve, reject) => {
      const socket = new WebSocket(`${location.origin.replace(/^http/, "ws")}/ws`);
      socket.onopen = () => {
        socket.send(JSON.stringify({ type: "typing", room: id }));
        window.rawSocket = socket;
        resolve();
      };
      socket.onerror = () => reject(new Error("raw socket failed"));
    }), roomId);
    await notice.filter({ hasText: `${member} is typing…` }).waitFor({ timeout: 3000 });
    const shownAt = Date.now();
    await waitUntil(pageO, () => document.querySelector("#typing-indicator").textContent === "", null, 8000);
    const shownFor = Date.now() - shownAt;
    assert.ok(shownFor > 3500 && shownFor < 7000, `"is typing…" without doneTyping lasted ${shownFor} ms, expected about 5 s`);
    await pageM.evaluate(() => window.rawSocket.close());
  });

  await t.test("R7. the room survives node b dying: its members sync what they missed, once", async () => {
    const status = pageM.locator("#connection-status");
    await killNode(nodes.b, "SIGKILL");
    await status.filter({ hasText: "reconnecting…" }).waitFor();
    const restart = (async () => {
      await sleep(1500);
      await waitReady(startNode("b", nodes.b.port));
    })();
    const meanwhile = [`While b was down, room ${hex(2)}`, `Still down, room ${hex(2)}`];
    for (const text of meanwhile) {
      await sendMessage(pageO, text);
      said.push(text);
    }
    await restart;
    await status.waitFor({ state: "hidden", timeout: RECONNECT_TIMEOUT_MS });
    await pageK.locator("#connection-status").waitFor({ state: "hidden", timeout: RECONNECT_TIMEOUT_MS });
    for (const page of [pageM, pageK]) {
      for (const text of meanwhile) await messagesWithText(page, text).first().waitFor();
    }
    await sleep(1000);
    for (const page of [pageM, pageK]) {
      assert.deepEqual(await messageTexts(page), said, "every room message once, in order");
    }
  });

  await t.test("R8. the member panel: the owner sees three members; one leaves", async () => {
    await pageO.click("#members-button");
    await pageO.locator("#room-panel").waitFor();
    assert.equal(await pageO.getAttribute("#members-button", "aria-expanded"), "true");
    await waitUntil(pageO, () => document.querySelectorAll("#member-list li.member").length === 3);
    // The owner may remove the others, not themself; a member sees no Remove buttons.
    assert.equal(await pageO.locator("#member-list [data-testid=remove-member]").count(), 2);
    await pageM.click("#members-button");
    await waitUntil(pageM, () => document.querySelectorAll("#member-list li.member").length === 3);
    assert.equal(await pageM.locator("#member-list [data-testid=remove-member]").count(), 0);
    await shot(pageO, "R8-members");

    await pageM.click("#leave-room-button");
    await roomButton(pageM, room).waitFor({ state: "detached" });
    await waitUntil(pageM, () => document.querySelector("#conversation-title")?.textContent === "Pick someone to chat with");
    assert.equal(await pageM.locator("#message-input").isDisabled(), true);
    assert.equal(await pageM.evaluate(() => document.activeElement?.id), "new-room-button",
      "focus goes to the room list, not lost with the panel");
    await pageO.locator("#conversation-presence", { hasText: "2 members" }).waitFor();
    await waitUntil(pageO, () => document.querySelectorAll("#member-list li.member").length === 2);
    await roomButton(pageK, room).locator(".room-status", { hasText: "2 members" }).waitFor();

    // Nothing more of the room reaches the one who left.
    const after = `After ${member} left ${hex(2)}`;
    await sendMessage(pageO, after);
    said.push(after);
    await messagesWithText(pageK, after).waitFor();
    await sleep(500);
    assert.equal(await roomButton(pageM, room).count(), 0);
    assert.equal(await messagesWithText(pageM, after).count(), 0);
  });

  await t.test("R9. the owner adds the leaver back (who sees the whole history) and removes the third", async () => {
    await pageO.click("#add-members-button");
    await pageO.locator("#room-dialog[open]").waitFor();
    assert.equal(await pageO.locator("#member-choices li:not([hidden])", { hasText: third }).count(), 0,
      "members are not offered again");
    await pageO.locator(`#member-choices input[value="${member}"]`).check();
    await pageO.click("#room-submit");
    await pageO.locator("#room-dialog[open]").waitFor({ state: "detached" });
    await pageO.locator("#conversation-presence", { hasText: "3 members" }).waitFor();
    await openRoom(pageM, room);
    assert.deepEqual(await messageTexts(pageM), said.slice(-10), "a new member reads the room's history");

    // The owner's Remove, by keyboard.
    await pageO.locator(`#member-list li.member[data-username="${third}"] [data-testid=remove-member]`).focus();
    await pageO.keyboard.press("Enter");
    for (const page of [pageK, pageK2]) await roomButton(page, room).waitFor({ state: "detached" });
    await pageK.locator("#toast", { hasText: room }).waitFor();
    await pageO.locator("#conversation-presence", { hasText: "2 members" }).waitFor();
    await shot(pageO, "R9-room-owner");
  });

  await t.test("R10. at phone width rooms and people are strips above the room", async () => {
    await pageO.setViewportSize({ width: 390, height: 760 });
    const sidebar = await pageO.locator(".sidebar").boundingBox();
    const conversationBox = await pageO.locator("#conversation").boundingBox();
    assert.ok(sidebar.y + sidebar.height <= conversationBox.y + 1, "stacked, not side by side");
    const rooms = await pageO.locator(".rooms-section").boundingBox();
    assert.ok(rooms.height < 120, `the room strip stays short (${rooms.height}px)`);
    const overflow = await pageO.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
    assert.equal(overflow, 0, "no horizontal scrolling of the page");
    await shot(pageO, "R10-phone-room");
    await pageO.click("#add-members-button");
    const dialogBox = await pageO.locator("#room-dialog").boundingBox();
    assert.ok(dialogBox.x >= 0 && dialogBox.x + dialogBox.width <= 390, "the dialog fits the screen");
    await shot(pageO, "R10-phone-dialog");
    await pageO.keyboard.press("Escape");
    await pageO.locator("#room-dialog[open]").waitFor({ state: "detached" });
    await pageO.setViewportSize({ width: 1100, height: 720 });
    await pageM.emulateMedia({ colorScheme: "dark" });
    await shot(pageM, "R10-dark-room");
    await pageM.emulateMedia({ colorScheme: "light" });
  });

  await t.test("R11. the owner leaves: the member left becomes the owner", async () => {
    if (!(await pageM.locator("#room-panel").isVisible())) await pageM.click("#members-button");
    await pageO.click("#leave-room-button");
    await roomButton(pageO, room).waitFor({ state: "detached" });
    await pageM.locator(`#member-list li.member[data-username="${member}"] .member-note`, { hasText: "owner" }).waitFor();
    assert.equal(await pageM.locator("#member-list li.member").count(), 1);
    await pageM.locator("#conversation-presence", { hasText: "1 member" }).waitFor();
    assert.deepEqual(pageErrors, [], "no uncaught errors in the pages");
  });
});
