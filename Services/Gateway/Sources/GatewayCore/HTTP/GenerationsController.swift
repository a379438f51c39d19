import AIIMJSON
import AIIMProtocol
import Hummingbird

/// `/api/aiim/generations`: AI answers over REST (docs/AI.md), the same commands as the
/// `generation.*` WebSocket frames.
struct GenerationsController {
    let backends: Backends

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post(use: start)
        routes.get("{message_id}", use: get)
        routes.post("{message_id}/deltas", use: append)
        routes.post("{message_id}/status", use: status)
        routes.post("{message_id}/end", use: end)
        routes.post("{message_id}/stop", use: stop)
        return routes
    }

    struct DeltasBody: Decodable { var deltas: [GenerationDelta] }
    struct StatusBody: Decodable {
        var state: GenerationState?
        var label: String?
        var labelTTLMillis: Int?
        enum CodingKeys: String, CodingKey { case state, label, labelTTLMillis = "label_ttl_ms" }
    }
    struct EndBody: Decodable {
        var state: GenerationState
        var error: String?
        var lastOffset: Int64?
        enum CodingKeys: String, CodingKey { case state, error, lastOffset = "last_offset" }
    }

    func id(_ context: AuthenticatedContext) throws -> String {
        try Validation.id(context.parameters.get("message_id"), field: "message_id")
    }

    @Sendable func start(_ request: Request, context: AuthenticatedContext) async throws -> Created<GenerationSnapshot> {
        let body = try await request.decode(as: GenerationStartFrame.self, context: context)
        return Created(value: try await backends.call(try Commands.startGeneration(body, actor: context.actor)))
    }

    @Sendable func get(_ request: Request, context: AuthenticatedContext) async throws -> GenerationSnapshot {
        try await backends.call(GetGeneration(
            actor: context.actor, messageID: try id(context), afterOffset: try request.positionQuery("after_offset")))
    }

    @Sendable func append(_ request: Request, context: AuthenticatedContext) async throws -> GenerationAck {
        let body = try await request.decode(as: DeltasBody.self, context: context)
        return try await backends.call(AppendGeneration(actor: context.actor, messageID: try id(context), deltas: body.deltas))
    }

    @Sendable func status(_ request: Request, context: AuthenticatedContext) async throws -> GenerationAck {
        let body = try await request.decode(as: StatusBody.self, context: context)
        return try await backends.call(SetGenerationStatus(
            actor: context.actor, messageID: try id(context), state: body.state, label: body.label, labelTTLMillis: body.labelTTLMillis))
    }

    @Sendable func end(_ request: Request, context: AuthenticatedContext) async throws -> GenerationSnapshot {
        let body = try await request.decode(as: EndBody.self, context: context)
        return try await backends.call(EndGeneration(
            actor: context.actor, messageID: try id(context), state: body.state, error: body.error, lastOffset: body.lastOffset))
    }

    @Sendable func stop(_ request: Request, context: AuthenticatedContext) async throws -> GenerationAck {
        try await backends.call(StopGeneration(actor: context.actor, messageID: try id(context)))
    }
}

extension GenerationSnapshot: ResponseEncodable {}
extension GenerationAck: ResponseEncodable {}
