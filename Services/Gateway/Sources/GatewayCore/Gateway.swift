import AIIMJSON
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOConcurrencyHelpers
import NIOCore
import Prometheus
import ServiceLifecycle

/// Per-request state: who is calling (set by `AuthMiddleware`).
public struct AIIMRequestContext: RequestContext, WebSocketRequestContext {
    public var coreContext: CoreRequestContextStorage
    public var identity: Identity?
    public let webSocket: WebSocketHandlerReference<Self>
    /// Carries the identity verified at the upgrade into the WebSocket handler.
    let webSocketIdentity = NIOLockedValueBox<Identity?>(nil)
    /// The connection's NIO channel: after an upgrade, WebSocket frames are written to it
    /// directly, several per flush (`SocketOutbox`).
    let channel: any Channel

    public init(source: Source) {
        coreContext = .init(source: source)
        webSocket = .init()
        channel = source.channel
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
    let hub: ConnectionHub
    /// Follows the shared events stream and delivers to this gateway's sockets.
    let events: StreamTail
    let presence: PresenceTracker
    let apiKeyCache = NIOLockedValueBox<[String: (Identity, ContinuousClock.Instant)]>([:])
    let frameLimiter: FrameRateLimiter

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
        presence = PresenceTracker(redis: redis, instance: config.common.instanceID)
        frameLimiter = FrameRateLimiter(perSecond: config.rateLimitPerSecond)
        let box = NIOLockedValueBox<Gateway?>(nil)
        hub = ConnectionHub(logger: logger, bus: bus) { c, conv, cursor in
            await box.withLockedValue { $0 }?.gapFrames(c, conv, cursor) ?? []
        }
        events = StreamTail(redis: redis, stream: StreamNames.events, logger: logger) { [hub] entries in
            await hub.dispatch(entries)
        }
        box.withLockedValue { $0 = self }
    }

    /// A user token (JWT) or an AI agent's API key (`aiim_...`), as an identity.
    func authenticate(_ token: String) async throws -> Identity {
        guard token.hasPrefix(APIKeys.prefix) else { return try await auth.verify(token) }
        let hash = APIKeys.hash(token)
        if let (identity, at) = apiKeyCache.withLockedValue({ $0[hash] }), ContinuousClock.now - at < .seconds(60) {
            return identity
        }
        let actor = try await bus.request(VerifyAPIKey(keyHash: hash), timeout: busTimeout)
        let identity = Identity(userID: actor.userID, tenantID: actor.tenantID, isBot: true)
        apiKeyCache.withLockedValue { cache in
            if cache.count > 10_000 { cache.removeAll() }
            cache[hash] = (identity, .now)
        }
        return identity
    }

    var busTimeout: Duration { .milliseconds(config.busTimeoutMillis) }

    /// The HTTP router with every route (tests drive it with `app.test(.router)`).
    public func buildRouter() -> Router<AIIMRequestContext> {
        let router = Router(context: AIIMRequestContext.self)
        router.add(middleware: SecurityHeadersMiddleware(allowedOrigins: config.allowedOrigins, enableCORS: config.enableCORS))
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: TraceMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: RequestLogMiddleware())
        ObservabilityRoutes.add(to: router, service: "gateway", instance: config.common.instanceID,
                                readiness: readiness, registry: registry)
        router.get("/") { _, _ in
            ObservabilityRoutes.jsonResponse(.ok, .object([
                "service": .string("AIIM"), "version": .string(ObservabilityRoutes.version), "status": .string("running"),
                "docs": .string("/openapi.json"),
            ]))
        }
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: OpenAPI.document)))
        }
        addWebSocketRoute(to: router)
        let api = router.group("api/aiim")
            .add(middleware: AuthMiddleware(gateway: self))
            .add(middleware: RateLimitMiddleware(redis: redis, limit: config.rateLimitPerSecond))
        addMessagingRoutes(to: api)
        api.get("bus/ping") { _, context in
            _ = try context.requireIdentity()
            let pong = try await bus.request(PingCommand(note: "ping"), timeout: busTimeout)
            return ObservabilityRoutes.jsonResponse(.ok, .object([
                "service": .string(pong.service), "instance": .string(pong.instance),
                "trace_id": .string(Trace.current?.traceID ?? ""),
            ]))
        }
        addMediaRoutes(to: api)
        addCallRoutes(to: api)
        return router
    }

    /// The HTTP application (a `Service`).
    public func buildApplication() -> some ApplicationProtocol {
        let router = buildRouter()
        return Application(
            router: router,
            server: .http1WebSocketUpgrade(webSocketRouter: router, configuration: .init(
                ws: .init(maxFrameSize: config.maxFrameBytes, autoPing: .disabled, validateUTF8: true))),
            configuration: .init(address: .hostname(config.common.httpHost, port: config.common.httpPort),
                                 serverName: "aiim-gateway"),
            logger: logger)
    }

    /// Follows the shared events stream and delivers to this gateway's sockets.
    public func eventsService() -> some Service { events }

    /// Everything the gateway process runs.
    public func services() -> [any Service] {
        let monitor = DependencyMonitor(
            readiness: readiness, checks: [("redis", { [redis] in try await redis.ping() })], logger: logger)
        return [monitor, bus, eventsService(), buildApplication()]
    }

    public func shutdown() async {
        await redis.shutdown()
    }
}

/// Reads `Authorization: Bearer <jwt>` into `context.identity`. Routes decide whether they
/// need it (`requireIdentity`). REST never reads `?token=` (tokens do not belong in access logs).
struct AuthMiddleware: RouterMiddleware {
    let gateway: Gateway

    func handle(_ request: Request, context: AIIMRequestContext, next: (Request, AIIMRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw AIIMError(.unauthorized, "Authorization must be 'Bearer <token>'")
            }
            context.identity = try await gateway.authenticate(String(parts[1]).trimmingCharacters(in: .whitespaces))
        }
        return try await next(request, context)
    }
}
