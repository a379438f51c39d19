import AIIMJSON
import Foundation

// AI answers as generations (docs/AI.md): an `ai` message whose content is an ordered list of
// typed parts, built from deltas that each carry an offset in the answer's own log, with a
// state every member sees. Commands go to the messaging service.

/// Where an answer is in its life. `queued`, `thinking`, `generating` and `tool_call` are live;
/// the other four are final.
public enum GenerationState: String, Codable, Sendable, CaseIterable {
    case queued, thinking, generating
    case toolCall = "tool_call"
    case completed, stopped, failed, interrupted

    public var isLive: Bool { [.queued, .thinking, .generating, .toolCall].contains(self) }
}

/// The kinds of part an answer holds.
public enum PartType: String, Codable, Sendable, CaseIterable {
    case text, reasoning
    case toolCall = "tool_call"
    case toolResult = "tool_result"
    case citation, attachment

    /// Parts that later deltas may extend (`text` and `reasoning` by `text`, `tool_call` by `arguments`).
    public var appendable: Bool { self == .text || self == .reasoning || self == .toolCall }
}

/// One append to an answer. `offset` is its place in the answer's log (1, 2, 3, …, no gaps);
/// `part` the index of the part it opens (`part` = the number of parts so far, with `type`) or
/// extends (an earlier, appendable part). The fields besides these are the part's own: `text`
/// for text/reasoning, `id`/`name`/`arguments` (a fragment of JSON text) for a tool call,
/// `tool_call_id`/`content`/`is_error` for a tool result, `url`/`title`/`snippet` for a citation,
/// `media_id` for an attachment.
public struct GenerationDelta: Codable, Sendable, Equatable {
    public var offset: Int64
    public var part: Int
    public var type: PartType?
    public var fields: [String: JSONValue]

    public init(offset: Int64, part: Int, type: PartType? = nil, fields: [String: JSONValue]) {
        self.offset = offset; self.part = part; self.type = type; self.fields = fields
    }

    static let reserved: Set<String> = ["offset", "part", "type"]

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: AnyKey.self)
        offset = try c.decode(Int64.self, forKey: AnyKey("offset"))
        part = try c.decode(Int.self, forKey: AnyKey("part"))
        type = try c.decodeIfPresent(PartType.self, forKey: AnyKey("type"))
        var fields: [String: JSONValue] = [:]
        for key in c.allKeys where !Self.reserved.contains(key.stringValue) {
            fields[key.stringValue] = try c.decode(JSONValue.self, forKey: key)
        }
        self.fields = fields
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        try c.encode(offset, forKey: AnyKey("offset"))
        try c.encode(part, forKey: AnyKey("part"))
        try c.encodeIfPresent(type, forKey: AnyKey("type"))
        for (k, v) in fields { try c.encode(v, forKey: AnyKey(k)) }
    }
}

/// The generation side of an `ai` message (`MessageDTO.generation`).
public struct GenerationInfo: Codable, Sendable, Equatable {
    public var state: GenerationState
    /// The agent's status line ("searching the web…"); absent once `labelExpiresAt` has passed.
    public var label: String?
    public var labelExpiresAt: Date?
    /// The last delta's offset: a device that has everything up to here resumes after it.
    public var offset: Int64
    /// The deltas up to here are stored in PostgreSQL.
    public var persistedOffset: Int64
    /// Who produces the answer (the `ai` message's sender) and who asked (may stop it).
    public var producerID: String
    public var requesterID: String?
    public var stopRequestedBy: String?
    public var error: String?
    /// `hidden` when the conversation hid reasoning as the answer started: its `reasoning` parts
    /// and deltas reach members without their text (`"hidden": true`).
    public var reasoning: String?

    enum CodingKeys: String, CodingKey {
        case state, label, labelExpiresAt = "label_expires_at", offset, persistedOffset = "persisted_offset"
        case producerID = "producer_id", requesterID = "requester_id", stopRequestedBy = "stop_requested_by", error, reasoning
    }

    public init(state: GenerationState, label: String? = nil, labelExpiresAt: Date? = nil, offset: Int64 = 0,
                persistedOffset: Int64 = 0, producerID: String, requesterID: String? = nil, stopRequestedBy: String? = nil,
                error: String? = nil, reasoning: String? = nil) {
        self.state = state; self.label = label; self.labelExpiresAt = labelExpiresAt; self.offset = offset
        self.persistedOffset = persistedOffset; self.producerID = producerID; self.requesterID = requesterID
        self.stopRequestedBy = stopRequestedBy; self.error = error; self.reasoning = reasoning
    }
}

/// `generation.start`: the agent begins an answer in a conversation; creates its `ai` message.
/// Idempotent on `clientGenerationID` (as a message's `client_msg_id`).
public struct StartGeneration: BusCommand {
    public typealias Response = GenerationSnapshot
    public static let type = "generation.start"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var conversationID: String
    public var clientGenerationID: String
    /// The message answered; its sender becomes the requester (unless `requesterID` says otherwise).
    public var replyTo: String?
    public var requesterID: String?
    public var state: GenerationState
    public var label: String?
    public var labelTTLMillis: Int?
    public init(actor: Actor, conversationID: String, clientGenerationID: String, replyTo: String?, requesterID: String?,
                state: GenerationState, label: String?, labelTTLMillis: Int?) {
        self.actor = actor; self.conversationID = conversationID; self.clientGenerationID = clientGenerationID
        self.replyTo = replyTo; self.requesterID = requesterID; self.state = state; self.label = label
        self.labelTTLMillis = labelTTLMillis
    }
}

/// `generation.append`: deltas in offset order (a retry may repeat stored ones, unchanged).
public struct AppendGeneration: BusCommand {
    public typealias Response = GenerationAck
    public static let type = "generation.append"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var messageID: String
    public var deltas: [GenerationDelta]
    public init(actor: Actor, messageID: String, deltas: [GenerationDelta]) {
        self.actor = actor; self.messageID = messageID; self.deltas = deltas
    }
}

/// What an append (or status change) did: everything up to `offset` is accepted and delivered,
/// up to `persistedOffset` stored in PostgreSQL.
public struct GenerationAck: Codable, Sendable, Equatable {
    public var messageID: String
    public var offset: Int64
    public var persistedOffset: Int64
    public var state: GenerationState
    /// A member asked to stop: finish with `generation.end` state `stopped`.
    public var stopRequested: Bool
    enum CodingKeys: String, CodingKey {
        case messageID = "message_id", offset, persistedOffset = "persisted_offset", state, stopRequested = "stop_requested"
    }
    public init(messageID: String, offset: Int64, persistedOffset: Int64, state: GenerationState, stopRequested: Bool) {
        self.messageID = messageID; self.offset = offset; self.persistedOffset = persistedOffset; self.state = state
        self.stopRequested = stopRequested
    }
}

/// `generation.status`: the agent changes its live state and/or its status label.
public struct SetGenerationStatus: BusCommand {
    public typealias Response = GenerationAck
    public static let type = "generation.status"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var messageID: String
    public var state: GenerationState?
    /// The label; an empty string clears it.
    public var label: String?
    public var labelTTLMillis: Int?
    public init(actor: Actor, messageID: String, state: GenerationState?, label: String?, labelTTLMillis: Int?) {
        self.actor = actor; self.messageID = messageID; self.state = state; self.label = label; self.labelTTLMillis = labelTTLMillis
    }
}

/// `generation.end`: the agent finishes the answer (`completed`, `stopped` after a stop request,
/// or `failed` with a reason). Everything appended so far is kept.
public struct EndGeneration: BusCommand {
    public typealias Response = GenerationSnapshot
    public static let type = "generation.end"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var messageID: String
    public var state: GenerationState
    public var error: String?
    /// The last offset the agent sent; the answer must have it (nothing in flight is lost).
    public var lastOffset: Int64?
    public init(actor: Actor, messageID: String, state: GenerationState, error: String?, lastOffset: Int64?) {
        self.actor = actor; self.messageID = messageID; self.state = state; self.error = error; self.lastOffset = lastOffset
    }
}

/// `generation.stop`: a member asks the producer to stop. The producer is told
/// (`generation.stop_requested`); the answer ends `stopped` when it acknowledges, or after the
/// grace period if it does not.
public struct StopGeneration: BusCommand {
    public typealias Response = GenerationAck
    public static let type = "generation.stop"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var messageID: String
    public init(actor: Actor, messageID: String) { self.actor = actor; self.messageID = messageID }
}

/// `generation.get`: the answer now, for a device that (re)connects: with `afterOffset`, the
/// deltas after it (the tail); without, the parts so far (the snapshot) and nothing else.
public struct GetGeneration: BusCommand {
    public typealias Response = GenerationSnapshot
    public static let type = "generation.get"
    public static let service = ServiceName.messaging
    public var actor: Actor
    public var messageID: String
    public var afterOffset: Int64?
    public init(actor: Actor, messageID: String, afterOffset: Int64?) {
        self.actor = actor; self.messageID = messageID; self.afterOffset = afterOffset
    }
}

/// An answer at one moment: its message (content = the parts up to `message.generation.offset`)
/// and, when asked with `after_offset`, the deltas after it.
public struct GenerationSnapshot: Codable, Sendable {
    public var message: MessageDTO
    public var deltas: [GenerationDelta]?
    public init(message: MessageDTO, deltas: [GenerationDelta]?) { self.message = message; self.deltas = deltas }
}
