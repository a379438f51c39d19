import AIIMBackendKit
import AIIMConfiguration
import AIIMJSON
import AIIMProtocol
import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MessagingCore
import NIOCore
import Prometheus
import ServiceLifecycle
import Testing

/// The foundation slice: a REST request travels gateway → messaging → gateway over Redis
/// streams under one trace id.
@Suite(.serialized) struct GatewaySliceTests {
    init() { TestLog.bootstrap() }

    func makeGateway() async throws -> Gateway {
        let env = try TestEnv.serviceEnvironment(["INSTANCE_ID": uniqueName("gateway")])
        return try await Gateway(config: try GatewayConfiguration(env: env), registry: PrometheusCollectorRegistry())
    }

    @Test func refusesMissingOrWeakSecret() throws {
        var v = try TestEnv.serviceEnvironment().values
        v["JWT_SECRET"] = nil
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration(env: Environment(v)) }
        v["JWT_SECRET"] = "short-secret"
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration(env: Environment(v)) }
        v["JWT_SECRET"] = "change_me_change_me_change_me_change_me"
        #expect(throws: ConfigurationError.self) { try GatewayConfiguration(env: Environment(v)) }
    }

    @Test func pingTravelsThroughMessagingWithOneTraceID() async throws {
        let gateway = try await makeGateway()
        let messaging = try buildMessaging(env: try TestEnv.serviceEnvironment(["INSTANCE_ID": uniqueName("messaging")]),
                                           registry: PrometheusCollectorRegistry())
        let token = try await gateway.auth.mint(user: "alice", tenant: "t1", ttl: .seconds(60))
        let app = Application(router: gateway.buildRouter())
        let group = ServiceGroup(configuration: .init(services: try messaging.services() + [gateway.bus], logger: TestLog.logger))
        try await withThrowingTaskGroup(of: Void.self) { tg in
            tg.addTask { try await group.run() }
            try await app.test(.router) { client in
                let incoming = Trace.root()
                try await client.execute(
                    uri: "/api/aiim/bus/ping", method: .get,
                    headers: [.authorization: "Bearer \(token)", HTTPField.Name("traceparent")!: incoming.traceparent]
                ) { response in
                    #expect(response.status == .ok)
                    let traceID = response.headers[HTTPField.Name("X-Trace-Id")!]
                    #expect(traceID == incoming.traceID, "the incoming traceparent is continued")
                    let body = try JSONDecoder().decode(JSONValue.self, from: Data(response.body.readableBytesView))
                    #expect(body["service"]?.stringValue == "messaging")
                    let lines = TestLog.lines(withTrace: incoming.traceID)
                    #expect(lines.contains { $0.label == "aiim.messaging" }, "messaging logged under the trace")
                    #expect(lines.contains { $0.message == "request" }, "the gateway's request log line carries the trace")
                }
                try await client.execute(uri: "/api/aiim/bus/ping", method: .get) { response in
                    #expect(response.status == .unauthorized)
                    let body = try JSONDecoder().decode(JSONValue.self, from: Data(response.body.readableBytesView))
                    #expect(body["error"]?["code"]?.stringValue == "unauthorized")
                    #expect(response.headers[HTTPField.Name("X-Trace-Id")!] != nil)
                }
                try await client.execute(uri: "/api/aiim/bus/ping", method: .get,
                                         headers: [.authorization: "Bearer not.a.token"]) { response in
                    #expect(response.status == .unauthorized)
                }
            }
            await group.triggerGracefulShutdown()
            try await tg.waitForAll()
        }
        await gateway.shutdown()
        await messaging.runtime.shutdown()
    }

    @Test func expiredAndForgedTokensAreRefused() async throws {
        let gateway = try await makeGateway()
        let expired = try await gateway.auth.mint(user: "alice", tenant: "t1", ttl: .seconds(-10))
        await #expect(throws: AIIMError.self) { try await gateway.auth.verify(expired) }
        let other = await Authenticator(secret: String(repeating: "z", count: 40), issuer: nil, defaultTenant: "d")
        let forged = try await other.mint(user: "alice", tenant: "t1", ttl: .seconds(60))
        await #expect(throws: AIIMError.self) { try await gateway.auth.verify(forged) }
        // alg "none" with no signature.
        let header = Data(#"{"alg":"none","typ":"JWT"}"#.utf8).base64EncodedString()
        let payload = Data(#"{"sub":"alice","exp":9999999999}"#.utf8).base64EncodedString()
        await #expect(throws: AIIMError.self) { try await gateway.auth.verify("\(header).\(payload).") }
        let good = try await gateway.auth.mint(user: "alice", tenant: "t1", ttl: .seconds(60))
        let identity = try await gateway.auth.verify(good)
        #expect(identity.userID == "alice" && identity.tenantID == "t1" && !identity.isBot)
        #expect(identity.expiresAt.map { abs($0.timeIntervalSinceNow - 60) < 5 } == true, "the token's exp travels with the identity")
        await gateway.shutdown()
    }

    @Test func observabilityRoutesAnswer() async throws {
        let gateway = try await makeGateway()
        let app = Application(router: gateway.buildRouter())
        try await app.test(.router) { client in
            try await client.execute(uri: "/healthz", method: .get) { #expect($0.status == .ok) }
            // Nothing has checked Redis yet: not ready, with the reason.
            try await client.execute(uri: "/ready", method: .get) { response in
                #expect(response.status == .serviceUnavailable)
                let body = try JSONDecoder().decode(JSONValue.self, from: Data(response.body.readableBytesView))
                #expect(body["reasons"]?["redis"] != nil)
            }
            try await client.execute(uri: "/metrics", method: .get) { #expect($0.status == .ok) }
            try await client.execute(uri: "/health", method: .get) { #expect($0.status == .ok) }
        }
        await gateway.shutdown()
    }
}
