import AIIMServiceKit
import AIIMShared
import Prometheus
import ServiceLifecycle

/// The calls service: consumes `aiim:cmd:calls`.
public struct CallsService: Sendable {
    public let runtime: BackendRuntime

    public init(runtime: BackendRuntime) {
        self.runtime = runtime
    }

    public func services() -> [any Service] {
        runtime.services(handler: { env in try await handle(env) })
    }

    func handle(_ env: Envelope) async throws -> [UInt8]? {
        switch env.header.type {
        default:
            throw AIIMError(.unknownType, "calls does not handle \(env.header.type)")
        }
    }
}

/// Builds the calls service from the environment (tests call this too).
public func buildCalls(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> CallsService {
    let config = try CommonConfiguration(service: .calls, env: env, requireDatabase: true)
    return CallsService(runtime: try BackendRuntime(config: config, registry: registry))
}
