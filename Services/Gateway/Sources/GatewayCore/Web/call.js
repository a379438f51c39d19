// 1:1 calls (docs/CALLS.md): call.* frames for the state, call.webrtc.signal for SDP and ICE,
// RTCPeerConnection configured with the ICE servers (TURN credentials) the server gives us.

const FINAL = new Set(["completed", "rejected", "cancelled", "missed", "busy", "failed"]);

export class CallController {
  /** `ui`: { show(call, mode), status(text), close(), localVideo, remoteVideo } */
  constructor(socket, ui) {
    this.socket = socket;
    this.ui = ui;
    this.call = null;
    this.pc = null;
    this.pendingCandidates = [];
  }

  get active() { return this.call !== null; }

  async start(conversationID, toUser, callType) {
    if (this.call) return;
    const reply = await this.socket.request({ type: "call.initiate", conversation_id: conversationID, to_user_id: toUser, call_type: callType });
    this.call = { ...reply, role: "caller", ice: reply.ice_configuration };
    this.ui.show(this.call, "outgoing");
    this.ui.status(`Calling ${toUser}…`);
  }

  async accept() {
    if (!this.call) return;
    const reply = await this.socket.request({ type: "call.accept", call_id: this.call.call_id });
    this.call.ice = reply.ice_configuration ?? this.call.ice;
    this.ui.show(this.call, "active");
    this.ui.status("Connecting…");
    await this.peer();
  }

  reject() {
    if (this.call) this.socket.send({ type: "call.reject", call_id: this.call.call_id });
  }

  hangup() {
    if (this.call) this.socket.send({ type: "call.hangup", call_id: this.call.call_id });
  }

  /** The call's peer connection with the local tracks added (made once; concurrent callers wait). */
  peer() {
    this.peerReady ??= this.makePeer();
    return this.peerReady;
  }

  async makePeer() {
    const config = { ...this.call.ice };
    delete config.ttl; delete config.realm; delete config.sdpSemantics;
    // Diagnostics (and the browser tests): `localStorage["aiim.iceTransportPolicy"] = "relay"`
    // forces every packet through TURN.
    const policy = localStorage.getItem("aiim.iceTransportPolicy");
    if (policy === "relay" || policy === "all") config.iceTransportPolicy = policy;
    const pc = new RTCPeerConnection(config);
    this.pc = pc;
    const video = this.call.call_type === "video";
    this.media = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    for (const track of this.media.getTracks()) pc.addTrack(track, this.media);
    this.ui.localVideo.srcObject = video ? this.media : null;
    pc.ontrack = (e) => { this.ui.remoteVideo.srcObject = e.streams[0]; };
    pc.onicecandidate = (e) => {
      const candidate = e.candidate ? e.candidate.toJSON() : { candidate: "", sdpMid: null, sdpMLineIndex: 0 };
      this.signal(e.candidate ? { type: "candidate", candidate } : { type: "end-of-candidates" });
    };
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") this.ui.status("Connected");
      if (pc.connectionState === "failed") this.ui.status("Connection failed");
      document.body.dataset.rtc = pc.connectionState;
    };
    return pc;
  }

  signal(payload) {
    this.socket.send({ type: "call.webrtc.signal", call_id: this.call.call_id, payload });
  }

  /** Handles call.* frames; true when the frame was a call frame. */
  async handle(frame) {
    switch (frame.type) {
      case "call.incoming":
        if (this.call) return true;
        this.call = { ...frame, role: "callee", ice: frame.ice_configuration };
        this.ui.show(this.call, "incoming");
        this.ui.status(`${frame.from_user_id} is calling (${frame.call_type})`);
        this.socket.send({ type: "call.ringing", call_id: frame.call_id });
        return true;
      case "call.accepted":
        if (this.call?.call_id === frame.call_id && this.call.role === "caller") {
          this.ui.show(this.call, "active");
          this.ui.status("Connecting…");
          const pc = await this.peer();
          await pc.setLocalDescription(await pc.createOffer());
          this.signal({ type: "offer", sdp: pc.localDescription.sdp });
        }
        return true;
      case "call.accepted_elsewhere":
        if (this.call?.call_id === frame.call_id && !this.pc) this.end("answered on another device");
        return true;
      case "call.webrtc.signal":
        if (this.call?.call_id === frame.call_id) await this.onSignal(frame.payload);
        return true;
      case "call.status_changed":
        if (this.call?.call_id !== frame.call_id) return true;
        this.call.status = frame.status;
        document.body.dataset.callStatus = frame.status;
        if (FINAL.has(frame.status)) this.end(frame.status);
        else if (frame.status === "answered") this.ui.status("Answered");
        else if (frame.status === "ringing" && this.call.role === "caller") this.ui.status("Ringing…");
        return true;
      case "call.participant_disconnected":
        this.ui.status(`${frame.user_id} lost the connection…`);
        return true;
      case "call.participant_reconnected":
        this.ui.status("Reconnected");
        return true;
      default:
        return frame.type?.startsWith("call.") ?? false;
    }
  }

  async onSignal(payload) {
    const pc = await this.peer();
    if (payload.type === "offer") {
      await pc.setRemoteDescription({ type: "offer", sdp: payload.sdp });
      await this.flushCandidates();
      await pc.setLocalDescription(await pc.createAnswer());
      this.signal({ type: "answer", sdp: pc.localDescription.sdp });
    } else if (payload.type === "answer") {
      await pc.setRemoteDescription({ type: "answer", sdp: payload.sdp });
      await this.flushCandidates();
    } else if (payload.type === "candidate") {
      if (pc.remoteDescription) await pc.addIceCandidate(payload.candidate).catch(() => {});
      else this.pendingCandidates.push(payload.candidate);
    }
  }

  async flushCandidates() {
    for (const c of this.pendingCandidates.splice(0)) await this.pc.addIceCandidate(c).catch(() => {});
  }

  end(reason) {
    this.ui.status(`Call ${reason}`);
    this.media?.getTracks().forEach((t) => t.stop());
    this.pc?.close();
    this.pc = null;
    this.peerReady = null;
    this.media = null;
    this.call = null;
    this.pendingCandidates = [];
    this.ui.close(reason);
  }
}
