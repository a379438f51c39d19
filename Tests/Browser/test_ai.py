"""An AI answer produced by a test bot (an API key on a WebSocket, the generation frames of
docs/AI.md) renders as it streams: label, reasoning, tool call, growing text; Stop stops it."""

import json
import threading
import time

from websockets.sync.client import connect

from harness import PORTS, Browser, rest, unique


class Bot(threading.Thread):
    """Starts an answer and streams it word by word until it is asked to stop."""

    def __init__(self, key, conversation):
        super().__init__(daemon=True)
        self.key, self.conversation = key, conversation
        self.stop_seen = threading.Event()
        self.ended = threading.Event()
        self.error = None
        self.offset = 0
        self.release_label = threading.Event()

    def frames(self, ws, wait):
        """Frames that arrive within `wait` seconds (answers the server's pings)."""
        out = []
        deadline = time.monotonic() + wait
        while True:
            try:
                raw = ws.recv(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                return out
            frame = json.loads(raw)
            if frame.get("type") == "ping":
                ws.send(json.dumps({"type": "pong"}))
                continue
            if frame.get("type") == "error":
                raise AssertionError(f"bot got an error: {frame}")
            if frame.get("type") == "event" and frame["data"].get("event") == "generation.stop_requested":
                self.stop_seen.set()
            out.append(frame)

    def delta(self, ws, **fields):
        self.offset += 1
        ws.send(json.dumps({"type": "generation.delta", "message_id": self.message_id,
                            "deltas": [{"offset": self.offset, **fields}]}))

    def run(self):
        try:
            with connect(f"ws://127.0.0.1:{PORTS[2]}/api/aiim/ws",
                         additional_headers={"Authorization": f"Bearer {self.key}"}) as ws:
                assert json.loads(ws.recv(timeout=10))["type"] == "connected"
                ws.send(json.dumps({"type": "generation.start", "conversation_id": self.conversation,
                                    "state": "thinking", "label": "searching the web…", "request_id": "start"}))
                self.message_id = None
                while self.message_id is None:
                    for f in self.frames(ws, 1):
                        if f.get("type") == "ack" and f.get("event") == "generation.started":
                            self.message_id = f["message_id"]
                self.release_label.wait(20)
                self.delta(ws, part=0, type="reasoning", text="The user asks about the weather. ")
                self.delta(ws, part=0, text="I should search.")
                self.delta(ws, part=1, type="tool_call", id="call_1", name="search", arguments='{"q":')
                self.delta(ws, part=1, arguments='"paris weather"}')
                self.delta(ws, part=2, type="tool_result", tool_call_id="call_1", content={"temp_c": 18})
                ws.send(json.dumps({"type": "generation.status", "message_id": self.message_id, "label": ""}))
                self.delta(ws, part=3, type="text", text="It is")
                for i in range(200):
                    self.frames(ws, 0.3)
                    if self.stop_seen.is_set():
                        break
                    self.delta(ws, part=3, text=f" word{i}")
                self.frames(ws, 0.5)  # the acks of what is in flight
                ws.send(json.dumps({"type": "generation.end", "message_id": self.message_id, "state": "stopped",
                                    "last_offset": self.offset, "request_id": "end"}))
                for _ in range(20):
                    if any(f.get("event") == "generation.ended" for f in self.frames(ws, 0.5)):
                        self.ended.set()
                        break
        except Exception as e:  # reported by the test
            self.error = e


def answer_text(browser):
    return browser.js("const p = document.querySelectorAll('#message-list li:last-child .bubble p.text');"
                      "return p.length ? p[p.length - 1].textContent : ''")


def test_ai_answer_streams_and_stops(browsers):
    alice_id = unique("alice")
    alice = Browser(alice_id, gateway=1, name="alice")
    browsers.append(alice)
    key = rest("POST", "/api_keys", alice.token(), {"name": unique("weather-bot")})
    alice.find("#new-members").send_keys(key["user_id"])
    alice.find("#new-conv button[type=submit]").click()
    alice.wait_text("#chat-title", key["user_id"])
    conversation = alice.js("return document.querySelector('#conv-list button.current').dataset.id")

    bot = Bot(key["api_key"], conversation)
    bot.start()
    alice.wait_text("#message-list .gen-status", "searching the web…")
    bot.release_label.set()
    alice.wait(lambda: alice.finds("#message-list details.reasoning"), "reasoning (collapsed)")
    assert not alice.js("return document.querySelector('#message-list details.reasoning').open"), "reasoning starts collapsed"
    alice.click("#message-list details.reasoning summary")
    alice.wait_text("#message-list details.reasoning", "I should search.")
    alice.wait_text("#message-list .tool-call", "search")
    alice.wait_text("#message-list .tool-call", "paris weather")
    alice.wait_text("#message-list .tool-result", "18")

    # The text grows while the answer is live: seen at two lengths, Stop still offered.
    first = alice.wait(lambda: len(answer_text(alice)) > len("It is word1") and answer_text(alice), "the first words")
    alice.wait(lambda: len(answer_text(alice)) > len(first) + 10, "more words")
    assert alice.finds("#message-list button.stop"), "a live answer has a Stop button"
    assert not bot.stop_seen.is_set()
    assert alice.js("return document.querySelector('#message-list details.reasoning').open"), "an opened reasoning stays open"

    alice.click("#message-list button.stop")
    alice.wait(lambda: bot.stop_seen.is_set(), "the bot is asked to stop")
    alice.wait(lambda: bot.ended.is_set(), "the bot ended the answer")
    alice.wait_text("#message-list .gen-status", "stopped")
    alice.wait(lambda: not alice.finds("#message-list button.stop"), "no Stop button once stopped")
    stopped_at = answer_text(alice)
    time.sleep(1.0)
    assert answer_text(alice) == stopped_at, "nothing is added after the stop"
    assert bot.error is None, f"bot failed: {bot.error}"
    # History agrees with what was rendered.
    history = rest("GET", f"/messages/{conversation}?limit=5", alice.token())
    ai = [m for m in history["messages"] if m["type"] == "ai"][-1]
    assert ai["generation"]["state"] == "stopped"
    assert ai["content"]["text"] == stopped_at, (ai["content"]["text"], stopped_at)
