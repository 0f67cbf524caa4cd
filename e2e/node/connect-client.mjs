// End-to-end check of callcontrold's HTTP port from Node.js with the
// TypeScript client generated from proto/ (web/gen, protoc-gen-es) and
// connect-node: the Connect protocol (JSON) and gRPC-Web, the same calls
// as the gRPC run. As alice (token demo-alice):
//
//   1. open WatchCalls over Connect and wait for the end of the snapshot;
//   2. Dial SIP/201 -> 202 and see NEW for both legs on the watch;
//   3. Hold the ringing call: FAILED_PRECONDITION whose ErrorInfo says the
//      call's state and the states that allow hold;
//   4. Hangup and see both legs DEAD; every event frame carries a resume
//      token;
//   5. resume a watch with the last token: no snapshot, only what came
//      after it (a second call dialled after the resume);
//   6. ListCalls over gRPC-Web sees the same calls as over Connect.
//
// Usage: node connect-client.mjs http://host:port (or
// CALLCONTROLD_E2E_HTTP). Exits 0 on success; prints the failure and
// exits 1 otherwise.
import { randomUUID } from 'node:crypto';
import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport, createGrpcWebTransport } from '@connectrpc/connect-node';
import { CallControlService } from '../../web/gen/callcontrol/v1/call_control_service_pb.js';
import { EventType, ViewChange } from '../../web/gen/callcontrol/v1/call_control_service_pb.js';
import { State } from '../../web/gen/callcontrol/v1/call_pb.js';

const baseUrl = process.argv[2] || process.env.CALLCONTROLD_E2E_HTTP || 'http://localhost:8080';
const stepTimeoutMs = 15000;

class Failure extends Error {}
const fail = (msg) => { throw new Failure(msg); };
const log = (msg) => console.log(`[node-e2e connect] ${msg}`);

const bearer = (login) => (next) => (req) => {
  req.header.set('Authorization', `Bearer demo-${login}`);
  return next(req);
};
const connect = createClient(CallControlService, createConnectTransport({ baseUrl, httpVersion: '1.1', interceptors: [bearer('alice')] }));
const grpcWeb = createClient(CallControlService, createGrpcWebTransport({ baseUrl, httpVersion: '1.1', interceptors: [bearer('alice')] }));
const opts = () => ({ timeoutMs: stepTimeoutMs });

// Watch reads a WatchCalls stream in the background into a queue that the
// steps wait on.
class Watch {
  constructor(request) {
    this.abort = new AbortController();
    this.frames = [];
    this.waiters = [];
    this.done = (async () => {
      try {
        for await (const f of connect.watchCalls(request, { signal: this.abort.signal })) {
          this.frames.push(f);
          this.waiters.splice(0).forEach((w) => w());
        }
      } catch (e) {
        if (!this.abort.signal.aborted) this.error = e;
      }
      this.waiters.splice(0).forEach((w) => w());
    })();
  }
  // next waits for a frame matching pred, consuming the frames before it.
  async next(what, pred) {
    const deadline = Date.now() + stepTimeoutMs;
    for (;;) {
      while (this.frames.length > 0) {
        const f = this.frames.shift();
        if (pred(f)) return f;
      }
      if (this.error) fail(`${what}: watch ended: ${this.error}`);
      if (Date.now() > deadline) fail(`${what}: nothing within ${stepTimeoutMs} ms`);
      await new Promise((resolve) => { this.waiters.push(resolve); setTimeout(resolve, 200); });
    }
  }
  // events waits until the events of the calls in uids satisfy pred.
  async eventsFor(what, uids, pred) {
    const seen = new Map();
    let token = '';
    await this.next(what, (f) => {
      if (f.frame.case !== 'events') return false;
      token = f.frame.value.resumeToken || fail(`${what}: event frame without a resume token`);
      for (const ev of f.frame.value.events) {
        const uid = ev.call.uid.toString();
        if (uids.includes(uid)) seen.set(uid, [...(seen.get(uid) ?? []), ev]);
      }
      return uids.every((u) => (seen.get(u) ?? []).some(pred));
    });
    return token;
  }
  close() { this.abort.abort(); return this.done; }
}

async function main() {
  const watch = new Watch({});
  const started = await watch.next('started', (f) => f.frame.case === 'started');
  log(`watch started at revision ${started.frame.value.revision}`);
  await watch.next('end of snapshot', (f) => f.frame.case === 'snapshotEnd');

  const dial = await connect.dial({ device: 'SIP/201', number: '202', requestId: randomUUID() }, opts());
  const mine = dial.call.uid;
  const legs = (await connect.listCalls({}, opts())).calls.map((c) => c.uid.toString());
  if (legs.length !== 2) fail(`ListCalls after Dial: ${legs.length} calls, want 2`);
  log(`dialled 202: legs ${legs.join(', ')}`);
  await watch.eventsFor('NEW for both legs', legs, (ev) => ev.type === EventType.NEW && ev.view === ViewChange.ENTERED);

  try {
    await connect.hold({ uid: mine }, opts());
    fail('Hold on a ringing call succeeded');
  } catch (e) {
    if (e instanceof Failure) throw e;
    const err = ConnectError.from(e);
    const info = err.details.find((d) => d.type === 'google.rpc.ErrorInfo');
    if (err.code !== Code.FailedPrecondition || !info) fail(`Hold while ringing: got ${err.message}, want failed_precondition with ErrorInfo`);
    log(`hold while ringing: ${Code[err.code]}: ${err.rawMessage}`);
  }

  await connect.hangup({ uid: mine, requestId: randomUUID() }, opts());
  const token = await watch.eventsFor('both legs DEAD', legs, (ev) => ev.call.state === State.DEAD);
  log('both legs DEAD');
  await watch.close();

  const resumed = new Watch({ resumeToken: token });
  await resumed.next('started (resumed)', (f) => f.frame.case === 'started');
  const second = await connect.dial({ device: 'SIP/201', number: '203', requestId: randomUUID() }, opts());
  const uid = second.call.uid.toString();
  const first = await resumed.next('first event after the token', (f) => {
    if (f.frame.case === 'snapshot' || f.frame.case === 'snapshotEnd') fail('a resumed watch sent a snapshot');
    return f.frame.case === 'events';
  });
  const uids = first.frame.value.events.map((ev) => ev.call.uid.toString());
  if (!uids.includes(uid) || uids.some((u) => legs.includes(u))) fail(`resumed watch: first events for ${uids}, want the new call ${uid} only`);
  log(`resumed with the token: first event is the new call ${uid}`);
  await resumed.close();

  const overWeb = (await grpcWeb.listCalls({}, opts())).calls.map((c) => c.uid.toString()).sort();
  const overConnect = (await connect.listCalls({}, opts())).calls.map((c) => c.uid.toString()).sort();
  if (overWeb.join() !== overConnect.join()) fail(`ListCalls over gRPC-Web ${overWeb} != over Connect ${overConnect}`);
  log(`gRPC-Web ListCalls agrees: ${overWeb.length} calls`);
  await connect.hangup({ uid: second.call.uid, requestId: randomUUID() }, opts());
}

main().then(() => {
  log('PASS');
  process.exit(0);
}, (e) => {
  console.error(`[node-e2e connect] FAIL: ${e instanceof Failure ? e.message : e.stack || e}`);
  process.exit(1);
});
