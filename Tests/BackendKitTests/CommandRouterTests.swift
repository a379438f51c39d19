import AIIMBackendKit
import AIIMJSON
@testable import AIIMPostgres
import AIIMProtocol
import Testing

/// The router alone (no servers): a handler per command type, replies fixed by the type.
@Suite struct CommandRouterTests {
    static func envelope<C: BusCommand>(_ command: C, replyTo: String? = "aiim:reply:gw") throws -> Envelope {
        try Envelope.make(type: C.type, payload: command, replyTo: replyTo)
    }

    @Test func aTypedHandlerGetsItsCommandAndItsResultIsTheReply() async throws {
        var router = CommandRouter(service: .messaging)
        try router.register(PingCommand.self) { Pong(service: "messaging", instance: "i1", note: $0.note) }
        let reply = try #require(try await router.handler(Self.envelope(PingCommand(note: "hi"))))
        let pong = try JSONCoding.decode(Pong.self, from: reply)
        #expect(pong.note == "hi" && pong.instance == "i1")
    }

    @Test func aHandlerWithContextSeesTheHeaderAndMayLeaveTheAnswerToTheEvent() async throws {
        var router = CommandRouter(service: .messaging)
        try router.register(Typing.self, replying: { cmd, context in
            #expect(context.replyTo == "aiim:reply:gw" && !context.id.isEmpty)
            return cmd.isTyping ? .answeredByEvent : .encoded(Array(#"{"spliced":true}"#.utf8))
        })
        let actor = Actor(userID: "u", tenantID: "t")
        // Empty: the consumer writes no reply entry.
        #expect(try await router.handler(Self.envelope(Typing(actor: actor, conversationID: "c", isTyping: true))) == [])
        let encoded = try await router.handler(Self.envelope(Typing(actor: actor, conversationID: "c", isTyping: false)))
        #expect(encoded == Array(#"{"spliced":true}"#.utf8))
    }

    @Test func aTypeIsRegisteredOnceAndOnlyByTheServiceThatHandlesIt() throws {
        var router = CommandRouter(service: .messaging)
        try router.register(PingCommand.self) { _ in Pong(service: "messaging", instance: "a", note: nil) }
        #expect(throws: CommandRouter.RegistrationError.self) {
            try router.register(PingCommand.self) { _ in Pong(service: "messaging", instance: "b", note: nil) }
        }
        var media = CommandRouter(service: .media)
        #expect(throws: CommandRouter.RegistrationError.self) {
            try media.register(PingCommand.self) { _ in Pong(service: "media", instance: "a", note: nil) }
        }
        #expect(router.types == ["ping"] && media.types.isEmpty)
    }

    @Test func anUnknownTypeIsAnsweredAsPoison() async throws {
        let router = CommandRouter(service: .calls)
        let entry = try Envelope.make(type: "call.teleport", payload: Empty())
        do {
            _ = try await router.handler(entry)
            Issue.record("an unknown type was handled")
        } catch let e as AIIMError {
            // StreamConsumer dead-letters `unknown_type`; the message is what the switch used to say.
            #expect(e.code == .unknownType && e.message == "calls does not handle call.teleport")
        }
    }

    @Test func aPayloadThatDoesNotMatchItsTypeIsABadRequest() async throws {
        var router = CommandRouter(service: .messaging)
        try router.register(PingCommand.self) { _ in Pong(service: "messaging", instance: "a", note: nil) }
        let entry = try Envelope.make(type: PingCommand.type, payload: ["note": 5])
        await #expect(throws: AIIMError(.badRequest, "payload of ping does not match its schema")) {
            _ = try await router.handler(entry)
        }
    }

    /// Data (22), constraint (23) and syntax (42) errors are final answers; connection,
    /// serialization and resource errors stay transient (the consumer retries them).
    @Test(arguments: [
        ("22P05", ErrorCode.validationFailed), ("22007", .validationFailed), ("22001", .validationFailed),
        ("23505", .conflict), ("23503", .validationFailed), ("23514", .validationFailed), ("42703", .internalError),
        ("42P01", .internalError),
    ])
    func aPermanentDatabaseErrorIsAnsweredWithItsCode(state: String, code: ErrorCode) async throws {
        var router = CommandRouter(service: .messaging)
        try router.register(PingCommand.self) { _ in
            throw PostgresError(sqlState: state, description: "ERROR: SELECT secret FROM t", isConnectionError: false)
        }
        do {
            _ = try await router.handler(Self.envelope(PingCommand(note: nil)))
            Issue.record("no error")
        } catch let e as AIIMError {
            #expect(e.code == code && !e.message.contains("SELECT"))
        }
    }

    @Test(arguments: ["08006", "40001", "40P01", "53300", "57P01", "57P03", "57014", nil])
    func aTransientDatabaseErrorStaysTransient(state: String?) async throws {
        var router = CommandRouter(service: .messaging)
        try router.register(PingCommand.self) { _ in
            throw PostgresError(sqlState: state, description: "gone", isConnectionError: state == nil || state!.hasPrefix("08"))
        }
        await #expect(throws: PostgresError.self) { _ = try await router.handler(Self.envelope(PingCommand(note: nil))) }
    }

    @Test func aPayloadWithANULIsRefusedBeforeItsHandlerRuns() async throws {
        var router = CommandRouter(service: .messaging)
        try router.register(PingCommand.self) { _ in
            Issue.record("the handler ran")
            return Pong(service: "messaging", instance: "a", note: nil)
        }
        await #expect(throws: AIIMError(.validationFailed, "text must not contain the NUL character (U+0000)")) {
            _ = try await router.handler(Self.envelope(PingCommand(note: "a\u{0}")))
        }
    }
}
