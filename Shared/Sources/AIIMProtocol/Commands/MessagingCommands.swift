import AIIMJSON
import Foundation

// Commands the gateway sends to the messaging service (stream `aiim:cmd:messaging`).
// Internal field names are camelCase; client-facing shapes (DTOs) use the original's snake_case.

public struct CreateConversation: BusCommand {
    public typealias Response = ConversationDTO
    public static let type = "conversation.create"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var kind: String
    public var name: String?
    public var memberIDs: [String]
    public var settings: ConversationSettings?
    public init(actor: Actor, kind: String, name: String?, memberIDs: [String], settings: ConversationSettings? = nil) {
        self.actor = actor; self.kind = kind; self.name = name; self.memberIDs = memberIDs; self.settings = settings
    }
}

/// `conversation.update`: an owner or admin renames a group or changes its settings.
public struct UpdateConversation: BusCommand {
    public typealias Response = ConversationDTO
    public static let type = "conversation.update"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var name: String?
    public var settings: ConversationSettings?
    public init(actor: Actor, conversationID: String, name: String?, settings: ConversationSettings?) {
        self.actor = actor; self.conversationID = conversationID; self.name = name; self.settings = settings
    }
}

public struct ConversationList: Codable, Sendable {
    public var conversations: [ConversationDTO]
    /// Pass as `before` to get the next page (older `updated_at`); nil on the last page.
    public var nextCursor: String?
    enum CodingKeys: String, CodingKey { case conversations, nextCursor = "next_cursor" }
    public init(conversations: [ConversationDTO], nextCursor: String?) {
        self.conversations = conversations; self.nextCursor = nextCursor
    }
}

public struct ListConversations: BusCommand {
    public typealias Response = ConversationList
    public static let type = "conversation.list"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var limit: Int
    public var before: String?
    public init(actor: Actor, limit: Int, before: String?) { self.actor = actor; self.limit = limit; self.before = before }
}

public struct GetConversation: BusCommand {
    public typealias Response = ConversationDTO
    public static let type = "conversation.get"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public init(actor: Actor, conversationID: String) { self.actor = actor; self.conversationID = conversationID }
}

public struct AddMembers: BusCommand {
    public typealias Response = ConversationDTO
    public static let type = "conversation.members.add"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var userIDs: [String]
    /// `member`, `admin` or `assistant` (AI agents).
    public var role: String
    public init(actor: Actor, conversationID: String, userIDs: [String], role: String) {
        self.actor = actor; self.conversationID = conversationID; self.userIDs = userIDs; self.role = role
    }
}

public struct RemoveMember: BusCommand {
    public typealias Response = Empty
    public static let type = "conversation.members.remove"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var userID: String
    public init(actor: Actor, conversationID: String, userID: String) {
        self.actor = actor; self.conversationID = conversationID; self.userID = userID
    }
}

public struct SendMessage: BusCommand {
    public typealias Response = SendResult
    public static let type = "message.send"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var kind: String
    public var content: JSONValue
    public var replyTo: String?
    /// Idempotency key; the gateway generates one when the client sent none.
    public var clientMsgID: String
    /// The requester reads the events stream (a gateway does): the message's `message.created`
    /// event may answer the request instead of a reply entry (`DeliveryEvent.reply`).
    public var replyByEvent: Bool?
    public init(actor: Actor, conversationID: String, kind: String, content: JSONValue, replyTo: String?, clientMsgID: String,
                replyByEvent: Bool? = nil) {
        self.actor = actor; self.conversationID = conversationID; self.kind = kind; self.content = content
        self.replyTo = replyTo; self.clientMsgID = clientMsgID; self.replyByEvent = replyByEvent
    }
}

public struct SendResult: Codable, Sendable {
    public var message: MessageDTO
    /// True when `clientMsgID` had been used before: this is the original message.
    public var duplicate: Bool
    public init(message: MessageDTO, duplicate: Bool) { self.message = message; self.duplicate = duplicate }
}

public struct MessagePage: Codable, Sendable {
    public var conversationID: String
    public var messages: [MessageDTO]
    public var hasMore: Bool
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id", messages, hasMore = "has_more" }
    public init(conversationID: String, messages: [MessageDTO], hasMore: Bool) {
        self.conversationID = conversationID; self.messages = messages; self.hasMore = hasMore
    }
}

/// History, ascending by `seq`. Neither bound: the newest `limit`. `afterSeq`: the oldest
/// `limit` after it (catch-up). `beforeSeq`: the `limit` just before it (scroll back).
/// `beforeID`: the original's paging parameter, the same as `beforeSeq` of that message.
public struct History: BusCommand {
    public typealias Response = MessagePage
    public static let type = "message.history"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var beforeSeq: Int64?
    public var afterSeq: Int64?
    public var beforeID: String?
    public var limit: Int
    public init(actor: Actor, conversationID: String, beforeSeq: Int64?, afterSeq: Int64?, beforeID: String? = nil, limit: Int) {
        self.actor = actor; self.conversationID = conversationID; self.beforeSeq = beforeSeq
        self.afterSeq = afterSeq; self.beforeID = beforeID; self.limit = limit
    }
}

public struct EditMessage: BusCommand {
    public typealias Response = MessageDTO
    public static let type = "message.edit"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var messageID: String
    public var content: JSONValue
    public init(actor: Actor, messageID: String, content: JSONValue) {
        self.actor = actor; self.messageID = messageID; self.content = content
    }
}

public struct DeleteMessage: BusCommand {
    public typealias Response = MessageDTO
    public static let type = "message.delete"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var messageID: String
    public init(actor: Actor, messageID: String) { self.actor = actor; self.messageID = messageID }
}

/// Everything after each `{conversation_id: seq}` in one round trip.
public struct Sync: BusCommand {
    public typealias Response = SyncResult
    public static let type = "message.sync"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var cursors: [String: Int64]
    public var limit: Int
    public init(actor: Actor, cursors: [String: Int64], limit: Int) {
        self.actor = actor; self.cursors = cursors; self.limit = limit
    }
}

public struct SyncResult: Codable, Sendable {
    public var conversations: [MessagePage]
    public init(conversations: [MessagePage]) { self.conversations = conversations }
}

/// A device connected: the user's conversations and their last `seq` (delivery cursors).
public struct OpenSession: BusCommand {
    public typealias Response = SessionState
    public static let type = "session.open"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public init(actor: Actor) { self.actor = actor }
}

public struct SessionState: Codable, Sendable {
    public var lastSeq: [String: Int64]
    public init(lastSeq: [String: Int64]) { self.lastSeq = lastSeq }
}

/// Moves the member's delivered or read cursor forward (never back).
public struct MarkReceipt: BusCommand {
    public typealias Response = ReceiptCursor
    public static let type = "receipt.mark"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    /// `delivered` or `read`.
    public var kind: String
    public var messageID: String?
    public var seq: Int64?
    public init(actor: Actor, conversationID: String, kind: String, messageID: String?, seq: Int64?) {
        self.actor = actor; self.conversationID = conversationID; self.kind = kind; self.messageID = messageID; self.seq = seq
    }
}

public struct ReceiptCursor: Codable, Sendable {
    public var conversationID: String
    public var userID: String
    public var lastReadSeq: Int64
    public var lastDeliveredSeq: Int64
    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", userID = "user_id", lastReadSeq = "last_read_seq"
        case lastDeliveredSeq = "last_delivered_seq"
    }
    public init(conversationID: String, userID: String, lastReadSeq: Int64, lastDeliveredSeq: Int64) {
        self.conversationID = conversationID; self.userID = userID; self.lastReadSeq = lastReadSeq
        self.lastDeliveredSeq = lastDeliveredSeq
    }
}

public struct GetReceipts: BusCommand {
    public typealias Response = ReceiptList
    public static let type = "receipt.get"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var messageID: String
    public init(actor: Actor, conversationID: String, messageID: String) {
        self.actor = actor; self.conversationID = conversationID; self.messageID = messageID
    }
}

public struct ReceiptList: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var userID: String
        public var deliveredAt: Date?
        public var readAt: Date?
        enum CodingKeys: String, CodingKey { case userID = "user_id", deliveredAt = "delivered_at", readAt = "read_at" }
        public init(userID: String, deliveredAt: Date?, readAt: Date?) {
            self.userID = userID; self.deliveredAt = deliveredAt; self.readAt = readAt
        }
    }
    public var conversationID: String
    public var messageID: String
    public var receipts: [Entry]
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id", messageID = "message_id", receipts }
    public init(conversationID: String, messageID: String, receipts: [Entry]) {
        self.conversationID = conversationID; self.messageID = messageID; self.receipts = receipts
    }
}

/// One chunk of an AI answer. The first chunk of a stream creates its message (type `ai`,
/// state `streaming`, with a `seq`); `streamEnd` completes it with the whole text.
public struct StreamChunk: BusCommand {
    public typealias Response = StreamChunkResult
    public static let type = "stream.chunk"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var streamID: String
    public var chunk: JSONValue?
    public var chunkIndex: Int?
    public var streamEnd: Bool
    public init(actor: Actor, conversationID: String, streamID: String, chunk: JSONValue?, chunkIndex: Int?, streamEnd: Bool) {
        self.actor = actor; self.conversationID = conversationID; self.streamID = streamID; self.chunk = chunk
        self.chunkIndex = chunkIndex; self.streamEnd = streamEnd
    }
}

public struct StreamChunkResult: Codable, Sendable {
    public var messageID: String
    public var streamID: String
    public var seq: Int64
    public var chunkIndex: Int?
    public var streamEnd: Bool
    public var state: String
    enum CodingKeys: String, CodingKey {
        case messageID = "message_id", streamID = "stream_id", seq, chunkIndex = "chunk_index"
        case streamEnd = "stream_end", state
    }
    public init(messageID: String, streamID: String, seq: Int64, chunkIndex: Int?, streamEnd: Bool, state: String) {
        self.messageID = messageID; self.streamID = streamID; self.seq = seq; self.chunkIndex = chunkIndex
        self.streamEnd = streamEnd; self.state = state
    }
}

/// Typing indicator, relayed to the other members.
public struct Typing: BusCommand {
    public typealias Response = Empty
    public static let type = "typing"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var isTyping: Bool
    public init(actor: Actor, conversationID: String, isTyping: Bool) {
        self.actor = actor; self.conversationID = conversationID; self.isTyping = isTyping
    }
}

/// A user went online (first device) or offline (last device): tell who shares a conversation.
public struct PresenceChanged: BusCommand {
    public typealias Response = Empty
    public static let type = "presence.changed"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var online: Bool
    public init(actor: Actor, online: Bool) { self.actor = actor; self.online = online }
}

/// Looks up the bot user of an API key (the gateway sends its SHA-256, never the key).
/// Revoked and expired keys are `unauthorized`.
public struct VerifyAPIKey: BusCommand {
    public typealias Response = VerifiedAPIKey
    public static let type = "apikey.verify"
    public static let service = ServiceName.messaging
    public var keyHash: String
    public init(keyHash: String) { self.keyHash = keyHash }
}

/// The bot user of a valid key and when the key expires (nil: never).
public struct VerifiedAPIKey: Codable, Sendable {
    public var actor: Actor
    public var expiresAt: Date?
    public init(actor: Actor, expiresAt: Date?) { self.actor = actor; self.expiresAt = expiresAt }
}

/// A person (never a bot) creates a key; they are its owner. At most `API_KEYS_PER_OWNER` live
/// (neither revoked nor expired) keys per owner.
public struct CreateAPIKey: BusCommand {
    public typealias Response = CreatedAPIKey
    public static let type = "apikey.create"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var name: String
    public var keyHash: String
    /// Seconds until the key stops working; nil: until revoked.
    public var expiresInSeconds: Int?
    public init(actor: Actor, name: String, keyHash: String, expiresInSeconds: Int? = nil) {
        self.actor = actor; self.name = name; self.keyHash = keyHash; self.expiresInSeconds = expiresInSeconds
    }
}

public struct CreatedAPIKey: Codable, Sendable {
    public var userID: String
    public var name: String
    public var createdAt: Date?
    public var expiresAt: Date?
    public init(userID: String, name: String, createdAt: Date? = nil, expiresAt: Date? = nil) {
        self.userID = userID; self.name = name; self.createdAt = createdAt; self.expiresAt = expiresAt
    }
}

/// One API key as its owner sees it (never the key or its hash). `keyID` is the key's bot user.
public struct APIKeyDTO: Codable, Sendable, Equatable {
    public var keyID: String
    public var name: String
    public var createdAt: Date
    public var expiresAt: Date?
    public var revokedAt: Date?
    enum CodingKeys: String, CodingKey {
        case keyID = "key_id", name, createdAt = "created_at", expiresAt = "expires_at", revokedAt = "revoked_at"
    }
    public init(keyID: String, name: String, createdAt: Date, expiresAt: Date?, revokedAt: Date?) {
        self.keyID = keyID; self.name = name; self.createdAt = createdAt; self.expiresAt = expiresAt; self.revokedAt = revokedAt
    }
    /// Absent times are written as `null`, so clients see every field.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(keyID, forKey: .keyID)
        try c.encode(name, forKey: .name)
        try c.encode(createdAt, forKey: .createdAt)
        try c.encode(expiresAt, forKey: .expiresAt)
        try c.encode(revokedAt, forKey: .revokedAt)
    }
}

public struct APIKeyList: Codable, Sendable {
    public var keys: [APIKeyDTO]
    public init(keys: [APIKeyDTO]) { self.keys = keys }
}

/// The actor's own keys, newest first (revoked and expired ones included).
public struct ListAPIKeys: BusCommand {
    public typealias Response = APIKeyList
    public static let type = "apikey.list"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public init(actor: Actor) { self.actor = actor }
}

/// Revokes one of the actor's own keys (`not_found` for anyone else's). Every gateway forgets
/// the key and closes its sockets (4003) when the revocation event arrives. Repeating it is fine.
public struct RevokeAPIKey: BusCommand {
    public typealias Response = APIKeyDTO
    public static let type = "apikey.revoke"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var keyID: String
    public init(actor: Actor, keyID: String) { self.actor = actor; self.keyID = keyID }
}

/// Another service (calls) leaves a `system` message in a conversation, e.g. "call ended, 42 s".
/// Gets a `seq` and is delivered like any message. Idempotent on `clientMsgID`.
public struct PostSystemMessage: BusCommand {
    public typealias Response = MessageDTO
    public static let type = "message.system"
    public static let service = ServiceName.messaging
    public var tenantID: String
    public var conversationID: String
    /// Who caused it (shown as `sender_id`).
    public var senderID: String
    public var content: JSONValue
    public var clientMsgID: String
    public init(tenantID: String, conversationID: String, senderID: String, content: JSONValue, clientMsgID: String) {
        self.tenantID = tenantID; self.conversationID = conversationID; self.senderID = senderID
        self.content = content; self.clientMsgID = clientMsgID
    }
}
