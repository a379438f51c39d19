import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import Foundation
@testable import MessagingCore
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Bad input is refused at once and never retried; one bad row never spoils a batch
/// (issue 17, "Refuse bad input at the edge, never retry it").
@Suite(.serialized) struct HardeningTests {
    init() { TestLog.bootstrap() }

    /// A NUL in any field used to reach PostgreSQL (22P05 for jsonb), be retried as transient
    /// and answer 504 after the request timeout. Every path answers `validation_failed` now.
    @Test func aNULInAnyFieldIsValidationFailedAtOnce() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await; the stack stops in the background
        let alice = try await stack.token("alice")
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])

        // REST bodies: content as a string, nested in an object, as a key; a conversation name.
        let bodies: [(String, JSONValue)] = [
            ("/api/aiim/messages", .object(["conversation_id": .string(conv), "content": .string("a\u{0}b")])),
            ("/api/aiim/messages", .object(["conversation_id": .string(conv),
                                            "content": .object(["text": .string("ok"), "meta": .object(["x": .string("\u{0}")])])])),
            ("/api/aiim/messages", .object(["conversation_id": .string(conv),
                                            "content": .object(["text": .string("ok"), "k\u{0}": .number(1)])])),
            ("/api/aiim/conversations", .object(["type": .string("group"), "name": .string("n\u{0}"), "member_ids": .array([.string("bob")])])),
        ]
        for (path, body) in bodies {
            let r = try await stack.http("POST", path, token: alice, body: body)
            #expect(r.status == 400, "\(path) \(body.jsonString()): \(r.json)")
            #expect(r.json["error"]?["code"]?.stringValue == "validation_failed")
        }
        // Query parameters reach the backend unparsed: a NUL or a forged date in a cursor.
        for cursor in ["2026-01-01%2000:00:00%2B00%7Cx%00y", "2026-13-45%2099:00:00%2B00%7Cx", "2026-01-01%2000:00:00%2B00junk%7Cx"] {
            let r = try await stack.http("GET", "/api/aiim/conversations?before=\(cursor)", token: alice)
            #expect(r.status == 400, "before=\(cursor): \(r.json)")
            #expect(r.json["error"]?["code"]?.stringValue == "validation_failed")
        }
        // A cursor the server gave still pages.
        #expect(try await stack.http("GET", "/api/aiim/conversations?limit=1", token: alice).status == 200)

        // WebSocket: an error frame that echoes the request's client_msg_id.
        let ws = try await WSTestClient.connect(port: stack.ports[0], token: alice)
        let reply = try await ws.request(["type": "send_msg", "conversation_id": .string(conv), "content": .string("x\u{0}"),
                                          "client_msg_id": "nul-1"])
        #expect(reply?["type"]?.stringValue == "error")
        #expect(reply?["code"]?.stringValue == "validation_failed")
        #expect(reply?["client_msg_id"]?.stringValue == "nul-1")
        await ws.close()

        // A command that skips the gateway (another service, a script) is refused by the backend.
        do {
            _ = try await stack.messaging[0].runtime.bus.request(SendMessage(actor: Actor(userID: "alice", tenantID: "t1"), conversationID: conv, kind: "text",
                                                  content: .string("y\u{0}"), replyTo: nil, clientMsgID: "nul-bus"),
                                      timeout: .seconds(4))
            Issue.record("a NUL content was stored")
        } catch let e as AIIMError {
            #expect(e.code == .validationFailed, "\(e)")
        }

        // Nothing was stored, and the conversation still takes messages.
        let ok = try await stack.http("POST", "/api/aiim/messages", token: alice,
                                      body: .object(["conversation_id": .string(conv), "content": .string("fine")]))
        #expect(ok.status == 200)
        #expect(ok.json["message"]?["seq"]?.intValue == 1)
    }

    /// Real PostgreSQL errors by SQLSTATE: data and constraint errors are answered at once with
    /// a documented code that carries no SQL; a handler's transient error stays transient.
    @Test func permanentDatabaseErrorsAreFinalAnswersWithoutSQL() async throws {
        let pg = try PostgresClient(url: try TestEnv.databaseURL(), poolSize: 1, logger: TestLog.logger)
        var router = CommandRouter(service: .messaging)
        let cases: [(sql: String, params: [String], code: ErrorCode)] = [
            (#"SELECT $1::jsonb"#, [#"{"a":"\u0000"}"#], .validationFailed),  // 22P05
            ("SELECT $1::timestamptz", ["2026-13-45 99:00:00+00"], .validationFailed),  // 22008
            ("SELECT $1::int", ["99999999999"], .validationFailed),  // 22003
            ("SELECT no_such_column FROM conversations", [], .internalError),  // 42703
        ]
        try router.register(PingCommand.self) { cmd in
            let c = cases[Int(cmd.note ?? "0")!]
            try await pg.query(c.sql, c.params)
            return Pong(service: "messaging", instance: "x", note: nil)
        }
        for (i, c) in cases.enumerated() {
            do {
                _ = try await router.handler(try Envelope.make(type: PingCommand.type, payload: PingCommand(note: "\(i)")))
                Issue.record("\(c.sql) succeeded")
            } catch let e as AIIMError {
                #expect(e.code == c.code, "\(c.sql): \(e)")
                #expect(!e.message.contains("SELECT") && !e.message.lowercased().contains("syntax") && !e.message.contains("jsonb"))
            }
        }
        await pg.shutdown()
    }

    /// Two sends with the same (conversation, sender, client_msg_id) in one batch used to hit
    /// the unique index, fail the whole statement and send everyone in the batch the one-by-one
    /// way. Now the batch stores the first and the others of the batch; the repeat alone takes
    /// the one-by-one path, and both senders get the same message.
    @Test func aRepeatInsideABatchNeitherSplitsItNorDuplicates() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await; the stack stops in the background
        let conv = try await stack.conversation(owner: "alice", members: ["bob"])
        let runtime = stack.messaging[0].runtime
        let writer = SendBatchWriter(postgres: runtime.postgres, events: runtime.events)
        func pending(_ id: String, sender: String, key: String, content: JSONValue = .string("hi")) -> PendingSend {
            PendingSend(messageID: id, conversationID: conv, tenantID: "t1", senderID: sender, kind: "text",
                        content: content, clientMsgID: key, trace: nil)
        }
        let first = UUIDs.make(), repeated = UUIDs.make(), other = UUIDs.make(), bad = UUIDs.make()
        let stored = try await writer.write([
            pending(first, sender: "alice", key: "same"), pending(repeated, sender: "alice", key: "same"),
            pending(bad, sender: "bob", key: "bad", content: .string("\u{0}")), pending(other, sender: "bob", key: "other"),
        ])
        #expect(Set(stored.keys) == [first, other])
        #expect(stored[first]?.result.message.seq == 1 && stored[other]?.result.message.seq == 2)

        // Through the service: the repeat is answered with the original, once stored.
        let alice = try await stack.token("alice")
        let again = try await stack.http("POST", "/api/aiim/messages", token: alice,
                                         body: .object(["conversation_id": .string(conv), "content": .string("hi"), "client_msg_id": "same"]))
        #expect(again.json["message"]?["message_id"]?.stringValue == first)
        let history = try await stack.http("GET", "/api/aiim/messages/\(conv)", token: alice)
        #expect(history.json["messages"]?.arrayValue?.count == 2)
    }
}
