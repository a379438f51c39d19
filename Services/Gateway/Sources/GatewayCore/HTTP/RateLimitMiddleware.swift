import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Hummingbird

/// Per-user requests per second, counted in Redis so every gateway replica shares the budget.
/// It runs after authentication: anonymous requests have failed by then.
struct RateLimitMiddleware: RouterMiddleware {
    let redis: RedisClient
    let limit: Int

    func handle(
        _ request: Request, context: AuthenticatedContext, next: (Request, AuthenticatedContext) async throws -> Response
    ) async throws -> Response {
        guard limit > 0 else { return try await next(request, context) }
        let second = Timestamp.nowMillis() / 1000
        let key = "aiim:rate:\(context.identity.tenantID):\(context.identity.userID):\(second)"
        let r = try await redis.pipeline([["INCR", key], ["EXPIRE", key, "2"]])
        if let count = r.first?.int, count > Int64(limit) {
            throw AIIMError(.rateLimited, "more than \(limit) requests per second")
        }
        return try await next(request, context)
    }
}
