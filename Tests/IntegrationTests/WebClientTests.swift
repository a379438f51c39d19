import AIIMJSON
import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore
import Prometheus
import Testing

/// The browser client served by the gateway (`HTTP/WebClient.swift`) and the development
/// sign-in (`DEV_LOGIN`). The client itself is tested in Chromium (`Tests/Browser`).
@Suite struct WebClientTests {
    init() { TestLog.bootstrap() }

    func makeGateway(_ extra: [String: String] = [:]) async throws -> Gateway {
        let env = try TestEnv.serviceEnvironment(["INSTANCE_ID": uniqueName("gateway")].merging(extra) { $1 })
        return try await Gateway(config: try GatewayConfiguration(env: env), registry: PrometheusCollectorRegistry())
    }

    func json(_ buffer: ByteBuffer) throws -> JSONValue {
        try JSONValue(parsing: Array(buffer.readableBytesView))
    }

    @Test func servesTheClientToBrowsersAndJSONToOthers() async throws {
        let gateway = try await makeGateway()
        try await Application(router: gateway.buildRouter()).test(.router) { client in
            try await client.execute(uri: "/", method: .get, headers: [.accept: "text/html,application/xhtml+xml"]) { r in
                #expect(r.status == .ok)
                #expect(r.headers[.contentType] == "text/html; charset=utf-8")
                #expect(r.headers[HTTPField.Name("Content-Security-Policy")!]?.contains("script-src 'self'") == true)
                #expect(String(buffer: r.body).contains(#"<script type="module" src="/web/app.js"></script>"#))
            }
            try await client.execute(uri: "/", method: .get, headers: [.accept: "application/json"]) { r in
                #expect(r.status == .ok)
                let body = try json(r.body)
                #expect(body["service"]?.stringValue == "AIIM")
                #expect(body["dev_login"] == .bool(false), "the dev sign-in is off by default")
            }
        }
        await gateway.shutdown()
    }

    @Test func assetsHaveTheirTypesAndRevalidate() async throws {
        let gateway = try await makeGateway()
        try await Application(router: gateway.buildRouter()).test(.router) { client in
            for (file, type) in [("app.js", "text/javascript; charset=utf-8"), ("call.js", "text/javascript; charset=utf-8"),
                                 ("style.css", "text/css; charset=utf-8")] {
                let etag = try await client.execute(uri: "/web/\(file)", method: .get) { r in
                    #expect(r.status == .ok, "\(file)")
                    #expect(r.headers[.contentType] == type)
                    #expect(r.headers[.cacheControl] == "no-cache")
                    #expect(r.headers[HTTPField.Name("X-Content-Type-Options")!] == "nosniff")
                    #expect(r.body.readableBytes > 0)
                    return r.headers[.eTag]
                }
                try await client.execute(uri: "/web/\(file)", method: .head) { r in
                    #expect(r.status == .ok && r.headers[.contentType] == type && r.body.readableBytes == 0, "HEAD \(file)")
                }
                let tag = try #require(etag)
                try await client.execute(uri: "/web/\(file)", method: .get, headers: [.ifNoneMatch: tag]) { r in
                    #expect(r.status == .notModified)
                    #expect(r.body.readableBytes == 0)
                }
            }
        }
        await gateway.shutdown()
    }

    @Test func onlyTheClientsOwnFilesAreServed() async throws {
        let gateway = try await makeGateway()
        try await Application(router: gateway.buildRouter()).test(.router) { client in
            for path in ["/web/..%2FHTTP%2FWebClient.swift", "/web/%2E%2E%2F%2E%2E%2FPackage.swift", "/web/../Gateway.swift",
                         "/web/missing.js", "/web/", "/web/%2Fetc%2Fpasswd", "/web/index.html%00.js"] {
                try await client.execute(uri: path, method: .get) { r in
                    #expect(r.status == .notFound, "\(path)")
                    #expect(!String(buffer: r.body).contains("import "), "\(path) leaks no source")
                }
            }
        }
        await gateway.shutdown()
    }

    @Test func devLoginIsOffByDefault() async throws {
        let gateway = try await makeGateway()
        try await Application(router: gateway.buildRouter()).test(.router) { client in
            try await client.execute(uri: "/api/aiim/dev/login", method: .post, headers: [.contentType: "application/json"],
                                     body: ByteBuffer(string: #"{"user":"mallory"}"#)) { r in
                #expect(r.status == .notFound)
                let code = try json(r.body)["error"]?["code"]?.stringValue
                #expect(code == "not_found")
                #expect(!String(buffer: r.body).contains("token"))
            }
        }
        await gateway.shutdown()
    }

    @Test func devLoginHandsOutATokenOfTheDefaultTenant() async throws {
        let gateway = try await makeGateway(["DEV_LOGIN": "true", "DEFAULT_TENANT": "dev-tenant"])
        try await Application(router: gateway.buildRouter()).test(.router) { client in
            try await client.execute(uri: "/", method: .get, headers: [.accept: "application/json"]) { r in
                let devLogin = try json(r.body)["dev_login"]
                #expect(devLogin == .bool(true))
            }
            let token = try await client.execute(uri: "/api/aiim/dev/login", method: .post, headers: [.contentType: "application/json"],
                                                 body: ByteBuffer(string: #"{"user":"carol.dev-1"}"#)) { r in
                #expect(r.status == .ok)
                let body = try json(r.body)
                #expect(body["user_id"]?.stringValue == "carol.dev-1")
                #expect(body["tenant_id"]?.stringValue == "dev-tenant")
                return body["token"]?.stringValue
            }
            let identity = try await gateway.auth.verify(try #require(token))
            #expect(identity.userID == "carol.dev-1" && identity.tenantID == "dev-tenant" && !identity.isBot)
            for bad in [#"{"user":""}"#, #"{"user":"a b"}"#, #"{"user":"\#(String(repeating: "x", count: 65))"}"#, #"{"user":"ü"}"#, #"{}"#] {
                try await client.execute(uri: "/api/aiim/dev/login", method: .post, headers: [.contentType: "application/json"],
                                         body: ByteBuffer(string: bad)) { r in
                    #expect(r.status == .badRequest, "\(bad)")
                    let code = try json(r.body)["error"]?["code"]?.stringValue
                    #expect(code == "validation_failed", "\(bad)")
                }
            }
        }
        await gateway.shutdown()
    }
}
