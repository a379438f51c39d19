import AIIMJSON
import Foundation

/// Who acts: set by the gateway from the verified token, never from a request body.
public struct Actor: Codable, Sendable, Equatable {
    public var userID: String
    public var tenantID: String
    /// The WebSocket connection that sent the command, if any.
    public var connectionID: String?
    public var isBot: Bool

    enum CodingKeys: String, CodingKey {
        case userID = "user_id", tenantID = "tenant_id", connectionID = "connection_id", isBot = "is_bot"
    }

    public init(userID: String, tenantID: String, connectionID: String? = nil, isBot: Bool = false) {
        self.userID = userID; self.tenantID = tenantID; self.connectionID = connectionID; self.isBot = isBot
    }
}

/// A message as clients see it (REST bodies, WS events). Field names are the original's.
public struct MessageDTO: Codable, Sendable, Equatable {
    public var messageID: String
    public var conversationID: String
    public var senderID: String
    public var type: String
    public var content: JSONValue
    public var createdAt: Date
    public var seq: Int64
    public var replyTo: String?
    public var clientMsgID: String?
    public var editedAt: Date?
    public var deletedAt: Date?
    /// AI streams: `{stream_id, state, chunk_count}`; nil for ordinary messages.
    public var stream: StreamInfo?
    /// AI answers (generations, docs/AI.md): state, status label, offsets; nil otherwise.
    public var generation: GenerationInfo?

    enum CodingKeys: String, CodingKey {
        case messageID = "message_id", conversationID = "conversation_id", senderID = "sender_id", type, content
        case createdAt = "created_at", seq, replyTo = "reply_to", clientMsgID = "client_msg_id"
        case editedAt = "edited_at", deletedAt = "deleted_at", stream, generation
    }

    public init(messageID: String, conversationID: String, senderID: String, type: String, content: JSONValue,
                createdAt: Date, seq: Int64, replyTo: String?, clientMsgID: String?, editedAt: Date? = nil,
                deletedAt: Date? = nil, stream: StreamInfo? = nil, generation: GenerationInfo? = nil) {
        self.messageID = messageID; self.conversationID = conversationID; self.senderID = senderID
        self.type = type; self.content = content; self.createdAt = createdAt; self.seq = seq
        self.replyTo = replyTo; self.clientMsgID = clientMsgID; self.editedAt = editedAt
        self.deletedAt = deletedAt; self.stream = stream; self.generation = generation
    }
}

/// State of an AI answer streamed into a message.
public struct StreamInfo: Codable, Sendable, Equatable {
    public var streamID: String
    /// `streaming`, `completed` or `interrupted`.
    public var state: String
    /// Chunks received so far; the next live chunk has this index.
    public var chunkCount: Int

    enum CodingKeys: String, CodingKey { case streamID = "stream_id", state, chunkCount = "chunk_count" }

    public init(streamID: String, state: String, chunkCount: Int) {
        self.streamID = streamID; self.state = state; self.chunkCount = chunkCount
    }
}

public struct MemberDTO: Codable, Sendable, Equatable {
    public var userID: String
    public var role: String
    public var lastReadSeq: Int64
    public var lastDeliveredSeq: Int64

    enum CodingKeys: String, CodingKey {
        case userID = "user_id", role, lastReadSeq = "last_read_seq", lastDeliveredSeq = "last_delivered_seq"
    }

    public init(userID: String, role: String, lastReadSeq: Int64, lastDeliveredSeq: Int64) {
        self.userID = userID; self.role = role; self.lastReadSeq = lastReadSeq; self.lastDeliveredSeq = lastDeliveredSeq
    }
}

/// A conversation as its members see it.
public struct ConversationDTO: Codable, Sendable, Equatable {
    public var conversationID: String
    public var type: String
    public var name: String?
    public var createdAt: Date
    public var updatedAt: Date
    public var lastSeq: Int64
    public var lastMessage: MessageDTO?
    public var unreadCount: Int?
    public var role: String?
    public var members: [MemberDTO]?
    public var settings: ConversationSettings?

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", type, name, createdAt = "created_at", updatedAt = "updated_at"
        case lastSeq = "last_seq", lastMessage = "last_message", unreadCount = "unread_count", role, members, settings
    }

    public init(conversationID: String, type: String, name: String?, createdAt: Date, updatedAt: Date, lastSeq: Int64,
                lastMessage: MessageDTO? = nil, unreadCount: Int? = nil, role: String? = nil, members: [MemberDTO]? = nil,
                settings: ConversationSettings? = nil) {
        self.conversationID = conversationID; self.type = type; self.name = name; self.createdAt = createdAt
        self.updatedAt = updatedAt; self.lastSeq = lastSeq; self.lastMessage = lastMessage
        self.unreadCount = unreadCount; self.role = role; self.members = members; self.settings = settings
    }
}

/// A conversation's settings (owners and admins change them).
public struct ConversationSettings: Codable, Sendable, Equatable {
    /// Whether members see the `reasoning` parts of AI answers: `shown` (the default) or `hidden`.
    /// An answer keeps the rule in force when it started.
    public var aiReasoning: String?
    enum CodingKeys: String, CodingKey { case aiReasoning = "ai_reasoning" }
    public init(aiReasoning: String? = nil) { self.aiReasoning = aiReasoning }

    public static let reasoningRules: Set<String> = ["shown", "hidden"]
}
