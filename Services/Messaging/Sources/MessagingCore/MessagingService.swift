import AIIMRedis
import AIIMServiceKit
import AIIMShared
import Foundation
import Logging
import Prometheus
import ServiceLifecycle

/// The messaging service: consumes `aiim:cmd:messaging`, owns conversations, messages, receipts
/// and AI streams in PostgreSQL, and publishes delivery events for the gateways.
public struct MessagingService: Sendable {
    public let runtime: BackendRuntime

    public init(runtime: BackendRuntime) {
        self.runtime = runtime
    }

    /// Everything the process runs, in dependency order.
    public func services() -> [any Service] {
        runtime.services(handler: { env in try await handle(env) })
    }

    /// Routes one command by its envelope type.
    func handle(_ env: Envelope) async throws -> [UInt8]? {
        switch env.header.type {
        case PingCommand.type:
            let cmd = try env.decode(PingCommand.self)
            runtime.logger.info("ping", metadata: ["note": "\(cmd.note ?? "")"])
            return try encode(Pong(service: "messaging", instance: runtime.config.instanceID, note: cmd.note))
        default:
            throw AIIMError(.unknownType, "messaging does not handle \(env.header.type)")
        }
    }

    func encode(_ v: some Encodable) throws -> [UInt8] {
        Array(try JSONCoding.encoder.encode(v))
    }
}

/// Builds the messaging service from the environment (tests call this too).
public func buildMessaging(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> MessagingService {
    let config = try CommonConfiguration(service: .messaging, env: env, requireDatabase: true)
    return MessagingService(runtime: try BackendRuntime(config: config, registry: registry))
}
