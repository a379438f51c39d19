import AIIMConfiguration
import AIIMProtocol
import Foundation
import Logging
import Metrics
import NIOCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import UnixSignals

/// Bootstraps process-wide logging and metrics; call once from `main`.
public enum ProcessBootstrap {
    /// Runs Swift Concurrency's tasks on NIO's event loops (the threads that already do the
    /// sockets) instead of a second pool, so a message moves between tasks and sockets without
    /// a thread hand-off at each step. Call first thing in `main`, on the main thread. Safe
    /// because no task blocks: PostgreSQL calls run on their own thread pool.
    ///
    /// `EVENT_LOOP_THREADS` (1-256, default: one per core) sets how many event loops there are.
    /// Where several services share few cores, one each is cheaper: every hop between two loops
    /// of one process is a wake-up of another thread (measured in Benchmarks/README.md).
    public static func runTasksOnEventLoops(env: Environment = Environment()) {
        do {
            if env.string("EVENT_LOOP_THREADS") != nil {
                let threads = try env.int("EVENT_LOOP_THREADS", default: 0)
                guard (1...256).contains(threads) else { throw ConfigurationError("EVENT_LOOP_THREADS must be 1...256") }
                NIOSingletons.groupLoopCountSuggestion = threads
            }
        } catch {
            ServiceMain.refuse(CommandLine.arguments.first.map { ($0 as NSString).lastPathComponent } ?? "aiim", error)
        }
        NIOSingletons.unsafeTryInstallSingletonPosixEventLoopGroupAsConcurrencyGlobalExecutor()
    }

    public static func run(service: ServiceName, config: CommonConfiguration) -> PrometheusCollectorRegistry {
        JSONLogHandler.bootstrap(service: service.rawValue, instance: config.instanceID, level: config.logLevel)
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))
        return registry
    }
}

/// Runs a service group until SIGTERM/SIGINT, draining within `maximumGracefulShutdownDuration`.
public enum ServiceMain {
    /// A service that fails (its port is taken, say) ends the process with status 1 and one
    /// `critical` log line saying why, not a crash report.
    public static func run(_ services: [any Service], logger: Logger, drain: Duration = .seconds(20)) async {
        var configuration = ServiceGroupConfiguration(
            services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
        configuration.maximumGracefulShutdownDuration = drain
        do {
            try await ServiceGroup(configuration: configuration).run()
        } catch {
            logger.critical("stopped by an error", metadata: ["error": "\(error)"])
            exit(1)
        }
    }

    /// Prints a configuration error and exits with EX_CONFIG (78): the service refuses to start.
    public static func refuse(_ program: String, _ error: any Error) -> Never {
        FileHandle.standardError.write(Data("\(program): refusing to start: \(error)\n".utf8))
        exit(78)
    }
}
