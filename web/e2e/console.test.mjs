// The console in a real headless Chromium against the real binary:
// alice signs in and dials 202; admin, in a second page, sees it ring and
// answers; alice holds, unholds and hangs up; both pages show each change
// and the wallboard figures move. The browsers' connections are dropped
// while a change happens (the page resumes with its token: no row lost or
// repeated), then the server drains and a new one takes its place (the
// page re-snapshots). A screenshot of the console is written to
// artifacts/console.png.
//
// Run: make e2e-browser (needs CALLCONTROLD_BIN, set by run.sh).
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { Proxy, launchBrowser, rpc, startServer, within } from "./harness.mjs";

const bin = process.env.CALLCONTROLD_BIN;
const artifacts = process.env.ARTIFACTS_DIR || path.resolve(import.meta.dirname, "../../artifacts");
const timeout = 30000; // a liveness bound for every wait, not a timing assertion

let server, proxy, base, direct, browser, userDataDir;

before(async () => {
  assert.ok(bin, "CALLCONTROLD_BIN must name the callcontrold binary");
  server = startServer(bin);
  direct = await within(server.ready, timeout, "the server's first serving log line").catch((e) => {
    throw new Error(`${e.message}; its log so far:\n${server.log()}`);
  });
  proxy = new Proxy(direct);
  base = await proxy.listen();
  userDataDir = await mkdtemp(path.join(os.tmpdir(), "callcontrold-chromium-"));
  browser = await launchBrowser(userDataDir);
});

after(async () => {
  await within(browser?.close() ?? Promise.resolve(), timeout, "closing the browser").catch((e) => console.error(String(e)));
  await proxy?.close();
  server?.proc.kill("SIGKILL");
  if (userDataDir) await rm(userDataDir, { recursive: true, force: true });
});

// rows lists the table's rows as the page shows them.
const rows = (page) => page.$$eval("#calls-body tr", (trs) => trs.map((r) => ({
  uid: r.dataset.uid, device: r.cells[0].title, state: r.dataset.state,
})));

// waitRow waits until the page shows a call on device in state.
function waitRow(page, device, state) {
  return page.waitForFunction((d, s) => [...document.querySelectorAll("#calls-body tr")]
    .some((r) => r.cells[0].title === d && r.dataset.state === s), { timeout }, device, state);
}

function waitNoRows(page) {
  return page.waitForFunction(() => document.querySelectorAll("#calls-body tr").length === 0, { timeout });
}

// waitStat waits for a wallboard figure: card key, stat label, value.
function waitStat(page, key, stat, value) {
  return page.waitForFunction((k, s, v) => document.querySelector(`[data-key="${k}"] [data-stat="${s}"] dd`)?.textContent === v,
    { timeout }, key, stat, value);
}

function waitLink(page, state) {
  return page.waitForFunction((s) => document.getElementById("link")?.dataset.state === s, { timeout }, state);
}

// clickAction clicks the button of a row's action, as a user would.
async function clickAction(page, device, action) {
  const btn = await page.waitForFunction((d, a) => [...document.querySelectorAll("#calls-body tr")]
    .find((r) => r.cells[0].title === d)?.querySelector(`button[data-action="${a}"]`), { timeout }, device, action);
  await btn.asElement().click();
}

async function signIn(page, token) {
  await page.goto(base + "/");
  // Without a token the page is the sign-in, not a blank page.
  await page.waitForSelector("#signin-form", { visible: true, timeout });
  assert.equal(await page.$eval("#app", (e) => e.hidden), true, "the app is hidden before sign-in");
  await page.type("#token", token);
  await page.keyboard.press("Enter");
  await waitLink(page, "live");
}

// sameAsServer checks the page's rows against ListCalls: every call once,
// in the same state.
async function sameAsServer(page, token) {
  const want = (await rpc(direct, token, "CallControlService/ListCalls", {})).calls ?? [];
  const got = await rows(page);
  assert.equal(new Set(got.map((r) => r.uid)).size, got.length, "a row is repeated");
  assert.deepEqual(got.map((r) => `${r.uid} ${r.device} ${r.state}`).sort(),
    want.map((c) => `${c.uid} ${c.device} ${c.state.replace(/^STATE_/, "")}`).sort(), "the page's rows differ from ListCalls");
}

test("console: sign-in, live calls, controls, wallboard, resume and re-snapshot", async () => {
  const alice = await (await browser.createBrowserContext()).newPage();
  const admin = await (await browser.createBrowserContext()).newPage();
  const consoleErrors = [];
  for (const p of [alice, admin]) p.on("pageerror", (e) => consoleErrors.push(String(e)));
  try {
    await flow(alice, admin, consoleErrors);
  } catch (e) {
    // Leave what the pages showed next to the failure.
    await mkdir(artifacts, { recursive: true });
    for (const [name, p] of [["alice", alice], ["admin", admin]]) {
      await p.screenshot({ path: path.join(artifacts, `failure-${name}.png`), fullPage: true }).catch(() => {});
      const shown = await p.evaluate(() => ({
        link: { ...document.getElementById("link")?.dataset }, message: document.getElementById("message")?.textContent,
        rows: [...document.querySelectorAll("#calls-body tr")].map((r) => `${r.dataset.uid} ${r.cells[0].title} ${r.dataset.state}`),
      })).catch((err) => String(err));
      console.error(`${name} page at the failure:`, JSON.stringify(shown), consoleErrors);
    }
    console.error("server log:\n" + server.log());
    throw e;
  }
});

async function flow(alice, admin, consoleErrors) {
  // A wrong token is refused on the sign-in page, in words.
  await alice.goto(base + "/");
  await alice.waitForSelector("#signin-form", { visible: true, timeout });
  await alice.type("#token", "demo-nobody");
  await alice.keyboard.press("Enter");
  await alice.waitForSelector("#signin-error:not([hidden])", { timeout });
  await alice.$eval("#token", (e) => { e.value = ""; });

  await signIn(alice, "demo-alice");
  await signIn(admin, "demo-admin");
  assert.match(await alice.$eval("#who", (e) => e.textContent), /Alice Smith/);

  // alice dials 202 with the keyboard.
  await alice.focus("#dial-number");
  await alice.keyboard.type("202");
  await alice.keyboard.press("Enter");
  for (const p of [alice, admin]) {
    await waitRow(p, "SIP/201", "RING");
    await waitRow(p, "SIP/202", "RING");
    await waitStat(p, "company:default", "ringing", "2");
  }
  const legs = (await rows(alice)).map((r) => r.uid);
  assert.equal(legs.length, 2, "alice's call has two legs");

  // admin answers on 202.
  await clickAction(admin, "SIP/202", "answer");
  for (const p of [alice, admin]) {
    await waitRow(p, "SIP/201", "UP");
    await waitRow(p, "SIP/202", "UP");
    await waitStat(p, "company:default", "talking", "2");
    await waitStat(p, "company:default", "ringing", "0");
  }

  // alice holds, both pages see it; then unholds.
  await clickAction(alice, "SIP/201", "hold");
  for (const p of [alice, admin]) {
    await waitRow(p, "SIP/201", "HOLD");
    await waitStat(p, "company:default", "on hold", "1");
  }
  await clickAction(alice, "SIP/201", "unhold");
  for (const p of [alice, admin]) {
    await waitRow(p, "SIP/201", "UP");
    await waitStat(p, "company:default", "on hold", "0");
  }

  // A caller waits in the support queue: the queue's figures move.
  await rpc(direct, "demo-admin", "SimulatorService/PlaceInboundCall", { fromNumber: "+15550100", fromName: "Carol Customer", toExtension: "600" });
  for (const p of [alice, admin]) await waitStat(p, "queue:Queue/q_600", "waiting", "1");
  await admin.waitForFunction(() => document.querySelector('[data-key="queue:Queue/q_600"] [data-stat="longest wait"] dd')?.textContent !== "0:00", { timeout });
  await mkdir(artifacts, { recursive: true });
  await admin.screenshot({ path: path.join(artifacts, "console.png"), fullPage: true });
  await alice.screenshot({ path: path.join(artifacts, "console-alice.png"), fullPage: true });

  // The network drops both pages' streams; while they are down alice's
  // call is put on hold. On resume the pages hear exactly that change.
  const snapshotsBefore = await alice.$eval("#link", (e) => e.dataset.snapshots);
  proxy.drop();
  await waitLink(alice, "reconnecting");
  const mine = (await rpc(direct, "demo-alice", "CallControlService/ListCalls", {})).calls.find((c) => c.device === "SIP/201");
  await rpc(direct, "demo-alice", "CallControlService/Hold", { uid: mine.uid });
  proxy.resume();
  for (const p of [alice, admin]) {
    await waitLink(p, "live");
    await waitRow(p, "SIP/201", "HOLD");
  }
  assert.ok(Number(await alice.$eval("#link", (e) => e.dataset.resumes)) >= 1, "the stream was not resumed with its token");
  assert.equal(await alice.$eval("#link", (e) => e.dataset.snapshots), snapshotsBefore, "the page re-snapshotted instead of resuming");
  await sameAsServer(alice, "demo-alice");
  await sameAsServer(admin, "demo-admin");

  // alice takes the call back and hangs up: the rows go on both pages.
  await clickAction(alice, "SIP/201", "unhold");
  await waitRow(admin, "SIP/201", "UP");
  await clickAction(alice, "SIP/201", "hangup");
  for (const p of [alice, admin]) {
    await p.waitForFunction((uids) => ![...document.querySelectorAll("#calls-body tr")].some((r) => uids.includes(r.dataset.uid)), { timeout }, legs);
    await waitStat(p, "company:default", "talking", "0");
  }
  await sameAsServer(admin, "demo-admin");

  // An error is shown in words from the status details.
  await alice.focus("#dial-number");
  await alice.keyboard.type("12ab");
  await alice.keyboard.press("Enter");
  await alice.waitForSelector("#message:not([hidden])", { timeout });
  assert.match(await alice.$eval("#message", (e) => e.textContent), /Dial: Check the input: number:/);

  // bob's browser phone (WebRTC) has mute and a DTMF keypad.
  const bob = await (await browser.createBrowserContext()).newPage();
  bob.on("pageerror", (e) => consoleErrors.push(String(e)));
  await signIn(bob, "demo-bob");
  await bob.type("#dial-number", "+15550199");
  await bob.keyboard.press("Enter");
  await waitRow(bob, "SIP/webrtc11", "UP"); // the far end answers by itself
  await clickAction(bob, "SIP/webrtc11", "mute");
  await bob.waitForFunction(() => document.querySelector("#calls-body tr td.state")?.textContent === "talking · muted", { timeout });
  const key = await bob.waitForSelector('#calls-body [data-tone="5"]', { timeout });
  await key.click();
  await bob.waitForFunction(() => document.querySelector("#calls-body tr td.state")?.textContent === "talking · muted · sent 5", { timeout });
  await clickAction(bob, "SIP/webrtc11", "hangup");
  await waitNoRows(bob);

  // The server drains (SIGTERM) and a new process takes its place: the
  // pages reconnect, are refused their old token (another epoch) and
  // re-snapshot: an empty switch.
  server.proc.kill("SIGTERM");
  // --shutdown-timeout=5s bounds the drain; twice the timeout here.
  const { code } = await within(server.exited, 2 * timeout, "the drained server's exit");
  assert.equal(code, 0, `the server did not drain cleanly:\n${server.log()}`);
  await waitLink(alice, "reconnecting");
  server = startServer(bin);
  direct = await within(server.ready, timeout, "the new server's serving log line").catch((e) => {
    throw new Error(`${e.message}; its log so far:\n${server.log()}`);
  });
  proxy.resume(direct);
  for (const p of [alice, admin]) {
    await waitLink(p, "live");
    await waitNoRows(p);
    await waitStat(p, "queue:Queue/q_600", "waiting", "0");
  }
  assert.ok(Number(await alice.$eval("#link", (e) => e.dataset.snapshots)) > Number(snapshotsBefore), "no fresh snapshot after the restart");
  await sameAsServer(alice, "demo-alice");
  assert.deepEqual(consoleErrors, [], "uncaught errors in the pages");
}
