import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Crypto
import Foundation
import Hummingbird
import NIOConcurrencyHelpers

/// REST routes of the original (`/api/aiim/...`), forwarded to the messaging service.
extension Gateway {
    func addMessagingRoutes(to api: RouterGroup<AIIMRequestContext>) {
        api.post("conversations") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let cmd = CreateConversation(
                actor: actor, kind: try body.optionalString("type") ?? "direct", name: try body.optionalString("name"),
                memberIDs: try body.stringArray("member_ids"))
            return try json(try await bus.request(cmd, timeout: busTimeout))
        }
        api.get("conversations") { request, context in
            let actor = try context.requireIdentity().actor()
            let cmd = ListConversations(actor: actor, limit: try Validation.limit(request.intQuery("limit")),
                                        before: request.stringQuery("before"))
            return try json(try await bus.request(cmd, timeout: busTimeout))
        }
        api.get("conversations/{conversation_id}") { _, context in
            let actor = try context.requireIdentity().actor()
            let id = try context.parameters.require("conversation_id")
            return try json(try await bus.request(GetConversation(actor: actor, conversationID: id), timeout: busTimeout))
        }
        api.post("conversations/{conversation_id}/members") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let cmd = AddMembers(actor: actor, conversationID: try context.parameters.require("conversation_id"),
                                 userIDs: try body.stringArray("user_ids"), role: try body.optionalString("role") ?? "member")
            return try json(try await bus.request(cmd, timeout: busTimeout))
        }
        api.delete("conversations/{conversation_id}/members/{user_id}") { _, context in
            let actor = try context.requireIdentity().actor()
            _ = try await bus.request(RemoveMember(
                actor: actor, conversationID: try context.parameters.require("conversation_id"),
                userID: try context.parameters.require("user_id")), timeout: busTimeout)
            return noContent()
        }
        api.post("messages") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let result = try await bus.request(try sendCommand(body, actor: actor), timeout: busTimeout)
            return try json(["message": result.message])
        }
        api.post("messages/stream") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let result = try await bus.request(try streamCommand(body, actor: actor), timeout: busTimeout)
            return try json(["message": result])
        }
        // `{id}` is a conversation id for GET (history) and a message id for PATCH/DELETE, as in
        // the original; the router needs one parameter name per path position.
        api.get("messages/{id}") { request, context in
            let actor = try context.requireIdentity().actor()
            let cmd = History(
                actor: actor, conversationID: try context.parameters.require("id"),
                beforeSeq: try request.intQuery("before_seq").map(Int64.init),
                afterSeq: try request.intQuery("after_seq").map(Int64.init),
                beforeID: request.stringQuery("before_id"),
                limit: try Validation.limit(request.intQuery("limit")))
            return try json(try await bus.request(cmd, timeout: busTimeout))
        }
        api.patch("messages/{id}") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            guard let content = body["content"] else { throw AIIMError.validation("content is required") }
            let cmd = EditMessage(actor: actor, messageID: try context.parameters.require("id"), content: content)
            return try json(["message": try await bus.request(cmd, timeout: busTimeout)])
        }
        api.delete("messages/{id}") { _, context in
            let actor = try context.requireIdentity().actor()
            let cmd = DeleteMessage(actor: actor, messageID: try context.parameters.require("id"))
            return try json(["message": try await bus.request(cmd, timeout: busTimeout)])
        }
        api.post("sync") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            return try json(try await bus.request(try syncCommand(body, actor: actor), timeout: busTimeout))
        }
        api.post("receipts/delivered") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            _ = try await bus.request(try receiptCommand(body, kind: "delivered", actor: actor), timeout: busTimeout)
            return noContent()
        }
        api.post("receipts/read") { request, context in
            let identity = try context.requireIdentity()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            if let user = try body.optionalString("user_id"), user != identity.userID {
                throw AIIMError.forbidden("user_id must be the caller")
            }
            _ = try await bus.request(try receiptCommand(body, kind: "read", actor: identity.actor()), timeout: busTimeout)
            return noContent()
        }
        api.get("receipts/{conversation_id}/{message_id}") { _, context in
            let actor = try context.requireIdentity().actor()
            let cmd = GetReceipts(actor: actor, conversationID: try context.parameters.require("conversation_id"),
                                  messageID: try context.parameters.require("message_id"))
            return try json(try await bus.request(cmd, timeout: busTimeout))
        }
        api.post("api_keys") { request, context in
            let actor = try context.requireIdentity().actor()
            let body = try await JSONObject.read(request, context: context, maxBytes: config.maxBodyBytes)
            let key = "aiim_" + (0..<3).map { _ in UUIDs.make().replacingOccurrences(of: "-", with: "") }.joined()
            let created = try await bus.request(
                CreateAPIKey(actor: actor, name: try body.string("name"), keyHash: APIKeys.hash(key)), timeout: busTimeout)
            // The key is shown once; only its hash is stored.
            return try json(["api_key": key, "user_id": created.userID, "name": created.name], status: .created)
        }
        api.get("presence") { request, context in
            let identity = try context.requireIdentity()
            let users = (request.stringQuery("user_ids") ?? "").split(separator: ",").map(String.init)
            guard !users.isEmpty, users.count <= 200 else { throw AIIMError.validation("user_ids must list 1-200 users") }
            let online = try await presence.online(users, tenant: identity.tenantID)
            return try json(["presence": zip(users, online).map { ["user_id": $0, "status": $1 ? "online" : "offline"] }])
        }
    }

    // MARK: Frame and body → command (shared by REST and WebSocket)

    /// `typeField` is `type` in a REST body and `msg_type` in a WebSocket frame (whose `type` is the frame type).
    func sendCommand(_ body: JSONObject, actor: Actor, typeField: String = "type") throws -> SendMessage {
        let type = try body.optionalString(typeField) ?? "text"
        let content = try Validation.content(body["content"], type: type)
        let clientMsgID = try Validation.optionalID(body.optionalString("client_msg_id"), field: "client_msg_id")
        return SendMessage(
            actor: actor, conversationID: try Validation.id(body.optionalString("conversation_id"), field: "conversation_id"),
            kind: type, content: content, replyTo: try body.optionalString("reply_to"),
            // While this gateway follows the events stream, the message's event can answer it.
            clientMsgID: clientMsgID ?? "gw:" + UUIDs.make(), replyByEvent: events.isFollowing)
    }

    func streamCommand(_ body: JSONObject, actor: Actor) throws -> StreamChunk {
        let streamID = try body.optionalString("stream_id") ?? body.optionalString("client_msg_id")
        return StreamChunk(
            actor: actor, conversationID: try Validation.id(body.optionalString("conversation_id"), field: "conversation_id"),
            streamID: try Validation.id(streamID, field: "stream_id"), chunk: body["chunk"],
            chunkIndex: try body.optionalInt("chunk_index"), streamEnd: try body.bool("stream_end", default: false))
    }

    func receiptCommand(_ body: JSONObject, kind: String, actor: Actor) throws -> MarkReceipt {
        let messageID = try body.optionalString("message_id") ?? body.optionalString("last_read_message_id")
        let seq = try body.optionalInt("seq") ?? body.optionalInt("last_read_seq")
        return MarkReceipt(
            actor: actor, conversationID: try Validation.id(body.optionalString("conversation_id"), field: "conversation_id"),
            kind: kind, messageID: messageID, seq: seq.map(Int64.init))
    }

    func syncCommand(_ body: JSONObject, actor: Actor) throws -> Sync {
        guard case .object(let raw)? = body["cursors"] else {
            throw AIIMError.validation("cursors must be an object {conversation_id: seq}")
        }
        var cursors: [String: Int64] = [:]
        for (k, v) in raw {
            guard let s = v.intValue, s >= 0 else { throw AIIMError.validation("cursors values must be non-negative integers") }
            cursors[k] = Int64(s)
        }
        return Sync(actor: actor, cursors: cursors, limit: try Validation.limit(body.optionalInt("limit"), default: 100))
    }
}

enum APIKeys {
    static let prefix = "aiim_"
    static func hash(_ key: String) -> String {
        SHA256.hash(data: Data(key.utf8)).map { String(format: "%02x", $0) }.joined()
    }
}
