// Helpers of the browser test: the callcontrold binary on free loopback
// ports, a TCP proxy in front of its HTTP port (so the test can drop the
// browser's connections, or point them at a restarted server), Chromium
// through puppeteer-core, and a small Connect JSON client for the test's
// own requests.
import { spawn } from "node:child_process";
import net from "node:net";
import puppeteer from "puppeteer-core";

// startServer runs the binary on ephemeral ports and resolves with its
// HTTP base URL once the log says it is serving.
export function startServer(bin, extraArgs = []) {
  const args = ["--addr=127.0.0.1:0", "--http-addr=127.0.0.1:0", "--metrics-addr=", "--progress-interval=1s",
    "--shutdown-timeout=5s", ...extraArgs];
  const proc = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  const exited = new Promise((resolve) => proc.on("exit", (code, signal) => resolve({ code, signal })));
  const ready = new Promise((resolve, reject) => {
    proc.stderr.on("data", (b) => {
      log += b;
      const m = log.match(/url=(http:\/\/127\.0\.0\.1:\d+)\//);
      if (m && /msg=serving/.test(log)) resolve(m[1]);
    });
    exited.then(({ code }) => reject(new Error(`callcontrold exited (${code}) before serving:\n${log}`)));
  });
  return { proc, ready, exited, log: () => log };
}

// Proxy forwards 127.0.0.1:<port> to a target HTTP server. drop() cuts
// every connection and refuses new ones until resume().
export class Proxy {
  constructor(target) {
    this.target = new URL(target);
    this.sockets = new Set();
    this.refusing = false;
    this.server = net.createServer((client) => {
      if (this.refusing) { client.destroy(); return; }
      const upstream = net.connect(Number(this.target.port), this.target.hostname);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.on("close", () => upstream.destroy());
      upstream.on("close", () => client.destroy());
    });
  }
  listen() {
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", () => resolve(`http://127.0.0.1:${this.server.address().port}`)));
  }
  drop() {
    this.refusing = true;
    for (const s of this.sockets) s.destroy();
  }
  resume(target) {
    if (target) this.target = new URL(target);
    this.refusing = false;
  }
  close() {
    this.drop();
    return new Promise((resolve) => this.server.close(resolve));
  }
}

// launchBrowser starts the system's Chromium, never a downloaded one.
export function launchBrowser(userDataDir) {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    userDataDir,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--window-size=1400,1000"],
    defaultViewport: { width: 1400, height: 1000 },
    timeout: 60000,
  });
}

// rpc calls a method with the Connect protocol's unary JSON POST, as curl
// would, and returns the parsed response or throws with the error body.
export async function rpc(base, token, method, body = {}) {
  const res = await fetch(`${base}/callcontrol.v1.${method}`, {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30000), // a liveness bound: fail, never hang
  });
  const json = await res.json();
  if (!res.ok) throw new Error(`${method}: HTTP ${res.status}: ${JSON.stringify(json)}`);
  return json;
}

// within rejects with what was awaited if promise has not settled in ms:
// the test then fails with the server's log instead of hanging.
export function within(promise, ms, what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}
