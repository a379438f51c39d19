// The WebSocket to /api/aiim/ws (docs/PROTOCOL.md): token in Sec-WebSocket-Protocol, answers
// the server's ping, reconnects with backoff after any close and tells the app, which then
// catches up with `sync`.

export class Socket {
  constructor(token, { onFrame, onOpen, onClose, onAuthFailed }) {
    this.token = token;
    this.handlers = { onFrame, onOpen, onClose, onAuthFailed };
    this.ws = null;
    this.delay = 500;
    this.stopped = false;
    this.requests = new Map();
    this.nextRequest = 1;
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retry);
    this.ws?.close(1000);
  }

  get isOpen() { return this.ws?.readyState === WebSocket.OPEN && this.connected; }

  connect() {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/api/aiim/ws`;
    const ws = new WebSocket(url, ["bearer", this.token]);
    this.ws = ws;
    this.connected = false;
    let opened = false;
    ws.onopen = () => { opened = true; };
    ws.onmessage = (event) => {
      let frame;
      try { frame = JSON.parse(event.data); } catch { return; }
      if (frame.type === "ping") { this.send({ type: "pong" }); return; }
      if (frame.type === "connected") {
        this.connected = true;
        this.delay = 500;
        this.handlers.onOpen(frame);
        return;
      }
      const waiting = frame.request_id && this.requests.get(frame.request_id);
      if (waiting) {
        this.requests.delete(frame.request_id);
        if (frame.type === "error") waiting.reject(Object.assign(new Error(frame.message), { code: frame.code }));
        else waiting.resolve(frame);
      }
      this.handlers.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.connected = false;
      for (const waiting of this.requests.values()) waiting.reject(new Error("disconnected"));
      this.requests.clear();
      this.handlers.onClose(event);
      if (this.stopped) return;
      // An upgrade refused before it opened is most likely a bad or expired token.
      if (!opened && event.code === 1006 && this.failedOpens++ > 2) {
        this.handlers.onAuthFailed?.();
      }
      if (opened) this.failedOpens = 0;
      this.retry = setTimeout(() => this.connect(), this.delay);
      this.delay = Math.min(this.delay * 2, 8000);
    };
    this.failedOpens ??= 0;
  }

  /** Sends a frame; false when the socket is not open (the caller keeps it pending). */
  send(frame) {
    if (this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Sends a frame with a request_id and resolves with its reply (or rejects with its error). */
  request(frame) {
    const id = `r${this.nextRequest++}`;
    return new Promise((resolve, reject) => {
      if (!this.send({ ...frame, request_id: id })) { reject(new Error("offline")); return; }
      this.requests.set(id, { resolve, reject });
    });
  }
}
