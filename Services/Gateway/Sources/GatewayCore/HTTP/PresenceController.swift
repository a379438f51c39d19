import AIIMProtocol
import Hummingbird

/// `/api/aiim/presence?user_ids=a,b`: who of the caller's tenant is online (from Redis).
struct PresenceController {
    let presence: PresenceTracker

    var endpoints: RouteCollection<AuthenticatedContext> {
        let routes = RouteCollection(context: AuthenticatedContext.self)
        routes.get(use: get)
        return routes
    }

    struct Status: Encodable, Sendable {
        var userID: String
        var status: String
        enum CodingKeys: String, CodingKey { case userID = "user_id", status }
    }

    struct PresenceList: ResponseEncodable { var presence: [Status] }

    @Sendable func get(_ request: Request, context: AuthenticatedContext) async throws -> PresenceList {
        let users = (request.stringQuery("user_ids") ?? "").split(separator: ",").map(String.init)
        guard !users.isEmpty, users.count <= 200 else { throw AIIMError.validation("user_ids must list 1-200 users") }
        let online = try await presence.online(users, tenant: context.identity.tenantID)
        return PresenceList(presence: zip(users, online).map { Status(userID: $0, status: $1 ? "online" : "offline") })
    }
}
