import AIIMJSON

// The frames the server sends on `/api/aiim/ws` in reply to a device's frames, and the
// connection's own frames (docs/PROTOCOL.md). Conversation events are in `EventFrames.swift`.
// Fields the original always sent, even empty, are encoded as `null` rather than left out.

/// A frame the server writes to one socket.
public protocol ServerFrame: Encodable, Sendable {}

extension ServerFrame {
    /// The frame as a JSON object, with the request's `request_id` echoed when it had one.
    public func json(requestID: JSONValue? = nil) throws -> JSONValue {
        var value = try JSONValue(encoding: self)
        if let requestID, case .object(var fields) = value {
            fields["request_id"] = requestID
            value = .object(fields)
        }
        return value
    }
}

/// The first frame of every connection.
public struct ConnectedFrame: ServerFrame {
    public let type = "connected"
    public var connectionID: String
    public var userID: String
    /// Seconds between the server's `ping` frames.
    public var pingInterval: Int
    enum CodingKeys: String, CodingKey { case type, connectionID = "connection_id", userID = "user_id", pingInterval = "ping_interval" }
    public init(connectionID: String, userID: String, pingInterval: Int) {
        self.connectionID = connectionID; self.userID = userID; self.pingInterval = pingInterval
    }
}

/// `{"type":"ping"}` from the server (answer with `pong`) or `{"type":"pong"}` answering a device's `ping`.
public struct HeartbeatFrame: ServerFrame {
    public let type: String
    public static let ping = HeartbeatFrame(type: "ping")
    public static let pong = HeartbeatFrame(type: "pong")
}

/// `error`: the frame was not handled. `code` is one of docs/API.md's codes; the request's
/// `client_msg_id`, `request_id`, `conversation_id` and `call_id` are echoed.
public struct ErrorFrame: ServerFrame {
    public let type = "error"
    public var code: ErrorCode
    public var message: String
    public var echoed: [String: JSONValue]
    /// With `rate_limited`: when the frame may be sent again.
    public var retryAfterMillis: Int64?

    /// The fields of the request an error frame repeats, so the client can match it.
    public static let echoedFields = ["client_msg_id", "request_id", "conversation_id", "call_id"]

    public init(_ error: AIIMError, request: [String: JSONValue]? = nil, retryAfterMillis: Int64? = nil) {
        code = error.code
        message = error.message
        var echoed: [String: JSONValue] = [:]
        for key in Self.echoedFields { if let v = request?[key], !v.isNull { echoed[key] = v } }
        self.echoed = echoed
        self.retryAfterMillis = retryAfterMillis
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: AnyKey.self)
        try c.encode(type, forKey: AnyKey("type"))
        try c.encode(code.rawValue, forKey: AnyKey("code"))
        try c.encode(message, forKey: AnyKey("message"))
        for (k, v) in echoed { try c.encode(v, forKey: AnyKey(k)) }
        if let retryAfterMillis { try c.encode(retryAfterMillis, forKey: AnyKey("retry_after_ms")) }
    }
}

/// `ack` of `send_msg`: the message is stored with its `seq`.
public struct MessageSentAck: ServerFrame {
    public let type = "ack"
    public let event = "message.sent"
    public var messageID: String
    public var seq: Int64
    public var conversationID: String
    public var clientMsgID: JSONValue
    public var duplicate: Bool
    enum CodingKeys: String, CodingKey {
        case type, event, messageID = "message_id", seq, conversationID = "conversation_id", clientMsgID = "client_msg_id", duplicate
    }
    public init(_ result: SendResult, clientMsgID: JSONValue?) {
        messageID = result.message.messageID; seq = result.message.seq; conversationID = result.message.conversationID
        self.clientMsgID = clientMsgID ?? .null; duplicate = result.duplicate
    }
}

/// `ack` of `stream_chunk`.
public struct StreamSentAck: ServerFrame {
    public let type = "ack"
    public let event = "stream.sent"
    public var result: StreamChunkResult
    public var clientMsgID: JSONValue
    public init(_ result: StreamChunkResult, clientMsgID: JSONValue?) { self.result = result; self.clientMsgID = clientMsgID ?? .null }

    enum CodingKeys: String, CodingKey {
        case type, event, messageID = "message_id", streamID = "stream_id", seq, chunkIndex = "chunk_index"
        case streamEnd = "stream_end", state, clientMsgID = "client_msg_id"
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(type, forKey: .type)
        try c.encode(event, forKey: .event)
        try c.encode(result.messageID, forKey: .messageID)
        try c.encode(result.streamID, forKey: .streamID)
        try c.encode(result.seq, forKey: .seq)
        try c.encode(result.chunkIndex, forKey: .chunkIndex)  // null when the frame only ended the stream
        try c.encode(result.streamEnd, forKey: .streamEnd)
        try c.encode(result.state, forKey: .state)
        try c.encode(clientMsgID, forKey: .clientMsgID)
    }
}

/// `ack` of `delivered` / `read`: the caller's cursors after the move.
public struct ReceiptAck: ServerFrame {
    public let type = "ack"
    public var event: String
    public var conversationID: String
    public var lastReadSeq: Int64
    public var lastDeliveredSeq: Int64
    enum CodingKeys: String, CodingKey {
        case type, event, conversationID = "conversation_id", lastReadSeq = "last_read_seq", lastDeliveredSeq = "last_delivered_seq"
    }
    public init(kind: String, _ cursor: ReceiptCursor) {
        event = "receipt.\(kind)"; conversationID = cursor.conversationID
        lastReadSeq = cursor.lastReadSeq; lastDeliveredSeq = cursor.lastDeliveredSeq
    }
}

/// `subscribed`: sent before the replay that `after_seq` asked for.
public struct SubscribedFrame: ServerFrame {
    public let type = "subscribed"
    public var conversationID: String
    public var lastSeq: Int64
    enum CodingKeys: String, CodingKey { case type, conversationID = "conversation_id", lastSeq = "last_seq" }
    public init(conversationID: String, lastSeq: Int64) { self.conversationID = conversationID; self.lastSeq = lastSeq }
}

/// `unsubscribed`.
public struct UnsubscribedFrame: ServerFrame {
    public let type = "unsubscribed"
    public var conversationID: String
    enum CodingKeys: String, CodingKey { case type, conversationID = "conversation_id" }
    public init(conversationID: String) { self.conversationID = conversationID }
}

/// The reply to `sync`.
public struct SyncReplyFrame: ServerFrame {
    public let type = "sync"
    public var conversations: [MessagePage]
    public init(conversations: [MessagePage]) { self.conversations = conversations }
}

/// `call.initiated` / `call.accepted`: the call's fields, the ICE servers for the caller's own
/// connection, and who the frame is about (`to_user_id` / `user_id`).
public struct CallSessionFrame: ServerFrame {
    public var type: String
    public var session: CallSession
    public var extra: [String: String]
    public init(type: String, session: CallSession, extra: [String: String]) {
        self.type = type; self.session = session; self.extra = extra
    }
    public func encode(to encoder: any Encoder) throws {
        try session.call.encode(to: encoder)
        var c = encoder.container(keyedBy: AnyKey.self)
        try c.encode(type, forKey: AnyKey("type"))
        for (k, v) in extra { try c.encode(v, forKey: AnyKey(k)) }
        try c.encode(session.iceConfiguration, forKey: AnyKey("ice_configuration"))
    }
}

/// `{"type":"ack","event":"call.hangup","call_id","conversation_id","status","version"}`: a call
/// action went through.
public struct CallAck: ServerFrame {
    public let type = "ack"
    public var event: String
    public var callID: String
    public var conversationID: String
    public var status: String
    public var version: Int
    enum CodingKeys: String, CodingKey { case type, event, callID = "call_id", conversationID = "conversation_id", status, version }
    public init(event: String, _ call: CallDTO) {
        self.event = event; callID = call.callID; conversationID = call.conversationID
        status = call.status.rawValue; version = call.version
    }
}

/// A coding key made from any string (frames whose keys are data).
public struct AnyKey: CodingKey {
    public var stringValue: String
    public var intValue: Int? { nil }
    public init(_ s: String) { stringValue = s }
    public init?(stringValue: String) { self.stringValue = stringValue }
    public init?(intValue: Int) { nil }
}

/// `ack` of a generation frame: `event` is `generation.started`, `generation.delta`,
/// `generation.status`, `generation.stop` or `generation.ended`.
public struct GenerationAckFrame: ServerFrame {
    public let type = "ack"
    public var event: String
    public var messageID: String
    public var offset: Int64
    public var persistedOffset: Int64
    public var state: GenerationState
    public var stopRequested: Bool
    public var seq: Int64?
    enum CodingKeys: String, CodingKey {
        case type, event, messageID = "message_id", offset, persistedOffset = "persisted_offset", state
        case stopRequested = "stop_requested", seq
    }
    public init(event: String, _ ack: GenerationAck) {
        self.event = event; messageID = ack.messageID; offset = ack.offset; persistedOffset = ack.persistedOffset
        state = ack.state; stopRequested = ack.stopRequested
    }
    public init(event: String, _ message: MessageDTO) {
        self.event = event; messageID = message.messageID; seq = message.seq
        let g = message.generation
        offset = g?.offset ?? 0; persistedOffset = g?.persistedOffset ?? 0; state = g?.state ?? .completed
        stopRequested = g?.stopRequestedBy != nil
    }
}

/// The reply to `generation.resume`: the answer as it is (its parts up to
/// `message.generation.offset`) and, with `after_offset`, the deltas after it; live deltas follow.
public struct GenerationSnapshotFrame: ServerFrame {
    public let type = "generation.snapshot"
    public var message: MessageDTO
    public var deltas: [GenerationDelta]?
    public init(_ snapshot: GenerationSnapshot) { message = snapshot.message; deltas = snapshot.deltas }
}
