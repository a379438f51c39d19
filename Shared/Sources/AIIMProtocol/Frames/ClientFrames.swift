import AIIMJSON

// The frames a device sends on `/api/aiim/ws` (docs/PROTOCOL.md). Every frame is a JSON object
// with a `type`; any frame may carry `request_id`, which the reply echoes. Fields the server
// validates further (ids, content) are optional here so that a missing one is answered with the
// same `validation_failed` message naming the field as the REST routes give.

/// A frame a device sends; `type` names it on the wire.
public protocol ClientFrame: Decodable, Sendable {
    static var type: String { get }
}

/// `send_msg`: a message to a conversation. `msg_type` is the message type (default `text`).
public struct SendMessageFrame: ClientFrame {
    public static let type = "send_msg"
    public var conversationID: String?
    public var content: JSONValue?
    public var msgType: String?
    public var clientMsgID: String?
    public var replyTo: String?

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", content, msgType = "msg_type", clientMsgID = "client_msg_id"
        case replyTo = "reply_to"
    }
}

/// `stream_chunk`: one chunk of an AI answer streamed into a message (`stream_id`, or the
/// original's `client_msg_id`, names the stream).
public struct StreamChunkFrame: ClientFrame {
    public static let type = "stream_chunk"
    public var conversationID: String?
    public var streamID: String?
    public var clientMsgID: String?
    public var chunk: JSONValue?
    public var chunkIndex: Int?
    public var streamEnd: Bool?

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", streamID = "stream_id", clientMsgID = "client_msg_id", chunk
        case chunkIndex = "chunk_index", streamEnd = "stream_end"
    }
}

/// `subscribe`: (re)join a conversation's live events, optionally replaying after `after_seq`.
public struct SubscribeFrame: ClientFrame {
    public static let type = "subscribe"
    public var conversationID: String?
    public var afterSeq: Int?
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id", afterSeq = "after_seq" }
}

/// `unsubscribe`: this device stops receiving a conversation until it subscribes again.
public struct UnsubscribeFrame: ClientFrame {
    public static let type = "unsubscribe"
    public var conversationID: String?
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id" }
}

/// `delivered`, `read` (alias `mark_read`): moves the caller's receipt cursor to a message
/// (`message_id` / `last_read_message_id`) or a `seq` (`seq` / `last_read_seq`).
public struct ReceiptFrame: ClientFrame {
    public static let type = "read"
    public static let deliveredType = "delivered"
    public static let markReadType = "mark_read"
    public var conversationID: String?
    public var messageID: String?
    public var lastReadMessageID: String?
    public var seq: Int?
    public var lastReadSeq: Int?

    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", messageID = "message_id", lastReadMessageID = "last_read_message_id"
        case seq, lastReadSeq = "last_read_seq"
    }
}

/// `typing`: the caller is (or stopped) typing; the other members get a `typing` event.
public struct TypingFrame: ClientFrame {
    public static let type = "typing"
    public var conversationID: String?
    public var isTyping: Bool?
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id", isTyping = "is_typing" }
}

/// `sync`: what the device missed, per conversation after the given `seq`.
public struct SyncFrame: ClientFrame {
    public static let type = "sync"
    public var cursors: JSONValue?
    public var limit: Int?
}

/// `ping` (answered with `pong`) and `pong` (answers the server's `ping`).
public struct PingFrame: ClientFrame {
    public static let type = "ping"
    public static let pongType = "pong"
}

/// `call.initiate`: start a call in a conversation (`docs/CALLS.md`).
public struct CallInitiateFrame: ClientFrame {
    public static let type = "call.initiate"
    public var conversationID: String?
    public var toUserID: String?
    public var callType: JSONValue?
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id", toUserID = "to_user_id", callType = "call_type" }
}

/// `call.accept`, `call.ringing`, `call.reject`, `call.hangup`: an action on one call.
public struct CallActionFrame: ClientFrame {
    public static let type = "call.hangup"
    public var callID: String?
    enum CodingKeys: String, CodingKey { case callID = "call_id" }
}

/// `call.webrtc.signal`: an SDP offer/answer or ICE candidate for the other participant.
public struct CallSignalFrame: ClientFrame {
    public static let type = "call.webrtc.signal"
    public var callID: String?
    public var toUserID: String?
    public var payload: JSONValue?
    enum CodingKeys: String, CodingKey { case callID = "call_id", toUserID = "to_user_id", payload }
}

// AI answers (generations, docs/AI.md). The same fields are the REST bodies of /generations.

/// `generation.start`: the agent begins an answer (creates its `ai` message).
public struct GenerationStartFrame: ClientFrame {
    public static let type = "generation.start"
    public var conversationID: String?
    public var clientGenerationID: String?
    public var replyTo: String?
    public var requesterID: String?
    public var state: GenerationState?
    public var label: String?
    public var labelTTLMillis: Int?
    enum CodingKeys: String, CodingKey {
        case conversationID = "conversation_id", clientGenerationID = "client_generation_id", replyTo = "reply_to"
        case requesterID = "requester_id", state, label, labelTTLMillis = "label_ttl_ms"
    }
}

/// `generation.delta`: deltas of one answer, in offset order.
public struct GenerationDeltaFrame: ClientFrame {
    public static let type = "generation.delta"
    public var messageID: String?
    public var deltas: [GenerationDelta]
    enum CodingKeys: String, CodingKey { case messageID = "message_id", deltas }
}

/// `generation.status`: a new live state and/or status label.
public struct GenerationStatusFrame: ClientFrame {
    public static let type = "generation.status"
    public var messageID: String?
    public var state: GenerationState?
    public var label: String?
    public var labelTTLMillis: Int?
    enum CodingKeys: String, CodingKey { case messageID = "message_id", state, label, labelTTLMillis = "label_ttl_ms" }
}

/// `generation.end`: the answer is `completed`, `stopped` or `failed`.
public struct GenerationEndFrame: ClientFrame {
    public static let type = "generation.end"
    public var messageID: String?
    public var state: GenerationState
    public var error: String?
    public var lastOffset: Int64?
    enum CodingKeys: String, CodingKey { case messageID = "message_id", state, error, lastOffset = "last_offset" }
}

/// `generation.stop` (any member) and `generation.resume` (a device catching up after
/// `after_offset`, then live).
public struct GenerationTargetFrame: ClientFrame {
    public static let type = "generation.stop"
    public static let resumeType = "generation.resume"
    public var messageID: String?
    public var afterOffset: Int64?
    enum CodingKeys: String, CodingKey { case messageID = "message_id", afterOffset = "after_offset" }
}
