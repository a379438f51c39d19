import AIIMJSON
import Foundation
import NIOConcurrencyHelpers
import Testing

extension DisruptiveTests {
    /// Starts the built `aiim-messaging` executable (a real process we can SIGKILL).
    static func startMessagingProcess(port: Int, log: URL) throws -> Process {
        try startBuiltProcess("aiim-messaging", env: [
            "REDIS_URL": try TestEnv.redisURL(), "DATABASE_URL": try TestEnv.databaseURL(), "HTTP_HOST": "127.0.0.1",
            "HTTP_PORT": String(port), "INSTANCE_ID": uniqueName("crash-msg"), "RECLAIM_IDLE_MS": "1500", "LOG_LEVEL": "warning",
        ], log: log)
    }

    @Test func aMessagingReplicaKilledMidLoadLosesNoAcknowledgedMessage() async throws {
        let portA = freePort(), portB = freePort()
        let logA = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("msg-a") + ".log")
        let logB = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("msg-b") + ".log")
        let a = try Self.startMessagingProcess(port: portA, log: logA)
        let b = try Self.startMessagingProcess(port: portB, log: logB)
        defer { kill(a.processIdentifier, SIGKILL); kill(b.processIdentifier, SIGKILL) }
        let stack = try await Stack.start(gateways: 1, messaging: 0, env: ["BUS_TIMEOUT_MS": "3000"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        for (port, log) in [(portA, logA), (portB, logB)] {
            let ready = try await eventually(timeout: .seconds(30)) { (try? await stack.http("GET", port: port, "/ready").status) == 200 }
            try #require(ready, "aiim-messaging did not become ready: \((try? String(contentsOf: log, encoding: .utf8))?.suffix(2000) ?? "")")
        }
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])
        let watcher = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("bob"))
        let sender = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token("alice"))
        var acked: [String: Int] = [:]  // client_msg_id → seq
        let total = 300
        var failures = 0
        for n in 0..<total where failures < 20 {
            if n == 100 { kill(a.processIdentifier, SIGKILL) }
            // A device retries with the same client_msg_id until it gets an ack.
            for _ in 0..<6 {
                let reply = try await sender.request(["type": "send_msg", "conversation_id": .string(conv),
                                                      "content": .string("m\(n)"), "client_msg_id": .string("m\(n)")],
                                                     timeout: .seconds(5))
                if reply?["type"]?.stringValue == "ack", let seq = reply?["seq"]?.intValue {
                    acked["m\(n)"] = seq
                    break
                }
                failures += 1
            }
        }
        #expect(acked.count == total, "every message was eventually acknowledged")
        #expect(Set(acked.values).count == acked.count, "no two acknowledged messages share a seq")
        // Everything acknowledged is stored, once, with the acknowledged seq.
        var stored: [String: Int] = [:]
        var after = 0
        while true {
            let page = try await stack.http("GET", "/api/aiim/messages/\(conv)?after_seq=\(after)&limit=200", token: try await stack.token("alice"))
            let msgs = page.json["messages"]?.arrayValue ?? []
            for m in msgs { if let c = m["client_msg_id"]?.stringValue, let s = m["seq"]?.intValue { stored[c] = s; after = s } }
            if page.json["has_more"] != .bool(true) { break }
        }
        for (cid, seq) in acked { #expect(stored[cid] == seq, "\(cid)") }
        #expect(stored.count == total)
        _ = try await eventually(timeout: .seconds(20)) { watcher.createdSeqs(conv).count >= total }
        #expect(watcher.createdSeqs(conv) == Array(1...total), "the other member saw every message once, in order")
        await sender.close()
        await watcher.close()
    }
}
