import AIIMBackendKit
import AIIMJSON
import AIIMServiceKit
import Foundation
import GatewayCore
import MessagingCore
import NIOConcurrencyHelpers
import Prometheus
import ServiceLifecycle
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Gateways and messaging replicas running in this process against the test Redis and
/// PostgreSQL, each gateway on its own port, so tests talk to them like clients do.
final class Stack: Sendable {
    let gateways: [Gateway]
    let ports: [Int]
    let messaging: [MessagingService]
    let group: ServiceGroup
    let runner: Task<Void, any Error>

    static func start(gateways: Int = 1, messaging: Int = 1, env: [String: String] = [:]) async throws -> Stack {
        TestLog.bootstrap()
        // Load tests send faster than a person; the rate limit has its own test. So do the
        // per-user connection cap (shared by every test's gateways through presence) and the
        // failed-authentication limit (GatewayLimitsTests).
        let extra = ["RATE_LIMIT_PER_SEC": "0", "WS_MAX_CONNECTIONS_PER_USER": "100000", "AUTH_FAILURES_PER_SEC": "0"]
            .merging(env) { $1 }
        var gws: [Gateway] = []
        var ports: [Int] = []
        for i in 0..<gateways {
            let port = freePort()
            let env = try TestEnv.serviceEnvironment(extra.merging(["HTTP_PORT": "\(port)", "INSTANCE_ID": uniqueName("gw\(i)")]) { $1 })
            gws.append(try await Gateway(config: try GatewayConfiguration(env: env), registry: PrometheusCollectorRegistry()))
            ports.append(port)
        }
        var ms: [MessagingService] = []
        for i in 0..<messaging {
            let env = try TestEnv.serviceEnvironment(extra.merging(["INSTANCE_ID": uniqueName("msg\(i)")]) { $1 })
            ms.append(try buildMessaging(env: env, registry: PrometheusCollectorRegistry()))
        }
        let services: [any Service] = try gws.flatMap { $0.services() } + ms.flatMap { try $0.services() }
        let group = ServiceGroup(configuration: .init(services: services, logger: TestLog.logger))
        let runner = Task { try await group.run() }
        let stack = Stack(gateways: gws, ports: ports, messaging: ms, group: group, runner: runner)
        // Ready when each gateway answers and messaging has migrated.
        for port in ports {
            _ = try await eventually(timeout: .seconds(30)) { (try? await stack.http("GET", port: port, "/healthz").status) == 200 }
        }
        for m in ms {
            _ = try await eventually(timeout: .seconds(30)) { m.runtime.readiness.isUp("migrations") }
        }
        return stack
    }

    private init(gateways: [Gateway], ports: [Int], messaging: [MessagingService], group: ServiceGroup, runner: Task<Void, any Error>) {
        self.gateways = gateways; self.ports = ports; self.messaging = messaging; self.group = group; self.runner = runner
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await runner.value
        for g in gateways { await g.shutdown() }
        for m in messaging { await m.runtime.shutdown() }
    }

    func token(_ user: String, tenant: String = "t1") async throws -> String {
        try await gateways[0].auth.mint(user: user, tenant: tenant, ttl: .seconds(600))
    }

    /// A REST call; returns status and JSON body (`.null` when empty).
    func http(_ method: String, port: Int? = nil, _ path: String, token: String? = nil, body: JSONValue? = nil,
              rawBody: String? = nil) async throws -> (status: Int, json: JSONValue) {
        var req = URLRequest(url: URL(string: "http://127.0.0.1:\(port ?? ports[0])\(path)")!)
        req.httpMethod = method
        if let token { req.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body { req.httpBody = Data(body.jsonString().utf8); req.setValue("application/json", forHTTPHeaderField: "Content-Type") }
        if let rawBody { req.httpBody = Data(rawBody.utf8) }
        let (data, response) = try await URLSession.shared.data(for: req)
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        let json = (try? JSONDecoder().decode(JSONValue.self, from: data)) ?? .null
        return (status, json)
    }

    /// Creates a conversation as `owner` with `members`; returns its id.
    func conversation(owner: String, members: [String], type: String = "group") async throws -> String {
        let r = try await http("POST", "/api/aiim/conversations", token: try await token(owner),
                               body: .object(["type": .string(type), "name": .string("test"),
                                              "member_ids": .array(members.map { .string($0) })]))
        #expect(r.status == 200, "create conversation: \(r.json)")
        return try #require(r.json["conversation_id"]?.stringValue)
    }
}
