import AIIMServiceKit
import AIIMShared
import Prometheus
import ServiceLifecycle

/// The media service: consumes `aiim:cmd:media`.
public struct MediaService: Sendable {
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
            throw AIIMError(.unknownType, "media does not handle \(env.header.type)")
        }
    }
}

/// Builds the media service from the environment (tests call this too).
public func buildMedia(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> MediaService {
    let config = try CommonConfiguration(service: .media, env: env, requireDatabase: true)
    return MediaService(runtime: try BackendRuntime(config: config, registry: registry))
}
