// The live view of calls: WatchCalls, snapshot then events, kept in a map
// by uid. A dropped stream resumes with the last resume token (exactly the
// events after it: no row lost, none repeated); a token the server no
// longer accepts (OUT_OF_RANGE) means a fresh snapshot.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Call } from "../gen/callcontrol/v1/call_pb.js";
import { State } from "../gen/callcontrol/v1/call_pb.js";
import { ViewChange, type WatchCallsResponse } from "../gen/callcontrol/v1/call_control_service_pb.js";
import type { Api } from "./api.js";
import { retryDelaySeconds } from "./errors.js";

export type LinkState = "connecting" | "live" | "reconnecting";

export type WatchEvents = {
  // The calls changed (after a snapshot or a batch of events).
  changed(calls: ReadonlyMap<string, Call>): void;
  link(state: LinkState, detail: string): void;
  // The token was refused: the user must sign in again.
  unauthenticated(err: ConnectError): void;
};

export class CallWatch {
  readonly calls = new Map<string, Call>();
  private token = "";
  private abort = new AbortController();
  // Counters the browser test reads: how often the stream was resumed
  // with a token, and re-snapshotted.
  resumes = 0;
  snapshots = 0;

  constructor(private api: Api, private on: WatchEvents) {}

  stop(): void {
    this.abort.abort();
  }

  async run(): Promise<void> {
    let failures = 0;
    while (!this.abort.signal.aborted) {
      let delay = 0;
      try {
        await this.stream();
        // A stream that ends without an error is resumed, after a breath
        // so that a server ending streams at once is not hammered.
        failures = 0;
        delay = 250;
      } catch (e) {
        if (this.abort.signal.aborted) return;
        const err = ConnectError.from(e);
        if (err.code === Code.Unauthenticated) {
          this.on.unauthenticated(err);
          return;
        }
        if (err.code === Code.OutOfRange) {
          // The history no longer reaches back to our token, or the server
          // restarted: start over from a snapshot.
          this.token = "";
        } else {
          failures++;
        }
        const retry = retryDelaySeconds(err);
        delay = retry !== undefined ? retry * 1000 : Math.min(30000, 500 * 2 ** Math.min(failures, 6));
        this.on.link("reconnecting", err.rawMessage);
      }
      if (delay > 0) await sleep(delay, this.abort.signal);
    }
  }

  private async stream(): Promise<void> {
    const resuming = this.token !== "";
    this.on.link(resuming ? "reconnecting" : "connecting", resuming ? "resuming" : "loading calls");
    const frames = this.api.calls.watchCalls({ resumeToken: this.token }, { signal: this.abort.signal });
    let snapshot: Map<string, Call> | undefined;
    for await (const f of frames) {
      this.frame(f, resuming, () => snapshot ?? (snapshot = new Map()));
      if (f.frame.case === "snapshotEnd") snapshot = undefined;
    }
  }

  private frame(f: WatchCallsResponse, resuming: boolean, snapshot: () => Map<string, Call>): void {
    switch (f.frame.case) {
      case "started":
        if (resuming) {
          this.resumes++;
          this.on.link("live", "");
        }
        break;
      case "snapshot":
        for (const c of f.frame.value.calls) snapshot().set(c.uid.toString(), c);
        break;
      case "snapshotEnd": {
        const snap = snapshot();
        this.calls.clear();
        for (const [uid, c] of snap) this.calls.set(uid, c);
        this.token = f.frame.value.resumeToken;
        this.snapshots++;
        this.on.changed(this.calls);
        this.on.link("live", "");
        break;
      }
      case "events":
        for (const ev of f.frame.value.events) {
          const c = ev.call;
          if (!c) continue;
          const uid = c.uid.toString();
          if (ev.view === ViewChange.LEFT || c.state === State.DEAD) this.calls.delete(uid);
          else this.calls.set(uid, c);
        }
        this.token = f.frame.value.resumeToken;
        this.on.changed(this.calls);
        break;
      case "progress":
        this.token = f.frame.value.resumeToken;
        break;
    }
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => { clearTimeout(t); resolve(); }, { once: true });
  });
}
