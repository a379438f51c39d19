import AIIMProtocol
import Foundation
import Hummingbird

/// `/api/aiim/api_keys`: a person creates API keys for AI agents (messaging stores their
/// hashes), lists their own and revokes them. A key's id is its bot user (`key_id` = `user_id`).
struct APIKeysController {
    let backends: Backends

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.post(use: create)
        routes.get { _, context in try await backends.call(ListAPIKeys(actor: context.actor)) }
        routes.delete("{key_id}") { _, context in
            try await backends.call(RevokeAPIKey(actor: context.actor,
                                                 keyID: try Validation.id(context.parameters.get("key_id"), field: "key_id")))
        }
        return routes
    }

    struct CreatedKey: Encodable, Sendable {
        var apiKey: String
        var keyID: String
        var userID: String
        var name: String
        var createdAt: Date?
        var expiresAt: Date?
        enum CodingKeys: String, CodingKey {
            case apiKey = "api_key", keyID = "key_id", userID = "user_id", name, createdAt = "created_at", expiresAt = "expires_at"
        }
        func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(apiKey, forKey: .apiKey)
            try c.encode(keyID, forKey: .keyID)
            try c.encode(userID, forKey: .userID)
            try c.encode(name, forKey: .name)
            try c.encode(createdAt, forKey: .createdAt)
            try c.encode(expiresAt, forKey: .expiresAt)
        }
    }

    /// The key is shown once; only its hash is stored.
    @Sendable func create(_ request: Request, context: AuthenticatedContext) async throws -> Created<CreatedKey> {
        let body = try await request.decode(as: CreateAPIKeyBody.self, context: context)
        let key = APIKeys.make()
        let created = try await backends.call(CreateAPIKey(actor: context.actor, name: body.name, keyHash: APIKeys.hash(key),
                                                           expiresInSeconds: body.expiresInSeconds))
        return Created(value: CreatedKey(apiKey: key, keyID: created.userID, userID: created.userID, name: created.name,
                                         createdAt: created.createdAt, expiresAt: created.expiresAt))
    }
}
