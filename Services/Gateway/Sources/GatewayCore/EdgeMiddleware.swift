import AIIMJSON
import AIIMProtocol
import AIIMRedis
import HTTPTypes
import Hummingbird
import NIOConcurrencyHelpers

/// Security headers on every response (errors and 429s included), and CORS only for the
/// configured origins.
struct SecurityHeadersMiddleware<Context: RequestContext>: RouterMiddleware {
    let allowedOrigins: [String]
    let enableCORS: Bool

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let origin = request.headers[.origin]
        let corsAllowed = enableCORS && origin.map { allowedOrigins.contains($0) } == true
        var response: Response
        if request.method == .options, corsAllowed {
            response = Response(status: .noContent)
        } else {
            response = try await next(request, context)
        }
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.xFrameOptions] = "DENY"
        response.headers[.referrerPolicy] = "strict-origin-when-cross-origin"
        response.headers[.cacheControl] = response.headers[.cacheControl] ?? "no-store"
        if request.headers[.xForwardedProto] == "https" {
            response.headers[.strictTransportSecurity] = "max-age=31536000; includeSubDomains"
        }
        if corsAllowed, let origin {
            response.headers[.accessControlAllowOrigin] = origin
            response.headers[.vary] = "Origin"
            response.headers[.accessControlAllowMethods] = "GET, POST, PATCH, DELETE, OPTIONS"
            response.headers[.accessControlAllowHeaders] = "Authorization, Content-Type, traceparent"
        }
        return response
    }
}

/// Per-user requests per second, counted in Redis so every gateway replica shares the budget.
/// Anonymous requests never get here (they fail authentication first).
struct RateLimitMiddleware: RouterMiddleware {
    let redis: RedisClient
    let limit: Int

    func handle(_ request: Request, context: AIIMRequestContext, next: (Request, AIIMRequestContext) async throws -> Response) async throws -> Response {
        guard limit > 0, let identity = context.identity else { return try await next(request, context) }
        let second = Timestamp.nowMillis() / 1000
        let key = "aiim:rate:\(identity.tenantID):\(identity.userID):\(second)"
        let r = try await redis.pipeline([["INCR", key], ["EXPIRE", key, "2"]])
        if let count = r.first?.int, count > Int64(limit) {
            throw AIIMError(.rateLimited, "more than \(limit) requests per second")
        }
        return try await next(request, context)
    }
}

/// The same per-user budget for WebSocket frames (`RATE_LIMIT_PER_SEC`), as a token bucket per
/// user in this gateway: a frame is one request. Counted locally, not in Redis, so a frame costs
/// no extra round trip; a user whose devices sit on several gateway replicas gets the budget
/// once per replica (docs/PROTOCOL.md). Bursts of up to twice the per-second budget pass.
final class FrameRateLimiter: Sendable {
    struct Bucket {
        var tokens: Double
        var updated: ContinuousClock.Instant
    }

    let perSecond: Int
    private let buckets = NIOLockedValueBox<[String: Bucket]>([:])

    init(perSecond: Int) { self.perSecond = perSecond }

    /// Nil when the frame may proceed, else how long until one may.
    func admit(_ identity: Identity, now: ContinuousClock.Instant = .now) -> Duration? {
        guard perSecond > 0 else { return nil }
        let key = identity.tenantID + "\u{0}" + identity.userID
        let rate = Double(perSecond), burst = 2 * Double(perSecond)
        return buckets.withLockedValue { all in
            if all.count > 100_000 { all = all.filter { now - $0.value.updated < .seconds(2) } }
            var b = all[key] ?? Bucket(tokens: burst, updated: now)
            let elapsed = now - b.updated
            b.tokens = min(burst, b.tokens + rate * (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
            b.updated = now
            defer { all[key] = b }
            guard b.tokens >= 1 else { return .milliseconds(Int64(((1 - b.tokens) / rate * 1000).rounded(.up))) }
            b.tokens -= 1
            return nil
        }
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
    static let strictTransportSecurity = Self("Strict-Transport-Security")!
    static let xForwardedProto = Self("X-Forwarded-Proto")!
    static let accessControlAllowOrigin = Self("Access-Control-Allow-Origin")!
    static let accessControlAllowMethods = Self("Access-Control-Allow-Methods")!
    static let accessControlAllowHeaders = Self("Access-Control-Allow-Headers")!
    static let vary = Self("Vary")!
    static let origin = Self("Origin")!
}
