import AIIMJSON
import AIIMProtocol
import Hummingbird

/// `/api/aiim/messages` and `/api/aiim/sync`: send, stream, history, edit, recall, catch-up
/// (messaging service).
struct MessagesController {
    let backends: Backends
    /// Whether this gateway follows the events stream (a send may then be answered by its event).
    let followsEvents: @Sendable () -> Bool

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("messages", use: send)
        routes.post("messages/stream", use: stream)
        // `{id}` is a conversation id for GET (history) and a message id for PATCH/DELETE, as in
        // the original; the router needs one parameter name per path position.
        routes.get("messages/{id}", use: history)
        routes.patch("messages/{id}", use: edit)
        routes.delete("messages/{id}", use: recall)
        routes.post("sync", use: sync)
        return routes
    }

    /// The original's response shape: `{"message": …}`.
    struct Wrapped<M: Encodable & Sendable>: ResponseEncodable { var message: M }

    @Sendable func send(_ request: Request, context: AuthenticatedContext) async throws -> Wrapped<MessageDTO> {
        let body = try await request.decode(as: SendMessageBody.self, context: context)
        let result = try await backends.call(try Commands.send(
            conversationID: body.conversationID, type: body.type, content: body.content, clientMsgID: body.clientMsgID,
            replyTo: body.replyTo, actor: context.actor, replyByEvent: followsEvents()))
        return Wrapped(message: result.message)
    }

    @Sendable func stream(_ request: Request, context: AuthenticatedContext) async throws -> Wrapped<StreamChunkResult> {
        let body = try await request.decode(as: StreamChunkFrame.self, context: context)
        return Wrapped(message: try await backends.call(try Commands.streamChunk(body, actor: context.actor)))
    }

    @Sendable func history(_ request: Request, context: AuthenticatedContext) async throws -> MessagePage {
        try await backends.call(History(
            actor: context.actor, conversationID: try context.parameters.require("id"),
            beforeSeq: try request.positionQuery("before_seq"),
            afterSeq: try request.positionQuery("after_seq"),
            beforeID: request.stringQuery("before_id"),
            limit: try Validation.limit(request.intQuery("limit"))))
    }

    @Sendable func edit(_ request: Request, context: AuthenticatedContext) async throws -> Wrapped<MessageDTO> {
        let body = try await request.decode(as: EditMessageBody.self, context: context)
        guard let content = body.content, !content.isNull else { throw AIIMError.validation("content is required") }
        return Wrapped(message: try await backends.call(EditMessage(
            actor: context.actor, messageID: try context.parameters.require("id"), content: content)))
    }

    @Sendable func recall(_ request: Request, context: AuthenticatedContext) async throws -> Wrapped<MessageDTO> {
        Wrapped(message: try await backends.call(DeleteMessage(actor: context.actor, messageID: try context.parameters.require("id"))))
    }

    @Sendable func sync(_ request: Request, context: AuthenticatedContext) async throws -> SyncResult {
        let body = try await request.decode(as: SyncFrame.self, context: context)
        return try await backends.call(try Commands.sync(body, actor: context.actor))
    }
}
