import AIIMJSON
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import Hummingbird
import HummingbirdWebSocket
import Logging
import NIOCore
import Prometheus
import ServiceLifecycle

/// The gateway: the REST and WebSocket edge. It authenticates, validates and rate-limits,
/// forwards commands to the backend services over Redis streams (`Backends`), and delivers
/// their events to its sockets (`DeliveryHub`). Routes live in `HTTP/` (a controller per
/// backend), the WebSocket side in `WebSocket/`.
public struct Gateway: Sendable {
    public let config: GatewayConfiguration
    public let logger: Logger
    public let redis: RedisClient
    public let bus: BusClient
    public let backends: Backends
    /// Verifies and mints user tokens (JWT).
    public let auth: Authenticator
    public let credentials: Credentials
    /// Limits failed credential checks per client address (`AUTH_FAILURES_PER_SEC`).
    let credentialGuard: CredentialGuard
    public let readiness: Readiness
    public let registry: PrometheusCollectorRegistry
    let hub: DeliveryHub
    /// Follows the shared events stream and delivers to this gateway's sockets.
    let events: StreamTail
    let presence: PresenceTracker
    let frameLimiter: FrameRateLimiter
    /// `WS_MAX_CONNECTIONS`, `WS_MAX_CONNECTIONS_PER_USER`.
    let connectionLimits: ConnectionLimits

    public init(config: GatewayConfiguration, registry: PrometheusCollectorRegistry) async throws {
        self.config = config
        self.registry = registry
        var logger = Logger(label: "aiim.gateway")
        logger.logLevel = Logger.Level(rawValue: config.common.logLevel) ?? .info
        self.logger = logger
        redis = try RedisClient(url: config.common.redisURL, poolSize: config.common.redisPoolSize,
                                tls: RedisTLSFiles(caFile: config.common.redisTLSCAFile, certificateFile: config.common.redisTLSCertFile,
                                                   keyFile: config.common.redisTLSKeyFile),
                                logger: logger)
        bus = BusClient(redis: redis, instance: config.common.instanceID, maxLength: config.common.streamMaxLength, logger: logger)
        backends = Backends(bus: bus, timeout: .milliseconds(config.busTimeoutMillis))
        auth = await Authenticator(secret: config.jwtSecret, issuer: config.jwtIssuer, defaultTenant: config.defaultTenant)
        let credentials = Credentials(tokens: auth, backends: backends)
        self.credentials = credentials
        credentialGuard = CredentialGuard(credentials: credentials, perSecond: config.authFailuresPerSecond,
                                          trustedProxies: try TrustedProxies(config.trustedProxies))
        readiness = Readiness(components: ["redis"])
        presence = PresenceTracker(redis: redis, instance: config.common.instanceID,
                                   ttlSeconds: config.pingTimeoutSeconds + config.pingIntervalSeconds)
        frameLimiter = FrameRateLimiter(perSecond: config.rateLimitPerSecond)
        connectionLimits = ConnectionLimits(maxPerGateway: config.maxConnections, maxPerUser: config.maxConnectionsPerUser,
                                            presence: presence, logger: logger)
        hub = DeliveryHub(logger: logger, backends: backends, forgetKey: { credentials.forget(apiKeyHash: $0) })
        events = StreamTail(redis: redis, stream: StreamNames.events, logger: logger) { [hub] entries in
            await hub.dispatch(entries)
        }
    }

    /// The WebSocket frames this gateway handles.
    var frames: FrameRouter {
        var router = FrameRouter()
        router.addMessagingFrames(backends: backends, hub: hub, followsEvents: { [events] in events.isFollowing })
        router.addCallFrames(backends: backends)
        router.addGenerationFrames(backends: backends, hub: hub)
        return router
    }

    /// The HTTP router with every route (tests drive it with `app.test(.router)`).
    public func buildRouter() -> Router<AIIMRequestContext> {
        let router = Router(context: AIIMRequestContext.self)
        router.add(middleware: UpgradeRefusalMiddleware())
        router.add(middleware: SecurityHeadersMiddleware(allowedOrigins: config.allowedOrigins, enableCORS: config.enableCORS))
        router.add(middleware: ErrorMiddleware())
        router.add(middleware: TraceMiddleware())
        router.add(middleware: MetricsMiddleware())
        router.add(middleware: RequestLogMiddleware())
        ObservabilityRoutes.add(to: router, service: "gateway", instance: config.common.instanceID,
                                readiness: readiness, registry: registry)
        let web = WebClient()
        web.add(to: router)
        router.get("/") { request, _ in
            if WebClient.wantsHTML(request), web.assets["index.html"] != nil {
                return try web.response("index.html", request: request)
            }
            return ObservabilityRoutes.jsonResponse(.ok, .object([
                "service": .string("AIIM"), "version": .string(ObservabilityRoutes.version), "status": .string("running"),
                "docs": .string("/openapi.json"), "dev_login": .bool(config.devLogin),
            ]))
        }
        let openAPI = config.devLogin ? OpenAPI.devLoginDocument : OpenAPI.document
        router.get("/openapi.json") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: openAPI)))
        }
        let sessions = SessionServices(config: config, backends: backends, hub: hub, presence: presence, frames: frames,
                                       limiter: frameLimiter, limits: connectionLimits,
                                       generationLimiter: FrameRateLimiter(perSecond: config.generationDeltaFramesPerSecond))
        WebSocketEndpoint(credentials: credentialGuard, services: sessions).add(to: router)
        if config.devLogin {
            DevLogin(auth: auth, tenant: config.defaultTenant)
                .add(to: router.group("api/aiim").add(middleware: BodyLimitMiddleware(maxBodyBytes: config.maxBodyBytes)))
        }

        let api = router.group("api/aiim")
            .add(middleware: BodyLimitMiddleware(maxBodyBytes: config.maxBodyBytes))
            .add(middleware: AuthMiddleware(credentials: credentialGuard))
            .group(context: AuthenticatedContext.self)
            .add(middleware: RateLimitMiddleware(redis: redis, limit: config.rateLimitPerSecond))
        api.addRoutes(ConversationsController(backends: backends).endpoints, atPath: "conversations")
        api.addRoutes(MessagesController(backends: backends, followsEvents: { [events] in events.isFollowing }).endpoints)
        api.addRoutes(ReceiptsController(backends: backends).endpoints, atPath: "receipts")
        api.addRoutes(APIKeysController(backends: backends).endpoints, atPath: "api_keys")
        api.addRoutes(PresenceController(presence: presence).endpoints, atPath: "presence")
        api.addRoutes(MediaController(backends: backends).endpoints, atPath: "media")
        api.addRoutes(CallsController(backends: backends).endpoints, atPath: "calls")
        api.addRoutes(GenerationsController(backends: backends).endpoints, atPath: "generations")
        api.get("bus/ping") { _, _ in
            let pong = try await backends.call(PingCommand(note: "ping"))
            return ObservabilityRoutes.jsonResponse(.ok, .object([
                "service": .string(pong.service), "instance": .string(pong.instance),
                "trace_id": .string(Trace.current?.traceID ?? ""),
            ]))
        }
        return router
    }

    /// The HTTP application (a `Service`).
    public func buildApplication() -> some ApplicationProtocol {
        let router = buildRouter()
        return Application(
            router: router,
            server: .gateway(webSocketRouter: router, configuration: .init(
                http1: .init(idleTimeout: .seconds(Int64(config.idleTimeoutSeconds))),
                ws: .init(maxFrameSize: config.maxFrameBytes, autoPing: .disabled, validateUTF8: true)),
                headerTimeout: .seconds(Int64(config.headerTimeoutSeconds))),
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
        // This gateway's reply stream is the one stream it writes to; the backends trim the shared ones.
        let budget = StreamBudget(
            redis: redis, streams: [bus.replyStream], budgetBytes: config.common.redisMemoryBudgetBytes,
            interval: .milliseconds(config.common.redisMemoryCheckMillis), logger: logger
        ) { [readiness] in readiness.setDetail("redis_memory", $0.json) }
        return [monitor, bus, budget, eventsService(), buildApplication()]
    }

    public func shutdown() async {
        await redis.shutdown()
    }
}
