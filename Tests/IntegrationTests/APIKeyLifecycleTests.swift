import AIIMJSON
import AIIMProtocol
import NIOConcurrencyHelpers
import Foundation
import Testing

/// API keys have an owner, who alone lists and revokes them; keys may expire; an owner has at
/// most `API_KEYS_PER_OWNER` live keys; a revocation reaches every gateway within seconds and
/// closes the key's sockets there with 4003. Real gateways, messaging, Redis and PostgreSQL.
@Suite(.serialized) struct APIKeyLifecycleTests {
    init() { TestLog.bootstrap() }

    static func create(_ stack: Stack, _ token: String, name: String = "agent", port: Int? = nil,
                       expiresIn: Int? = nil) async throws -> (status: Int, json: JSONValue) {
        var body: [String: JSONValue] = ["name": .string(name)]
        if let expiresIn { body["expires_in_seconds"] = .number(Double(expiresIn)) }
        return try await stack.http("POST", port: port, "/api/aiim/api_keys", token: token, body: .object(body))
    }

    @Test func revokingOnOneGatewayClosesTheKeysSocketOnAnotherAndRefusesItsRequests() async throws {
        let stack = try await Stack.start(gateways: 2)
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let owner = uniqueName("owner"), ownerToken = try await stack.token(owner)
        let created = try await Self.create(stack, ownerToken)
        #expect(created.status == 201, "\(created.json)")
        let key = try #require(created.json["api_key"]?.stringValue)
        let keyID = try #require(created.json["key_id"]?.stringValue)
        #expect(created.json["user_id"] == .string(keyID))
        #expect(created.json["expires_at"] == .null)

        // The agent works through the second gateway: a socket, and REST (which caches the key there).
        let other = stack.ports[1]
        let socket = try await WSTestClient.connect(port: other, token: key)
        #expect(try await stack.http("GET", port: other, "/api/aiim/conversations", token: key).status == 200)

        // The owner sees it, nobody else does, nobody else can revoke it.
        let listed = try await stack.http("GET", "/api/aiim/api_keys", token: ownerToken)
        #expect(listed.status == 200)
        #expect(listed.json["keys"]?.arrayValue?.map { $0["key_id"] } == [.string(keyID)])
        #expect(listed.json["keys"]?.arrayValue?.first?["revoked_at"] == .null)
        #expect(listed.json["keys"]?.arrayValue?.first?["api_key"] == nil, "the key itself is shown once, at creation")
        let strangerToken = try await stack.token(uniqueName("stranger"))
        #expect(try await stack.http("GET", "/api/aiim/api_keys", token: strangerToken).json["keys"] == [])
        let stolen = try await stack.http("DELETE", "/api/aiim/api_keys/\(keyID)", token: strangerToken)
        #expect(stolen.status == 404 && stolen.json["error"]?["code"] == "not_found", "\(stolen.json)")
        let byBot = try await stack.http("DELETE", port: other, "/api/aiim/api_keys/\(keyID)", token: key)
        #expect(byBot.status == 403 && byBot.json["error"]?["code"] == "forbidden")
        #expect(try await stack.http("GET", port: other, "/api/aiim/conversations", token: key).status == 200, "still valid")

        // Revoked on the first gateway.
        let revoked = try await stack.http("DELETE", "/api/aiim/api_keys/\(keyID)", token: ownerToken)
        #expect(revoked.status == 200, "\(revoked.json)")
        #expect(revoked.json["revoked_at"]?.stringValue != nil)

        // On the second: the socket is closed with 4003, and REST with the key is refused.
        let closed = try await eventually(timeout: .seconds(10)) { socket.closed.withLockedValue { $0 } }
        #expect(closed, "the key's socket on the other gateway was closed")
        #expect(socket.closeCode.withLockedValue { $0 } == 4003)
        let refused = try await stack.http("GET", port: other, "/api/aiim/conversations", token: key)
        #expect(refused.status == 401 && refused.json["error"]?["code"] == "unauthorized", "\(refused.json)")
        #expect(try await stack.http("GET", "/api/aiim/conversations", token: key).status == 401)
        await #expect(throws: (any Error).self, "a revoked key cannot open a socket") {
            try await WSTestClient.connect(port: other, token: key)
        }
    }
}

/// With the disruptive tests (alone, after the rest): `API_KEYS_PER_OWNER` is read by the messaging
/// replica that handles the create, and other suites' replicas (with the default cap) share the
/// command stream.
extension DisruptiveTests {
    @Test func keysExpireAndEachOwnerHasACap() async throws {
        let stack = try await Stack.start(gateways: 1, env: ["API_KEYS_PER_OWNER": "2"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let owner = uniqueName("owner"), token = try await stack.token(owner)

        let short = try await APIKeyLifecycleTests.create(stack, token, name: "short-lived", expiresIn: 2)
        #expect(short.status == 201, "\(short.json)")
        #expect(short.json["expires_at"]?.stringValue != nil)
        let shortKey = try #require(short.json["api_key"]?.stringValue)
        #expect(try await stack.http("GET", "/api/aiim/conversations", token: shortKey).status == 200)
        let lasting = try await APIKeyLifecycleTests.create(stack, token, name: "lasting")
        #expect(lasting.status == 201)

        // Two live keys: a third is refused, for this owner only.
        let third = try await APIKeyLifecycleTests.create(stack, token, name: "third")
        #expect(third.status == 429 && third.json["error"]?["code"] == "rate_limited", "\(third.json)")
        #expect(try await APIKeyLifecycleTests.create(stack, try await stack.token(uniqueName("someone"))).status == 201)
        let bad = try await APIKeyLifecycleTests.create(stack, token, name: "never", expiresIn: 0)
        #expect(bad.status == 400 && bad.json["error"]?["code"] == "validation_failed")

        // Once expired the key is refused (even though the gateway cached it) and no longer counts.
        let expired = try await eventually(timeout: .seconds(10)) {
            try await stack.http("GET", "/api/aiim/conversations", token: shortKey).status == 401
        }
        #expect(expired, "an expired key is refused")
        #expect(try await APIKeyLifecycleTests.create(stack, token, name: "replacement").status == 201)
        let names = try await stack.http("GET", "/api/aiim/api_keys", token: token).json["keys"]?.arrayValue?.compactMap { $0["name"]?.stringValue }
        #expect(Set(names ?? []) == ["short-lived", "lasting", "replacement"])
    }
}
