import AIIMProtocol
import HTTPTypes
import Hummingbird
import Logging

/// Starts (or continues, from an incoming `traceparent`) the trace of each request, binds it as
/// the task-local `Trace.current` so every log line and every stream envelope carries it, and
/// returns it to the client in `traceparent` and `X-Trace-Id`.
struct TraceMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let trace = request.headers[.traceparent].flatMap { Trace(traceparent: $0)?.child() } ?? Trace.root()
        return try await Trace.$current.withValue(trace) {
            do {
                var response = try await next(request, context)
                response.headers[.traceparent] = trace.traceparent
                response.headers[.traceID] = trace.traceID
                return response
            } catch {
                // Errors become responses further out; add the header there too.
                throw TracedError(error: error, trace: trace)
            }
        }
    }
}

/// Carries the trace of a failed request out to the error middleware.
struct TracedError: Error {
    var error: any Error
    var trace: Trace
}

extension HTTPField.Name {
    static let traceparent = Self("traceparent")!
    static let traceID = Self("X-Trace-Id")!
    static let retryAfter = Self("Retry-After")!
}

/// One log line per request: method, path **without the query** (a WebSocket upgrade may carry
/// `?token=`; tokens never reach the logs), status and duration, under the request's trace.
struct RequestLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let start = ContinuousClock.now
        do {
            let response = try await next(request, context)
            log(request, context, status: Int(response.status.code), start)
            return response
        } catch {
            log(request, context, status: nil, start)
            throw error
        }
    }

    func log(_ request: Request, _ context: Context, status: Int?, _ start: ContinuousClock.Instant) {
        context.logger.info("request", metadata: [
            "http.method": "\(request.method.rawValue)", "http.path": "\(request.uri.path)",
            "http.status": "\(status.map(String.init) ?? "error")", "duration_us": "\(start.elapsedNanoseconds / 1000)",
        ])
    }
}
