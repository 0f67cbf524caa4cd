// The console: sign in with a token, then the calls you may see (live),
// your phone's controls and the wallboard figures.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Call } from "../gen/callcontrol/v1/call_pb.js";
import type { Device } from "../gen/callcontrol/v1/device_pb.js";
import { newApi, type Api } from "./api.js";
import { byId, el, setText } from "./dom.js";
import { describe } from "./errors.js";
import { CallTable, type Controls, type Phones } from "./table.js";
import { Wallboard } from "./wallboard.js";
import { CallWatch, type LinkState } from "./watch.js";

const tokenKey = "callcontrold.token";

async function allDevices(api: Api, controllable: boolean): Promise<Device[]> {
  const out: Device[] = [];
  let pageToken = "";
  do {
    const page = await api.devices.listDevices({ controllable, pageToken, pageSize: 1000 });
    out.push(...page.devices);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return out;
}

// message shows a sentence in the page's alert area until the next one.
function message(text: string, kind: "error" | "info" = "error"): void {
  const box = byId("message");
  box.className = kind;
  box.hidden = text === "";
  setText(box, text);
}

function showSignIn(error = ""): void {
  byId("app").hidden = true;
  byId("signin").hidden = false;
  const err = byId("signin-error");
  err.hidden = error === "";
  setText(err, error);
  byId<HTMLInputElement>("token").focus();
}

async function signIn(token: string): Promise<void> {
  const api = newApi(token);
  let own: Device[], visible: Device[];
  try {
    [own, visible] = await Promise.all([allDevices(api, true), allDevices(api, false)]);
  } catch (e) {
    if (ConnectError.from(e).code === Code.Unauthenticated) {
      sessionStorage.removeItem(tokenKey);
      showSignIn("That token was not accepted.");
    } else {
      // The server could not be reached: keep the token for another try.
      showSignIn(describe(e));
      byId<HTMLInputElement>("token").value = token;
    }
    return;
  }
  sessionStorage.setItem(tokenKey, token);
  byId("signin").hidden = true;
  byId("app").hidden = false;
  start(api, own, visible);
}

function start(api: Api, own: Device[], visible: Device[]): void {
  const phones: Phones = {
    own: new Set(own.map((d) => d.name)),
    webrtc: new Set(own.filter((d) => d.webrtc).map((d) => d.name)),
    names: new Map(visible.map((d) => [d.name, d.displayName || d.name])),
  };
  const who = own.find((d) => d.owner?.name)?.owner?.name;
  setText(byId("who"), who ? `Signed in as ${who}` : "Signed in");
  setupDial(api, own);

  const run = async (what: string, f: () => Promise<unknown>) => {
    try {
      await f();
      message("");
    } catch (e) {
      message(`${what}: ${describe(e)}`);
    }
  };
  const rid = () => crypto.randomUUID();
  const controls: Controls = {
    talk: (c) => run("Answer", () => api.calls.talk({ uid: c.uid, requestId: rid() })),
    hold: (c) => run("Hold", () => api.calls.hold({ uid: c.uid, requestId: rid() })),
    hangup: (c) => run("Hang up", () => api.calls.hangup({ uid: c.uid, requestId: rid() })),
    xfer: (c, number) => run("Transfer", () => api.calls.xfer({ uid: c.uid, number, requestId: rid() })),
    atxfer: (c, t) => run("Transfer", () => api.calls.atXfer({ uid: c.uid, targetUid: t.uid, requestId: rid() })),
    send: (c, number) => run("Send", () => api.calls.send({ uid: c.uid, number, requestId: rid() })),
    mute: (c, mute) => run(mute ? "Mute" : "Unmute", () => api.calls.mute({ uid: c.uid, mute, requestId: rid() })),
    dtmf: (c, tone) => run("Keypad", () => api.calls.dtmf({ uid: c.uid, tone, requestId: rid() })),
  };
  const table = new CallTable(byId("calls-body"), byId("no-calls"), phones, controls);
  const companies = new Map<string, string>();
  const queues = visible.filter((d) => d.name.startsWith("Queue/"));
  const board = new Wallboard(byId("wallboard"), companies);
  let calls: ReadonlyMap<string, Call> = new Map();
  const draw = () => {
    const now = Date.now();
    table.render(calls, now);
    board.render(calls.values(), queues, now);
  };
  draw();

  const status = byId("link");
  const watch = new CallWatch(api, {
    changed(c) { calls = c; draw(); },
    link(state: LinkState, detail: string) {
      status.dataset.state = state;
      status.dataset.resumes = String(watch.resumes);
      status.dataset.snapshots = String(watch.snapshots);
      setText(status, state === "live" ? "Live" : state === "connecting" ? "Connecting…" : "Reconnecting…");
      status.title = detail;
    },
    unauthenticated() {
      stop();
      showSignIn("Your session ended: sign in again.");
    },
  });
  void watch.run();
  const ticker = setInterval(draw, 1000); // durations and waits
  const stop = () => {
    watch.stop();
    clearInterval(ticker);
  };
  byId("signout").onclick = () => {
    stop();
    sessionStorage.removeItem(tokenKey);
    location.reload();
  };
}

function setupDial(api: Api, own: Device[]): void {
  const form = byId<HTMLFormElement>("dial");
  const select = byId<HTMLSelectElement>("dial-device");
  select.replaceChildren(...own.map((d) => el("option", { value: d.name }, `${d.displayName || d.name} (${d.extension || d.name})`)));
  form.hidden = own.length === 0;
  byId("no-phone").hidden = own.length > 0;
  form.onsubmit = async (ev) => {
    ev.preventDefault();
    const input = byId<HTMLInputElement>("dial-number");
    const number = input.value.trim();
    if (!number) return;
    const button = form.querySelector("button")!;
    button.disabled = true;
    try {
      await api.calls.dial({ device: select.value, number, requestId: crypto.randomUUID() });
      input.value = "";
      message("");
    } catch (e) {
      message(`Dial: ${describe(e)}`);
    } finally {
      button.disabled = false;
    }
  };
}

function main(): void {
  byId<HTMLFormElement>("signin-form").onsubmit = (ev) => {
    ev.preventDefault();
    const token = byId<HTMLInputElement>("token").value.trim();
    if (token) void signIn(token);
  };
  const saved = sessionStorage.getItem(tokenKey);
  if (saved) void signIn(saved);
  else showSignIn();
}

main();
