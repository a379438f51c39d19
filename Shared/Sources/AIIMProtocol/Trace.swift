import Foundation
import Logging
import W3CTraceContext

/// The trace a piece of work belongs to. It enters at the gateway (new, or from an incoming
/// `traceparent`), rides every stream envelope, and is bound as a task-local so every log line
/// written while handling it carries `trace_id` and `span_id`.
public struct Trace: Sendable, Equatable {
    public var traceID: String
    public var spanID: String
    public var sampled: Bool

    @TaskLocal public static var current: Trace?

    /// A new root trace.
    public static func root() -> Trace {
        var rng = SystemRandomNumberGenerator()
        let ctx = TraceContext(
            traceID: TraceID.random(using: &rng), spanID: SpanID.random(using: &rng),
            flags: .sampled, state: TraceState())
        return Trace(ctx)
    }

    init(_ ctx: TraceContext) {
        traceID = ctx.traceID.description
        spanID = ctx.spanID.description
        sampled = ctx.flags.contains(.sampled)
    }

    /// Parses a W3C `traceparent` header value; nil when malformed.
    public init?(traceparent: String) {
        guard let ctx = try? TraceContext(traceParentHeaderValue: traceparent) else { return nil }
        self.init(ctx)
    }

    /// A child span of the same trace (each service hop gets its own span id).
    public func child() -> Trace {
        var rng = SystemRandomNumberGenerator()
        var t = self
        t.spanID = SpanID.random(using: &rng).description
        return t
    }

    public var traceparent: String { "00-\(traceID)-\(spanID)-\(sampled ? "01" : "00")" }

    /// Logger metadata provider: adds the current trace to every log line.
    public static let metadataProvider = Logger.MetadataProvider {
        guard let t = Trace.current else { return [:] }
        return ["trace_id": .string(t.traceID), "span_id": .string(t.spanID)]
    }
}
