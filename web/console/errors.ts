// Errors in words: a ConnectError's code and status details (BadRequest,
// ErrorInfo, RetryInfo) turned into a sentence a person can act on.
import { Code, ConnectError } from "@connectrpc/connect";
import { BinaryReader } from "@bufbuild/protobuf/wire";

type Violation = { field: string; description: string };
type ErrorInfo = { reason: string; domain: string; metadata: Record<string, string> };

// The google.rpc detail messages are small; they are decoded from the wire
// here rather than generated, since the proto imports only well-known types.
function decodeBadRequest(b: Uint8Array): Violation[] {
  const out: Violation[] = [];
  const r = new BinaryReader(b);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no !== 1) { r.skip(wt); continue; }
    const v: Violation = { field: "", description: "" };
    const fr = new BinaryReader(r.bytes());
    while (fr.pos < fr.len) {
      const [fno, fwt] = fr.tag();
      if (fno === 1) v.field = fr.string();
      else if (fno === 2) v.description = fr.string();
      else fr.skip(fwt);
    }
    out.push(v);
  }
  return out;
}

function decodeErrorInfo(b: Uint8Array): ErrorInfo {
  const info: ErrorInfo = { reason: "", domain: "", metadata: {} };
  const r = new BinaryReader(b);
  while (r.pos < r.len) {
    const [no, wt] = r.tag();
    if (no === 1) info.reason = r.string();
    else if (no === 2) info.domain = r.string();
    else if (no === 3) {
      const er = new BinaryReader(r.bytes());
      let k = "", v = "";
      while (er.pos < er.len) {
        const [eno, ewt] = er.tag();
        if (eno === 1) k = er.string();
        else if (eno === 2) v = er.string();
        else er.skip(ewt);
      }
      info.metadata[k] = v;
    } else r.skip(wt);
  }
  return info;
}

// retryDelaySeconds reads RetryInfo.retry_delay, if the error carries one.
export function retryDelaySeconds(err: ConnectError): number | undefined {
  for (const d of err.details) {
    if (!("type" in d) || d.type !== "google.rpc.RetryInfo") continue;
    const r = new BinaryReader(d.value);
    while (r.pos < r.len) {
      const [no, wt] = r.tag();
      if (no !== 1) { r.skip(wt); continue; }
      const dr = new BinaryReader(r.bytes());
      let s = 0, n = 0;
      while (dr.pos < dr.len) {
        const [dno, dwt] = dr.tag();
        if (dno === 1) s = Number(dr.int64());
        else if (dno === 2) n = dr.int32();
        else dr.skip(dwt);
      }
      return s + n / 1e9;
    }
  }
  return undefined;
}

export function errorInfo(err: ConnectError): ErrorInfo | undefined {
  for (const d of err.details) {
    if ("type" in d && d.type === "google.rpc.ErrorInfo") return decodeErrorInfo(d.value);
  }
  return undefined;
}

// stateWord turns a state ("STATE_RING" or the reference's "ring") into
// the word the console shows ("ringing").
export function stateWord(s: string): string {
  const words: Record<string, string> = {
    down: "down", dial: "dialling", ring: "ringing", up: "talking",
    hold: "on hold", park: "parked", dead: "ended",
  };
  const key = s.replace(/^STATE_/, "").toLowerCase();
  return words[key] ?? key;
}

const codeWords: Partial<Record<Code, string>> = {
  [Code.InvalidArgument]: "Check the input",
  [Code.NotFound]: "Not found",
  [Code.PermissionDenied]: "Not allowed",
  [Code.FailedPrecondition]: "Not possible now",
  [Code.Unauthenticated]: "Sign in again",
  [Code.ResourceExhausted]: "Too many requests: wait a moment",
  [Code.Unavailable]: "The server is unavailable: try again",
  [Code.OutOfRange]: "Out of range",
  [Code.DeadlineExceeded]: "The server took too long",
};

// describe is the sentence shown for an error.
export function describe(e: unknown): string {
  const err = ConnectError.from(e);
  const lead = codeWords[err.code] ?? `Error (${Code[err.code] ?? err.code})`;
  const parts: string[] = [];
  for (const d of err.details) {
    if (!("type" in d)) continue;
    if (d.type === "google.rpc.BadRequest") {
      for (const v of decodeBadRequest(d.value)) parts.push(`${v.field}: ${v.description}`);
    } else if (d.type === "google.rpc.ErrorInfo") {
      const info = decodeErrorInfo(d.value);
      const m = info.metadata;
      if (info.reason === "CALL_STATE" && m.state) {
        const allowed = (m.allowed_states ?? "").split(",").filter(Boolean).map(stateWord).join(" or ");
        parts.push(`the call is ${stateWord(m.state)}` + (allowed ? `; ${m.operation || "this"} needs it ${allowed}` : ""));
      }
    }
  }
  const msg = parts.length > 0 ? parts.join("; ") : err.rawMessage;
  return `${lead}: ${msg}`;
}
