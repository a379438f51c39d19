import AIIMJSON
import AIIMProtocol

/// The parts of an answer, built by applying its deltas in offset order: the same shape live (the
/// deltas a device applies) and stored (the message's `content.parts`). docs/AI.md has the rules.
struct GenerationParts: Sendable {
    private(set) var parts: [[String: JSONValue]] = []
    /// The last offset applied; deltas at or below it are repeats and change nothing.
    private(set) var offset: Int64 = 0

    static let maxDeltaBytes = 32 * 1024
    static let maxStringBytes = 32 * 1024

    /// One letter per part type, as the Redis log keeps them (`GenerationLog`).
    static func code(_ type: PartType) -> String {
        switch type {
        case .text: "t"
        case .reasoning: "r"
        case .toolCall: "c"
        case .toolResult: "o"
        case .citation: "i"
        case .attachment: "a"
        }
    }

    /// Checks a delta's own fields (the log checks that `part` and `offset` fit the answer) and
    /// returns what the log needs: the part code when it opens a part, `+t`/`+a` when it extends
    /// one with text or tool-call arguments.
    static func validate(_ d: GenerationDelta) throws -> String {
        guard d.offset >= 1 else { throw AIIMError.validation("offset must be 1 or more") }
        guard d.part >= 0, d.part < 10_000 else { throw AIIMError.validation("part must be 0-9999") }
        for (k, v) in d.fields { try checkStrings(v, field: k) }
        func string(_ key: String, required: Bool, max: Int = maxStringBytes) throws {
            guard let v = d.fields[key], !v.isNull else {
                if required { throw AIIMError.validation("\(key) is required for a \(d.type?.rawValue ?? "") part") }
                return
            }
            guard let s = v.stringValue else { throw AIIMError.validation("\(key) must be a string") }
            guard s.utf8.count <= max else { throw AIIMError(.payloadTooLarge, "\(key) is longer than \(max) bytes") }
        }
        func only(_ allowed: Set<String>) throws {
            if let extra = d.fields.keys.first(where: { !allowed.contains($0) }) {
                throw AIIMError.validation("\(extra) is not a field of this delta")
            }
        }
        guard let type = d.type else {
            // Extends an earlier part: text for text/reasoning, a JSON fragment for a tool call.
            try only(["text", "arguments"])
            if d.fields["text"] != nil, d.fields["arguments"] == nil { try string("text", required: true); return "+t" }
            if d.fields["arguments"] != nil, d.fields["text"] == nil { try string("arguments", required: true); return "+a" }
            throw AIIMError.validation("a delta that extends a part carries text or arguments (or opens a part with type)")
        }
        switch type {
        case .text, .reasoning:
            try only(["text"]); try string("text", required: false)
        case .toolCall:
            try only(["id", "name", "arguments"])
            try string("id", required: true, max: 256); try string("name", required: true, max: 256)
            try string("arguments", required: false)
        case .toolResult:
            try only(["tool_call_id", "content", "is_error"])
            try string("tool_call_id", required: true, max: 256)
            guard d.fields["content"] != nil else { throw AIIMError.validation("content is required for a tool_result part") }
            if let e = d.fields["is_error"], e.boolValue == nil { throw AIIMError.validation("is_error must be true or false") }
        case .citation:
            try only(["url", "title", "snippet"])
            try string("url", required: true, max: 2048); try string("title", required: false, max: 1024)
            try string("snippet", required: false)
        case .attachment:
            try only(["media_id", "content_type", "duration_ms"])
            try string("media_id", required: true, max: 256)
        }
        return code(type)
    }

    /// PostgreSQL text and jsonb cannot hold NUL: refused here, never retried there.
    static func checkStrings(_ v: JSONValue, field: String) throws {
        switch v {
        case .string(let s): if s.utf8.contains(0) { throw AIIMError.validation("\(field) must not contain NUL characters") }
        case .array(let a): for x in a { try checkStrings(x, field: field) }
        case .object(let o):
            for (k, x) in o {
                if k.utf8.contains(0) { throw AIIMError.validation("\(field) must not contain NUL characters") }
                try checkStrings(x, field: field)
            }
        default: break
        }
    }

    /// Applies a delta the log accepted (in offset order; repeats are skipped).
    mutating func apply(_ d: GenerationDelta) {
        guard d.offset > offset else { return }
        offset = d.offset
        if let type = d.type, d.part == parts.count {
            var part = d.fields
            part["type"] = .string(type.rawValue)
            if type == .toolCall {
                part["arguments_text"] = .string(d.fields["arguments"]?.stringValue ?? "")
                part["arguments"] = nil
            }
            parts.append(part)
        } else if d.part < parts.count {
            if let t = d.fields["text"]?.stringValue {
                parts[d.part]["text"] = .string((parts[d.part]["text"]?.stringValue ?? "") + t)
            } else if let a = d.fields["arguments"]?.stringValue {
                parts[d.part]["arguments_text"] = .string((parts[d.part]["arguments_text"]?.stringValue ?? "") + a)
            }
        }
    }

    /// The message content: `{text, parts}`. When `final`, a tool call's streamed arguments
    /// become JSON (`arguments`) if they parse; otherwise they stay text (`arguments_text`).
    func content(final: Bool) -> JSONValue {
        var out = parts
        if final {
            for i in out.indices where out[i]["type"]?.stringValue == PartType.toolCall.rawValue {
                let text = out[i]["arguments_text"]?.stringValue ?? ""
                if let parsed = try? JSONValue(parsing: Array((text.isEmpty ? "{}" : text).utf8)) {
                    out[i]["arguments"] = parsed
                    out[i]["arguments_text"] = nil
                }
            }
        }
        let text = parts.filter { $0["type"]?.stringValue == PartType.text.rawValue }.compactMap { $0["text"]?.stringValue }.joined()
        return .object(["text": .string(text), "parts": .array(out.map { .object($0) })])
    }
}

/// A conversation that hides reasoning (`ConversationSettings.aiReasoning == "hidden"`, stamped on
/// the answer as it starts): its members get `reasoning` parts and deltas with their place kept
/// (offsets and part indexes stay dense, so resume and ordering work as for any answer) and their
/// text left out (`"hidden": true`). The text is stored, for the producer's records; no read
/// path returns it.
extension GenerationParts {
    static func hidingReasoning(_ content: JSONValue) -> JSONValue {
        guard case .object(var c) = content, let parts = c["parts"]?.arrayValue else { return content }
        c["parts"] = .array(parts.map { p in
            p["type"]?.stringValue == PartType.reasoning.rawValue ? ["type": .string(PartType.reasoning.rawValue), "hidden": true] : p
        })
        return .object(c)
    }

    static func hidingReasoning(_ deltas: [GenerationDelta], isReasoning: (Int) -> Bool) -> [GenerationDelta] {
        deltas.map { d in isReasoning(d.part) ? GenerationDelta(offset: d.offset, part: d.part, type: d.type, fields: ["hidden": true]) : d }
    }

    /// Whether part `index` of these parts is a `reasoning` part.
    func isReasoning(_ index: Int) -> Bool {
        index < parts.count && parts[index]["type"]?.stringValue == PartType.reasoning.rawValue
    }
}
