import AIIMRedis
import AIIMShared
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle

/// Per-request state: who is calling (set by `AuthMiddleware`).
public struct AIIMRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: Identity?

    public init(source: Source) {
        coreContext = .init(source: source)
    }

    /// The caller, or `unauthorized`.
    public func requireIdentity() throws -> Identity {
        guard let identity else { throw AIIMError(.unauthorized, "authentication required") }
        return identity
    }
}

/// The gateway: REST and WebSocket edge. Authenticates, validates and rate-limits, forwards
/// commands to the backend services over Redis streams, and delivers their events to sockets.
public struct Gateway: Sendable {
    public let config: GatewayConfiguration
    public let logger: Logger
    public let redis: RedisClient
    public let bus: BusClient
    public let auth: Authenticator
    public let readiness: Readiness
    public let registry: PrometheusCollectorRegistry

    public init(config: GatewayConfiguration, registry: PrometheusCollectorRegistry) async throws {
        self.config = config
        self.registry = registry
        var logger = Logger(label: "aiim.gateway")
        logger.logLevel = Logger.Level(rawValue: config.common.logLevel) ?? .info
        self.logger = logger
        redis = try RedisClient(url: config.common.redisURL, poolSize: config.common.redisPoolSize, logger: logger)
        bus = BusClient(redis: redis, instance: config.common.instanceID, maxLength: config.common.streamMaxLength, logger: logger)
        auth = await Authenticator(secret: config.jwtSecret, issuer: config.jwtIssuer, defaultTenant: config.defaultTenant)
        readiness = Readiness(components: ["redis"])
    }

    var busTimeout: Duration { .milliseconds(config.busTimeoutMillis) }

    /// The HTTP router with every route (tests drive it with `app.test(.router)`).
    public func buildRouter() -> Router<AIIMRequestContext> {
        let router = Router(context: AIIMRequestContext.self)
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: TraceMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: LogRequestsMiddleware(.info))
        ObservabilityRoutes.add(to: router, service: "gateway", instance: config.common.instanceID,
                                readiness: readiness, registry: registry)
        let api = router.group("api/aiim").add(middleware: AuthMiddleware(auth: auth))
        api.get("bus/ping") { _, context in
            _ = try context.requireIdentity()
            let pong = try await bus.request(PingCommand(note: "ping"), timeout: busTimeout)
            return ObservabilityRoutes.jsonResponse(.ok, .object([
                "service": .string(pong.service), "instance": .string(pong.instance),
                "trace_id": .string(Trace.current?.traceID ?? ""),
            ]))
        }
        return router
    }

    /// The HTTP application (a `Service`).
    public func buildApplication() -> some ApplicationProtocol {
        Application(
            router: buildRouter(),
            configuration: .init(address: .hostname(config.common.httpHost, port: config.common.httpPort),
                                 serverName: "aiim-gateway"),
            logger: logger)
    }

    /// Everything the gateway process runs.
    public func services() -> [any Service] {
        let monitor = DependencyMonitor(
            readiness: readiness, checks: [("redis", { [redis] in try await redis.ping() })], logger: logger)
        return [monitor, bus, buildApplication()]
    }

    public func shutdown() async {
        await redis.shutdown()
    }
}

/// Reads `Authorization: Bearer <jwt>` into `context.identity`. Routes decide whether they
/// need it (`requireIdentity`). REST never reads `?token=` (tokens do not belong in access logs).
struct AuthMiddleware: RouterMiddleware {
    let auth: Authenticator

    func handle(_ request: Request, context: AIIMRequestContext, next: (Request, AIIMRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw AIIMError(.unauthorized, "Authorization must be 'Bearer <token>'")
            }
            context.identity = try await auth.verify(String(parts[1]).trimmingCharacters(in: .whitespaces))
        }
        return try await next(request, context)
    }
}
