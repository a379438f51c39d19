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
