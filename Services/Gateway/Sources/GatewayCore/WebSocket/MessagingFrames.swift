import AIIMJSON
import AIIMProtocol
import NIOConcurrencyHelpers

/// The messaging frames of `/api/aiim/ws` (docs/PROTOCOL.md), forwarded to the messaging service.
extension FrameRouter {
    mutating func addMessagingFrames(backends: Backends, hub: DeliveryHub, followsEvents: @escaping @Sendable () -> Bool) {
        on(PingFrame.self) { _, _ in HeartbeatFrame.pong }
        on(PingFrame.pongType, PingFrame.self) { _, _ in nil }
        on(SendMessageFrame.self) { f, context in
            let result = try await backends.call(try Commands.send(
                conversationID: f.conversationID, type: f.msgType, content: f.content, clientMsgID: f.clientMsgID,
                replyTo: f.replyTo, actor: context.actor, replyByEvent: followsEvents()))
            return MessageSentAck(result, clientMsgID: context.frame["client_msg_id"])
        }
        on(StreamChunkFrame.self) { f, context in
            StreamSentAck(try await backends.call(try Commands.streamChunk(f, actor: context.actor)),
                          clientMsgID: context.frame["client_msg_id"])
        }
        for (type, kind) in [(ReceiptFrame.deliveredType, "delivered"), (ReceiptFrame.type, "read"), (ReceiptFrame.markReadType, "read")] {
            on(type, ReceiptFrame.self) { f, context in
                ReceiptAck(kind: kind, try await backends.call(try Commands.receipt(f, kind: kind, actor: context.actor)))
            }
        }
        on(TypingFrame.self) { f, context in
            let id = try Validation.id(f.conversationID, field: "conversation_id")
            try await backends.post(Typing(actor: context.actor, conversationID: id, isTyping: f.isTyping ?? true))
            return nil
        }
        on(SyncFrame.self) { f, context in
            SyncReplyFrame(conversations: try await backends.call(try Commands.sync(f, actor: context.actor)).conversations)
        }
        on(SubscribeFrame.self) { f, context in
            try await subscribe(f, context, backends: backends, hub: hub)
            return nil
        }
        on(UnsubscribeFrame.self) { f, context in
            let id = try Validation.id(f.conversationID, field: "conversation_id")
            context.connection.ordering.withLockedValue { _ = $0.muted.insert(id) }
            return UnsubscribedFrame(conversationID: id)
        }
    }
}

/// Membership check, then `subscribed`, then (with `after_seq`) the replay of what the device
/// missed, in order, before any live event of that conversation; then live delivery resumes.
private func subscribe(_ f: SubscribeFrame, _ context: FrameContext, backends: Backends, hub: DeliveryHub) async throws {
    let id = try Validation.id(f.conversationID, field: "conversation_id")
    if let after = f.afterSeq, after < 0 { throw AIIMError.validation("after_seq must not be negative") }
    // Membership (and the current last seq) comes from messaging.
    let conversation = try await backends.call(GetConversation(actor: context.actor, conversationID: id))
    context.connection.ordering.withLockedValue {
        $0.subscribe(id, after: f.afterSeq.map(Int64.init), lastSeq: conversation.lastSeq)
    }
    // Sent before the replay, so the device knows the replay that follows is for this request.
    context.connection.send(try SubscribedFrame(conversationID: id, lastSeq: conversation.lastSeq)
        .json(requestID: context.frame["request_id"]))
    if let after = f.afterSeq { try await hub.replay(context.connection, id, after: Int64(after)) }
}
