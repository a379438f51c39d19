import AIIMProtocol
import Hummingbird

/// `/api/aiim/receipts`: delivered/read cursors and who has seen a message (messaging service).
struct ReceiptsController {
    let backends: Backends

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post("delivered") { request, context in try await mark(request, context, kind: "delivered") }
        routes.post("read") { request, context in try await mark(request, context, kind: "read") }
        routes.get("{conversation_id}/{message_id}", use: list)
        return routes
    }

    func mark(_ request: Request, _ context: AuthenticatedContext, kind: String) async throws -> NoContent {
        let body = try await request.decode(as: ReceiptBody.self, context: context)
        if kind == "read", let user = body.userID, user != context.identity.userID {
            throw AIIMError.forbidden("user_id must be the caller")
        }
        _ = try await backends.call(try Commands.receipt(body.receipt, kind: kind, actor: context.actor))
        return NoContent()
    }

    @Sendable func list(_ request: Request, context: AuthenticatedContext) async throws -> ReceiptList {
        try await backends.call(GetReceipts(
            actor: context.actor, conversationID: try context.parameters.require("conversation_id"),
            messageID: try context.parameters.require("message_id")))
    }
}
