// The live table of visible calls. Rows are keyed by uid and updated in
// place, so a focused button or a half-typed transfer number survives the
// next event; the actions of a row are rebuilt only when what they depend
// on changes.
import type { Call } from "../gen/callcontrol/v1/call_pb.js";
import { Party, State } from "../gen/callcontrol/v1/call_pb.js";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { clock, el, setText } from "./dom.js";
import { stateWord } from "./errors.js";
import { waitingSince } from "./wallboard.js";

// Controls are what the table asks of the page: each returns when the
// call is applied (or the error is shown).
export type Controls = {
  talk(c: Call): Promise<void>;
  hold(c: Call): Promise<void>;
  hangup(c: Call): Promise<void>;
  xfer(c: Call, number: string): Promise<void>;
  atxfer(c: Call, target: Call): Promise<void>;
  send(c: Call, number: string): Promise<void>;
  mute(c: Call, on: boolean): Promise<void>;
  dtmf(c: Call, tone: string): Promise<void>;
};

export type Phones = { own: Set<string>; webrtc: Set<string>; names: Map<string, string> };

const stateName = (s: State) => stateWord(State[s] ?? "");

function otherParty(c: Call): string {
  const who = [c.name, c.number].filter(Boolean).join(" ");
  const arrow = c.party === Party.CALLER ? "to" : c.party === Party.CALLEE ? "from" : "with";
  return who ? `${arrow} ${who}` : "";
}

export class CallTable {
  private rows = new Map<string, HTMLTableRowElement>();

  constructor(private body: HTMLTableSectionElement, private empty: HTMLElement,
    private phones: Phones, private controls: Controls) {}

  render(calls: ReadonlyMap<string, Call>, now: number): void {
    const sorted = [...calls.values()].sort((a, b) => (a.uid < b.uid ? -1 : a.uid > b.uid ? 1 : 0));
    const own = sorted.filter((c) => this.phones.own.has(c.device));
    for (const [uid, row] of this.rows) {
      if (!calls.has(uid)) { row.remove(); this.rows.delete(uid); }
    }
    let prev: HTMLTableRowElement | undefined;
    for (const c of sorted) {
      const uid = c.uid.toString();
      let row = this.rows.get(uid);
      if (!row) {
        row = this.newRow(uid);
        this.rows.set(uid, row);
      }
      // Keep the DOM in uid order without moving rows that are in place.
      const want = prev ? prev.nextSibling : this.body.firstChild;
      if (want !== row) this.body.insertBefore(row, want);
      prev = row;
      this.update(row, c, own, now);
    }
    this.empty.hidden = calls.size > 0;
  }

  private newRow(uid: string): HTMLTableRowElement {
    const row = el("tr", { "data-uid": uid });
    for (const name of ["phone", "state", "party", "duration"]) row.append(el("td", { class: name }));
    row.append(el("td", { class: "actions" }, el("div", { class: "buttons" })));
    return row;
  }

  private update(row: HTMLTableRowElement, c: Call, own: Call[], now: number): void {
    const [phone, state, party, duration, actionCell] = Array.from(row.cells);
    const actions = actionCell.firstElementChild as HTMLElement;
    const mine = this.phones.own.has(c.device);
    const queued = waitingSince(c) !== undefined;
    row.className = `state-${State[c.state]?.toLowerCase() ?? "unknown"}${mine ? " mine" : ""}${queued ? " queued" : ""}`;
    setText(phone, this.phones.names.get(c.device) ?? c.device);
    phone.title = c.device;
    const muted = c.jsInfo?.muted?.audio ?? false;
    const sent = c.dtmfString ? ` · sent ${c.dtmfString}` : "";
    setText(state, queued ? "in queue" : stateName(c.state) + (muted ? " · muted" : "") + sent);
    row.dataset.state = State[c.state] ?? "";
    setText(party, otherParty(c));
    const since = c.start ?? c.stamp;
    setText(duration, since ? clock((now - timestampMs(since)) / 1000) : "");
    // Rebuild the buttons only when their inputs changed.
    const others = own.filter((o) => o.uid !== c.uid && (o.state === State.UP || o.state === State.HOLD || o.state === State.DIAL || o.state === State.RING));
    const key = [c.state, muted, mine, others.map((o) => `${o.uid}:${o.state}`).join(",")].join("|");
    if (actions.dataset.key !== key) {
      actions.dataset.key = key;
      actions.replaceChildren(...this.buttons(c, mine, others, muted));
    }
  }

  private buttons(c: Call, mine: boolean, others: Call[], muted: boolean): HTMLElement[] {
    const b = (label: string, action: string, run: () => Promise<void>) =>
      el("button", { type: "button", "data-action": action, onclick: busy(run) }, label);
    if (!mine) {
      return c.state === State.RING ? [numberForm("Send", "send", (n) => this.controls.send(c, n))] : [];
    }
    const out: HTMLElement[] = [];
    const webrtc = this.phones.webrtc.has(c.device);
    switch (c.state) {
      case State.RING:
        if (c.party !== Party.CALLER) out.push(b("Answer", "answer", () => this.controls.talk(c)));
        break;
      case State.UP:
        out.push(b("Hold", "hold", () => this.controls.hold(c)));
        break;
      case State.HOLD:
        out.push(b("Unhold", "unhold", () => this.controls.talk(c)));
        break;
    }
    if (c.state === State.UP || c.state === State.HOLD) {
      if (webrtc) {
        out.push(b(muted ? "Unmute" : "Mute", muted ? "unmute" : "mute", () => this.controls.mute(c, !muted)));
      }
      out.push(numberForm("Transfer", "xfer", (n) => this.controls.xfer(c, n)));
      for (const o of others) {
        const label = o.number || o.name || o.device;
        const btn = b(`Connect to ${label}`, "atxfer", () => this.controls.atxfer(c, o));
        btn.title = `Attended transfer: bridge this call's other party with ${label}, and leave both`;
        out.push(btn);
      }
      if (webrtc && c.state === State.UP) out.push(keypad((t) => this.controls.dtmf(c, t)));
    }
    out.push(b("Hang up", "hangup", () => this.controls.hangup(c)));
    return out;
  }
}

// busy disables a button while its request is in flight, so a double
// click does not act twice (the request_id would catch it anyway).
function busy(run: () => Promise<void>): (ev: Event) => void {
  return (ev) => {
    const btn = ev.currentTarget as HTMLButtonElement;
    btn.disabled = true;
    run().finally(() => { btn.disabled = false; });
  };
}

// numberForm is a button that opens an inline number field: Enter
// submits, Escape closes.
function numberForm(label: string, action: string, submit: (n: string) => Promise<void>): HTMLElement {
  const input = el("input", { type: "tel", inputmode: "tel", placeholder: "number", "aria-label": `${label} to number`, required: true, autocomplete: "off" });
  const form = el("form", { class: "inline", "data-action": action, hidden: true }, input, el("button", { type: "submit" }, label));
  const open = el("button", { type: "button", "data-action": `${action}-open`, "aria-expanded": "false" }, `${label}…`);
  const close = () => { form.hidden = true; open.hidden = false; open.setAttribute("aria-expanded", "false"); open.focus(); };
  open.addEventListener("click", () => {
    form.hidden = false; open.hidden = true; open.setAttribute("aria-expanded", "true"); input.focus();
  });
  form.addEventListener("keydown", (ev) => { if (ev.key === "Escape") close(); });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const n = input.value.trim();
    if (n) submit(n).then(() => { input.value = ""; });
  });
  return el("span", { class: "numberform" }, open, form);
}

// keypad sends DTMF tones; the buttons are reachable by Tab and the digit
// keys work while one has focus.
function keypad(send: (tone: string) => Promise<void>): HTMLElement {
  const pad = el("span", { class: "keypad", role: "group", "aria-label": "DTMF keypad" });
  for (const t of "123456789*0#") {
    pad.append(el("button", { type: "button", "data-tone": t, onclick: busy(() => send(t)) }, t));
  }
  pad.addEventListener("keydown", (ev) => {
    if (/^[0-9*#]$/.test(ev.key)) { ev.preventDefault(); void send(ev.key); }
  });
  return pad;
}
