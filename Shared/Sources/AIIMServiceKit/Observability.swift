import AIIMJSON
import AIIMProtocol
import Foundation
import Hummingbird
import Logging
import Prometheus
import ServiceLifecycle

/// Checks each dependency periodically and records the result in `Readiness`, so `/ready`
/// turns 503 with the reason when Redis or PostgreSQL goes away and back to 200 by itself.
public struct DependencyMonitor: Service {
    public typealias Check = @Sendable () async throws -> Void
    let readiness: Readiness
    let checks: [(String, Check)]
    let logger: Logger
    let interval: Duration

    public init(readiness: Readiness, checks: [(String, Check)], interval: Duration = .seconds(2), logger: Logger) {
        self.readiness = readiness; self.checks = checks; self.logger = logger; self.interval = interval
    }

    /// Runs every check once now.
    public func checkAll() async {
        for (name, check) in checks {
            let wasUp = readiness.isUp(name)
            do {
                try await check()
                readiness.set(name, down: nil)
                if !wasUp { logger.notice("dependency is up", metadata: ["dependency": "\(name)"]) }
            } catch {
                let reason = (error as? AIIMError)?.message ?? "\(name) unreachable"
                readiness.set(name, down: reason)
                if wasUp { logger.error("dependency is down", metadata: ["dependency": "\(name)", "error": "\(error)"]) }
            }
        }
    }

    public func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            await checkAll()
            try? await Task.sleep(for: interval)
        }
    }
}

/// `/health`, `/healthz`, `/ready`, `/metrics`, served by every service.
public enum ObservabilityRoutes {
    public static let version = "2.0.0"

    public static func add<Context: RequestContext>(
        to router: Router<Context>, service: String, instance: String, readiness: Readiness,
        registry: PrometheusCollectorRegistry
    ) {
        router.get("/healthz") { _, _ in
            jsonResponse(.ok, .object(["status": .string("ok")]))
        }
        router.get("/health") { _, _ in
            let (ready, down) = readiness.report()
            var checks: [String: JSONValue] = [:]
            for name in readiness.components {
                checks[name] = .object(down[name].map { ["status": .string("unhealthy"), "details": .string($0)] }
                                       ?? ["status": .string("healthy")])
            }
            return jsonResponse(.ok, .object([
                "status": .string(ready ? "healthy" : "unhealthy"),
                "timestamp": .number(Date().timeIntervalSince1970),
                "version": .string(version), "service": .string(service), "instance": .string(instance),
                "checks": .object(checks), "details": .object(readiness.details),
            ]))
        }
        router.get("/ready") { _, _ in
            let (ready, down) = readiness.report()
            // Details (e.g. `redis_memory`) besides the status, whether ready or not.
            var body: [String: JSONValue] = readiness.details
            body["status"] = .string(ready ? "ready" : "not_ready")
            if ready { return jsonResponse(.ok, .object(body)) }
            body["reasons"] = .object(down.mapValues { .string($0) })
            return jsonResponse(.serviceUnavailable, .object(body))
        }
        router.get("/metrics") { _, _ in
            var buffer: [UInt8] = []
            registry.emit(into: &buffer)
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: buffer)))
        }
    }

    public static func jsonResponse(_ status: HTTPResponse.Status, _ body: JSONValue, headers: HTTPFields = [:]) -> Response {
        var h = headers
        h[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: h, body: .init(byteBuffer: ByteBuffer(string: body.jsonString())))
    }
}
