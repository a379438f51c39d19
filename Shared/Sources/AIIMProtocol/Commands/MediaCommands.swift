import Foundation

// Commands the gateway sends to the media service (stream `aiim:cmd:media`).
// Internal field names are camelCase; client-facing shapes use the original's snake_case.
// Every command carries the `actor` from the verified token; tenant and user never come from a body.

/// `POST /api/aiim/media/upload_token`: records a pending upload and returns a presigned PUT
/// that binds the declared content type and length.
public struct MediaUploadToken: BusCommand {
    public typealias Response = MediaUploadTicket
    public static let type = "media.upload_token"
    public static let service = ServiceName.media
    public var actor: Actor
    public var conversationID: String
    /// Original file name, shown again on download (`Content-Disposition`).
    public var filename: String
    /// Declared MIME type; the client must upload with exactly this `Content-Type`.
    public var contentType: String
    /// Declared size in bytes; the client must upload exactly this many.
    public var fileSize: Int64
    public init(actor: Actor, conversationID: String, filename: String, contentType: String, fileSize: Int64) {
        self.actor = actor; self.conversationID = conversationID; self.filename = filename
        self.contentType = contentType; self.fileSize = fileSize
    }
}

public struct MediaUploadTicket: Codable, Sendable, Equatable {
    public var mediaID: String
    /// Presigned PUT, valid until `expiresAt`.
    public var uploadURL: String
    public var expiresAt: Date
    /// Always `PUT`.
    public var method: String
    /// Headers the upload must carry with exactly these values (they are signed).
    public var headers: [String: String]
    enum CodingKeys: String, CodingKey {
        case mediaID = "media_id", uploadURL = "upload_url", expiresAt = "expires_at", method, headers
    }
    public init(mediaID: String, uploadURL: String, expiresAt: Date, method: String, headers: [String: String]) {
        self.mediaID = mediaID; self.uploadURL = uploadURL; self.expiresAt = expiresAt; self.method = method
        self.headers = headers
    }
}

/// `POST /api/aiim/media/upload_complete`: verifies the stored object (size, SHA-256, real type)
/// and marks the media ready, or deletes the object.
public struct MediaUploadComplete: BusCommand {
    public typealias Response = MediaUploadResult
    public static let type = "media.upload_complete"
    public static let service = ServiceName.media
    public var actor: Actor
    public var mediaID: String
    public var conversationID: String
    /// Lower-case hex SHA-256 of the uploaded bytes, as the client computed it.
    public var fileHash: String
    public var fileSize: Int64
    public init(actor: Actor, mediaID: String, conversationID: String, fileHash: String, fileSize: Int64) {
        self.actor = actor; self.mediaID = mediaID; self.conversationID = conversationID
        self.fileHash = fileHash; self.fileSize = fileSize
    }
}

public struct MediaUploadResult: Codable, Sendable, Equatable {
    /// Always `success`.
    public var status: String
    public var mediaID: String
    public var contentType: String
    public var fileSize: Int64
    public var filename: String
    /// Length of a voice message or audio file, when its format says it; nil otherwise.
    public var durationMs: Int?
    enum CodingKeys: String, CodingKey {
        case status, mediaID = "media_id", contentType = "content_type", fileSize = "file_size", filename
        case durationMs = "duration_ms"
    }
    public init(status: String, mediaID: String, contentType: String, fileSize: Int64, filename: String, durationMs: Int?) {
        self.status = status; self.mediaID = mediaID; self.contentType = contentType; self.fileSize = fileSize
        self.filename = filename; self.durationMs = durationMs
    }
}

/// `GET /api/aiim/media/{media_id}/download?conversation_id=`: a presigned GET for a member.
public struct MediaDownload: BusCommand {
    public typealias Response = MediaDownloadLink
    public static let type = "media.download"
    public static let service = ServiceName.media
    public var actor: Actor
    public var mediaID: String
    public var conversationID: String
    public init(actor: Actor, mediaID: String, conversationID: String) {
        self.actor = actor; self.mediaID = mediaID; self.conversationID = conversationID
    }
}

public struct MediaDownloadLink: Codable, Sendable, Equatable {
    /// Presigned GET; storage answers with the original filename and the content type.
    public var downloadURL: String
    public var contentType: String
    public var filename: String
    public var fileSize: Int64
    public var expiresAt: Date
    public var durationMs: Int?
    enum CodingKeys: String, CodingKey {
        case downloadURL = "download_url", contentType = "content_type", filename, fileSize = "file_size"
        case expiresAt = "expires_at", durationMs = "duration_ms"
    }
    public init(downloadURL: String, contentType: String, filename: String, fileSize: Int64, expiresAt: Date, durationMs: Int?) {
        self.downloadURL = downloadURL; self.contentType = contentType; self.filename = filename
        self.fileSize = fileSize; self.expiresAt = expiresAt; self.durationMs = durationMs
    }
}

/// `GET /api/aiim/media/{media_id}/metadata?conversation_id=`: what AIIM knows about a media.
public struct MediaMetadata: BusCommand {
    public typealias Response = MediaInfo
    public static let type = "media.metadata"
    public static let service = ServiceName.media
    public var actor: Actor
    public var mediaID: String
    public var conversationID: String
    public init(actor: Actor, mediaID: String, conversationID: String) {
        self.actor = actor; self.mediaID = mediaID; self.conversationID = conversationID
    }
}

public struct MediaInfo: Codable, Sendable, Equatable {
    /// The record behind the object (the original returned storage's raw HTTP headers here).
    public struct Details: Codable, Sendable, Equatable {
        public var conversationID: String
        public var uploaderID: String
        public var filename: String
        /// `pending` until `upload_complete` succeeded, then `ready`.
        public var status: String
        public var durationMs: Int?
        /// Lower-case hex SHA-256, once verified.
        public var sha256: String?
        public var createdAt: Date
        /// Until when the upload URL of a pending media works.
        public var expiresAt: Date?
        enum CodingKeys: String, CodingKey {
            case conversationID = "conversation_id", uploaderID = "uploader_id", filename, status
            case durationMs = "duration_ms", sha256, createdAt = "created_at", expiresAt = "expires_at"
        }
        public init(conversationID: String, uploaderID: String, filename: String, status: String, durationMs: Int?,
                    sha256: String?, createdAt: Date, expiresAt: Date?) {
            self.conversationID = conversationID; self.uploaderID = uploaderID; self.filename = filename
            self.status = status; self.durationMs = durationMs; self.sha256 = sha256; self.createdAt = createdAt
            self.expiresAt = expiresAt
        }
    }

    public var mediaID: String
    public var size: Int64
    public var contentType: String
    /// When the upload was verified; nil while pending.
    public var lastModified: Date?
    public var etag: String?
    public var filename: String
    public var status: String
    public var durationMs: Int?
    public var metadata: Details
    enum CodingKeys: String, CodingKey {
        case mediaID = "media_id", size, contentType = "content_type", lastModified = "last_modified", etag
        case filename, status, durationMs = "duration_ms", metadata
    }
    public init(mediaID: String, size: Int64, contentType: String, lastModified: Date?, etag: String?, filename: String,
                status: String, durationMs: Int?, metadata: Details) {
        self.mediaID = mediaID; self.size = size; self.contentType = contentType; self.lastModified = lastModified
        self.etag = etag; self.filename = filename; self.status = status; self.durationMs = durationMs
        self.metadata = metadata
    }
}

/// `DELETE /api/aiim/media/{media_id}?conversation_id=`: by the uploader or a conversation owner.
public struct MediaDelete: BusCommand {
    public typealias Response = MediaDeleted
    public static let type = "media.delete"
    public static let service = ServiceName.media
    public var actor: Actor
    public var mediaID: String
    public var conversationID: String
    public init(actor: Actor, mediaID: String, conversationID: String) {
        self.actor = actor; self.mediaID = mediaID; self.conversationID = conversationID
    }
}

public struct MediaDeleted: Codable, Sendable, Equatable {
    /// Always `deleted`.
    public var status: String
    public var mediaID: String
    enum CodingKeys: String, CodingKey { case status, mediaID = "media_id" }
    public init(status: String, mediaID: String) { self.status = status; self.mediaID = mediaID }
}

/// Input rules for media commands, shared by the gateway (early rejection) and the media service
/// (authoritative). Every violation is a `validation_failed` naming the field.
public enum MediaValidation {
    public static let maxFilenameBytes = 255
    public static let maxContentTypeLength = 255

    /// `media_<32 lower-case hex>`, the original's format.
    public static func mediaID(_ value: String?) throws -> String {
        guard let v = value, v.utf8.count == 38, v.hasPrefix("media_"),
              v.utf8.dropFirst(6).allSatisfy({ isLowerHex($0) }) else {
            throw AIIMError.validation("media_id must be 'media_' followed by 32 lower-case hex digits")
        }
        return v
    }

    /// A conversation id that is also safe inside an object key: letters, digits, `-`, `_`, `.`, `:`.
    public static func conversationID(_ value: String?) throws -> String {
        let v = try Validation.id(value, field: "conversation_id")
        guard v != ".", v != "..", v.utf8.allSatisfy({ isKeySafe($0) }) else {
            throw AIIMError.validation("conversation_id may contain only letters, digits, '-', '_', '.' and ':'")
        }
        return v
    }

    /// A display name for a file: 1-255 UTF-8 bytes, no path separators, no control or
    /// bidirectional-override characters, no characters that are invalid in Windows names, not
    /// only dots and spaces. Such names are refused, never silently rewritten.
    public static func filename(_ value: String?) throws -> String {
        guard let v = value, !v.isEmpty else { throw AIIMError.validation("filename is required") }
        guard v.utf8.count <= maxFilenameBytes else {
            throw AIIMError.validation("filename must be at most \(maxFilenameBytes) bytes")
        }
        for scalar in v.unicodeScalars {
            switch scalar.value {
            case 0x00...0x1F, 0x7F...0x9F:
                throw AIIMError.validation("filename must not contain control characters")
            case 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
                throw AIIMError.validation("filename must not contain bidirectional control characters")
            case 0x2F, 0x5C:
                throw AIIMError.validation("filename must not contain '/' or '\\'")
            case 0x3A, 0x2A, 0x3F, 0x22, 0x3C, 0x3E, 0x7C:
                throw AIIMError.validation("filename must not contain any of : * ? \" < > |")
            default:
                continue
            }
        }
        guard v.unicodeScalars.contains(where: { $0 != "." && $0 != " " }) else {
            throw AIIMError.validation("filename must not be only dots and spaces")
        }
        guard v.first != " ", v.last != " ", v.last != "." else {
            throw AIIMError.validation("filename must not start with a space or end with a space or a dot")
        }
        return v
    }

    /// `type/subtype` with optional `; parameters`, printable ASCII; returned trimmed.
    public static func contentType(_ value: String?) throws -> String {
        guard let raw = value else { throw AIIMError.validation("content_type is required") }
        let v = raw.trimmingCharacters(in: .whitespaces)
        guard !v.isEmpty, v.utf8.count <= maxContentTypeLength,
              v.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) else {
            throw AIIMError.validation("content_type must be a MIME type such as audio/wav")
        }
        let essence = v.split(separator: ";", maxSplits: 1)[0].trimmingCharacters(in: .whitespaces)
        let parts = essence.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.allSatisfy(isTokenByte) }) else {
            throw AIIMError.validation("content_type must be a MIME type such as audio/wav")
        }
        return v
    }

    /// 64 hex digits; returned lower-cased.
    public static func fileHash(_ value: String?) throws -> String {
        guard let v = value?.lowercased(), v.utf8.count == 64, v.utf8.allSatisfy({ isLowerHex($0) }) else {
            throw AIIMError.validation("file_hash must be the SHA-256 of the file as 64 hex digits")
        }
        return v
    }

    public static func fileSize(_ value: Int64?) throws -> Int64 {
        guard let v = value else { throw AIIMError.validation("file_size is required") }
        guard v > 0 else { throw AIIMError.validation("file_size must be a positive number of bytes") }
        return v
    }

    static func isLowerHex(_ b: UInt8) -> Bool { (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) }

    static func isKeySafe(_ b: UInt8) -> Bool {
        (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A)
            || b == 0x2D || b == 0x5F || b == 0x2E || b == 0x3A
    }

    /// RFC 9110 `token` characters.
    static func isTokenByte(_ b: UInt8) -> Bool {
        if (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) { return true }
        return "!#$%&'*+-.^_`|~".utf8.contains(b)
    }
}
