import AIIMBackendKit
import AIIMConfiguration
import AIIMPostgres
import AIIMProtocol
import AIIMServiceKit
import Logging
import Prometheus
import ServiceLifecycle

/// The messaging service: consumes `aiim:cmd:messaging`, owns conversations, messages, receipts
/// and AI answers in PostgreSQL, and publishes delivery events for the gateways. Other services
/// read its membership through the `messaging_members` view only (migration 0004).
public struct MessagingService: BackendService {
    public static let name = ServiceName.messaging
    public static func migrations() throws -> [Migration] { try Migrator.bundled(in: .module) }

    public let runtime: BackendRuntime
    /// `STREAM_TIMEOUT_SECONDS`: an AI answer with no chunk for this long is closed as `interrupted`. Default 30.
    public let streamTimeout: Duration
    /// AI answers' caps, checkpoints and grace periods (`Generations.swift`).
    let generationSettings: GenerationSettings
    var postgres: PostgresClient { runtime.postgres }
    /// Gathers concurrent sends into batches (one statement, one commit each).
    let batcher: SendBatcher
    /// `API_KEYS_PER_OWNER`: live (neither revoked nor expired) API keys one person may own;
    /// one more is refused with `rate_limited`. Default 20.
    let apiKeysPerOwner: Int
    /// Byte caps of history pages and sync responses (`PageLimits`).
    let pageLimits: PageLimits

    init(runtime: BackendRuntime, streamTimeout: Duration = .seconds(30), generations: GenerationSettings = GenerationSettings(),
         apiKeysPerOwner: Int = 20, pageLimits: PageLimits = PageLimits()) {
        self.runtime = runtime
        self.apiKeysPerOwner = apiKeysPerOwner
        self.streamTimeout = streamTimeout
        generationSettings = generations
        self.pageLimits = pageLimits
        let writer = SendBatchWriter(postgres: runtime.postgres, events: runtime.events)
        batcher = SendBatcher { batch in try await writer.write(batch) }
    }

    public init(runtime: BackendRuntime, env: Environment) throws {
        let apiKeysPerOwner = try env.int("API_KEYS_PER_OWNER", default: 20)
        guard (1...10_000).contains(apiKeysPerOwner) else { throw ConfigurationError("API_KEYS_PER_OWNER must be 1-10000") }
        self.init(runtime: runtime, streamTimeout: .seconds(try env.int("STREAM_TIMEOUT_SECONDS", default: 30)),
                  generations: try GenerationSettings(env: env), apiKeysPerOwner: apiKeysPerOwner,
                  pageLimits: try PageLimits(env: env))
    }

    public var extraServices: [any Service] {
        [SilentAnswerCloser(service: self, timeout: streamTimeout, interval: min(.seconds(2), streamTimeout / 2)),
         GenerationWatcher(service: self, interval: .milliseconds(max(200, min(1000, generationSettings.checkpointMillis))))]
    }

    public func routes(_ router: inout CommandRouter) throws {
        try router.register(PingCommand.self) { cmd in
            runtime.logger.info("ping", metadata: ["note": "\(cmd.note ?? "")"])
            return Pong(service: "messaging", instance: runtime.config.instanceID, note: cmd.note)
        }
        // Messages (Messages.swift)
        try router.register(SendMessage.self, replying: send)
        try router.register(History.self, history)
        try router.register(Sync.self, sync)
        try router.register(OpenSession.self, openSession)
        try router.register(EditMessage.self, edit)
        try router.register(DeleteMessage.self, recall)
        try router.register(PostSystemMessage.self, postSystem)
        // Conversations and members (Conversations.swift)
        try router.register(CreateConversation.self, create)
        try router.register(ListConversations.self, list)
        try router.register(GetConversation.self) { cmd in
            try await conversation(try Validation.id(cmd.conversationID, field: "conversation_id"), actor: cmd.actor)
        }
        try router.register(UpdateConversation.self, update)
        try router.register(AddMembers.self, addMembers)
        try router.register(RemoveMember.self, removeMember)
        // Receipts, AI answers, typing, presence, API keys (a file each)
        try router.register(MarkReceipt.self, mark)
        try router.register(GetReceipts.self, receipts)
        try router.register(StreamChunk.self, streamChunk)
        // AI answers as generations (Generations.swift)
        try router.register(StartGeneration.self, startGeneration)
        try router.register(AppendGeneration.self, appendGeneration)
        try router.register(SetGenerationStatus.self, setGenerationStatus)
        try router.register(EndGeneration.self, endGeneration)
        try router.register(StopGeneration.self, stopGeneration)
        try router.register(GetGeneration.self, getGeneration)
        try router.register(Typing.self, typing)
        try router.register(PresenceChanged.self, presence)
        try router.register(VerifyAPIKey.self, verifyAPIKey)
        try router.register(CreateAPIKey.self, createAPIKey)
        try router.register(ListAPIKeys.self, listAPIKeys)
        try router.register(RevokeAPIKey.self, revokeAPIKey)
    }
}

/// Builds the messaging service from the environment (tests call this too).
public func buildMessaging(env: Environment = Environment(), registry: PrometheusCollectorRegistry) throws -> MessagingService {
    try MessagingService.build(env: env, registry: registry)
}
