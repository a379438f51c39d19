// AI answers (docs/AI.md): typed parts grown by deltas, a state, a status label, a stop.

export const LIVE_STATES = new Set(["queued", "thinking", "generating", "tool_call"]);

/** Whether the message is an AI answer that is still being produced. */
export function isLive(message) {
  const g = message.generation;
  if (g) return LIVE_STATES.has(g.state);
  return message.stream?.state === "streaming";
}

/** The answer's parts (a copy the client grows), from `content.parts` or plain text. */
export function partsOf(message) {
  const content = message.content;
  if (content && Array.isArray(content.parts)) return content.parts.map((p) => ({ ...p }));
  const text = typeof content === "string" ? content : content?.text ?? "";
  return text ? [{ type: "text", text }] : [];
}

/**
 * Applies deltas in offset order; repeats (offset ≤ the answer's) are dropped. Returns false
 * when a delta is ahead of the next offset (a gap: the caller resumes from its offset).
 */
export function applyDeltas(message, deltas) {
  const g = (message.generation ??= { state: "generating", offset: 0 });
  message.parts ??= partsOf(message);
  for (const d of deltas) {
    if (d.offset <= (g.offset ?? 0)) continue;
    if (d.offset !== (g.offset ?? 0) + 1) return false;
    g.offset = d.offset;
    if (d.type) {
      const part = { type: d.type };
      for (const [k, v] of Object.entries(d)) if (k !== "offset" && k !== "part") part[k] = v;
      if (part.type === "tool_call" && typeof part.arguments === "string") {
        part.arguments_text = part.arguments;
        delete part.arguments;
      }
      message.parts[d.part] = part;
    } else {
      const part = message.parts[d.part];
      if (!part) continue;
      if (typeof d.text === "string") part.text = (part.text ?? "") + d.text;
      if (typeof d.arguments === "string") part.arguments_text = (part.arguments_text ?? "") + d.arguments;
    }
    if (d.type === "reasoning" || message.parts[d.part]?.type === "reasoning") g.state = "thinking";
    else if (message.parts[d.part]?.type === "tool_call") g.state = "tool_call";
    else g.state = "generating";
  }
  return true;
}

/** The status line: the label while it has not expired, else the state. */
export function statusText(message) {
  const g = message.generation;
  if (!g) return message.stream?.state === "streaming" ? "streaming…" : "";
  const labelShown = g.label && (!g.label_expires_at || Date.parse(g.label_expires_at) > Date.now());
  if (LIVE_STATES.has(g.state) && labelShown) return g.label;
  return {
    queued: "queued…", thinking: "thinking…", generating: "writing…", tool_call: "using a tool…",
    completed: "", stopped: "stopped", failed: `failed${g.error ? `: ${g.error}` : ""}`, interrupted: "interrupted",
  }[g.state] ?? g.state;
}

/** DOM for the parts: text, reasoning (collapsible), tool calls and results, citations. */
export function renderParts(message, el) {
  const parts = message.parts ?? partsOf(message);
  const nodes = [];
  for (const part of parts) {
    if (!part) continue;
    switch (part.type) {
      case "text": {
        const p = el("p", { class: "text" }, part.text ?? "");
        nodes.push(p);
        break;
      }
      case "reasoning": {
        const d = el("details", { class: "reasoning" }, el("summary", {}, "Reasoning"), el("p", {}, part.text ?? ""));
        nodes.push(d);
        break;
      }
      case "tool_call": {
        const args = part.arguments !== undefined ? JSON.stringify(part.arguments) : part.arguments_text ?? "";
        nodes.push(el("div", { class: "tool-call" }, el("strong", {}, `Tool: ${part.name ?? "?"}`), el("code", {}, args)));
        break;
      }
      case "tool_result":
        nodes.push(el("div", { class: "tool-result" }, el("strong", {}, part.is_error ? "Tool error" : "Tool result"),
          el("code", {}, typeof part.content === "string" ? part.content : JSON.stringify(part.content))));
        break;
      case "citation":
        nodes.push(el("p", { class: "citation" }, el("a", { href: part.url, rel: "noopener noreferrer", target: "_blank" },
          part.title || part.url)));
        break;
      case "attachment":
        nodes.push(el("p", { class: "attachment" }, `Attachment ${part.media_id}`));
        break;
      default:
        break;
    }
  }
  return nodes;
}
