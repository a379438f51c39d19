import AIIMConfiguration
import AIIMPostgres
import AIIMProtocol
import AIIMServiceKit
import Prometheus
import ServiceLifecycle

/// A backend (messaging, media, calls): the service whose command stream it consumes, how it is
/// built from the runtime and its own settings, the commands it handles, and what else it runs.
/// `BackendMain.run` runs one as a process; tests call `build` and `services()`.
public protocol BackendService: Sendable {
    /// Which service this is; names its command stream, logs and metrics.
    static var name: ServiceName { get }
    /// Readiness components beyond redis, database and migrations (e.g. `storage`).
    static var readinessComponents: [String] { get }
    /// This service's own migrations (its target's `Migrations` resources).
    static func migrations() throws -> [Migration]

    /// Builds the service on `runtime`, reading its own settings from `env` (once).
    init(runtime: BackendRuntime, env: Environment) throws
    var runtime: BackendRuntime { get }

    /// Registers a handler for each command this service handles.
    func routes(_ router: inout CommandRouter) throws
    /// Long-running loops besides the consumer (reapers, sweepers, timers).
    var extraServices: [any Service] { get }
    /// Readiness checks beyond redis and database, by component name.
    var readinessChecks: [(String, DependencyMonitor.Check)] { get }
    /// Releases what the service holds, then the runtime's pools.
    func shutdown() async
}

extension BackendService {
    public static var readinessComponents: [String] { [] }
    public var extraServices: [any Service] { [] }
    public var readinessChecks: [(String, DependencyMonitor.Check)] { [] }
    public func shutdown() async { await runtime.shutdown() }

    /// The command router with this service's routes.
    public func router() throws -> CommandRouter {
        var router = CommandRouter(service: Self.name)
        try routes(&router)
        return router
    }

    /// Everything the process runs, in dependency order: monitor, HTTP, bus client, the extra
    /// services, then migrations followed by the command consumer.
    public func services() throws -> [any Service] {
        runtime.services(handler: try router().handler, extraChecks: readinessChecks, extraServices: extraServices)
    }

    /// Builds the service from configuration already read from `env`.
    public static func build(config: CommonConfiguration, env: Environment, registry: PrometheusCollectorRegistry) throws -> Self {
        let runtime = try BackendRuntime(config: config, registry: registry, migrations: try migrations(),
                                         extraReadiness: readinessComponents)
        return try Self(runtime: runtime, env: env)
    }

    /// Builds the service from the environment (tests call this too).
    public static func build(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> Self {
        try build(config: try CommonConfiguration(service: name, env: env, requireDatabase: true), env: env, registry: registry)
    }
}

/// The one entry point of every backend executable:
///
///     ProcessBootstrap.runTasksOnEventLoops()
///     await BackendMain.run(MessagingService.self)
public enum BackendMain {
    /// Reads the environment once, bootstraps logging and metrics, builds the service and runs
    /// it until SIGTERM/SIGINT, then shuts it down. A bad setting ends the process with exit 78
    /// before anything starts (`ServiceMain.refuse`).
    public static func run<S: BackendService>(_: S.Type, env: Environment = Environment()) async {
        let service: S
        let services: [any Service]
        do {
            let config = try CommonConfiguration(service: S.name, env: env, requireDatabase: true)
            let registry = ProcessBootstrap.run(service: S.name, config: config)
            service = try S.build(config: config, env: env, registry: registry)
            services = try service.services()
        } catch {
            ServiceMain.refuse("aiim-\(S.name.rawValue)", error)
        }
        await ServiceMain.run(services, logger: service.runtime.logger)
        await service.shutdown()
    }
}
