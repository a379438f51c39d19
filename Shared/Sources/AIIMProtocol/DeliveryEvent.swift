import AIIMJSON

/// What a service publishes for devices: a frame to deliver to every device of `recipients`.
/// When `conversationId` and `seq` are set the gateway delivers in `seq` order without gaps.
public struct DeliveryEvent: Codable, Sendable {
    /// Tenant of the recipients: user ids are only unique within a tenant.
    public var tenantID: String
    public var recipients: [String]
    public var conversationId: String?
    public var seq: Int64?
    /// The frame the device receives, as JSON text: rendered once by the publisher and written
    /// to every socket as it is (a gateway never parses or re-encodes it).
    public var frameText: String
    /// Deliver to every device of these users except the one connection that caused it.
    public var excludeConnection: String?
    /// Membership changed: gateways update which conversations their sockets belong to.
    public var membership: MembershipChange?
    /// The request this event answers (a batched send): the gateway that asked resolves it from
    /// the event, and no reply entry is written.
    public var reply: EventReply?
    /// A generation's deltas: which answer and offsets, so a gateway drops repeats and holds
    /// live deltas back while a device resumes.
    public var generation: GenerationRoute?
    /// The `message.created` event of an answer: devices that get it watch the answer from offset 0.
    public var generationStart: String?
    /// An API key (its SHA-256) was revoked: every gateway forgets it and closes the sockets the
    /// recipients (the key's bot user) opened with it (4003), after delivering the frame.
    public var revokedKey: String?

    enum CodingKeys: String, CodingKey {
        case tenantID = "t", recipients = "r", conversationId = "c", seq = "s", frameText = "ft", excludeConnection = "x"
        case membership = "m", reply = "rp", generation = "g", generationStart = "gs", revokedKey = "rk"
    }

    public init(tenantID: String, recipients: [String], conversationId: String? = nil, seq: Int64? = nil,
                frame: JSONValue, excludeConnection: String? = nil, membership: MembershipChange? = nil) {
        self.init(tenantID: tenantID, recipients: recipients, conversationId: conversationId, seq: seq,
                  frameText: frame.jsonString(), excludeConnection: excludeConnection, membership: membership)
    }

    public init(tenantID: String, recipients: [String], conversationId: String? = nil, seq: Int64? = nil,
                frameText: String, excludeConnection: String? = nil, membership: MembershipChange? = nil) {
        self.tenantID = tenantID; self.recipients = recipients; self.conversationId = conversationId; self.seq = seq
        self.frameText = frameText; self.excludeConnection = excludeConnection; self.membership = membership
    }

    /// The frame, parsed (for inspection; delivery uses `frameText`).
    public var frame: JSONValue { (try? JSONValue(parsing: frameText)) ?? .null }

    public static let type = "deliver"

    /// The event as a stream entry: routing fields in the payload, the frame as the attachment.
    public func envelope(trace: Trace?, origin: String?) throws -> Envelope {
        var routing = self
        routing.frameText = ""
        var env = try Envelope.make(type: Self.type, payload: routing, trace: trace, origin: origin)
        env.attachment = Array(frameText.utf8)
        return env
    }

    /// Reads what `envelope(trace:origin:)` wrote (or an event with its frame in the payload).
    public init(envelope env: Envelope) throws {
        guard env.header.type == Self.type else { throw AIIMError(.unknownType, "not a delivery event: \(env.header.type)") }
        self = try env.decode(DeliveryEvent.self)
        if let frame = env.attachment { frameText = String(decoding: frame, as: UTF8.self) }
    }
}

/// A request answered by a delivery event: the requester's reply stream (it names the gateway
/// instance) and the request's envelope id.
public struct EventReply: Codable, Sendable, Equatable {
    public var stream: String
    public var correlationId: String
    enum CodingKeys: String, CodingKey { case stream = "s", correlationId = "i" }
    public init(stream: String, correlationId: String) { self.stream = stream; self.correlationId = correlationId }
}

/// Users who joined or left a conversation, and its `seq` before the change.
public struct MembershipChange: Codable, Sendable {
    public var conversationID: String
    public var joined: [String]
    public var left: [String]
    /// Devices of joining users start delivering after this `seq`.
    public var seqBefore: Int64

    public init(conversationID: String, joined: [String], left: [String], seqBefore: Int64) {
        self.conversationID = conversationID; self.joined = joined; self.left = left; self.seqBefore = seqBefore
    }
}

/// The answer and offsets of a `generation.delta` event.
public struct GenerationRoute: Codable, Sendable, Equatable {
    public var messageID: String
    public var from: Int64
    public var to: Int64
    enum CodingKeys: String, CodingKey { case messageID = "m", from = "f", to = "t" }
    public init(messageID: String, from: Int64, to: Int64) { self.messageID = messageID; self.from = from; self.to = to }
}
