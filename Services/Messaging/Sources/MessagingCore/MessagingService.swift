import AIIMBackendKit
import AIIMConfiguration
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import Foundation
import Logging
import Prometheus
import ServiceLifecycle

/// The messaging service: consumes `aiim:cmd:messaging`, owns conversations, messages, receipts
/// and AI streams in PostgreSQL, and publishes delivery events for the gateways.
public struct MessagingService: Sendable {
    public let runtime: BackendRuntime
    /// `STREAM_TIMEOUT_SECONDS`: an AI stream with no chunk for this long is closed as `interrupted`. Default 30.
    public let streamTimeout: Duration
    var postgres: PostgresClient { runtime.postgres }
    /// Gathers concurrent sends into batches (one statement, one commit each).
    let batcher: SendBatcher

    public init(runtime: BackendRuntime, streamTimeout: Duration = .seconds(30)) {
        self.runtime = runtime
        self.streamTimeout = streamTimeout
        let writer = SendBatchWriter(postgres: runtime.postgres, events: runtime.events)
        batcher = SendBatcher { batch in try await writer.write(batch) }
    }

    /// Everything the process runs, in dependency order.
    public func services() -> [any Service] {
        let reaper = SilentAnswerCloser(service: self, timeout: streamTimeout, interval: min(.seconds(2), streamTimeout / 2))
        return runtime.services(handler: { env in try await handle(env) }, extraServices: [reaper])
    }

    /// Routes one command by its envelope type.
    func handle(_ env: Envelope) async throws -> [UInt8]? {
        switch env.header.type {
        case PingCommand.type:
            let cmd = try env.decode(PingCommand.self)
            runtime.logger.info("ping", metadata: ["note": "\(cmd.note ?? "")"])
            return try encode(Pong(service: "messaging", instance: runtime.config.instanceID, note: cmd.note))
        case SendMessage.type:
            let cmd: SendMessage = try env.decode()
            // A gateway reads the events stream: a batched message's event answers it (an empty
            // payload tells the consumer to write no reply entry).
            let answer = cmd.replyByEvent == true ? env.header.replyTo.map { EventReply(stream: $0, correlationId: env.header.id) } : nil
            return try await send(cmd, answer: answer).payload
        case History.type: return try encode(try await history(env.decode()))
        case Sync.type: return try encode(try await sync(env.decode()))
        case OpenSession.type: return try encode(try await openSession(env.decode()))
        case EditMessage.type: return try encode(try await edit(env.decode()))
        case DeleteMessage.type: return try encode(try await recall(env.decode()))
        case PostSystemMessage.type: return try encode(try await postSystem(env.decode()))
        case CreateConversation.type: return try encode(try await create(env.decode()))
        case ListConversations.type: return try encode(try await list(env.decode()))
        case GetConversation.type:
            let cmd: GetConversation = try env.decode()
            return try encode(try await conversation(try Validation.id(cmd.conversationID, field: "conversation_id"), actor: cmd.actor))
        case AddMembers.type: return try encode(try await addMembers(env.decode()))
        case RemoveMember.type: return try encode(try await removeMember(env.decode()))
        case MarkReceipt.type: return try encode(try await mark(env.decode()))
        case GetReceipts.type: return try encode(try await receipts(env.decode()))
        case StreamChunk.type: return try encode(try await streamChunk(env.decode()))
        case Typing.type: return try encode(try await typing(env.decode()))
        case PresenceChanged.type: return try encode(try await presence(env.decode()))
        case VerifyAPIKey.type: return try encode(try await verifyAPIKey(env.decode()))
        case CreateAPIKey.type: return try encode(try await createAPIKey(env.decode()))
        default:
            throw AIIMError(.unknownType, "messaging does not handle \(env.header.type)")
        }
    }

    func encode(_ v: some Encodable) throws -> [UInt8] {
        try JSONCoding.encode(v)
    }
}

/// Builds the messaging service from the environment (tests call this too).
public func buildMessaging(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> MessagingService {
    let config = try CommonConfiguration(service: .messaging, env: env, requireDatabase: true)
    let timeout = try env.int("STREAM_TIMEOUT_SECONDS", default: 30)
    return MessagingService(runtime: try BackendRuntime(config: config, registry: registry), streamTimeout: .seconds(timeout))
}
