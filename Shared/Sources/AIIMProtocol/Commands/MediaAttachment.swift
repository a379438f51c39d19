/// Messaging → media: what an audio message copies from the file it points at. Media answers
/// for a `ready` media of that tenant and conversation, and otherwise with the validation error
/// the sender sees ("media_id must be an uploaded, verified file of this conversation").
/// Membership is the sender's service's check (messaging checks it before asking).
public struct MediaAttachment: BusCommand {
    public typealias Response = MediaAttachmentInfo
    public static let type = "media.attachment"
    public static let service = ServiceName.media
    public var tenantID: String
    public var conversationID: String
    public var mediaID: String
    public init(tenantID: String, conversationID: String, mediaID: String) {
        self.tenantID = tenantID; self.conversationID = conversationID; self.mediaID = mediaID
    }
}

/// The facts of a verified file that an audio message shows.
public struct MediaAttachmentInfo: Codable, Sendable, Equatable {
    /// Length of the recording, when its format says it.
    public var durationMs: Int?
    /// The declared (and verified) MIME type.
    public var contentType: String
    /// Bytes.
    public var size: Int64
    public init(durationMs: Int?, contentType: String, size: Int64) {
        self.durationMs = durationMs; self.contentType = contentType; self.size = size
    }
}
