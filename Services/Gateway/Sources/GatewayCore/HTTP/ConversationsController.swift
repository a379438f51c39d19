import AIIMProtocol
import Hummingbird

/// `/api/aiim/conversations`: create, list, read, rename or change settings, and change members (messaging service).
struct ConversationsController {
    let backends: Backends

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post(use: create)
        routes.get(use: list)
        routes.get("{conversation_id}", use: get)
        routes.patch("{conversation_id}", use: update)
        routes.post("{conversation_id}/members", use: addMembers)
        routes.delete("{conversation_id}/members/{user_id}", use: removeMember)
        return routes
    }

    @Sendable func create(_ request: Request, context: AuthenticatedContext) async throws -> ConversationDTO {
        let body = try await request.decode(as: CreateConversationBody.self, context: context)
        return try await backends.call(CreateConversation(
            actor: context.actor, kind: body.type ?? "direct", name: body.name, memberIDs: body.memberIDs,
            settings: body.settings))
    }

    @Sendable func update(_ request: Request, context: AuthenticatedContext) async throws -> ConversationDTO {
        let body = try await request.decode(as: UpdateConversationBody.self, context: context)
        return try await backends.call(UpdateConversation(
            actor: context.actor, conversationID: try context.parameters.require("conversation_id"),
            name: body.name, settings: body.settings))
    }

    @Sendable func list(_ request: Request, context: AuthenticatedContext) async throws -> ConversationList {
        try await backends.call(ListConversations(
            actor: context.actor, limit: try Validation.limit(request.intQuery("limit")), before: request.stringQuery("before")))
    }

    @Sendable func get(_ request: Request, context: AuthenticatedContext) async throws -> ConversationDTO {
        try await backends.call(GetConversation(actor: context.actor, conversationID: try context.parameters.require("conversation_id")))
    }

    @Sendable func addMembers(_ request: Request, context: AuthenticatedContext) async throws -> ConversationDTO {
        let body = try await request.decode(as: AddMembersBody.self, context: context)
        return try await backends.call(AddMembers(
            actor: context.actor, conversationID: try context.parameters.require("conversation_id"),
            userIDs: body.userIDs, role: body.role ?? "member"))
    }

    @Sendable func removeMember(_ request: Request, context: AuthenticatedContext) async throws -> NoContent {
        _ = try await backends.call(RemoveMember(
            actor: context.actor, conversationID: try context.parameters.require("conversation_id"),
            userID: try context.parameters.require("user_id")))
        return NoContent()
    }
}
