import AIIMBackendKit
import AIIMJSON
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import Crypto
import Foundation
@testable import GatewayCore
import NIOConcurrencyHelpers
import NIOCore
import MessagingCore
import NIOPosix
import Prometheus
import ServiceLifecycle
import Testing

/// The gateway's edge under abuse, against real Redis and PostgreSQL with real sockets: refused
/// upgrades answer with the documented status and JSON error, sockets end when their token
/// does, send queues are bounded in bytes, replays wait for the socket, connection caps, the
/// unauthenticated-traffic limiter, HTTP timeouts, slow consumers really gone at once, and
/// bounded gap buffers. Users are named per test: presence (and so the per-user cap) is shared
/// by every gateway on the test Redis, including other tests' running in parallel.
@Suite struct GatewayLimitsTests {
    static let secret = "test-secret-0123456789abcdef0123456789abcdef"

    /// An HS256 token signed with the test secret, with exactly the claims given.
    static func signed(_ claims: String, secret: String = secret) -> String {
        let header = base64URL(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
        let payload = base64URL(Data(claims.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Data("\(header).\(payload)".utf8), using: SymmetricKey(data: Data(secret.utf8)))
        return "\(header).\(payload).\(base64URL(Data(mac)))"
    }

    static func base64URL(_ d: Data) -> String {
        d.base64EncodedString().replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    /// How many failed checks a token bucket lets through since `start`: its burst, what refilled
    /// since (requests are slow when the machine is busy), and one for rounding.
    static func allowance(rate: Int, burst: Int, since start: ContinuousClock.Instant) -> Int {
        let elapsed = ContinuousClock.now - start
        return burst + Int((Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18) * Double(rate)) + 1
    }

    @Test func refusedUpgradesAnswer401WithTheJSONError() async throws {
        let stack = try await Stack.start(env: ["AUTH_FAILURES_PER_SEC": "0"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let port = stack.ports[0]
        let now = Int(Date().timeIntervalSince1970)
        let expired = try await stack.gateways[0].auth.mint(user: "alice", tenant: "t1", ttl: .seconds(-10))
        let forged = Self.signed(#"{"sub":"alice","exp":\#(now + 600),"tenant_id":"t1"}"#, secret: String(repeating: "z", count: 40))
        let none = Self.base64URL(Data(#"{"alg":"none","typ":"JWT"}"#.utf8)) + "."
            + Self.base64URL(Data(#"{"sub":"alice","exp":\#(now + 600)}"#.utf8)) + "."
        let noExp = Self.signed(#"{"sub":"alice","tenant_id":"t1"}"#)
        let noSub = Self.signed(#"{"exp":\#(now + 600),"tenant_id":"t1"}"#)
        let cases: [(String, String?)] = [
            ("missing", nil), ("expired", expired), ("forged", forged), ("alg none", none), ("no exp", noExp),
            ("no sub", noSub), ("garbage", "not.a.token"), ("unknown API key", "aiim_" + String(repeating: "0", count: 96)),
        ]
        for (name, token) in cases {
            let r = try await RawHTTP.upgrade(port: port, token: token)
            #expect(r.status == 401, "\(name): \(r.head)")
            #expect(r.json["error"]?["code"]?.stringValue == "unauthorized", "\(name): body \(r.body)")
            #expect(r.json["error"]?["message"]?.stringValue?.isEmpty == false, "\(name)")
        }
        // The same signer with all claims is accepted: the refusals above are about the claims.
        let good = Self.signed(#"{"sub":"alice","exp":\#(now + 600),"tenant_id":"t1"}"#)
        #expect(try await RawHTTP.upgrade(port: port, token: good).status == 101)
    }

    @Test func anOpenSocketIsClosedWith4002WhenItsTokenExpires() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }
        let token = try await stack.gateways[0].auth.mint(user: "alice", tenant: "t1", ttl: .seconds(3))
        let ws = try await WSTestClient.connect(port: stack.ports[0], token: token)
        #expect(try await ws.request(["type": "ping"])?["type"]?.stringValue == "pong")
        #expect(try await eventually(timeout: .seconds(8)) { ws.closed.withLockedValue { $0 } })
        #expect(ws.closeCode.withLockedValue { $0 } == 4002)
    }

    @Test func aSendQueueOverItsByteBudgetIsASlowConsumer() async throws {
        // 1,000 frames would never fill with 200 messages; 64 KiB does.
        let stack = try await Stack.start(env: ["WS_SEND_QUEUE": "1000", "WS_SEND_QUEUE_BYTES": "65536", "WS_CLOSE_GRACE_MS": "60000"])
        defer { Task { await stack.stop() } }
        let (alice, bob) = (uniqueName("alice"), uniqueName("bob"))
        let conv = try await stack.conversation(owner: alice, members: [bob])
        let slow = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(bob))
        slow.paused.withLockedValue { $0 = true }
        let aliceToken = try await stack.token(alice)
        let big = String(repeating: "x", count: 30_000)
        for i in 0..<200 {
            let r = try await stack.http("POST", "/api/aiim/messages", token: aliceToken,
                                         body: .object(["conversation_id": .string(conv), "content": .string("\(i) \(big)")]))
            #expect(r.status == 200)
        }
        slow.paused.withLockedValue { $0 = false }
        #expect(try await eventually(timeout: .seconds(20)) { slow.closed.withLockedValue { $0 } })
        #expect(slow.closeCode.withLockedValue { $0 } == 4001)
    }

    @Test func aLongReplayReachesAHealthyDeviceWholeAndInOrder() async throws {
        // Budgets far below one history page (200 messages of ~3 KB): the replay must wait for the socket.
        let stack = try await Stack.start(env: ["WS_SEND_QUEUE": "20", "WS_SEND_QUEUE_BYTES": "65536"])
        defer { Task { await stack.stop() } }
        let (alice, bob) = (uniqueName("alice"), uniqueName("bob"))
        let conv = try await stack.conversation(owner: alice, members: [bob])
        let aliceToken = try await stack.token(alice)
        let text = String(repeating: "y", count: 3000)
        let count = 450
        try await withThrowingTaskGroup(of: Void.self) { g in
            for w in 0..<5 {
                g.addTask {
                    for i in stride(from: w, to: count, by: 5) {
                        let r = try await stack.http("POST", "/api/aiim/messages", token: aliceToken,
                                                     body: .object(["conversation_id": .string(conv), "content": .string("\(i) \(text)")]))
                        #expect(r.status == 200)
                    }
                }
            }
            try await g.waitForAll()
        }
        let device = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(bob))
        let sub = try await device.request(["type": "subscribe", "conversation_id": .string(conv), "after_seq": 0])
        #expect(sub?["type"]?.stringValue == "subscribed")
        #expect(try await eventually(timeout: .seconds(30)) { device.createdSeqs(conv).count >= count || device.closed.withLockedValue { $0 } })
        #expect(!device.closed.withLockedValue { $0 }, "closed with \(String(describing: device.closeCode.withLockedValue { $0 }))")
        #expect(device.createdSeqs(conv) == Array(1...count))
        await device.close()
    }

    @Test func connectionsAreCappedPerUserAcrossGatewaysAndPerGateway() async throws {
        let stack = try await Stack.start(gateways: 2, env: ["WS_MAX_CONNECTIONS_PER_USER": "2", "WS_MAX_CONNECTIONS": "3"])
        defer { Task { await stack.stop() } }
        let (bobName, carolName, daveName) = (uniqueName("bob"), uniqueName("carol"), uniqueName("dave"))
        let bob = try await stack.token(bobName)
        let b1 = try await WSTestClient.connect(port: stack.ports[0], token: bob)
        let b2 = try await WSTestClient.connect(port: stack.ports[1], token: bob)
        let third = try await RawHTTP.upgrade(port: stack.ports[0], token: bob)
        #expect(third.status == 429, "\(third.head)")
        #expect(third.json["error"]?["code"]?.stringValue == "rate_limited")
        #expect(third.header("retry-after") != nil)
        // One closed: the user may connect again (on either gateway).
        await b2.close()
        #expect(try await eventually(timeout: .seconds(5)) { stack.gateways[1].connectionLimits.count == 0 })
        let b3 = try await WSTestClient.connect(port: stack.ports[0], token: bob)
        // Gateway 0 holds b1, b3 and one of carol's: full.
        let carol = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(carolName))
        let full = try await RawHTTP.upgrade(port: stack.ports[0], token: try await stack.token(daveName))
        #expect(full.status == 503, "\(full.head)")
        #expect(full.json["error"]?["code"]?.stringValue == "unavailable")
        // Gateway 1 still has room, and dave's refused attempt left no trace in his presence.
        let dave = try await WSTestClient.connect(port: stack.ports[1], token: try await stack.token(daveName))
        for c in [b1, b3, carol, dave] { await c.close() }
    }

    @Test func badCredentialsAreLimitedPerClientBeforeTheyCostABusCall() async throws {
        let stack = try await Stack.start(env: ["AUTH_FAILURES_PER_SEC": "2"])  // bursts of 8
        defer { Task { await stack.stop() } }
        let port = stack.ports[0]
        // A repeated unknown key: messaging is asked once, then the gateway answers from memory.
        let key = "aiim_" + UUIDs.make().replacingOccurrences(of: "-", with: "") + String(repeating: "a", count: 64)
        let first = try await RawHTTP.request(port: port, "GET", "/api/aiim/conversations", bearer: key)
        #expect(first.status == 401)
        let again = try await RawHTTP.request(port: port, "GET", "/api/aiim/conversations", bearer: key)
        #expect(again.status == 401)
        #expect(again.json["error"]?["code"]?.stringValue == "unauthorized")
        // A flood of random keys and garbage tokens: past the burst, 429 before any check.
        var statuses: [Int] = []
        var limited: [RawHTTP.Response] = []
        let floodStart = ContinuousClock.now
        for i in 0..<30 {
            let bearer = i % 2 == 0 ? "aiim_" + UUIDs.make() : "garbage.\(i).token"
            let r = try await RawHTTP.request(port: port, "GET", "/api/aiim/conversations", bearer: bearer)
            statuses.append(r.status)
            if r.status == 429 { limited.append(r) }
        }
        // At most the burst (8, less the 2 spent above) plus what refilled meanwhile was checked.
        #expect(limited.count >= 30 - Self.allowance(rate: 2, burst: 6, since: floodStart), "\(statuses)")
        // The WebSocket upgrade is behind the same limit.
        var ws = try await RawHTTP.upgrade(port: port, token: "aiim_" + UUIDs.make())
        for _ in 0..<5 where ws.status != 429 { ws = try await RawHTTP.upgrade(port: port, token: "aiim_" + UUIDs.make()) }
        #expect(ws.status == 429, "\(ws.head)")
        #expect(ws.json["error"]?["code"]?.stringValue == "rate_limited")
        #expect(Set(statuses).isSubset(of: [401, 429]), "\(statuses)")
        for r in limited.prefix(3) {
            #expect(r.json["error"]?["code"]?.stringValue == "rate_limited")
            #expect(r.header("retry-after") != nil)
        }
        // What reached messaging (its consumer logs every command it handled under the request's
        // trace; handled commands are deleted from the stream): the first check of the key,
        // never its repeat nor a limited request.
        func reachedMessaging(_ trace: String) -> Bool {
            TestLog.lines(withTrace: trace).contains { $0.label == "aiim.messaging" && $0.message == "command handled" }
        }
        let firstTrace = try #require(first.header("x-trace-id"))
        #expect(reachedMessaging(firstTrace), "the first check of a key is messaging's")
        for r in [again] + limited + [ws] {
            let trace = try #require(r.header("x-trace-id"))
            #expect(!reachedMessaging(trace), "a refused-from-memory or limited request reached messaging")
        }
        // Once the budget refilled, the address is served again.
        try await Task.sleep(for: .seconds(2))
        #expect(try await stack.http("GET", "/api/aiim/conversations", token: try await stack.token("alice")).status == 200)
    }

    @Test func forwardedForCountsOnlyFromATrustedProxy() async throws {
        let trusted = try await Stack.start(env: ["AUTH_FAILURES_PER_SEC": "1", "TRUSTED_PROXIES": "127.0.0.0/8"])
        defer { Task { await trusted.stop() } }
        var flooded: [Int] = []
        let floodStart = ContinuousClock.now
        for i in 0..<20 {
            flooded.append(try await RawHTTP.request(port: trusted.ports[0], "GET", "/api/aiim/conversations", bearer: "bad.token.\(i)",
                                                     headers: ["X-Forwarded-For": "198.51.100.7"]).status)
        }
        #expect(flooded.filter { $0 == 429 }.count >= 20 - Self.allowance(rate: 1, burst: 4, since: floodStart), "\(flooded)")
        // Another client behind the same proxy (what a client prepends does not count).
        let other = try await RawHTTP.request(port: trusted.ports[0], "GET", "/api/aiim/conversations", bearer: "bad.token.y",
                                              headers: ["X-Forwarded-For": "198.51.100.7, 203.0.113.9"])
        #expect(other.status == 401)

        // Without TRUSTED_PROXIES the header is ignored: spoofed addresses do not escape the limit.
        let direct = try await Stack.start(env: ["AUTH_FAILURES_PER_SEC": "1"])
        defer { Task { await direct.stop() } }
        var statuses: [Int] = []
        let directStart = ContinuousClock.now
        for i in 0..<20 {
            statuses.append(try await RawHTTP.request(port: direct.ports[0], "GET", "/api/aiim/conversations", bearer: "bad.token.\(i)",
                                                      headers: ["X-Forwarded-For": "203.0.113.\(i)"]).status)
        }
        #expect(statuses.filter { $0 == 429 }.count >= 20 - Self.allowance(rate: 1, burst: 4, since: directStart), "\(statuses)")
    }

    @Test func aStalledRequestHeadOrAnIdleConnectionIsCut() async throws {
        let stack = try await Stack.start(env: ["HTTP_HEADER_TIMEOUT": "1", "HTTP_IDLE_TIMEOUT": "2"])
        defer { Task { await stack.stop() } }
        // Half a request line, then nothing.
        let stalled = try await RawHTTP.exchange(port: stack.ports[0], send: "GET /heal", timeout: .seconds(6))
        #expect(stalled.closedByServer, "a stalled request head must be cut")
        #expect(stalled.elapsed < .seconds(4))
        // A finished request, then half of the next one on the same connection.
        let idle = try await RawHTTP.exchange(port: stack.ports[0], send: "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /hea",
                                              timeout: .seconds(8))
        #expect(idle.text.hasPrefix("HTTP/1.1 200"), "\(idle.text.prefix(80))")
        #expect(idle.closedByServer, "an idle keep-alive connection must be cut")
        #expect(idle.elapsed < .seconds(5))
        // A prompt client is served as before.
        #expect(try await stack.http("GET", "/healthz").status == 200)
    }

    @Test func aSlowConsumerIsOfflineAtOnceWhileItStillDoesNotRead() async throws {
        let stack = try await Stack.start(env: ["WS_SEND_QUEUE": "8", "WS_CLOSE_GRACE_MS": "1000"])
        defer { Task { await stack.stop() } }
        let (alice, bob) = (uniqueName("alice"), uniqueName("bob"))
        let conv = try await stack.conversation(owner: alice, members: [bob])
        let slow = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(bob))
        slow.paused.withLockedValue { $0 = true }
        let aliceToken = try await stack.token(alice)
        let big = String(repeating: "x", count: 30_000)
        func bobOnline() async throws -> Bool {
            let r = try await stack.http("GET", "/api/aiim/presence?user_ids=\(bob)", token: aliceToken)
            return r.json["presence"]?.arrayValue?.first?["status"]?.stringValue == "online"
        }
        #expect(try await bobOnline())
        var offlineAfter: Int?
        for i in 0..<400 {
            let r = try await stack.http("POST", "/api/aiim/messages", token: aliceToken,
                                         body: .object(["conversation_id": .string(conv), "content": .string("\(i) \(big)")]))
            #expect(r.status == 200)
            if i % 10 == 9, try await !bobOnline() { offlineAfter = i; break }
        }
        try #require(offlineAfter != nil, "bob still online after 400 messages he never read")
        #expect(stack.gateways[0].connectionLimits.count == 0)
        #expect(stack.gateways[0].hub.count == 0)
        // Still not reading: the TCP connection is dropped after the grace.
        try await Task.sleep(for: .milliseconds(1500))
        slow.paused.withLockedValue { $0 = false }
        #expect(try await eventually(timeout: .seconds(5)) { slow.closed.withLockedValue { $0 } })
    }

    @Test func eventsHeldForAGapAreBoundedAndTheDeviceIsToldToResync() async throws {
        let stack = try await Stack.start(env: ["WS_SEND_QUEUE": "5"])
        defer { Task { await stack.stop() } }
        let (alice, bob) = (uniqueName("alice"), uniqueName("bob"))
        let conv = try await stack.conversation(owner: alice, members: [bob])
        let device = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(bob))
        let sent = try await stack.http("POST", "/api/aiim/messages", token: try await stack.token(alice),
                                        body: .object(["conversation_id": .string(conv), "content": "one"]))
        #expect(sent.status == 200)
        _ = try await eventually { device.createdSeqs(conv) == [1] }
        // Events 3…9 of a seq 2 that never comes (history has none either): held, then too many.
        for seq in 3...9 {
            try await publishFakeMessage(stack, conv, recipients: [alice, bob], seq: Int64(seq))
        }
        #expect(try await eventually(timeout: .seconds(5)) { device.closed.withLockedValue { $0 } })
        #expect(device.closeCode.withLockedValue { $0 } == 4001)
        #expect(device.createdSeqs(conv) == [1], "nothing is delivered out of order")
    }
}

/// A `message.created` event for a message that is not in history, straight onto the events stream.
func publishFakeMessage(_ stack: Stack, _ conv: String, recipients: [String], seq: Int64) async throws {
    let json = #"{"message_id":"fake-\#(seq)","conversation_id":"\#(conv)","seq":\#(seq),"content":"fake"}"#
    let event = DeliveryEvent(tenantID: "t1", recipients: recipients, conversationId: conv, seq: seq,
                              frameText: messageEventText("message.created", conversationID: conv, messageJSON: Array(json.utf8)))
    _ = try await stack.gateways[0].redis.xadd(StreamNames.events, maxLen: 100_000, envelope: try event.envelope(trace: nil, origin: nil))
}

extension DisruptiveTests {
    /// Gap fill after the messaging service was away for longer than any fixed number of tries:
    /// the fill keeps retrying with a growing pause and delivers once messaging is back.
    @Test func gapFillRetriesUntilMessagingIsBack() async throws {
        let stack = try await Stack.start(gateways: 1, messaging: 0, env: ["BUS_TIMEOUT_MS": "300"])
        defer { Task { await stack.stop() } }
        var messaging = try await InProcessMessaging.start()
        let (alice, bob) = (uniqueName("alice"), uniqueName("bob"))
        // Messaging's first commands after a start may take longer than this test's short bus timeout.
        var conversation: String?
        for _ in 0..<10 where conversation == nil {
            let r = try await stack.http("POST", "/api/aiim/conversations", token: try await stack.token(alice),
                                         body: .object(["type": "group", "name": "gap", "member_ids": .array([.string(bob)])]))
            conversation = r.json["conversation_id"]?.stringValue
        }
        let conv = try #require(conversation)
        let aliceToken = try await stack.token(alice)
        let device = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(bob))
        #expect(try await stack.http("POST", "/api/aiim/messages", token: aliceToken,
                                     body: .object(["conversation_id": .string(conv), "content": "one"])).status == 200)
        _ = try await eventually { device.createdSeqs(conv) == [1] }
        // Message 2 is stored while this device does not take the conversation's events.
        #expect(try await device.request(["type": "unsubscribe", "conversation_id": .string(conv)])?["type"]?.stringValue == "unsubscribed")
        #expect(try await stack.http("POST", "/api/aiim/messages", token: aliceToken,
                                     body: .object(["conversation_id": .string(conv), "content": "two"])).status == 200)
        #expect(try await device.request(["type": "subscribe", "conversation_id": .string(conv)])?["type"]?.stringValue == "subscribed")
        // Messaging goes away; event 3 arrives: seq 2 is a gap the hub cannot fetch for now.
        await messaging.stop()
        try await publishFakeMessage(stack, conv, recipients: [alice, bob], seq: 3)
        try await Task.sleep(for: .seconds(12))  // longer than the old 20 tries x (250 ms + BUS_TIMEOUT_MS)
        #expect(device.createdSeqs(conv) == [1])
        messaging = try await InProcessMessaging.start()
        #expect(try await eventually(timeout: .seconds(15)) { device.createdSeqs(conv) == [1, 2, 3] }, "\(device.createdSeqs(conv))")
        await device.close()
        await messaging.stop()
    }
}

/// A messaging replica in this process that a test can stop and start again.
struct InProcessMessaging {
    let service: MessagingService
    let group: ServiceGroup
    let runner: Task<Void, any Error>

    static func start() async throws -> InProcessMessaging {
        let env = try TestEnv.serviceEnvironment(["INSTANCE_ID": uniqueName("msg"), "RATE_LIMIT_PER_SEC": "0"])
        let service = try buildMessaging(env: env, registry: PrometheusCollectorRegistry())
        let group = ServiceGroup(configuration: .init(services: try service.services(), logger: TestLog.logger))
        let runner = Task { try await group.run() }
        _ = try await eventually(timeout: .seconds(30)) { service.runtime.readiness.isUp("migrations") }
        return InProcessMessaging(service: service, group: group, runner: runner)
    }

    func stop() async {
        await group.triggerGracefulShutdown()
        _ = try? await runner.value
        await service.runtime.shutdown()
    }
}

/// HTTP over a plain TCP connection (NIO), for what URLSession hides: WebSocket upgrade
/// refusals, stalled requests, exact headers.
enum RawHTTP {
    struct Response {
        var head: String
        var body: String
        var status: Int {
            let parts = head.split(separator: " ", maxSplits: 2)
            return parts.count > 1 ? Int(parts[1]) ?? 0 : 0
        }
        var json: JSONValue { (try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8))) ?? .null }
        func header(_ name: String) -> String? {
            for line in head.split(separator: "\r\n").dropFirst() {
                let kv = line.split(separator: ":", maxSplits: 1)
                if kv.count == 2, kv[0].lowercased() == name.lowercased() { return kv[1].trimmingCharacters(in: .whitespaces) }
            }
            return nil
        }
    }

    struct Exchange {
        var text: String
        var closedByServer: Bool
        var elapsed: Duration
    }

    /// Sends `send`, then reads until the server closes or `timeout` passes.
    static func exchange(port: Int, send: String, timeout: Duration, stopWhen: (@Sendable (String) -> Bool)? = nil) async throws -> Exchange {
        let start = ContinuousClock.now
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture { try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel) }
            }
        let timedOut = NIOLockedValueBox(false)
        let timer = Task {
            try await Task.sleep(for: timeout)
            timedOut.withLockedValue { $0 = true }
            try await channel.channel.close()
        }
        defer { timer.cancel() }
        var text = ""
        try await channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: send))
            do {
                for try await chunk in inbound {
                    text += String(buffer: chunk)
                    if let stopWhen, stopWhen(text) { break }
                }
            } catch {}
        }
        return Exchange(text: text, closedByServer: !timedOut.withLockedValue { $0 }, elapsed: ContinuousClock.now - start)
    }

    static func request(port: Int, _ method: String, _ path: String, bearer: String?, headers: [String: String] = [:]) async throws -> Response {
        var lines = ["\(method) \(path) HTTP/1.1", "Host: 127.0.0.1:\(port)", "Connection: close"]
        if let bearer { lines.append("Authorization: Bearer \(bearer)") }
        for (k, v) in headers { lines.append("\(k): \(v)") }
        return try await response(port: port, lines.joined(separator: "\r\n") + "\r\n\r\n")
    }

    /// A WebSocket upgrade with `?token=` (nil: none); returns the answer (101 or a refusal).
    static func upgrade(port: Int, token: String?) async throws -> Response {
        let path = "/api/aiim/ws" + (token.map { "?token=\($0)" } ?? "")
        let lines = [
            "GET \(path) HTTP/1.1", "Host: 127.0.0.1:\(port)", "Upgrade: websocket", "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13",
        ]
        return try await response(port: port, lines.joined(separator: "\r\n") + "\r\n\r\n")
    }

    static func response(port: Int, _ request: String) async throws -> Response {
        let x = try await exchange(port: port, send: request, timeout: .seconds(10)) { text in
            // A 101 keeps the connection open: stop at its head.
            text.hasPrefix("HTTP/1.1 101") && text.contains("\r\n\r\n")
        }
        guard let end = x.text.range(of: "\r\n\r\n") else { return Response(head: x.text, body: "") }
        return Response(head: String(x.text[..<end.lowerBound]), body: String(x.text[end.upperBound...]))
    }
}
