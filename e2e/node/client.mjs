// End-to-end check of callcontrold from a Node.js client (@grpc/grpc-js +
// @grpc/proto-loader, loading the .proto files of the repository at run
// time). As alice (token demo-alice):
//
//   1. open WatchCalls and wait for the end of the snapshot;
//   2. Dial SIP/201 -> 202 and see NEW for both legs on the watch;
//   3. Hangup and see both legs DEAD (UPDATE with state STATE_DEAD);
//      every event frame carries a resume token, revisions increase;
//   4. resume a second watch with the last token: it gets no snapshot and
//      nothing at or before that token, only progress and new events (a
//      second call dialled after the resume proves it is live).
//
// Usage: node client.mjs [host:port]   (or CALLCONTROLD_E2E_ADDR; default
// localhost:50051). CALLCONTROLD_E2E_TIMEOUT_MS bounds the whole run
// (default 60000). Exits 0 on success; prints the failure and exits 1
// otherwise.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomUUID } from 'node:crypto';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const protoRoot = path.resolve(here, '..', '..', 'proto');
const addr = process.argv[2] || process.env.CALLCONTROLD_E2E_ADDR || 'localhost:50051';
const overallTimeoutMs = Number(process.env.CALLCONTROLD_E2E_TIMEOUT_MS || 60000);
const stepTimeoutMs = 15000;

class Failure extends Error {}

function fail(msg) {
  throw new Failure(msg);
}

function log(msg) {
  console.log(`[node-e2e] ${msg}`);
}

// ---------------------------------------------------------------- loading

// Imports are resolved against includeDirs: the repository's proto root for
// callcontrol/v1/*.proto. google/protobuf/{timestamp,duration}.proto are
// the well-known types that proto-loader ships (bundled in protobufjs).
const packageDefinition = protoLoader.loadSync(
  [
    'callcontrol/v1/call_control_service.proto',
    'callcontrol/v1/device_service.proto',
    'callcontrol/v1/simulator_service.proto',
  ],
  {
    keepCase: false,
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    includeDirs: [protoRoot],
  },
);
const v1 = grpc.loadPackageDefinition(packageDefinition).callcontrol.v1;
for (const svc of ['CallControlService', 'DeviceService', 'SimulatorService']) {
  if (typeof v1[svc] !== 'function') fail(`proto did not define callcontrol.v1.${svc}`);
}

const client = new v1.CallControlService(addr, grpc.credentials.createInsecure());

function auth(login) {
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer demo-${login}`);
  return md;
}

function unary(method, request, login = 'alice') {
  return new Promise((resolve, reject) => {
    const deadline = new Date(Date.now() + stepTimeoutMs);
    client[method](request, auth(login), { deadline }, (err, res) => {
      if (err) reject(new Failure(`${method}(${JSON.stringify(request)}): ${grpc.status[err.code]} ${err.details}`));
      else resolve(res);
    });
  });
}

// ---------------------------------------------------------------- watches

// Watch wraps a WatchCalls stream: it records every frame and lets the
// caller wait for a frame matching a predicate.
class Watch {
  constructor(name, request, login = 'alice') {
    this.name = name;
    this.frames = [];
    this.waiters = [];
    this.ended = null; // {code, details} once the stream ended
    this.call = client.watchCalls(request, auth(login));
    this.call.on('data', (frame) => {
      this.frames.push(frame);
      this.check();
    });
    this.call.on('error', (err) => {
      this.ended = { code: err.code, details: err.details };
      this.check();
    });
    this.call.on('end', () => {
      if (!this.ended) this.ended = { code: grpc.status.OK, details: 'end of stream' };
      this.check();
    });
  }

  check() {
    this.waiters = this.waiters.filter((w) => !w.poll());
  }

  // waitFor resolves with the first frame at index >= from satisfying pred.
  waitFor(what, pred, { from = 0, timeoutMs = stepTimeoutMs } = {}) {
    return new Promise((resolve, reject) => {
      let timer;
      const w = {
        poll: () => {
          for (let i = from; i < this.frames.length; i++) {
            if (pred(this.frames[i])) {
              clearTimeout(timer);
              resolve({ frame: this.frames[i], index: i });
              return true;
            }
          }
          if (this.ended) {
            clearTimeout(timer);
            reject(new Failure(`${this.name}: stream ended (${grpc.status[this.ended.code]}: ${this.ended.details}) before ${what}`));
            return true;
          }
          return false;
        },
      };
      if (w.poll()) return;
      timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Failure(`${this.name}: no ${what} within ${timeoutMs}ms; frames so far:\n${this.dump()}`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }

  // events lists [frame, event] for every event of every event frame.
  events() {
    const out = [];
    for (const f of this.frames) {
      if (f.frame === 'events') for (const e of f.events.events) out.push([f, e]);
    }
    return out;
  }

  cancel() {
    this.call.on('error', () => {}); // CANCELLED is expected now
    this.call.cancel();
  }

  dump() {
    return this.frames.map((f) => '  ' + JSON.stringify(f[f.frame])).join('\n');
  }
}

// An event frame for the event matching pred, anywhere so far or later.
function eventFrame(pred) {
  return (f) => f.frame === 'events' && f.events.events.some(pred);
}

const isNew = (uid) => (e) => e.type === 'EVENT_TYPE_NEW' && e.call.uid === uid;
const isDead = (uid) => (e) => e.type === 'EVENT_TYPE_UPDATE' && e.call.uid === uid && e.call.state === 'STATE_DEAD';

// ---------------------------------------------------------------- the run

async function main() {
  log(`connecting to ${addr}`);

  // 1. A watch of everything alice may see; wait for the snapshot's end.
  const w1 = new Watch('watch 1', {});
  const { frame: started } = await w1.waitFor('started frame', (f) => f.frame === 'started');
  if (w1.frames[0] !== started) fail(`watch 1: first frame is ${w1.frames[0].frame}, want started`);
  const { frame: snapEnd, index: snapEndIdx } = await w1.waitFor('snapshotEnd', (f) => f.frame === 'snapshotEnd');
  if (!snapEnd.snapshotEnd.resumeToken) fail('watch 1: snapshotEnd has no resume token');
  log(`watch 1 started (progress interval ${JSON.stringify(started.started.progressInterval)}), snapshot ends at revision ${snapEnd.snapshotEnd.revision}`);

  // 2. Dial SIP/201 -> 202: NEW for the caller leg and the callee leg.
  const dial = await unary('dial', { device: 'SIP/201', number: '202', requestId: `node-e2e-${randomUUID()}` });
  const callerUid = dial.call && dial.call.uid;
  if (!callerUid || callerUid === '0') fail(`Dial returned no call: ${JSON.stringify(dial)}`);
  if (dial.call.device !== 'SIP/201') fail(`Dial returned a call on ${dial.call.device}, want SIP/201`);
  log(`dialled 202 from SIP/201: call uid ${callerUid}, state ${dial.call.state}`);

  await w1.waitFor(`NEW for the caller leg ${callerUid}`, eventFrame(isNew(callerUid)), { from: snapEndIdx });
  const { frame: calleeFrame } = await w1.waitFor(
    'NEW for the callee leg on SIP/202',
    eventFrame((e) => e.type === 'EVENT_TYPE_NEW' && e.call.device === 'SIP/202'),
    { from: snapEndIdx },
  );
  const calleeUid = calleeFrame.events.events.find((e) => e.type === 'EVENT_TYPE_NEW' && e.call.device === 'SIP/202').call.uid;
  log(`watch 1 saw NEW for both legs: ${callerUid} (SIP/201) and ${calleeUid} (SIP/202)`);

  // 3. Hangup: both legs DEAD.
  const hangup = await unary('hangup', { uid: callerUid, requestId: `node-e2e-${randomUUID()}` });
  if (hangup.call.state !== 'STATE_DEAD') fail(`Hangup returned the call in ${hangup.call.state}, want STATE_DEAD (as applied)`);
  await w1.waitFor(`UPDATE STATE_DEAD for the caller leg ${callerUid}`, eventFrame(isDead(callerUid)), { from: snapEndIdx });
  await w1.waitFor(`UPDATE STATE_DEAD for the callee leg ${calleeUid}`, eventFrame(isDead(calleeUid)), { from: snapEndIdx });
  log('watch 1 saw both legs DEAD');

  // Every event frame has a resume token; revisions increase.
  let lastRev = BigInt(snapEnd.snapshotEnd.revision);
  let lastToken = snapEnd.snapshotEnd.resumeToken;
  for (const f of w1.frames.slice(snapEndIdx + 1)) {
    if (f.frame === 'snapshot' || f.frame === 'snapshotEnd' || f.frame === 'started') fail(`watch 1: ${f.frame} frame after snapshotEnd`);
    if (f.frame !== 'events') continue;
    if (!f.events.resumeToken) fail(`watch 1: event frame at revision ${f.events.revision} has no resume token`);
    const rev = BigInt(f.events.revision);
    if (rev <= lastRev) fail(`watch 1: event frame revision ${rev} not after ${lastRev}`);
    lastRev = rev;
    lastToken = f.events.resumeToken;
  }
  const seen = w1.frames.length;
  w1.cancel();
  log(`watch 1 closed after revision ${lastRev} (${seen} frames)`);

  // 4. Resume with the last token: started, no snapshot, nothing old.
  const w2 = new Watch('watch 2 (resumed)', { resumeToken: lastToken });
  const { frame: started2 } = await w2.waitFor('started frame', (f) => f.frame === 'started');
  if (w2.frames[0] !== started2) fail(`watch 2: first frame is ${w2.frames[0].frame}, want started`);
  const { frame: progress } = await w2.waitFor(
    'progress frame (is the server running with a short --progress-interval?)',
    (f) => f.frame === 'progress',
  );
  if (BigInt(progress.progress.revision) < lastRev) fail(`watch 2: progress at revision ${progress.progress.revision}, before the resume point ${lastRev}`);
  if (!progress.progress.resumeToken) fail('watch 2: progress frame has no resume token');

  // A new call after the resume reaches the resumed watch.
  const dial2 = await unary('dial', { device: 'SIP/201', number: '202', requestId: `node-e2e-${randomUUID()}` });
  const uid2 = dial2.call.uid;
  await w2.waitFor(`NEW for the new call ${uid2}`, eventFrame(isNew(uid2)));
  await unary('hangup', { uid: uid2 });
  await w2.waitFor(`UPDATE STATE_DEAD for the new call ${uid2}`, eventFrame(isDead(uid2)));

  for (const f of w2.frames.slice(1)) {
    switch (f.frame) {
      case 'progress':
        break;
      case 'events': {
        if (!f.events.resumeToken) fail(`watch 2: event frame at revision ${f.events.revision} has no resume token`);
        if (BigInt(f.events.revision) <= lastRev) fail(`watch 2: got old revision ${f.events.revision} (resumed after ${lastRev})\n${w2.dump()}`);
        for (const e of f.events.events) {
          if (e.call.uid === callerUid || e.call.uid === calleeUid) fail(`watch 2: got an event of the first call again: ${JSON.stringify(e)}`);
        }
        break;
      }
      default:
        fail(`watch 2: unexpected ${f.frame} frame on a resumed watch\n${w2.dump()}`);
    }
  }
  w2.cancel();
  log(`watch 2 resumed after revision ${lastRev}: ${w2.frames.length} frames, only progress and new events`);
}

const timer = setTimeout(() => {
  console.error(`[node-e2e] FAIL: timed out after ${overallTimeoutMs}ms`);
  process.exit(1);
}, overallTimeoutMs);

try {
  await main();
  clearTimeout(timer);
  client.close();
  log('PASS');
  process.exit(0);
} catch (err) {
  console.error(`[node-e2e] FAIL: ${err instanceof Failure ? err.message : err.stack || err}`);
  process.exit(1);
}
