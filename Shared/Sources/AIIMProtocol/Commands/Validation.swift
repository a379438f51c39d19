import AIIMJSON
import Foundation

/// Input rules shared by the gateway (early, cheap rejection) and the messaging service
/// (authoritative). Every violation is a `validation_failed` with a message saying which field.
public enum Validation {
    /// Largest message content, as compact JSON.
    public static let maxContentBytes = 32 * 1024
    /// Largest identifier (conversation, message, client_msg_id, user id).
    public static let maxIDLength = 128
    public static let maxNameLength = 200
    public static let maxMembers = 1000
    public static let maxHistoryLimit = 200
    /// Largest integer JSON carries exactly (2^53 - 1); larger query values are refused.
    public static let maxJSONInteger = 9_007_199_254_740_991
    /// Types a client may send. `system` is written only by the server; `stream_chunk` through streams.
    public static let clientMessageTypes: Set<String> = ["text", "image", "audio", "video", "file", "ai"]

    public static func id(_ value: String?, field: String) throws -> String {
        guard let v = value, !v.isEmpty else { throw AIIMError.validation("\(field) is required") }
        guard v.utf8.count <= maxIDLength, v.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) else {
            throw AIIMError.validation("\(field) must be 1-\(maxIDLength) printable characters without spaces")
        }
        return v
    }

    /// PostgreSQL cannot store U+0000 in a `text` or `jsonb` value (SQLSTATE 22P05/22021), and
    /// libpq would cut a bound string at it. Refuses a JSON text (a REST body, a frame, a command
    /// payload) that holds one anywhere, in a key or a value, escaped (`\u0000`) or raw, so such
    /// input fails as `validation_failed` before it costs a query, whichever field carries it.
    /// Linear in the bytes; a backslash only occurs inside JSON strings, so escapes are followed
    /// exactly (`\\u0000` is a backslash and the text `u0000`, not a NUL).
    public static func storable(json bytes: [UInt8]) throws {
        let found: Bool = bytes.withUnsafeBufferPointer { b in
            var i = 0
            let n = b.count
            while i < n {
                let c = b[i]
                if c == 0 { return true }
                if c == UInt8(ascii: "\\") {
                    if i + 5 < n, b[i + 1] == UInt8(ascii: "u"), b[i + 2] == 0x30, b[i + 3] == 0x30,
                       b[i + 4] == 0x30, b[i + 5] == 0x30 {
                        return true
                    }
                    i += 2
                } else {
                    i += 1
                }
            }
            return false
        }
        if found { throw AIIMError.validation(nulMessage) }
    }

    /// The same rule for one string that reaches a `text` column outside a JSON body.
    public static func storable(_ value: String, field: String) throws -> String {
        if value.utf8.contains(0) { throw AIIMError.validation("\(field) must not contain the NUL character (U+0000)") }
        return value
    }

    static let nulMessage = "text must not contain the NUL character (U+0000)"

    /// A `before` cursor of a conversation list: the `updated_at` text PostgreSQL gave
    /// (`2026-11-25 13:30:38.123456+00`, UTC), checked field by field so a forged cursor is
    /// `validation_failed` here, never a `timestamptz` error in the database.
    public static func cursorTimestamp(_ value: String) throws -> String {
        let u = Array(value.utf8)
        func num(_ a: Int, _ b: Int) -> Int? {
            guard b <= u.count else { return nil }
            var v = 0
            for i in a..<b { let c = u[i]; guard c >= 48 && c <= 57 else { return nil }; v = v * 10 + Int(c - 48) }
            return v
        }
        let invalid = AIIMError.validation("invalid cursor")
        guard u.count >= 22, u.count <= 32, let y = num(0, 4), u[4] == 45, let mo = num(5, 7), u[7] == 45, let d = num(8, 10),
              u[10] == 32, let h = num(11, 13), u[13] == 58, let mi = num(14, 16), u[16] == 58, let se = num(17, 19),
              (1...9999).contains(y), (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 60 else {
            throw invalid
        }
        var i = 19
        if u[i] == 46 {  // "."
            i += 1
            let start = i
            while i < u.count, u[i] >= 48, u[i] <= 57 { i += 1 }
            guard i > start, i - start <= 6 else { throw invalid }
        }
        guard Array(u[i...]) == Array("+00".utf8) else { throw invalid }
        return value
    }

    public static func optionalID(_ value: String?, field: String) throws -> String? {
        guard let value else { return nil }
        return try id(value, field: field)
    }

    public static func limit(_ value: Int?, default def: Int = 50) throws -> Int {
        guard let v = value else { return def }
        guard (1...maxHistoryLimit).contains(v) else { throw AIIMError.validation("limit must be 1-\(maxHistoryLimit)") }
        return v
    }

    /// Checks a message's content for its type; returns it normalised (a bare string for
    /// `text`/`ai` stays a string, as in the original).
    public static func content(_ content: JSONValue?, type: String) throws -> JSONValue {
        guard clientMessageTypes.contains(type) else {
            throw AIIMError.validation("type must be one of \(clientMessageTypes.sorted().joined(separator: ", "))")
        }
        guard let content, !content.isNull else { throw AIIMError.validation("content is required") }
        if content.jsonString().utf8.count > maxContentBytes {
            throw AIIMError(.payloadTooLarge, "content is larger than \(maxContentBytes) bytes")
        }
        switch type {
        case "text", "ai":
            if let s = content.stringValue {
                guard !s.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { throw AIIMError.validation("content must not be empty") }
            } else if let text = content["text"]?.stringValue {
                guard !text.isEmpty else { throw AIIMError.validation("content.text must not be empty") }
            } else {
                throw AIIMError.validation("\(type) content must be a string or an object with a string 'text'")
            }
        case "audio":
            guard content.objectValue != nil, content["media_id"]?.stringValue?.isEmpty == false else {
                throw AIIMError.validation("audio content must be an object with 'media_id'")
            }
        default:  // image, video, file
            guard content.objectValue != nil,
                  content["media_id"]?.stringValue?.isEmpty == false || content["url"]?.stringValue?.isEmpty == false else {
                throw AIIMError.validation("\(type) content must be an object with 'media_id' or 'url'")
            }
        }
        return content
    }
}
