import AIIMJSON
import AIIMProtocol
@testable import AIIMRedis
import Foundation
import GatewayCore
import NIOConcurrencyHelpers
import Testing

/// The messaging API end to end: real gateways, real messaging replicas, real Redis and
/// PostgreSQL, real WebSocket clients.
@Suite(.serialized) struct MessagingFlowTests {
    init() { TestLog.bootstrap() }

    @Test func restRoutesWorkAndStrangersAreRefused() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await; the stack stops in the background
        let alice = try await stack.token("alice"), bob = try await stack.token("bob"), carol = try await stack.token("carol")
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])

        // Send, idempotent retry, reply_to.
        let body: JSONValue = .object(["conversation_id": .string(conv), "type": .string("text"),
                                       "content": .string("hello"), "client_msg_id": .string("c1")])
        let first = try await stack.http("POST", "/api/aiim/messages", token: alice, body: body)
        #expect(first.status == 200)
        let again = try await stack.http("POST", "/api/aiim/messages", token: alice, body: body)
        #expect(again.json["message"]?["message_id"] == first.json["message"]?["message_id"])
        #expect(first.json["message"]?["seq"]?.intValue == 1)
        let mid = try #require(first.json["message"]?["message_id"]?.stringValue)
        for i in 2...5 {
            let r = try await stack.http("POST", "/api/aiim/messages", token: bob, body: .object([
                "conversation_id": .string(conv), "content": .object(["text": .string("m\(i)")]), "reply_to": .string(mid)]))
            #expect(r.json["message"]?["seq"]?.intValue == i)
        }

        // History: newest page by default, then paging both ways.
        let newest = try await stack.http("GET", "/api/aiim/messages/\(conv)?limit=2", token: bob)
        #expect(newest.json["messages"]?.arrayOfSeqs == [4, 5])
        #expect(newest.json["has_more"] == .bool(true))
        let older = try await stack.http("GET", "/api/aiim/messages/\(conv)?limit=2&before_seq=4", token: bob)
        #expect(older.json["messages"]?.arrayOfSeqs == [2, 3])
        // The original's before_id pages the same way; an id from elsewhere is refused.
        let fourth = try #require(newest.json["messages"]?.arrayValue?.first?["message_id"]?.stringValue)
        let byID = try await stack.http("GET", "/api/aiim/messages/\(conv)?limit=2&before_id=\(fourth)", token: bob)
        #expect(byID.json["messages"]?.arrayOfSeqs == [2, 3])
        let foreign = try await stack.http("GET", "/api/aiim/messages/\(conv)?before_id=no-such-message", token: bob)
        #expect(foreign.status == 400)
        #expect(foreign.json["error"]?["code"]?.stringValue == "validation_failed")
        let after = try await stack.http("GET", "/api/aiim/messages/\(conv)?after_seq=3", token: bob)
        #expect(after.json["messages"]?.arrayOfSeqs == [4, 5])
        // A seq is 0...2^53-1: a negative one, or one JSON cannot carry exactly, is refused, not a 500.
        for bad in ["before_seq=-1", "after_seq=-2432902008176639999", "before_seq=9007199254740992", "before_seq=-9223372036854775808", "after_seq=1.5"] {
            let r = try await stack.http("GET", "/api/aiim/messages/\(conv)?\(bad)", token: bob)
            #expect(r.status == 400, "\(bad)")
            #expect(r.json["error"]?["code"]?.stringValue == "validation_failed", "\(bad)")
        }

        // Unread for bob counts alice's message only; reading moves it forward only.
        var list = try await stack.http("GET", "/api/aiim/conversations", token: bob)
        let entry = list.json["conversations"]?.firstWhere("conversation_id", conv)
        #expect(entry?["unread_count"]?.intValue == 1)
        #expect(entry?["last_message"]?["seq"]?.intValue == 5)
        #expect(try await stack.http("POST", "/api/aiim/receipts/read", token: bob,
                                     body: .object(["conversation_id": .string(conv), "last_read_message_id": .string(mid)])).status == 204)
        list = try await stack.http("GET", "/api/aiim/conversations", token: bob)
        #expect(list.json["conversations"]?.firstWhere("conversation_id", conv)?["unread_count"]?.intValue == 0)
        let receipts = try await stack.http("GET", "/api/aiim/receipts/\(conv)/\(mid)", token: alice)
        #expect(receipts.status == 200)
        #expect(receipts.json["receipts"]?.firstWhere("user_id", "bob")?["read_at"]?.stringValue != nil)

        // Edit and recall own messages only.
        #expect(try await stack.http("PATCH", "/api/aiim/messages/\(mid)", token: bob, body: .object(["content": .string("x")])).status == 403)
        let edited = try await stack.http("PATCH", "/api/aiim/messages/\(mid)", token: alice, body: .object(["content": .string("edited")]))
        #expect(edited.json["message"]?["content"] == .string("edited"))
        let recalled = try await stack.http("DELETE", "/api/aiim/messages/\(mid)", token: alice)
        #expect(recalled.json["message"]?["deleted_at"]?.stringValue != nil)

        // Bulk sync in one round trip.
        let sync = try await stack.http("POST", "/api/aiim/sync", token: bob, body: .object(["cursors": .object([conv: .number(3)])]))
        #expect(sync.json["conversations"]?.arrayValue?.first?["messages"]?.arrayOfSeqs == [4, 5])

        // A stranger is refused everywhere, and never learns whether the conversation exists.
        let strangerCalls: [(String, String, JSONValue?)] = [
            ("GET", "/api/aiim/messages/\(conv)", nil),
            ("POST", "/api/aiim/messages", .object(["conversation_id": .string(conv), "content": .string("hi")])),
            ("POST", "/api/aiim/receipts/read", .object(["conversation_id": .string(conv), "last_read_seq": .number(1)])),
            ("POST", "/api/aiim/receipts/delivered", .object(["conversation_id": .string(conv), "seq": .number(1)])),
            ("GET", "/api/aiim/receipts/\(conv)/\(mid)", nil),
            ("GET", "/api/aiim/conversations/\(conv)", nil),
            ("POST", "/api/aiim/conversations/\(conv)/members", .object(["user_ids": .array([.string("carol")])])),
            ("POST", "/api/aiim/messages/stream", .object(["conversation_id": .string(conv), "stream_id": .string("s1"), "chunk": .string("x")])),
        ]
        for (method, path, body) in strangerCalls {
            let r = try await stack.http(method, path, token: carol, body: body)
            #expect(r.status == 403, "\(method) \(path)")
            #expect(r.json["error"]?["code"]?.stringValue == "forbidden", "\(method) \(path)")
        }
        let unknown = try await stack.http("GET", "/api/aiim/messages/no-such-conversation", token: carol)
        #expect(unknown.status == 403)
        #expect(try await stack.http("GET", "/api/aiim/conversations").status == 401)
        #expect(try await stack.http("GET", "/api/aiim/messages/\(conv)").status == 401)
        // The stranger's failed attempts changed nothing.
        #expect(try await stack.http("GET", "/api/aiim/conversations", token: carol).json["conversations"]?.arrayValue?.isEmpty == true)

        // Bad input gets documented codes.
        let bad: [(String, String, JSONValue?, String?, Int, String)] = [
            ("POST", "/api/aiim/messages", .object(["conversation_id": .string(conv), "type": .string("nope"), "content": .string("x")]), nil, 400, "validation_failed"),
            ("POST", "/api/aiim/messages", .object(["conversation_id": .string(conv)]), nil, 400, "validation_failed"),
            ("POST", "/api/aiim/messages", .object(["conversation_id": .string(conv), "type": .string("system"), "content": .string("x")]), nil, 400, "validation_failed"),
            ("POST", "/api/aiim/messages", nil, "{not json", 400, "bad_request"),
            ("POST", "/api/aiim/messages", .object(["conversation_id": .string(conv), "content": .string(String(repeating: "x", count: 40_000))]), nil, 413, "payload_too_large"),
            ("GET", "/api/aiim/messages/\(conv)?limit=100000", nil, nil, 400, "validation_failed"),
            ("GET", "/api/aiim/messages/\(conv)?limit=abc", nil, nil, 400, "validation_failed"),
            ("POST", "/api/aiim/conversations", .object(["type": .string("direct"), "member_ids": .array([.string("b"), .string("c")])]), nil, 400, "validation_failed"),
            ("POST", "/api/aiim/messages", .object(["conversation_id": .string(conv), "content": .string("x"), "reply_to": .string("nope")]), nil, 400, "validation_failed"),
        ]
        for (method, path, body, raw, status, code) in bad {
            let r = try await stack.http(method, path, token: alice, body: body, rawBody: raw)
            #expect(r.status == status, "\(method) \(path) \(r.json)")
            #expect(r.json["error"]?["code"]?.stringValue == code, "\(method) \(path) \(r.json)")
        }

        // Direct conversations are de-duplicated.
        let d1 = try await stack.conversation(owner: "alice", members: ["bob"], type: "direct")
        let d2 = try await stack.conversation(owner: "bob", members: ["alice"], type: "direct")
        #expect(d1 == d2)
        // Another tenant's "alice" sees nothing of tenant t1.
        let otherAlice = try await stack.gateways[0].auth.mint(user: "alice", tenant: "t2", ttl: .seconds(60))
        #expect(try await stack.http("GET", "/api/aiim/messages/\(conv)", token: otherAlice).status == 403)
    }

    @Test func twentySendersTwoGatewaysTwoReplicasDeliverInOrderExactlyOnce() async throws {
        let stack = try await Stack.start(gateways: 2, messaging: 2)
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let senders = (0..<20).map { "sender\($0)" }
        let conv = try await stack.conversation(owner: "watcher", members: senders)
        let watchA = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("watcher"))
        let watchB = try await WSTestClient.connect(port: stack.ports[1], token: try await stack.token("watcher"), protocolHeader: true)
        var clients: [WSTestClient] = []
        for (i, s) in senders.enumerated() {
            clients.append(try await WSTestClient.connect(port: stack.ports[i % 2], token: try await stack.token(s)))
        }
        let perSender = 10
        let total = senders.count * perSender
        // Plain sends are answered by their own delivery events: no reply entry of the gateways'
        // reply streams is a send's result (other requests, e.g. a gap fill, still get entries).
        func sendResultsInReplyStreams() async throws -> Int {
            var count = 0
            for g in stack.gateways {
                let read = try await g.redis.command(["XREAD", "COUNT", "100000", "STREAMS", g.bus.replyStream, "0-0"])
                for entry in StreamEntry.parseRead(read) {
                    let payload = try JSONValue(parsing: try Envelope(fields: entry.fields).payload)
                    if payload["message"] != nil, payload["duplicate"] != nil { count += 1 }
                }
            }
            return count
        }
        let acked = NIOLockedValueBox<[Int]>([])
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (i, c) in clients.enumerated() {
                group.addTask {
                    for n in 0..<perSender {
                        let ack = try await c.request(["type": "send_msg", "conversation_id": .string(conv),
                                                       "content": .string("s\(i)-\(n)"), "client_msg_id": .string("s\(i)-\(n)")])
                        #expect(ack?["type"]?.stringValue == "ack", "\(String(describing: ack))")
                        #expect(ack?["client_msg_id"]?.stringValue == "s\(i)-\(n)")
                        #expect(ack?["message_id"]?.stringValue?.isEmpty == false)
                        acked.withLockedValue { $0.append(ack?["seq"]?.intValue ?? 0) }
                    }
                }
            }
            try await group.waitForAll()
        }
        #expect(acked.withLockedValue { $0.sorted() } == Array(1...total), "every ack carries its own seq")
        #expect(try await sendResultsInReplyStreams() == 0)
        for device in [watchA, watchB] + clients {
            _ = try await eventually(timeout: .seconds(20)) { device.createdSeqs(conv).count >= total }
            #expect(device.createdSeqs(conv) == Array(1...total), "every device sees 1..\(total) once, in order")
        }
        for c in clients + [watchA, watchB] { await c.close() }
    }

    @Test func reconnectingDeviceCatchesUpAndFramesValidate() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])
        let alice = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("alice"))
        let bob = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("bob"))
        for i in 1...3 {
            _ = try await alice.request(["type": "send_msg", "conversation_id": .string(conv), "content": .string("m\(i)")])
        }
        _ = try await eventually { bob.createdSeqs(conv) == [1, 2, 3] }
        await bob.close()
        for i in 4...8 {
            _ = try await alice.request(["type": "send_msg", "conversation_id": .string(conv), "content": .string("m\(i)")])
        }
        let back = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("bob"))
        let sub = try await back.request(["type": "subscribe", "conversation_id": .string(conv), "after_seq": .number(3)])
        #expect(sub?["type"]?.stringValue == "subscribed")
        _ = try await eventually { back.createdSeqs(conv).count >= 5 }
        #expect(back.createdSeqs(conv) == [4, 5, 6, 7, 8])
        _ = try await alice.request(["type": "send_msg", "conversation_id": .string(conv), "content": .string("live")])
        _ = try await eventually { back.createdSeqs(conv).count >= 6 }
        #expect(back.createdSeqs(conv) == [4, 5, 6, 7, 8, 9])

        // Read receipt reaches alice; typing reaches bob.
        _ = try await back.request(["type": "read", "conversation_id": .string(conv), "seq": .number(9)])
        #expect(try await alice.waitFor { $0["data"]?["event"]?.stringValue == "receipt.read" } != nil)
        try await alice.send(.object(["type": .string("typing"), "conversation_id": .string(conv)]))
        #expect(try await back.waitFor { $0["data"]?["event"]?.stringValue == "typing" } != nil)

        // A stranger's frames are refused and never reach members.
        let carol = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("carol"))
        for frame: [String: JSONValue] in [
            ["type": "send_msg", "conversation_id": .string(conv), "content": .string("spoof"), "client_msg_id": .string("x1")],
            ["type": "subscribe", "conversation_id": .string(conv)],
            ["type": "stream_chunk", "conversation_id": .string(conv), "stream_id": .string("s"), "chunk": .string("x")],
            ["type": "delivered", "conversation_id": .string(conv), "seq": .number(1)],
        ] {
            let r = try await carol.request(frame)
            #expect(r?["type"]?.stringValue == "error")
            #expect(r?["code"]?.stringValue == "forbidden", "\(frame)")
        }
        let fake = try await carol.request(["type": "message.created", "conversation_id": .string(conv), "message": .string("fake")])
        #expect(fake?["code"]?.stringValue == "unknown_type")
        try await carol.sendRaw("{not json")
        #expect(try await carol.waitFor { $0["code"]?.stringValue == "bad_request" } != nil)
        try await carol.sendBinary([1, 2, 3])
        _ = try await eventually { carol.received.withLockedValue { $0.filter { $0["code"]?.stringValue == "bad_request" }.count } >= 2 }
        let missing = try await alice.request(["type": "send_msg", "conversation_id": .string(conv), "client_msg_id": .string("e1")])
        #expect(missing?["code"]?.stringValue == "validation_failed")
        #expect(missing?["client_msg_id"]?.stringValue == "e1")
        try await Task.sleep(for: .milliseconds(300))
        #expect(!back.received.withLockedValue { $0.contains { $0.jsonString().contains("spoof") || $0.jsonString().contains("fake") } })
        for c in [alice, back, carol] { await c.close() }
        // The upgrades carried `?token=`: no log line may contain a token (JWTs start with "eyJ").
        let leaked = TestLog.lines.withLockedValue { lines in
            lines.contains { $0.message.contains("eyJ") || $0.metadata.values.contains { "\($0)".contains("eyJ") } }
        }
        #expect(!leaked, "a token appeared in the logs")
    }

    @Test func aiStreamsDeliverChunksAndAnInterruptedStreamIsClosed() async throws {
        let stack = try await Stack.start(env: ["STREAM_TIMEOUT_SECONDS": "1"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: "alice", members: ["ai-agent"])
        let alice = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("alice"))
        let agent = try await stack.token("ai-agent")
        func chunk(_ s: String, _ c: JSONValue?, end: Bool = false) async throws -> JSONValue {
            var body: [String: JSONValue] = ["conversation_id": .string(conv), "stream_id": .string(s), "stream_end": .bool(end)]
            if let c { body["chunk"] = c }
            return try await stack.http("POST", "/api/aiim/messages/stream", token: agent, body: .object(body)).json
        }
        // A complete stream with structured chunks.
        _ = try await chunk("s1", .object(["delta": .string("Hel")]))
        _ = try await chunk("s1", .string("lo"))
        let end = try await chunk("s1", nil, end: true)
        #expect(end["message"]?["state"]?.stringValue == "completed")
        let done = try await alice.waitFor { $0["data"]?["event"]?.stringValue == "message.stream_end" }
        #expect(done?["data"]?["message"]?["content"]?["text"]?.stringValue == "Hello")
        let chunks = alice.frames(event: "message.stream_chunk")
        #expect(chunks.map { $0["data"]?["chunk_index"]?.intValue } == [0, 1])
        #expect(chunks.first?["data"]?["chunk"]?["delta"]?.stringValue == "Hel", "structured chunks stay JSON")

        // A stream that stops: a late device sees the text so far, then it is closed as interrupted.
        _ = try await chunk("s2", .string("partial "))
        _ = try await chunk("s2", .string("answer"))
        let history = try await stack.http("GET", "/api/aiim/messages/\(conv)", token: try await stack.token("alice"))
        let streaming = history.json["messages"]?.arrayValue?.last
        #expect(streaming?["stream"]?["state"]?.stringValue == "streaming")
        #expect(streaming?["content"]?["text"]?.stringValue == "partial answer")
        #expect(streaming?["stream"]?["chunk_count"]?.intValue == 2)
        let interrupted = try await alice.waitFor(timeout: .seconds(10)) {
            $0["data"]?["event"]?.stringValue == "message.stream_end" && $0["data"]?["message"]?["stream"]?["stream_id"]?.stringValue == "s2"
        }
        #expect(interrupted?["data"]?["message"]?["stream"]?["state"]?.stringValue == "interrupted")
        let late = try await chunk("s2", .string("more"))
        #expect(late["error"]?["code"]?.stringValue == "invalid_state")
        await alice.close()
    }

    @Test func webSocketFramesObeyThePerUserRateLimitAndEveryFrameIsAnswered() async throws {
        let stack = try await Stack.start(env: ["RATE_LIMIT_PER_SEC": "5"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])
        let ws = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("alice"))
        for i in 0..<30 {
            try await ws.send(.object(["type": "send_msg", "conversation_id": .string(conv), "content": .string("m\(i)"),
                                       "client_msg_id": .string("rl-\(i)")]))
        }
        // Every frame is answered: an ack, or rate_limited naming its client_msg_id and a delay.
        @Sendable func answers() -> [JSONValue] {
            ws.received.withLockedValue { $0.filter { ($0["client_msg_id"]?.stringValue ?? "").hasPrefix("rl-") } }
        }
        #expect(try await eventually(timeout: .seconds(20)) { answers().count == 30 })
        let acked = answers().filter { $0["type"]?.stringValue == "ack" }
        let limited = answers().filter { $0["code"]?.stringValue == "rate_limited" }
        #expect(acked.count + limited.count == 30)
        #expect(acked.count >= 10, "the burst (twice the per-second budget) passes")
        #expect(limited.count >= 10)
        #expect(limited.allSatisfy { ($0["retry_after_ms"]?.intValue ?? 0) > 0 })
        // Exactly the acknowledged messages are stored.
        let history = try await stack.http("GET", "/api/aiim/messages/\(conv)?limit=100", token: try await stack.token("bob"))
        #expect(history.json["messages"]?.arrayOfSeqs == Array(1...acked.count))
        // Pings are never limited; after a pause, sends pass again.
        #expect(try await ws.request(["type": "ping"])?["type"]?.stringValue == "pong")
        try await Task.sleep(for: .milliseconds(1100))
        let again = try await ws.request(["type": "send_msg", "conversation_id": .string(conv), "content": "later"])
        #expect(again?["type"]?.stringValue == "ack")
        await ws.close()
    }

    @Test func aSlowDeviceIsCutOffWithoutSlowingOthers() async throws {
        // The close frame waits behind what the device has not read; a long grace keeps the TCP
        // connection until the device reads again, so it sees the code (GatewayLimitsTests has
        // the default grace).
        let stack = try await Stack.start(env: ["WS_SEND_QUEUE": "8", "WS_CLOSE_GRACE_MS": "60000"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])
        let slow = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("bob"))
        let fast = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("bob"))
        slow.paused.withLockedValue { $0 = true }
        let alice = try await stack.token("alice")
        let big = String(repeating: "x", count: 30_000)
        let count = 400
        for i in 0..<count {
            let r = try await stack.http("POST", "/api/aiim/messages", token: alice,
                                         body: .object(["conversation_id": .string(conv), "content": .string("\(i) \(big)")]))
            #expect(r.status == 200)
            if slow.closed.withLockedValue({ $0 }) { break }
        }
        let sent = try await stack.http("GET", "/api/aiim/messages/\(conv)?limit=1", token: alice).json["messages"]?.arrayOfSeqs.last ?? 0
        // Others are not slowed: the fast device already has (nearly) everything.
        #expect(try await eventually(timeout: .seconds(5)) { fast.createdSeqs(conv).count >= sent })
        slow.paused.withLockedValue { $0 = false }
        try #require(sent > 0)
        #expect(try await eventually(timeout: .seconds(20)) { slow.closed.withLockedValue { $0 } })
        #expect(slow.closeCode.withLockedValue { $0 } == 4001)
        _ = try await eventually(timeout: .seconds(20)) { fast.createdSeqs(conv).count >= sent }
        #expect(fast.createdSeqs(conv) == Array(1...sent))
        await fast.close()
    }
}

extension JSONValue {

    var arrayOfSeqs: [Int] { (arrayValue ?? []).compactMap { $0["seq"]?.intValue } }
    func firstWhere(_ key: String, _ value: String) -> JSONValue? {
        arrayValue?.first { $0[key]?.stringValue == value }
    }
}
