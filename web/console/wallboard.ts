// Wallboard figures, computed from the live calls: per company, phones
// ringing, talking and on hold, and calls waiting in its queues; per
// queue, calls waiting and the longest wait.
import type { Call } from "../gen/callcontrol/v1/call_pb.js";
import { State } from "../gen/callcontrol/v1/call_pb.js";
import type { Device } from "../gen/callcontrol/v1/device_pb.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { clock, el, setText } from "./dom.js";

export type CompanyFigures = { ringing: number; talking: number; onHold: number; waiting: number; longestWaitMs: number };
export type QueueFigures = { label: string; company: string; waiting: number; longestWaitMs: number };

const isQueue = (device: string) => device.startsWith("Queue/");

// waitingSince is when a queued call started waiting, or undefined if the
// call is not waiting in a queue.
export function waitingSince(c: Call): number | undefined {
  if (!isQueue(c.device) || !c.inq || c.outq || c.state === State.DEAD) return undefined;
  return timestampMs(c.inq);
}

export function figures(calls: Iterable<Call>, queues: Device[], now: number) {
  const companies = new Map<string, CompanyFigures>();
  const byQueue = new Map<string, QueueFigures>();
  const company = (name: string) => {
    let f = companies.get(name);
    if (!f) companies.set(name, (f = { ringing: 0, talking: 0, onHold: 0, waiting: 0, longestWaitMs: 0 }));
    return f;
  };
  for (const q of queues) {
    company(q.company);
    byQueue.set(q.name, { label: q.displayName || q.name, company: q.company, waiting: 0, longestWaitMs: 0 });
  }
  for (const c of calls) {
    const f = company(c.deviceCompany || c.company);
    const since = waitingSince(c);
    if (since !== undefined) {
      const wait = Math.max(0, now - since);
      f.waiting++;
      f.longestWaitMs = Math.max(f.longestWaitMs, wait);
      let q = byQueue.get(c.device);
      if (!q) byQueue.set(c.device, (q = { label: c.device, company: c.deviceCompany, waiting: 0, longestWaitMs: 0 }));
      q.waiting++;
      q.longestWaitMs = Math.max(q.longestWaitMs, wait);
      continue;
    }
    if (isQueue(c.device)) continue;
    if (c.state === State.RING) f.ringing++;
    else if (c.state === State.UP) f.talking++;
    else if (c.state === State.HOLD) f.onHold++;
  }
  return { companies, queues: byQueue };
}

// Wallboard draws the figures into a container, one card per company and
// one per queue; numbers change in place.
export class Wallboard {
  private cards = new Map<string, HTMLElement>();

  constructor(private root: HTMLElement, private companyNames: Map<string, string>) {}

  render(calls: Iterable<Call>, queues: Device[], now: number): void {
    const { companies, queues: qs } = figures(calls, queues, now);
    const seen = new Set<string>();
    for (const [name, f] of [...companies].sort(([a], [b]) => a.localeCompare(b))) {
      const key = `company:${name}`;
      seen.add(key);
      this.card(key, this.companyNames.get(name) ?? name, "company", [
        ["ringing", String(f.ringing)], ["talking", String(f.talking)], ["on hold", String(f.onHold)],
        ["waiting", String(f.waiting)], ["longest wait", f.waiting ? clock(f.longestWaitMs / 1000) : "–"],
      ]);
    }
    for (const [name, q] of [...qs].sort(([a], [b]) => a.localeCompare(b))) {
      const key = `queue:${name}`;
      seen.add(key);
      this.card(key, q.label, "queue", [
        ["waiting", String(q.waiting)], ["longest wait", q.waiting ? clock(q.longestWaitMs / 1000) : "–"],
      ]);
    }
    for (const [key, card] of this.cards) {
      if (!seen.has(key)) { card.remove(); this.cards.delete(key); }
    }
  }

  private card(key: string, title: string, kind: string, stats: [string, string][]): void {
    let card = this.cards.get(key);
    if (!card) {
      card = el("section", { class: `card ${kind}`, "data-key": key, "aria-label": title },
        el("h3", {}, title),
        el("dl", {}, ...stats.flatMap(([label]) => [
          el("div", { class: "stat", "data-stat": label }, el("dt", {}, label), el("dd", {}, "")),
        ])));
      this.root.append(card);
      this.cards.set(key, card);
    }
    for (const [label, value] of stats) {
      const dd = card.querySelector(`[data-stat="${label}"] dd`);
      if (dd) setText(dd, value);
    }
  }
}
