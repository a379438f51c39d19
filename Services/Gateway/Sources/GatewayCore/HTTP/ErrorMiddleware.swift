import AIIMJSON
import AIIMProtocol
import AIIMServiceKit
import HTTPTypes
import Hummingbird
import Logging

/// Turns every error into `{"error":{"code","message"}}` with the documented status. Internal
/// errors are logged with their detail and answered with `internal` only: no SQL, Redis or
/// stack text reaches a client.
struct ErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            var trace: Trace?
            var err: any Error = error
            if let t = error as? TracedError { trace = t.trace; err = t.error }
            let aiim = Self.map(err)
            if aiim.code == .internalError {
                context.logger.error("request failed", metadata: ["error": "\(String(reflecting: err))"])
            }
            var headers: HTTPFields = [:]
            if let trace {
                headers[.traceparent] = trace.traceparent
                headers[.traceID] = trace.traceID
            }
            if aiim.code == .rateLimited { headers[.retryAfter] = "1" }
            return ObservabilityRoutes.jsonResponse(
                .init(code: aiim.code.httpStatus),
                .object(["error": .object(["code": .string(aiim.code.rawValue), "message": .string(aiim.message)])]),
                headers: headers)
        }
    }

    static func map(_ error: any Error) -> AIIMError {
        switch error {
        case let e as AIIMError: return e
        case let e as HTTPError:
            switch e.status.code {
            case 400: return .badRequest(e.body ?? "bad request")
            case 401: return AIIMError(.unauthorized, "authentication required")
            case 403: return .forbidden("forbidden")
            case 404: return .notFound(e.body ?? "no such route")
            case 405: return AIIMError(.badRequest, "method not allowed")
            case 413: return AIIMError(.payloadTooLarge, "request body too large")
            default: return e.status.code < 500 ? .badRequest(e.body ?? "bad request") : .internalError
            }
        case is DecodingError: return .validation("request body does not match the schema")
        default: return .internalError
        }
    }
}
