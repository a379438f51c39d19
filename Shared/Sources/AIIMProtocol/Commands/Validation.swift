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
    /// Types a client may send. `system` is written only by the server; `stream_chunk` through streams.
    public static let clientMessageTypes: Set<String> = ["text", "image", "audio", "video", "file", "ai"]

    public static func id(_ value: String?, field: String) throws -> String {
        guard let v = value, !v.isEmpty else { throw AIIMError.validation("\(field) is required") }
        guard v.utf8.count <= maxIDLength, v.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) else {
            throw AIIMError.validation("\(field) must be 1-\(maxIDLength) printable characters without spaces")
        }
        return v
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
