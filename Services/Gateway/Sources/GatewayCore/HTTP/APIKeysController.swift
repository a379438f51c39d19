import AIIMProtocol
import Hummingbird

/// `/api/aiim/api_keys`: a person creates an API key for an AI agent (messaging stores its hash).
struct APIKeysController {
    let backends: Backends

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post(use: create)
        return routes
    }

    struct CreatedKey: Encodable, Sendable {
        var apiKey: String
        var userID: String
        var name: String
        enum CodingKeys: String, CodingKey { case apiKey = "api_key", userID = "user_id", name }
    }

    /// The key is shown once; only its hash is stored.
    @Sendable func create(_ request: Request, context: AuthenticatedContext) async throws -> Created<CreatedKey> {
        let body = try await request.decode(as: CreateAPIKeyBody.self, context: context)
        let key = APIKeys.make()
        let created = try await backends.call(CreateAPIKey(actor: context.actor, name: body.name, keyHash: APIKeys.hash(key)))
        return Created(value: CreatedKey(apiKey: key, userID: created.userID, name: created.name))
    }
}
