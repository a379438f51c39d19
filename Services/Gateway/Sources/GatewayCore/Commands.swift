import AIIMJSON
import AIIMProtocol

/// Bus commands built from what a client sent, shared by the REST routes and the WebSocket
/// frames so both validate alike.
enum Commands {
    /// A message to send. Without a `client_msg_id` the gateway makes one (retries of the same
    /// request are then not recognised). While this gateway follows the events stream, the
    /// message's own event may answer the request (`replyByEvent`).
    static func send(
        conversationID: String?, type: String?, content: JSONValue?, clientMsgID: String?, replyTo: String?, actor: Actor,
        replyByEvent: Bool
    ) throws -> SendMessage {
        let kind = type ?? "text"
        let content = try Validation.content(content.flatMap { $0.isNull ? nil : $0 }, type: kind)
        let clientMsgID = try Validation.optionalID(clientMsgID, field: "client_msg_id")
        return SendMessage(
            actor: actor, conversationID: try Validation.id(conversationID, field: "conversation_id"),
            kind: kind, content: content, replyTo: replyTo,
            clientMsgID: clientMsgID ?? "gw:" + UUIDs.make(), replyByEvent: replyByEvent)
    }

    static func streamChunk(_ f: StreamChunkFrame, actor: Actor) throws -> StreamChunk {
        StreamChunk(
            actor: actor, conversationID: try Validation.id(f.conversationID, field: "conversation_id"),
            streamID: try Validation.id(f.streamID ?? f.clientMsgID, field: "stream_id"),
            chunk: f.chunk.flatMap { $0.isNull ? nil : $0 },
            chunkIndex: f.chunkIndex, streamEnd: f.streamEnd ?? false)
    }

    static func receipt(_ f: ReceiptFrame, kind: String, actor: Actor) throws -> MarkReceipt {
        MarkReceipt(
            actor: actor, conversationID: try Validation.id(f.conversationID, field: "conversation_id"),
            kind: kind, messageID: f.messageID ?? f.lastReadMessageID, seq: (f.seq ?? f.lastReadSeq).map(Int64.init))
    }

    static func sync(_ f: SyncFrame, actor: Actor) throws -> Sync {
        guard case .object(let raw)? = f.cursors else {
            throw AIIMError.validation("cursors must be an object {conversation_id: seq}")
        }
        var cursors: [String: Int64] = [:]
        for (k, v) in raw {
            guard let s = v.intValue, s >= 0 else { throw AIIMError.validation("cursors values must be non-negative integers") }
            cursors[k] = Int64(s)
        }
        return Sync(actor: actor, cursors: cursors, limit: try Validation.limit(f.limit, default: 100))
    }

    /// An answer to start; without a `client_generation_id` the gateway makes one.
    static func startGeneration(_ f: GenerationStartFrame, actor: Actor) throws -> StartGeneration {
        StartGeneration(
            actor: actor, conversationID: try Validation.id(f.conversationID, field: "conversation_id"),
            clientGenerationID: try Validation.optionalID(f.clientGenerationID, field: "client_generation_id") ?? "gw:" + UUIDs.make(),
            replyTo: try Validation.optionalID(f.replyTo, field: "reply_to"),
            requesterID: try Validation.optionalID(f.requesterID, field: "requester_id"),
            state: f.state ?? .thinking, label: f.label, labelTTLMillis: f.labelTTLMillis)
    }

    /// `conversation_id`, optional `to_user_id`, and the call type (default audio); `key` names
    /// the field the type came from, for the error message.
    static func initiateCall(conversationID: String?, toUserID: String?, callType: (key: String, value: JSONValue)?, actor: Actor)
        throws -> InitiateCall
    {
        let conversationID = try Validation.id(conversationID, field: "conversation_id")
        let callee = try Validation.optionalID(toUserID, field: "to_user_id")
        var type = CallType.audio
        if let (key, value) = callType, !value.isNull {
            guard let raw = value.stringValue, let t = CallType(rawValue: raw) else {
                throw AIIMError.validation("\(key) must be 'audio' or 'video'")
            }
            type = t
        }
        return InitiateCall(actor: actor, conversationID: conversationID, calleeID: callee, callType: type)
    }
}
