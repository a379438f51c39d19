// The AIIM web client: sign-in, conversation list, chat, AI answers, voice messages, calls.
// Plain ES modules, no build step. State lives in `state`; the DOM is re-rendered from it.

import { api, devLogin, serviceInfo, session, tokenUser } from "./api.js";
import { Socket } from "./socket.js";
import { applyDeltas, isLive, partsOf, renderParts, statusText } from "./generation.js";
import { Recorder, downloadURL, formatDuration, uploadVoice } from "./voice.js";
import { CallController } from "./call.js";

const $ = (id) => document.getElementById(id);
const PAGE = 30;

/** `el("p", {class: "x"}, "text", child)`: a DOM element. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

const state = {
  me: null,
  conversations: new Map(), // id → conversation (with last_message, unread_count, last_seq)
  messages: new Map(), // id → { list: [message sorted by seq], pending: [message], hasOlder }
  members: new Map(), // id → [{user_id, last_read_seq}]
  presence: new Map(), // user → "online" | "offline"
  typing: new Map(), // conversation → Map(user → timer)
  current: null,
  socket: null,
  calls: null,
};

// ---------------------------------------------------------------------------------------------
// sign-in

async function showSignIn(error) {
  $("app").hidden = true;
  $("signin").hidden = false;
  $("signin-error").textContent = error ?? "";
  const info = await serviceInfo().catch(() => ({}));
  $("dev-login").hidden = !info.dev_login;
  const dev = new URLSearchParams(location.hash.slice(1)).get("dev");
  if (info.dev_login && dev) {
    history.replaceState(null, "", location.pathname);
    await signInDev(dev);
  }
}

async function signInDev(user) {
  try {
    const answer = await devLogin(user);
    session.token = answer.token;
    start();
  } catch (e) {
    $("signin-error").textContent = `Sign-in failed: ${e.message}`;
  }
}

$("dev-login").addEventListener("submit", (e) => {
  e.preventDefault();
  signInDev($("dev-user").value.trim());
});

$("token-login").addEventListener("submit", (e) => {
  e.preventDefault();
  session.token = $("token-input").value.trim();
  start();
});

$("sign-out").addEventListener("click", () => {
  state.socket?.stop();
  session.token = null;
  location.reload();
});

// ---------------------------------------------------------------------------------------------
// start, socket, catch-up

async function start() {
  const token = session.token;
  if (!token) return showSignIn();
  state.me = tokenUser(token);
  try {
    await loadConversations();
  } catch (e) {
    session.token = null;
    return showSignIn(e.status === 401 ? "The token was refused (expired or invalid)." : `Cannot reach the server: ${e.message}`);
  }
  $("signin").hidden = true;
  $("app").hidden = false;
  $("me-name").textContent = state.me ?? "";
  state.socket = new Socket(token, {
    onOpen: (frame) => {
      state.me = frame.user_id;
      $("me-name").textContent = state.me;
      setOnline(true);
      catchUp();
    },
    onClose: () => setOnline(false),
    onFrame: handleFrame,
    onAuthFailed: async () => {
      try { await api("GET", "/conversations?limit=1"); } catch (e) {
        if (e.status === 401) { state.socket.stop(); session.token = null; showSignIn("Your session expired."); }
      }
    },
  });
  state.calls = new CallController(state.socket, callUI);
  state.socket.start();
}

function setOnline(online) {
  $("offline").hidden = online;
  document.body.dataset.online = online ? "true" : "false";
}

/** After every (re)connect: the conversation list again, then everything missed, by cursor. */
async function catchUp() {
  try {
    await loadConversations();
    const cursors = {};
    for (const [id, box] of state.messages) cursors[id] = lastSeq(box);
    while (Object.keys(cursors).length) {
      const answer = await state.socket.request({ type: "sync", cursors, limit: 100 });
      for (const id of Object.keys(cursors)) delete cursors[id];
      for (const c of answer.conversations ?? []) {
        for (const m of c.messages) addMessage(m);
        const box = state.messages.get(c.conversation_id);
        if (c.has_more && box) cursors[c.conversation_id] = lastSeq(box);
      }
    }
    for (const box of state.messages.values()) {
      for (const m of box.list) if (m.generation && isLive(m)) resume(m);
    }
    resendPending();
    if (state.current) { markRead(state.current); refreshMembers(state.current); }
    render();
  } catch (e) {
    console.warn("catch-up failed", e);
  }
}

function lastSeq(box) {
  return box.list.length ? box.list[box.list.length - 1].seq : 0;
}

function handleFrame(frame) {
  if (frame.type?.startsWith("call.")) { state.calls.handle(frame); return; }
  switch (frame.type) {
    case "event": return handleEvent(frame.data);
    case "presence":
      state.presence.set(frame.user_id, frame.status);
      return render();
    case "ack":
      if (frame.event === "message.sent") return reconcile(frame.client_msg_id, frame);
      return;
    case "error":
      if (frame.client_msg_id) return failPending(frame.client_msg_id, frame);
      if (!frame.request_id) console.warn("server error", frame);
      return;
    case "generation.snapshot": {
      const m = frame.message;
      m.parts = partsOf(m);
      addMessage(m);
      const stored = findMessage(m.conversation_id, m.message_id);
      if (stored) applyDeltas(stored, frame.deltas ?? []);
      return render();
    }
    default:
  }
}

function handleEvent(data) {
  const id = data.conversation_id;
  switch (data.event) {
    case "message.created":
    case "message.updated":
    case "message.stream_end":
      addMessage(data.message);
      if (data.event === "message.created") touchConversation(data.message);
      break;
    case "message.deleted": {
      const m = findMessage(id, data.message_id);
      if (m) { m.deleted_at = new Date().toISOString(); m.content = null; }
      break;
    }
    case "message.stream_chunk": {
      const m = findMessage(id, data.message_id);
      if (m) {
        const text = typeof data.chunk === "string" ? data.chunk : data.chunk?.delta ?? data.chunk?.text ?? data.chunk?.content ?? "";
        const parts = (m.parts ??= partsOf(m));
        if (!parts.length) parts.push({ type: "text", text: "" });
        parts[parts.length - 1].text += text;
      }
      break;
    }
    case "generation.delta": {
      const m = findMessage(id, data.message_id);
      if (m && !applyDeltas(m, data.deltas ?? [])) resume(m);
      break;
    }
    case "generation.status": {
      const m = findMessage(id, data.message_id);
      if (m) {
        const g = (m.generation ??= {});
        for (const k of ["state", "label", "label_expires_at", "stop_requested_by", "error"]) if (k in data) g[k] = data[k];
        if (!("label" in data) && !isLive(m)) g.label = null;
      }
      break;
    }
    case "receipt.read": {
      const list = state.members.get(id);
      const member = list?.find((x) => x.user_id === data.user_id);
      if (member) member.last_read_seq = Math.max(member.last_read_seq ?? 0, data.last_read_seq);
      if (data.user_id === state.me) {
        const c = state.conversations.get(id);
        if (c) c.unread_count = 0;
      }
      break;
    }
    case "typing": return showTyping(id, data.user_id, data.is_typing);
    case "conversation.created": {
      const c = data.conversation;
      state.conversations.set(c.conversation_id, { unread_count: 0, ...state.conversations.get(c.conversation_id), ...c });
      if (c.members) state.members.set(c.conversation_id, c.members.map((m) => (typeof m === "string" ? { user_id: m } : m)));
      else refreshMembers(c.conversation_id);
      break;
    }
    case "conversation.member_added":
    case "conversation.member_removed":
      loadConversations().then(render);
      if (id === state.current) refreshMembers(id);
      break;
    default:
      return;
  }
  render();
}

function resume(m) {
  if (m.resuming) return;
  m.resuming = true;
  state.socket.request({ type: "generation.resume", message_id: m.message_id, after_offset: m.generation?.offset ?? 0 })
    .catch(() => {}).finally(() => { m.resuming = false; });
}

// ---------------------------------------------------------------------------------------------
// data

async function loadConversations() {
  const answer = await api("GET", "/conversations?limit=200");
  for (const c of answer.conversations) {
    const known = state.conversations.get(c.conversation_id);
    state.conversations.set(c.conversation_id, { ...known, ...c });
  }
  // The list has no members: fetch them (titles, presence dots) for conversations not seen yet.
  const unknown = answer.conversations.filter((c) => !state.members.has(c.conversation_id)).slice(0, 50);
  await Promise.all(unknown.map((c) => loadMembers(c.conversation_id).catch(() => {})));
  await loadPresence().catch(() => {});
}

async function loadMembers(id) {
  const c = await api("GET", `/conversations/${encodeURIComponent(id)}`);
  state.members.set(id, c.members ?? []);
}

/** Presence of everyone in the user's conversations (then kept live by `presence` frames). */
async function loadPresence() {
  const users = new Set();
  for (const list of state.members.values()) for (const m of list) if (m.user_id !== state.me) users.add(m.user_id);
  const ids = [...users].slice(0, 200);
  if (!ids.length) return;
  const p = await api("GET", `/presence?user_ids=${ids.map(encodeURIComponent).join(",")}`);
  for (const x of p.presence) state.presence.set(x.user_id, x.status);
}

function box(id) {
  if (!state.messages.has(id)) state.messages.set(id, { list: [], pending: [], hasOlder: false, loaded: false });
  return state.messages.get(id);
}

function findMessage(conversationID, messageID) {
  return state.messages.get(conversationID)?.list.find((m) => m.message_id === messageID);
}

/** Inserts or replaces by seq; a message that answers a pending one replaces its echo. */
function addMessage(m) {
  if (!m?.conversation_id) return;
  const b = box(m.conversation_id);
  if (m.client_msg_id && m.sender_id === state.me) {
    b.pending = b.pending.filter((p) => p.client_msg_id !== m.client_msg_id);
  }
  const i = b.list.findIndex((x) => x.seq === m.seq);
  if (i >= 0) {
    const old = b.list[i];
    // A live answer keeps the parts it grew from deltas unless the new copy is further along.
    if (old.parts && m.generation && (m.generation.offset ?? 0) < (old.generation?.offset ?? 0)) return;
    b.list[i] = { ...m, parts: m.generation || m.stream ? partsOf(m) : undefined };
  } else {
    const at = b.list.findIndex((x) => x.seq > m.seq);
    const copy = { ...m, parts: m.generation || m.stream ? partsOf(m) : undefined };
    if (at < 0) b.list.push(copy); else b.list.splice(at, 0, copy);
  }
}

function touchConversation(m) {
  const c = state.conversations.get(m.conversation_id);
  if (!c) { loadConversations().then(render); return; }
  c.last_message = m;
  c.last_seq = Math.max(c.last_seq ?? 0, m.seq);
  c.updated_at = m.created_at;
  if (m.sender_id !== state.me && m.type !== "system") {
    if (m.conversation_id === state.current && document.visibilityState === "visible") markRead(m.conversation_id);
    else c.unread_count = (c.unread_count ?? 0) + 1;
  }
}

async function loadHistory(id, older = false) {
  const b = box(id);
  const first = b.list[0]?.seq;
  const query = older && first ? `?limit=${PAGE}&before_seq=${first}` : `?limit=${PAGE}`;
  const answer = await api("GET", `/messages/${encodeURIComponent(id)}${query}`);
  for (const m of answer.messages) addMessage(m);
  b.hasOlder = answer.has_more;
  b.loaded = true;
  for (const m of answer.messages) if (m.generation && isLive(m)) resume(findMessage(id, m.message_id));
}

async function refreshMembers(id) {
  try {
    await loadMembers(id);
    await loadPresence();
    render();
  } catch (e) {
    console.warn("members", e);
  }
}

function markRead(id) {
  const b = state.messages.get(id);
  const seq = b ? lastSeq(b) : 0;
  const c = state.conversations.get(id);
  if (c) c.unread_count = 0;
  if (seq > 0) state.socket.send({ type: "read", conversation_id: id, seq });
}

// ---------------------------------------------------------------------------------------------
// sending

function send(content, msgType = "text") {
  const id = state.current;
  const pending = {
    client_msg_id: crypto.randomUUID(), conversation_id: id, sender_id: state.me, type: msgType, content,
    created_at: new Date().toISOString(), pending: true,
  };
  box(id).pending.push(pending);
  transmit(pending);
  render();
}

function transmit(p) {
  p.failed = false;
  state.socket.send({ type: "send_msg", conversation_id: p.conversation_id, content: p.content, msg_type: p.type, client_msg_id: p.client_msg_id });
}

function resendPending() {
  for (const b of state.messages.values()) for (const p of b.pending) transmit(p);
}

function reconcile(clientMsgID, ack) {
  const b = state.messages.get(ack.conversation_id);
  const p = b?.pending.find((x) => x.client_msg_id === clientMsgID);
  if (!p) return;
  b.pending = b.pending.filter((x) => x !== p);
  if (!b.list.some((m) => m.seq === ack.seq)) {
    addMessage({ ...p, pending: false, message_id: ack.message_id, seq: ack.seq });
  }
  render();
}

function failPending(clientMsgID, error) {
  for (const b of state.messages.values()) {
    const p = b.pending.find((x) => x.client_msg_id === clientMsgID);
    if (p) { p.failed = true; p.error = error.message; }
  }
  render();
}

$("composer").addEventListener("submit", (e) => {
  e.preventDefault();
  const text = $("compose").value.trim();
  if (!text || !state.current) return;
  $("compose").value = "";
  stopTyping();
  send(text);
});

$("compose").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); $("composer").requestSubmit(); }
});

let typingSent = 0;
let typingTimer = null;
$("compose").addEventListener("input", () => {
  if (!state.current) return;
  if (Date.now() - typingSent > 2500) {
    typingSent = Date.now();
    state.socket.send({ type: "typing", conversation_id: state.current, is_typing: true });
  }
  clearTimeout(typingTimer);
  typingTimer = setTimeout(stopTyping, 4000);
});

function stopTyping() {
  clearTimeout(typingTimer);
  if (typingSent && state.current) state.socket.send({ type: "typing", conversation_id: state.current, is_typing: false });
  typingSent = 0;
}

function showTyping(id, user, isTyping) {
  if (user === state.me) return;
  const users = state.typing.get(id) ?? new Map();
  state.typing.set(id, users);
  clearTimeout(users.get(user));
  if (isTyping) users.set(user, setTimeout(() => { users.delete(user); render(); }, 6000));
  else users.delete(user);
  render();
}

async function editMessage(m) {
  const text = prompt("Edit message", textOf(m));
  if (text === null || !text.trim()) return;
  try { addMessage((await api("PATCH", `/messages/${m.message_id}`, { content: text.trim() })).message); render(); } catch (e) { alert(e.message); }
}

async function recallMessage(m) {
  if (!confirm("Recall this message for everyone?")) return;
  try { addMessage((await api("DELETE", `/messages/${m.message_id}`)).message); render(); } catch (e) { alert(e.message); }
}

// voice
const recorder = new Recorder();
$("record").addEventListener("click", async () => {
  const button = $("record");
  if (!recorder.recording) {
    try { await recorder.start(); } catch (e) { alert(`Microphone: ${e.message}`); return; }
    button.setAttribute("aria-pressed", "true");
    button.setAttribute("aria-label", "Stop recording and send");
    button.textContent = "Stop";
    button.classList.add("recording");
    return;
  }
  button.setAttribute("aria-pressed", "false");
  button.setAttribute("aria-label", "Record voice message");
  button.textContent = "Voice";
  button.classList.remove("recording");
  const blob = await recorder.stop();
  const id = state.current;
  $("upload").hidden = false;
  $("upload-progress").value = 0;
  try {
    const media = await uploadVoice(id, blob, (f) => { $("upload-progress").value = Math.round(f * 100); });
    if (state.current === id) send({ media_id: media.media_id }, "audio");
  } catch (e) {
    alert(`Voice message failed: ${e.message}`);
  } finally {
    $("upload").hidden = true;
  }
});

// ---------------------------------------------------------------------------------------------
// calls

const callUI = {
  localVideo: $("local-video"),
  remoteVideo: $("remote-video"),
  show(call, mode) {
    const d = $("call-dialog");
    $("call-title").textContent = `${call.call_type === "video" ? "Video" : "Audio"} call`;
    $("call-accept").hidden = mode !== "incoming";
    $("call-reject").hidden = mode !== "incoming";
    $("call-hangup").hidden = mode === "incoming";
    d.querySelector(".videos").hidden = call.call_type !== "video";
    if (!d.open) d.show();
    (mode === "incoming" ? $("call-accept") : $("call-hangup")).focus();
  },
  status(text) { $("call-status").textContent = text; },
  close() {
    setTimeout(() => { if (!state.calls.active) $("call-dialog").close(); }, 1500);
  },
};
$("call-accept").addEventListener("click", () => state.calls.accept().catch((e) => callUI.status(`Failed: ${e.message}`)));
$("call-reject").addEventListener("click", () => state.calls.reject());
$("call-hangup").addEventListener("click", () => state.calls.hangup());
$("call-dialog").addEventListener("cancel", (e) => { e.preventDefault(); state.calls.hangup(); });

function startCall(type) {
  const other = otherMembers(state.current)[0];
  if (!other) return;
  state.calls.start(state.current, other, type).catch((e) => { callUI.show({ call_type: type }, "active"); callUI.status(`Failed: ${e.message}`); callUI.close(); });
}
$("call-audio").addEventListener("click", () => startCall("audio"));
$("call-video").addEventListener("click", () => startCall("video"));

// ---------------------------------------------------------------------------------------------
// conversations

$("new-conv").addEventListener("submit", async (e) => {
  e.preventDefault();
  const members = $("new-members").value.split(",").map((s) => s.trim()).filter(Boolean);
  const name = $("new-name").value.trim();
  if (!members.length) return;
  try {
    const type = members.length === 1 && !name ? "direct" : "group";
    const c = await api("POST", "/conversations", { type, member_ids: members, name: name || undefined });
    state.conversations.set(c.conversation_id, { unread_count: 0, ...state.conversations.get(c.conversation_id), ...c });
    $("new-members").value = "";
    $("new-name").value = "";
    openConversation(c.conversation_id);
  } catch (err) {
    alert(err.message);
  }
});

async function openConversation(id) {
  stopTyping();
  state.current = id;
  document.body.classList.add("in-chat");
  render();
  $("compose").focus();
  const b = box(id);
  if (!b.loaded) await loadHistory(id).catch((e) => console.warn(e));
  await refreshMembers(id);
  markRead(id);
  render();
  scrollToEnd();
}

$("back").addEventListener("click", () => {
  state.current = null;
  document.body.classList.remove("in-chat");
  render();
});

let loadingOlder = false;
async function loadOlder() {
  if (loadingOlder || !state.current) return;
  loadingOlder = true;
  const list = $("messages");
  const height = list.scrollHeight;
  try {
    await loadHistory(state.current, true);
    render();
    list.scrollTop = list.scrollHeight - height; // keep the reader where they were
  } finally {
    loadingOlder = false;
  }
}
$("load-older").addEventListener("click", loadOlder);
$("messages").addEventListener("scroll", () => {
  if ($("messages").scrollTop < 30 && state.current && state.messages.get(state.current)?.hasOlder) loadOlder();
});

function otherMembers(id) {
  const members = state.members.get(id) ?? [];
  return members.map((m) => m.user_id).filter((u) => u !== state.me);
}

function conversationTitle(c) {
  if (c.name) return c.name;
  const others = otherMembers(c.conversation_id);
  if (others.length) return others.join(", ");
  return c.type === "direct" ? "Direct conversation" : "Group";
}

// ---------------------------------------------------------------------------------------------
// rendering

function textOf(m) {
  if (m.deleted_at) return "";
  const c = m.content;
  if (typeof c === "string") return c;
  return c?.text ?? "";
}

function preview(m) {
  if (!m) return "";
  if (m.deleted_at) return "message recalled";
  if (m.type === "audio") return "voice message";
  return `${m.sender_id === state.me ? "you: " : ""}${textOf(m)}`.slice(0, 80);
}

function render() {
  renderConversations();
  renderChat();
}

function renderConversations() {
  const items = [...state.conversations.values()].sort((a, b) => (b.updated_at ?? "").localeCompare(a.updated_at ?? ""));
  const list = $("conv-list");
  list.replaceChildren(...items.map((c) => {
    const unread = c.unread_count > 0 ? el("span", { class: "unread", "aria-label": `${c.unread_count} unread` }, c.unread_count) : null;
    const others = otherMembers(c.conversation_id);
    const online = others.some((u) => state.presence.get(u) === "online");
    return el("li", {},
      el("button", {
        type: "button", class: `conv${c.conversation_id === state.current ? " current" : ""}`,
        "data-id": c.conversation_id, "aria-current": c.conversation_id === state.current ? "true" : null,
        onclick: () => openConversation(c.conversation_id),
      },
      el("span", { class: `dot ${online ? "online" : ""}`, "aria-hidden": "true" }),
      el("span", { class: "conv-main" }, el("span", { class: "conv-title" }, conversationTitle(c)),
        el("span", { class: "conv-last" }, preview(c.last_message))),
      unread));
  }));
}

function seenText(m) {
  if (m.sender_id !== state.me || !m.seq) return "";
  const readers = (state.members.get(m.conversation_id) ?? [])
    .filter((x) => x.user_id !== state.me && (x.last_read_seq ?? 0) >= m.seq);
  if (!readers.length) return "sent";
  const c = state.conversations.get(m.conversation_id);
  return c?.type === "direct" ? "seen" : `seen by ${readers.map((r) => r.user_id).join(", ")}`;
}

function renderMessage(m) {
  const mine = m.sender_id === state.me;
  const attrs = {
    class: `msg${mine ? " mine" : ""}${m.pending ? " pending" : ""}${m.type === "system" ? " system" : ""}`,
    "data-seq": m.seq, "data-client-msg-id": m.client_msg_id, "data-message-id": m.message_id,
  };
  if (m.type === "system") return el("li", attrs, el("p", { class: "text" }, m.content?.text ?? m.content?.event ?? "system"));
  const body = [];
  if (m.deleted_at) {
    body.push(el("p", { class: "text recalled" }, "message recalled"));
  } else if (m.type === "ai" || m.generation || m.stream) {
    body.push(...renderParts(m, el));
    const status = statusText(m);
    if (status) body.push(el("p", { class: "gen-status", role: "status" }, status));
    if (m.generation && isLive(m) && !m.generation.stop_requested_by) {
      body.push(el("button", { type: "button", class: "stop", onclick: () => stopGeneration(m) }, "Stop"));
    }
  } else if (m.type === "audio") {
    body.push(voiceNode(m));
  } else {
    body.push(el("p", { class: "text" }, textOf(m)));
  }
  const meta = [el("span", { class: "sender" }, mine ? "you" : m.sender_id)];
  if (m.edited_at && !m.deleted_at) meta.push(el("span", { class: "edited" }, "edited"));
  if (m.pending) meta.push(el("span", { class: "state" }, m.failed ? `failed: ${m.error ?? ""}` : "sending…"));
  else if (mine) meta.push(el("span", { class: "seen" }, seenText(m)));
  if (m.failed) meta.push(el("button", { type: "button", class: "link", onclick: () => transmit(m) }, "Retry"));
  if (mine && !m.pending && !m.deleted_at && m.type !== "ai") {
    if (m.type === "text") meta.push(el("button", { type: "button", class: "link edit", onclick: () => editMessage(m) }, "Edit"));
    meta.push(el("button", { type: "button", class: "link recall", onclick: () => recallMessage(m) }, "Recall"));
  }
  return el("li", attrs, el("div", { class: "bubble" }, ...body), el("div", { class: "meta" }, ...meta));
}

const voiceNodes = new Map(); // message_id → node: re-renders keep a playing <audio>
function voiceNode(m) {
  const known = voiceNodes.get(m.message_id);
  if (known) return known;
  const node = makeVoiceNode(m);
  if (m.message_id) voiceNodes.set(m.message_id, node);
  return node;
}

const voiceURLs = new Map();
function makeVoiceNode(m) {
  const duration = m.content?.duration_ms;
  const audio = el("audio", { controls: true, preload: "none", "aria-label": `Voice message ${formatDuration(duration)}` });
  const cached = voiceURLs.get(m.content?.media_id);
  if (cached) audio.src = cached;
  else if (m.content?.media_id && m.seq) {
    downloadURL(m.conversation_id, m.content.media_id).then((url) => { voiceURLs.set(m.content.media_id, url); audio.src = url; }).catch(() => {});
  }
  return el("div", { class: "voice" }, audio, el("span", { class: "duration" }, formatDuration(duration)));
}

function stopGeneration(m) {
  state.socket.request({ type: "generation.stop", message_id: m.message_id }).catch((e) => alert(e.message));
  (m.generation ??= {}).stop_requested_by = state.me;
  render();
}

let renderedConversation = null;
function renderChat() {
  const id = state.current;
  $("chat").hidden = !id;
  if (!id) { renderedConversation = null; return; }
  const c = state.conversations.get(id) ?? {};
  $("chat-title").textContent = conversationTitle({ ...c, conversation_id: id });
  const others = otherMembers(id);
  const presence = others.map((u) => `${u} ${state.presence.get(u) === "online" ? "online" : "offline"}`).join(", ");
  $("chat-presence").textContent = presence;
  $("chat-presence").className = `presence ${others.some((u) => state.presence.get(u) === "online") ? "online" : ""}`;
  const direct = c.type === "direct" && others.length === 1;
  $("call-audio").hidden = !direct;
  $("call-video").hidden = !direct;
  const b = box(id);
  $("load-older").hidden = !b.hasOlder;
  const container = $("messages");
  const atEnd = container.scrollHeight - container.scrollTop - container.clientHeight < 40;
  // Re-rendering replaces nodes; keep open <details> (reasoning) open.
  const open = new Set([...container.querySelectorAll("details[open]")].map((d) => d.closest("li")?.dataset.messageId));
  $("message-list").replaceChildren(...b.list.map(renderMessage), ...b.pending.map(renderMessage));
  for (const d of container.querySelectorAll("details")) if (open.has(d.closest("li")?.dataset.messageId)) d.open = true;
  const typing = [...(state.typing.get(id)?.keys() ?? [])];
  $("typing").textContent = typing.length ? `${typing.join(", ")} ${typing.length > 1 ? "are" : "is"} typing…` : "";
  if (atEnd || renderedConversation !== id) scrollToEnd();
  renderedConversation = id;
}

function scrollToEnd() {
  const container = $("messages");
  container.scrollTop = container.scrollHeight;
}

document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "visible" && state.current) markRead(state.current);
});

start();
