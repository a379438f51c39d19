#!/usr/bin/env python3
"""deploy/rehearsal/client.py — the client side of deploy/rehearsal/run (stdlib only).

Runs inside the `aiim-main` network namespace and talks to the gateways through nginx (TLS,
certificate checked against the rehearsal's own CA), exactly as a client on the internet would.

    client.py scenario OUT.json        REST scenario: conversation, messages, history, WebSocket
                                       upgrade, media upload/download, ICE configuration
    client.py load OUT.jsonl STOPFILE  send loop until STOPFILE exists (bounded: LOAD_MAX_SECONDS,
                                       LOAD_MAX_MESSAGES); every acknowledged message is a line
    client.py verify ACKS.jsonl        every acknowledged message is in history, seq dense,
                                       no duplicates

Environment: AIIM_BASE (https://10.77.0.1), AIIM_CA (CA file), AIIM_TOKEN_ALICE / _BOB / _CAROL,
AIIM_CONVERSATION (load/verify), LOAD_THREADS, LOAD_MAX_SECONDS, LOAD_MAX_MESSAGES.
Each step prints one line: `STEP <name> PASS|FAIL|SKIPPED <detail>`.
"""
from __future__ import annotations

import base64
import hashlib
import http.client
import io
import json
import os
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
import wave

BASE = urllib.parse.urlsplit(os.environ.get("AIIM_BASE", "https://10.77.0.1"))
CA = os.environ.get("AIIM_CA")
TOKENS = {u: os.environ.get(f"AIIM_TOKEN_{u.upper()}", "") for u in ("alice", "bob", "carol")}
_ctx = ssl.create_default_context(cafile=CA) if BASE.scheme == "https" else None
_local = threading.local()
results: list[tuple[str, str, str]] = []


def step(name: str, status: str, detail: str = "") -> None:
    results.append((name, status, detail))
    print(f"STEP {name} {status} {detail}".rstrip(), flush=True)


def _conn() -> http.client.HTTPConnection:
    c = getattr(_local, "conn", None)
    if c is None:
        if BASE.scheme == "https":
            c = http.client.HTTPSConnection(BASE.hostname, BASE.port or 443, context=_ctx, timeout=30)
        else:
            c = http.client.HTTPConnection(BASE.hostname, BASE.port or 80, timeout=30)
        _local.conn = c
    return c


def call(method: str, path: str, user: str = "alice", body=None, headers=None):
    """One request on this thread's keep-alive connection; (status, json|None, headers)."""
    h = {"Authorization": f"Bearer {TOKENS[user]}", "Accept": "application/json"}
    if body is not None:
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    data = json.dumps(body).encode() if body is not None else None
    for attempt in range(2):  # a keep-alive connection closed by the server: reconnect once
        c = _conn()
        try:
            c.request(method, path, body=data, headers=h)
            r = c.getresponse()
            raw = r.read()
            break
        except (http.client.HTTPException, OSError):
            c.close()
            _local.conn = None
            if attempt == 1:
                raise
    try:
        js = json.loads(raw) if raw else None
    except ValueError:
        js = None
    return r.status, js, {k.lower(): v for k, v in r.getheaders()}


def curl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["curl", "-sS", "-m", "30", *args], capture_output=True)


def wav_bytes(seconds: float = 1.5, rate: int = 8000) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x00" * int(seconds * rate))
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------
def scenario(out_path: str) -> int:
    state: dict = {}
    # 1. conversation (through nginx: TLS, X-Forwarded-Proto -> HSTS, trace id header)
    st, js, hd = call("POST", "/api/aiim/conversations",
                      body={"type": "group", "name": "rehearsal", "member_ids": ["bob", "carol"]})
    if st != 200 or not js or not js.get("conversation_id"):
        step("create_conversation", "FAIL", f"HTTP {st} {js}")
        json.dump(state, open(out_path, "w"))
        return 1
    cid = js["conversation_id"]
    state["conversation_id"] = cid
    step("create_conversation", "PASS", f"conversation_id={cid} trace={hd.get('x-trace-id')}")
    hsts = hd.get("strict-transport-security")
    step("nginx_tls_forwarded_proto", "PASS" if hsts else "FAIL",
         f"Strict-Transport-Security={hsts!r} (gateway saw X-Forwarded-Proto: https)")

    # 2. messages from two users, then history
    sent = []
    for i, user in enumerate(["alice", "bob", "alice"]):
        st, js, hd = call("POST", "/api/aiim/messages", user=user,
                          body={"conversation_id": cid, "content": f"hello {i} from {user}",
                                "client_msg_id": f"scenario-{i}"})
        if st != 200:
            step("send_messages", "FAIL", f"message {i}: HTTP {st} {js}")
            json.dump(state, open(out_path, "w"))
            return 1
        m = js["message"]
        sent.append((m["message_id"], m["seq"]))
        state.setdefault("send_trace_ids", []).append(hd.get("x-trace-id"))
    step("send_messages", "PASS", f"seqs={[s for _, s in sent]} trace={state['send_trace_ids'][0]}")
    st, js, _ = call("GET", f"/api/aiim/messages/{urllib.parse.quote(cid)}?limit=50", user="carol")
    got = [(m["message_id"], m["seq"]) for m in (js or {}).get("messages", [])]
    ok = st == 200 and all(x in got for x in sent)
    step("history", "PASS" if ok else "FAIL", f"HTTP {st}, carol sees seqs {[s for _, s in got]}")
    # idempotent retry: the same client_msg_id answers the original message
    st, js, _ = call("POST", "/api/aiim/messages",
                     body={"conversation_id": cid, "content": "hello 0 from alice", "client_msg_id": "scenario-0"})
    ok = st == 200 and js["message"]["message_id"] == sent[0][0]
    step("idempotent_retry", "PASS" if ok else "FAIL", f"HTTP {st} same message_id={ok}")

    # a bus round trip (gateway -> aiim:cmd:messaging -> a messaging replica -> reply stream):
    # its trace id is logged by both services (deploy/trace follows it)
    st, js, hd = call("GET", "/api/aiim/bus/ping")
    state["ping_trace_id"] = hd.get("x-trace-id")
    step("bus_ping", "PASS" if st == 200 else "FAIL",
         f"HTTP {st} answered by {(js or {}).get('service')}/{(js or {}).get('instance')} trace={hd.get('x-trace-id')}")

    # 3. WebSocket through nginx: upgrade, `connected`, and live delivery of a REST-sent message
    ws_check(cid, "websocket_delivery", count=3)

    # 4. media: upload_token -> PUT presigned -> upload_complete -> download (-> GET bytes)
    media_status = media(cid)
    state["media"] = media_status

    # a second conversation, only for the load phases (its history must be exactly the load)
    st, js, _ = call("POST", "/api/aiim/conversations",
                     body={"type": "group", "name": "rehearsal-load", "member_ids": ["bob", "carol"]})
    state["load_conversation_id"] = (js or {}).get("conversation_id")
    step("create_load_conversation", "PASS" if st == 200 and state["load_conversation_id"] else "FAIL", f"HTTP {st}")

    # 5. ICE configuration (TURN credentials minted by aiim-calls for coturn)
    st, js, _ = call("GET", "/api/aiim/calls/ice-configuration", user="bob")
    if st in (404, 501):
        step("ice_configuration", "SKIPPED", f"HTTP {st} (route not available yet)")
    elif st != 200:
        step("ice_configuration", "FAIL", f"HTTP {st} {js}")
    else:
        turn = [s for s in js.get("iceServers", []) if any(u.startswith("turn") for u in _urls(s))]
        if turn and turn[0].get("username") and turn[0].get("credential"):
            state["turn"] = {"urls": _urls(turn[0]), "username": turn[0]["username"],
                             "credential": turn[0]["credential"]}
            step("ice_configuration", "PASS", f"urls={_urls(turn[0])} username={turn[0]['username']}")
        else:
            step("ice_configuration", "FAIL", f"no TURN server with credentials in {js}")
    json.dump(state, open(out_path, "w"))
    return 1 if any(s == "FAIL" for _, s, _ in results) else 0


def _ws_ctx() -> ssl.SSLContext:
    return _ctx or ssl.create_default_context(cafile=CA)


class WS:
    """A minimal RFC 6455 client (stdlib): TLS to nginx, upgrade, text frames."""

    def __init__(self, user: str, timeout: float = 10.0):
        import socket
        base = urllib.parse.urlsplit(os.environ.get("AIIM_WS_BASE") or urllib.parse.urlunsplit(BASE))
        tls = base.scheme in ("https", "wss")
        raw = socket.create_connection((base.hostname, base.port or (443 if tls else 80)), timeout=timeout)
        self.sock = _ws_ctx().wrap_socket(raw, server_hostname=base.hostname) if tls else raw
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /api/aiim/ws HTTP/1.1\r\nHost: {base.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n"
                           f"Authorization: Bearer {TOKENS[user]}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        head, _, self.buf = head.partition(b"\r\n\r\n")
        lines = head.decode(errors="replace").split("\r\n")
        self.status = lines[0]
        hdrs = {l.split(":", 1)[0].strip().lower(): l.split(":", 1)[1].strip() for l in lines[1:] if ":" in l}
        expect = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.ok = " 101 " in self.status + " " and hdrs.get("sec-websocket-accept") == expect
        self.detail = f"{self.status!r} accept={hdrs.get('sec-websocket-accept')!r} expected={expect!r} headers={sorted(hdrs)}"

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_json(self, deadline: float):
        import struct
        while time.time() < deadline:
            self.sock.settimeout(max(0.1, deadline - time.time()))
            b1, b2 = self._read(2)
            ln = b2 & 0x7F
            if ln == 126:
                ln = struct.unpack(">H", self._read(2))[0]
            elif ln == 127:
                ln = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b2 & 0x80 else None
            payload = self._read(ln)
            if mask:
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
            op = b1 & 0x0F
            if op == 1:
                return json.loads(payload)
            if op == 8:
                raise EOFError(f"closed by server {payload[:2].hex()}")
            if op == 9:
                self.send(payload, opcode=10)
        raise TimeoutError("no frame in time")

    def send(self, data: bytes, opcode: int = 1) -> None:
        import struct
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x80 | opcode])
        head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
        self.sock.sendall(head + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(data)))

    def close(self) -> None:
        try:
            self.send(b"\x03\xe8", opcode=8)
            self.sock.close()
        except OSError:
            pass


def ws_check(cid: str, name: str, count: int) -> bool:
    """carol listens on a WebSocket (AIIM_WS_BASE, default: through nginx); alice sends COUNT
    messages over REST (AIIM_BASE); carol must get every one, in seq order, without duplicates.
    With AIIM_WS_BASE = one gateway and AIIM_BASE = another, the events cross gateways."""
    try:
        ws = WS("carol")
    except OSError as e:
        step(name, "FAIL", f"connect: {e}")
        return False
    if not ws.ok:
        step(name, "FAIL", f"upgrade: {ws.detail}")
        return False
    try:
        first = ws.recv_json(time.time() + 10)
        if first.get("type") != "connected":
            step(name, "FAIL", f"first frame {first}")
            return False
        sent = []
        for i in range(count):
            st, js, _ = call("POST", "/api/aiim/messages",
                             body={"conversation_id": cid, "content": f"live {i}", "client_msg_id": f"{name}-{uuid.uuid4().hex}"})
            if st != 200:
                step(name, "FAIL", f"send {i}: HTTP {st} {js}")
                return False
            sent.append(js["message"]["seq"])
        got, deadline = [], time.time() + 15
        while len(got) < count and time.time() < deadline:
            fr = ws.recv_json(deadline)
            d = fr.get("data") or {}
            if fr.get("type") == "event" and d.get("event") == "message.created" and d.get("conversation_id") == cid:
                got.append(d["message"]["seq"])
        ok = got == sent
        step(name, "PASS" if ok else "FAIL",
             f"{ws.status.strip()}; carol's socket got seqs {got} for REST sends {sent} (connected as {first.get('connection_id', '?')[:8]})")
        return ok
    except (OSError, EOFError, TimeoutError, ValueError) as e:
        step(name, "FAIL", f"{type(e).__name__}: {e}")
        return False
    finally:
        ws.close()


def _urls(server: dict) -> list[str]:
    u = server.get("urls", [])
    return [u] if isinstance(u, str) else list(u)


def media(cid: str) -> str:
    data = wav_bytes()
    digest = hashlib.sha256(data).hexdigest()
    st, js, _ = call("POST", "/api/aiim/media/upload_token",
                     body={"conversation_id": cid, "filename": "voice note.wav",
                           "content_type": "audio/wav", "file_size": len(data)})
    if st in (404, 501):
        step("media_upload_token", "SKIPPED", f"HTTP {st} (route not available yet)")
        return "skipped"
    if st != 200 or not js.get("upload_url"):
        step("media_upload_token", "FAIL", f"HTTP {st} {js}")
        return "fail"
    mid, url = js["media_id"], js["upload_url"]
    step("media_upload_token", "PASS", f"media_id={mid} upload host={urllib.parse.urlsplit(url).netloc}")
    path = f"/tmp/aiim-rehearsal-{uuid.uuid4().hex}.wav"
    with open(path, "wb") as f:
        f.write(data)
    try:
        hdrs = []
        for k, v in (js.get("headers") or {"Content-Type": "audio/wav"}).items():
            hdrs += ["-H", f"{k}: {v}"]
        r = curl("-o", "/dev/null", "-w", "%{http_code}", "--upload-file", path, *hdrs, url)
        code = r.stdout.decode().strip()
        if code != "200":
            step("media_put_presigned", "FAIL", f"PUT -> {code} {r.stderr.decode().strip()}")
            return "fail"
        step("media_put_presigned", "PASS", f"curl PUT {len(data)} bytes to storage -> {code}")
    finally:
        os.unlink(path)
    st, js, _ = call("POST", "/api/aiim/media/upload_complete",
                     body={"media_id": mid, "conversation_id": cid, "file_hash": digest, "file_size": len(data)})
    if st in (404, 501):
        step("media_upload_complete", "SKIPPED", f"HTTP {st}")
        return "skipped"
    if st != 200:
        step("media_upload_complete", "FAIL", f"HTTP {st} {js}")
        return "fail"
    step("media_upload_complete", "PASS", f"{js.get('content_type')} {js.get('file_size')} B duration_ms={js.get('duration_ms')}")
    st, js, _ = call("GET", f"/api/aiim/media/{mid}/download?conversation_id={urllib.parse.quote(cid)}", user="bob")
    if st in (404, 501) and not (js or {}).get("error", {}).get("code") == "not_found":
        step("media_download", "SKIPPED", f"HTTP {st}")
        return "skipped"
    if st != 200 or not js.get("download_url"):
        step("media_download", "FAIL", f"HTTP {st} {js}")
        return "fail"
    r = subprocess.run(["curl", "-sS", "-m", "30", "-D", "-", js["download_url"], "-o", "-"],
                       capture_output=True)
    raw = r.stdout
    sep = raw.find(b"\r\n\r\n")
    headers, body = raw[:sep].decode(errors="replace"), raw[sep + 4:]
    ok = body == data
    disp = [l for l in headers.split("\r\n") if l.lower().startswith("content-disposition")]
    step("media_download", "PASS" if ok else "FAIL",
         f"bob fetched {len(body)} B, identical={ok}; {disp[0] if disp else 'no Content-Disposition'}")
    return "pass" if ok else "fail"


# ----------------------------------------------------------------------------------------------
def load(out_path: str, stop_file: str) -> int:
    """Senders (one per user) post into AIIM_CONVERSATION until STOP_FILE exists. A failed or
    timed-out send is retried with the SAME client_msg_id until acknowledged (what a real client
    does), so the message must exist exactly once in the end. Lines: {"cmid","message_id","seq",
    "tries","t"}; failures are counted in the final summary line {"summary": …}."""
    cid = os.environ["AIIM_CONVERSATION"]
    users = ["alice", "bob", "carol"][: int(os.environ.get("LOAD_THREADS", "3"))]
    max_s = float(os.environ.get("LOAD_MAX_SECONDS", "300"))
    max_n = int(os.environ.get("LOAD_MAX_MESSAGES", "20000"))
    run = uuid.uuid4().hex[:8]
    lock = threading.Lock()
    out = open(out_path, "a", buffering=1)
    stats = {"acked": 0, "errors": 0, "retried": 0, "gave_up": 0, "codes": {}}
    t0 = time.time()

    def sender(user: str) -> None:
        i = 0
        while not os.path.exists(stop_file) and time.time() - t0 < max_s:
            with lock:
                if stats["acked"] + stats["gave_up"] >= max_n:
                    return
            i += 1
            cmid = f"load-{run}-{user}-{i}"
            tries, deadline = 0, time.time() + 60
            while True:
                tries += 1
                try:
                    st, js, _ = call("POST", "/api/aiim/messages", user=user,
                                     body={"conversation_id": cid, "content": f"{cmid}", "client_msg_id": cmid})
                except (OSError, http.client.HTTPException) as e:
                    st, js = f"conn:{type(e).__name__}", None
                if st == 200 and js and js.get("message", {}).get("seq"):
                    m = js["message"]
                    with lock:
                        stats["acked"] += 1
                        if tries > 1:
                            stats["retried"] += 1
                        out.write(json.dumps({"cmid": cmid, "message_id": m["message_id"], "seq": m["seq"],
                                              "user": user, "tries": tries, "t": round(time.time() - t0, 3)}) + "\n")
                    break
                with lock:
                    stats["errors"] += 1
                    stats["codes"][str(st)] = stats["codes"].get(str(st), 0) + 1
                if time.time() > deadline:
                    with lock:
                        stats["gave_up"] += 1
                    break
                time.sleep(1.0 if st == 429 else 0.2)

    threads = [threading.Thread(target=sender, args=(u,), daemon=True) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats["seconds"] = round(time.time() - t0, 1)
    out.write(json.dumps({"summary": stats}) + "\n")
    out.close()
    print(json.dumps(stats), flush=True)
    return 0


def verify(acks_path: str) -> int:
    cid = os.environ["AIIM_CONVERSATION"]
    acked, summaries = {}, []
    for line in open(acks_path):
        d = json.loads(line)
        if "summary" in d:
            summaries.append(d["summary"])
        else:
            acked[d["cmid"]] = d
    history, after = [], 0
    for _ in range(10000):
        # Paging as fast as it can, the verifier itself can pass the gateway's per-user rate
        # limit (50 requests/s): a 429 is waited out (a second, at most 10 times), not a failure.
        for _retry in range(10):
            st, js, _ = call("GET", f"/api/aiim/messages/{urllib.parse.quote(cid)}?limit=200&after_seq={after}")
            if st != 429:
                break
            time.sleep(1.1)
        if st != 200:
            print(f"history: HTTP {st} {js}")
            return 1
        msgs = js.get("messages", [])
        history += msgs
        if not msgs or not js.get("has_more"):
            break
        after = msgs[-1]["seq"]
    seqs = [m["seq"] for m in history]
    by_id = {m["message_id"]: m for m in history}
    cmids = [m.get("client_msg_id") for m in history if str(m.get("client_msg_id") or "").startswith("load-")]
    missing = [a for a in acked.values() if a["message_id"] not in by_id]
    wrong_seq = [a for a in acked.values() if a["message_id"] in by_id and by_id[a["message_id"]]["seq"] != a["seq"]]
    dup_cmids = len(cmids) - len(set(cmids))
    dense = seqs == list(range(1, len(seqs) + 1))
    gave_up = sum(s.get("gave_up", 0) for s in summaries)
    errors = sum(s.get("errors", 0) for s in summaries)
    codes: dict = {}
    for s in summaries:
        for k, v in s.get("codes", {}).items():
            codes[k] = codes.get(k, 0) + v
    ok = not missing and not wrong_seq and dup_cmids == 0 and dense and gave_up == 0 and len(acked) > 0
    print(json.dumps({"ok": ok, "acknowledged": len(acked), "in_history": len(acked) - len(missing),
                      "missing": len(missing), "seq_mismatch": len(wrong_seq), "duplicates": dup_cmids,
                      "history_len": len(history), "seq_dense": dense, "gave_up": gave_up,
                      "transient_errors_retried": errors, "error_codes": codes}))
    return 0 if ok else 1


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "scenario":
        sys.exit(scenario(sys.argv[2]))
    if cmd == "load":
        sys.exit(load(sys.argv[2], sys.argv[3]))
    if cmd == "ws":  # client.py ws CONVERSATION NAME COUNT (after scale-out: across gateways)
        sys.exit(0 if ws_check(sys.argv[2], sys.argv[3], int(sys.argv[4])) else 1)
    if cmd == "verify":
        sys.exit(verify(sys.argv[2]))
    print(__doc__, file=sys.stderr)
    sys.exit(2)
