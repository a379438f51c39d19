// Voice messages (docs/MEDIA.md): record with MediaRecorder, upload through the presigned flow
// (upload_token → PUT with progress → upload_complete), play from a presigned download URL.

import { api } from "./api.js";

export class Recorder {
  get recording() { return this.recorder?.state === "recording"; }

  async start() {
    this.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/webm"].find((t) => MediaRecorder.isTypeSupported(t));
    this.recorder = new MediaRecorder(this.stream, type ? { mimeType: type } : undefined);
    this.chunks = [];
    this.recorder.ondataavailable = (e) => { if (e.data.size) this.chunks.push(e.data); };
    this.recorder.start(250);
  }

  /** Stops and returns the recording as a Blob. */
  stop() {
    return new Promise((resolve) => {
      this.recorder.onstop = () => {
        this.stream.getTracks().forEach((t) => t.stop());
        resolve(new Blob(this.chunks, { type: this.recorder.mimeType || "audio/webm" }));
      };
      this.recorder.stop();
    });
  }
}

async function sha256Hex(blob) {
  const digest = await crypto.subtle.digest("SHA-256", await blob.arrayBuffer());
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function put(url, headers, blob, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [k, v] of Object.entries(headers ?? {})) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => { if (e.lengthComputable) onProgress(e.loaded / e.total); };
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300 ? resolve() : reject(new Error(`upload failed (${xhr.status})`)));
    xhr.onerror = () => reject(new Error("upload failed"));
    xhr.send(blob);
  });
}

/** Uploads a recording to the conversation; resolves with the ready media (`media_id`, `duration_ms`). */
export async function uploadVoice(conversationID, blob, onProgress) {
  const contentType = blob.type || "audio/webm";
  const extension = contentType.startsWith("audio/ogg") ? "ogg" : "webm";
  const ticket = await api("POST", "/media/upload_token", {
    conversation_id: conversationID, filename: `voice-${Date.now()}.${extension}`,
    content_type: contentType, file_size: blob.size,
  });
  await put(ticket.upload_url, ticket.headers, blob, onProgress);
  onProgress(1);
  return api("POST", "/media/upload_complete", {
    media_id: ticket.media_id, conversation_id: conversationID, file_hash: await sha256Hex(blob), file_size: blob.size,
  });
}

/** A presigned URL that plays the media. */
export async function downloadURL(conversationID, mediaID) {
  const link = await api("GET", `/media/${encodeURIComponent(mediaID)}/download?conversation_id=${encodeURIComponent(conversationID)}`);
  return link.download_url;
}

export function formatDuration(ms) {
  if (ms == null) return "";
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}
