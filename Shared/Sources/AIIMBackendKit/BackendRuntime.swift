import AIIMConfiguration
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import Foundation
import Hummingbird
import Logging
import Metrics
import Prometheus
import ServiceLifecycle
import UnixSignals

/// The parts every backend service (messaging, media, calls) runs: Redis and PostgreSQL pools,
/// readiness monitoring, the observability HTTP server, migrations and the command consumer.
public struct BackendRuntime: Sendable {
    public let config: CommonConfiguration
    public let logger: Logger
    public let redis: RedisClient
    public let postgres: PostgresClient
    public let readiness: Readiness
    /// For commands this service sends to another one (e.g. calls → messaging).
    public let bus: BusClient
    public let registry: PrometheusCollectorRegistry
    /// Where delivery events for devices go.
    public let events: EventPublisher
    /// This service's own migrations (`BackendService.migrations()`), applied before the consumer starts.
    public let migrations: [Migration]
    public var origin: String { "\(config.service.rawValue)/\(config.instanceID)" }

    public init(config: CommonConfiguration, registry: PrometheusCollectorRegistry, migrations: [Migration],
                extraReadiness: [String] = []) throws {
        self.config = config
        self.registry = registry
        self.migrations = migrations
        var logger = Logger(label: "aiim.\(config.service.rawValue)")
        logger.logLevel = Logger.Level(rawValue: config.logLevel) ?? .info
        self.logger = logger
        redis = try RedisClient(url: config.redisURL, poolSize: config.redisPoolSize,
                                tls: RedisTLSFiles(caFile: config.redisTLSCAFile, certificateFile: config.redisTLSCertFile,
                                                   keyFile: config.redisTLSKeyFile),
                                logger: logger)
        guard let dbURL = config.databaseURL else { throw ConfigurationError("DATABASE_URL is required") }
        postgres = try PostgresClient(url: dbURL, poolSize: config.databasePoolSize,
                                      statementTimeoutMillis: config.queryTimeoutMillis, logger: logger)
        readiness = Readiness(components: ["redis", "database", "migrations"] + extraReadiness)
        bus = BusClient(redis: redis, instance: config.instanceID, maxLength: config.streamMaxLength, logger: logger)
        events = EventPublisher(redis: redis, maxLength: config.streamMaxLength,
                                origin: "\(config.service.rawValue)/\(config.instanceID)")
    }

    /// Publishes a delivery event for devices on the shared events stream.
    public func publish(_ event: DeliveryEvent) async throws {
        try await events.publish(event)
    }

    /// Publishes several delivery events in one round trip, in the given order, each under its
    /// own request's trace.
    public func publish(_ events: [(event: DeliveryEvent, trace: Trace?)]) async throws {
        try await self.events.publish(events)
    }

    /// The services to run, in start order (shutdown runs in reverse: the consumer drains first,
    /// then the HTTP server and monitor stop).
    public func services(
        handler: @escaping CommandHandler, extraChecks: [(String, DependencyMonitor.Check)] = [],
        extraServices: [any Service] = []
    ) -> [any Service] {
        let router = Router()
        ObservabilityRoutes.add(to: router, service: config.service.rawValue, instance: config.instanceID,
                                readiness: readiness, registry: registry)
        let http = Application(
            router: router,
            configuration: .init(address: .hostname(config.httpHost, port: config.httpPort),
                                 serverName: "aiim-\(config.service.rawValue)"),
            logger: logger)
        let base: [(String, DependencyMonitor.Check)] = [
            ("redis", { [redis] in try await redis.ping() }),
            ("database", { [postgres] in try await postgres.ping() }),
        ]
        let monitor = DependencyMonitor(readiness: readiness, checks: base + extraChecks, logger: logger)
        let consumer = StreamConsumer(
            redis: redis, settings: ConsumerSettings(service: config.service, config: config), origin: origin,
            logger: logger, handler: handler)
        let migrateThenConsume = MigrateThenRun(runtime: self, next: consumer)
        let budget = StreamBudget(
            redis: redis, streams: [StreamNames.events, StreamNames.deadLetter], budgetBytes: config.redisMemoryBudgetBytes,
            interval: .milliseconds(config.redisMemoryCheckMillis), logger: logger
        ) { [readiness] in readiness.setDetail("redis_memory", $0.json) }
        return [monitor, http, bus, budget] + extraServices + [migrateThenConsume]
    }

    /// Applies this service's migrations, retrying with backoff until PostgreSQL is reachable and
    /// the versions they `require` of other services are applied (`MigrationWaiting`).
    public func migrate() async throws {
        var backoff = Backoff(base: .milliseconds(200), cap: .seconds(5))
        while true {
            do {
                try await Migrator.run(migrations, on: postgres, logger: logger)
                readiness.set("migrations", down: nil)
                return
            } catch let e as ConfigurationError {
                throw e
            } catch {
                readiness.set("migrations", down: "migrations not applied yet")
                if error is MigrationWaiting {
                    logger.notice("waiting for another service's migration", metadata: ["error": "\(error)"])
                } else {
                    logger.warning("cannot migrate yet; retrying", metadata: ["error": "\(error)"])
                }
                if Task.isShuttingDownGracefully || Task.isCancelled { throw CancellationError() }
                try? await Task.sleep(for: backoff.next())
            }
        }
    }

    public func shutdown() async {
        await redis.shutdown()
        await postgres.shutdown()
    }
}

/// Runs this service's migrations before the command consumer starts taking work.
struct MigrateThenRun: Service {
    let runtime: BackendRuntime
    let next: any Service
    func run() async throws {
        try await runtime.migrate()
        try await next.run()
    }
}


extension ConsumerSettings {
    /// A backend's settings for its own command stream, from the common configuration.
    public init(service: ServiceName, config: CommonConfiguration) {
        self.init(stream: StreamNames.commands(service), group: StreamNames.group(service),
                  consumer: config.instanceID, concurrency: config.consumerConcurrency,
                  maxAttempts: config.maxAttempts, reclaimIdle: .milliseconds(config.reclaimIdleMillis),
                  maxLength: config.streamMaxLength)
    }
}

/// Publishes delivery events for devices on the shared events stream (`aiim:events`), which
/// every gateway reads.
public struct EventPublisher: Sendable {
    let redis: RedisClient
    let maxLength: Int
    /// `service/instance`, written on every event.
    let origin: String

    public init(redis: RedisClient, maxLength: Int, origin: String) {
        self.redis = redis; self.maxLength = maxLength; self.origin = origin
    }

    /// Publishes one event.
    public func publish(_ event: DeliveryEvent) async throws {
        try await redis.xadd(StreamNames.events, maxLen: maxLength, envelope: event.envelope(trace: nil, origin: origin))
    }

    /// Publishes several events in one round trip, in the given order, each under its own
    /// request's trace.
    public func publish(_ events: [(event: DeliveryEvent, trace: Trace?)]) async throws {
        let commands = try events.map {
            RedisClient.xaddCommand(StreamNames.events, maxLen: maxLength, envelope: try $0.event.envelope(trace: $0.trace, origin: origin))
        }
        for r in try await redis.pipeline(commands) {
            if case .error(let e) = r { throw RedisError(.server, e) }
        }
    }
}
