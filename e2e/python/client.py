"""End-to-end check of callcontrold from a Python client (grpcio).

The client has no generated stubs: it loads the API's descriptors from a
serialized FileDescriptorSet (written by e2e/python/descriptors, see
run.sh), builds message classes from them and calls the methods by name,
as any gRPC client can. As alice (token demo-alice):

  1. open WatchCalls and wait for the end of the snapshot;
  2. Dial SIP/201 -> 202 and see NEW for both legs on the watch;
  3. an error with details: Hold on the caller leg while it still rings is
     FAILED_PRECONDITION with an ErrorInfo (reason CALL_STATE, the leg's
     state and the allowed ones); Dtmf with a bad tone is INVALID_ARGUMENT
     with a BadRequest naming the field; both decoded from the
     grpc-status-details-bin trailer as a google.rpc.Status;
  4. Hangup and see both legs DEAD (UPDATE with state STATE_DEAD); every
     event frame carries a resume token, revisions increase;
  5. resume a second watch with the last token: it gets no snapshot and
     nothing at or before that token, only progress and new events (a
     second call dialled after the resume proves it is live).

Usage: python3 client.py HOST:PORT DESCRIPTORS_FILE
CALLCONTROLD_E2E_TIMEOUT_S bounds the whole run (default 60). Exits 0 on
success; prints the failure and exits 1 otherwise.
"""

import os
import sys
import threading
import time
import uuid

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

STEP_TIMEOUT_S = 15.0


class Failure(Exception):
    pass


def fail(msg):
    raise Failure(msg)


def log(msg):
    print(f"[python-e2e] {msg}", flush=True)


# ---------------------------------------------------------------- loading


class Api:
    """Message classes, enum numbers and method callables of the API,
    built from a FileDescriptorSet."""

    def __init__(self, descriptor_file, channel):
        with open(descriptor_file, "rb") as f:
            files = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file
        self.pool = descriptor_pool.DescriptorPool()
        for fd in files:  # each file after its imports
            self.pool.Add(fd)
        self._factory = message_factory.MessageFactory(self.pool)
        self.methods = {}
        for fd in files:
            for svc in fd.service:
                for m in svc.method:
                    self._add_method(channel, fd.package, svc.name, m)

    def msg(self, full_name):
        """The message class of a message's full name."""
        desc = self.pool.FindMessageTypeByName(full_name)
        if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
            return message_factory.GetMessageClass(desc)
        return self._factory.GetPrototype(desc)

    def enum(self, full_name, value):
        """The number of an enum value, by the enum's full name."""
        return self.pool.FindEnumTypeByName(full_name).values_by_name[value].number

    def _add_method(self, channel, package, service, m):
        req = self.msg(m.input_type.lstrip("."))
        resp = self.msg(m.output_type.lstrip("."))
        path = f"/{package}.{service}/{m.name}"
        make = channel.unary_stream if m.server_streaming else channel.unary_unary
        self.methods[f"{service}.{m.name}"] = (
            req,
            make(path, request_serializer=req.SerializeToString, response_deserializer=resp.FromString),
        )

    def call(self, method, login="alice", **fields):
        """Calls a unary method with a request built from fields."""
        req_class, fn = self.methods[method]
        return fn(req_class(**fields), metadata=auth(login), timeout=STEP_TIMEOUT_S)

    def stream(self, method, login="alice", **fields):
        req_class, fn = self.methods[method]
        return fn(req_class(**fields), metadata=auth(login))


def auth(login):
    return (("authorization", f"Bearer demo-{login}"),)


def request_id():
    return f"python-e2e-{uuid.uuid4()}"


# ---------------------------------------------------------------- errors


def status_details(api, err):
    """The google.rpc.Status an error carries in its trailers, with its
    details unpacked: (status, [detail messages])."""
    raw = None
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            raw = value
    if raw is None:
        fail(f"{err.code().name} error has no grpc-status-details-bin trailer: {err.details()}")
    st = api.msg("google.rpc.Status").FromString(raw)
    if st.code != err.code().value[0]:
        fail(f"google.rpc.Status code {st.code} differs from the gRPC status {err.code().name}")
    details = []
    for anything in st.details:
        type_name = anything.type_url.rsplit("/", 1)[-1]
        details.append(api.msg(type_name).FromString(anything.value))
    return st, details


def expect_error(api, what, code, method, **fields):
    """Calls method, which must fail with code; returns the details."""
    try:
        api.call(method, **fields)
    except grpc.RpcError as err:
        if err.code() != code:
            fail(f"{what}: got {err.code().name} ({err.details()}), want {code.name}")
        _, details = status_details(api, err)
        return details
    fail(f"{what}: succeeded, want {code.name}")


def only_detail(details, full_name, what):
    found = [d for d in details if d.DESCRIPTOR.full_name == full_name]
    if len(found) != 1:
        fail(f"{what}: want one {full_name} among the details, got {[d.DESCRIPTOR.full_name for d in details]}")
    return found[0]


# ---------------------------------------------------------------- watches


class Watch:
    """A WatchCalls stream read by a thread: it records every frame and
    lets the caller wait for a frame matching a predicate."""

    def __init__(self, api, name, **request):
        self.name = name
        self.frames = []
        self.ended = None  # (code name, details) once the stream ended
        self.cond = threading.Condition()
        self.call = api.stream("CallControlService.WatchCalls", **request)
        self.thread = threading.Thread(target=self._read, name=name, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for frame in self.call:
                with self.cond:
                    self.frames.append(frame)
                    self.cond.notify_all()
            ended = ("OK", "end of stream")
        except grpc.RpcError as err:
            ended = (err.code().name, err.details())
        with self.cond:
            self.ended = ended
            self.cond.notify_all()

    def wait_for(self, what, pred, start=0, timeout=STEP_TIMEOUT_S):
        """The first frame at index >= start satisfying pred, and its index."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for i in range(start, len(self.frames)):
                    if pred(self.frames[i]):
                        return self.frames[i], i
                if self.ended is not None:
                    fail(f"{self.name}: stream ended ({self.ended[0]}: {self.ended[1]}) before {what}")
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"{self.name}: no {what} within {timeout}s; frames so far:\n{self.dump()}")
                self.cond.wait(left)

    def snapshot_frames(self):
        with self.cond:
            return list(self.frames)

    def cancel(self):
        self.call.cancel()
        self.thread.join(STEP_TIMEOUT_S)
        if self.thread.is_alive():
            fail(f"{self.name}: the reading thread did not end after cancel")
        if self.ended[0] != "CANCELLED":
            fail(f"{self.name}: ended with {self.ended[0]} ({self.ended[1]}), want CANCELLED after cancel")

    def dump(self):
        return "\n".join(f"  {f.WhichOneof('frame')}: {getattr(f, f.WhichOneof('frame'))}".rstrip() for f in self.frames)


def kind(frame):
    return frame.WhichOneof("frame")


# ---------------------------------------------------------------- the run


def run(api):
    new = api.enum("callcontrol.v1.EventType", "EVENT_TYPE_NEW")
    update = api.enum("callcontrol.v1.EventType", "EVENT_TYPE_UPDATE")
    dead = api.enum("callcontrol.v1.State", "STATE_DEAD")

    def event_frame(pred):
        return lambda f: kind(f) == "events" and any(pred(e) for e in f.events.events)

    def is_new(uid):
        return lambda e: e.type == new and e.call.uid == uid

    def is_dead(uid):
        return lambda e: e.type == update and e.call.uid == uid and e.call.state == dead

    # 1. A watch of everything alice may see; wait for the snapshot's end.
    w1 = Watch(api, "watch 1")
    started, _ = w1.wait_for("started frame", lambda f: kind(f) == "started")
    if w1.frames[0] is not started:
        fail(f"watch 1: first frame is {kind(w1.frames[0])}, want started")
    snap_end, snap_end_idx = w1.wait_for("snapshot_end", lambda f: kind(f) == "snapshot_end")
    if not snap_end.snapshot_end.resume_token:
        fail("watch 1: snapshot_end has no resume token")
    log(f"watch 1 started (progress interval {started.started.progress_interval.seconds}s), "
        f"snapshot ends at revision {snap_end.snapshot_end.revision}")

    # 2. Dial SIP/201 -> 202: NEW for the caller leg and the callee leg.
    dial = api.call("CallControlService.Dial", device="SIP/201", number="202", request_id=request_id())
    caller = dial.call.uid
    if not caller or dial.call.device != "SIP/201":
        fail(f"Dial returned {dial}, want a call on SIP/201")
    log(f"dialled 202 from SIP/201: call uid {caller}")
    w1.wait_for(f"NEW for the caller leg {caller}", event_frame(is_new(caller)), start=snap_end_idx)
    frame, _ = w1.wait_for("NEW for the callee leg on SIP/202",
                           event_frame(lambda e: e.type == new and e.call.device == "SIP/202"), start=snap_end_idx)
    callee = next(e.call.uid for e in frame.events.events if e.type == new and e.call.device == "SIP/202")
    log(f"watch 1 saw NEW for both legs: {caller} (SIP/201) and {callee} (SIP/202)")

    # 3. Errors and their details.
    details = expect_error(api, "Hold while the call rings", grpc.StatusCode.FAILED_PRECONDITION,
                           "CallControlService.Hold", uid=caller, request_id=request_id())
    info = only_detail(details, "google.rpc.ErrorInfo", "Hold while the call rings")
    if info.reason != "CALL_STATE" or info.domain != "callcontrol.v1" or info.metadata["state"] != "ring" \
            or "up" not in info.metadata["allowed_states"].split(","):
        fail(f"Hold while the call rings: ErrorInfo {info}, want reason CALL_STATE, domain callcontrol.v1, "
             "state ring, allowed_states with up")
    log(f"Hold while ringing: FAILED_PRECONDITION, ErrorInfo {info.reason} "
        f"(state {info.metadata['state']}, allowed {info.metadata['allowed_states']})")
    details = expect_error(api, "Dtmf with tone x", grpc.StatusCode.INVALID_ARGUMENT,
                           "CallControlService.Dtmf", uid=caller, tone="x", request_id=request_id())
    bad = only_detail(details, "google.rpc.BadRequest", "Dtmf with tone x")
    if [v.field for v in bad.field_violations] != ["tone"] or not bad.field_violations[0].description:
        fail(f"Dtmf with tone x: BadRequest {bad}, want one described violation of field tone")
    log(f"Dtmf with tone x: INVALID_ARGUMENT, BadRequest field tone ({bad.field_violations[0].description})")
    # A 10 KB number: grpcio (C-core) accepts 8 KiB of trailers by default,
    # so the error must quote a prefix of it, not all of it.
    details = expect_error(api, "Dial a 10 KB number", grpc.StatusCode.INVALID_ARGUMENT,
                           "CallControlService.Dial", device="SIP/201", number="1" * 10240, request_id=request_id())
    bad = only_detail(details, "google.rpc.BadRequest", "Dial a 10 KB number")
    if [v.field for v in bad.field_violations] != ["number"] or "(10240 bytes)" not in bad.field_violations[0].description:
        fail(f"Dial a 10 KB number: BadRequest {bad}, want field number quoted by prefix and length")
    log(f"Dial a 10 KB number: INVALID_ARGUMENT, BadRequest field number ({bad.field_violations[0].description})")

    # 4. Hangup: both legs DEAD.
    hangup = api.call("CallControlService.Hangup", uid=caller, request_id=request_id())
    if hangup.call.state != dead:
        fail(f"Hangup returned the call in state {hangup.call.state}, want STATE_DEAD (as applied)")
    w1.wait_for(f"UPDATE STATE_DEAD for the caller leg {caller}", event_frame(is_dead(caller)), start=snap_end_idx)
    w1.wait_for(f"UPDATE STATE_DEAD for the callee leg {callee}", event_frame(is_dead(callee)), start=snap_end_idx)
    log("watch 1 saw both legs DEAD")

    # Every event frame has a resume token; revisions increase.
    last_rev, last_token = snap_end.snapshot_end.revision, snap_end.snapshot_end.resume_token
    frames = w1.snapshot_frames()
    for f in frames[snap_end_idx + 1:]:
        if kind(f) in ("started", "snapshot", "snapshot_end"):
            fail(f"watch 1: {kind(f)} frame after snapshot_end")
        if kind(f) != "events":
            continue
        if not f.events.resume_token:
            fail(f"watch 1: event frame at revision {f.events.revision} has no resume token")
        if f.events.revision <= last_rev:
            fail(f"watch 1: event frame revision {f.events.revision} not after {last_rev}")
        last_rev, last_token = f.events.revision, f.events.resume_token
    w1.cancel()
    log(f"watch 1 closed after revision {last_rev} ({len(frames)} frames)")

    # 5. Resume with the last token: started, no snapshot, nothing old.
    w2 = Watch(api, "watch 2 (resumed)", resume_token=last_token)
    started2, _ = w2.wait_for("started frame", lambda f: kind(f) == "started")
    if w2.frames[0] is not started2:
        fail(f"watch 2: first frame is {kind(w2.frames[0])}, want started")
    progress, _ = w2.wait_for("progress frame (is the server running with a short --progress-interval?)",
                              lambda f: kind(f) == "progress")
    if progress.progress.revision < last_rev:
        fail(f"watch 2: progress at revision {progress.progress.revision}, before the resume point {last_rev}")
    if not progress.progress.resume_token:
        fail("watch 2: progress frame has no resume token")

    # A new call after the resume reaches the resumed watch.
    uid2 = api.call("CallControlService.Dial", device="SIP/201", number="202", request_id=request_id()).call.uid
    w2.wait_for(f"NEW for the new call {uid2}", event_frame(is_new(uid2)))
    api.call("CallControlService.Hangup", uid=uid2, request_id=request_id())
    w2.wait_for(f"UPDATE STATE_DEAD for the new call {uid2}", event_frame(is_dead(uid2)))

    frames = w2.snapshot_frames()
    for f in frames[1:]:
        if kind(f) == "progress":
            continue
        if kind(f) != "events":
            fail(f"watch 2: unexpected {kind(f)} frame on a resumed watch\n{w2.dump()}")
        if not f.events.resume_token:
            fail(f"watch 2: event frame at revision {f.events.revision} has no resume token")
        if f.events.revision <= last_rev:
            fail(f"watch 2: got old revision {f.events.revision} (resumed after {last_rev})\n{w2.dump()}")
        for e in f.events.events:
            if e.call.uid in (caller, callee):
                fail(f"watch 2: got an event of the first call again: {e}")
    w2.cancel()
    log(f"watch 2 resumed after revision {last_rev}: {len(frames)} frames, only progress and new events")


def main(argv):
    if len(argv) != 3:
        print("usage: client.py HOST:PORT DESCRIPTORS_FILE", file=sys.stderr)
        return 2
    addr, descriptor_file = argv[1], argv[2]
    overall = float(os.environ.get("CALLCONTROLD_E2E_TIMEOUT_S", "60"))

    # The whole run is bounded: a watchdog ends the process if it hangs.
    def timed_out():
        print(f"[python-e2e] FAIL: timed out after {overall}s", file=sys.stderr, flush=True)
        os._exit(1)

    watchdog = threading.Timer(overall, timed_out)
    watchdog.daemon = True
    watchdog.start()
    log(f"connecting to {addr} (grpcio {grpc.__version__})")
    with grpc.insecure_channel(addr) as channel:
        try:
            run(Api(descriptor_file, channel))
        except Failure as err:
            print(f"[python-e2e] FAIL: {err}", file=sys.stderr, flush=True)
            return 1
        except grpc.RpcError as err:
            print(f"[python-e2e] FAIL: {err.code().name}: {err.details()}", file=sys.stderr, flush=True)
            return 1
    watchdog.cancel()
    log("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
