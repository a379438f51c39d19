import AIIMJSON
import Foundation

// Commands the gateway sends to the calls service (stream `aiim:cmd:calls`), the call shapes
// clients see (the original's snake_case field names), and the rules for WebRTC signal payloads.
// Every command carries the `actor` the gateway took from the verified token.

/// Where a call is. `initiated`, `ringing` and `answered` are active; the rest are final.
public enum CallStatus: String, Codable, Sendable, CaseIterable {
    /// Created; the callee's devices were notified.
    case initiated
    /// A device of the callee acknowledged the call and rings.
    case ringing
    /// The callee accepted on one device.
    case answered
    /// Answered, then one side hung up.
    case completed
    /// The callee declined (reject, or hang-up before answering).
    case rejected
    /// Nobody answered within the ring timeout.
    case missed
    /// The caller hung up before the callee answered.
    case cancelled
    /// The callee was already in another call.
    case busy
    /// A party lost its connection and did not come back within the grace period.
    case failed

    public static let active: [CallStatus] = [.initiated, .ringing, .answered]
    public var isActive: Bool { Self.active.contains(self) }
}

/// `audio` or `video`; kept for the whole life of the call.
public enum CallType: String, Codable, Sendable, CaseIterable {
    case audio, video
}

/// A call as its participants see it (REST bodies and `call.status_changed` events).
public struct CallDTO: Codable, Sendable, Equatable {
    public var callID: String
    public var conversationID: String
    public var status: CallStatus
    public var callType: CallType
    public var initiatorID: String
    public var calleeID: String
    public var startTime: Date
    public var answerTime: Date?
    public var endTime: Date?
    /// Whole seconds between answer and end; nil unless the call was answered and ended.
    public var durationSec: Int?
    /// Who ended it (nil while active, and for timeouts).
    public var endedBy: String?
    /// Users currently in the call: the caller until it ends, plus the callee once answered.
    public var participants: [String]
    /// Grows by one with every transition: a device that sees a lower version than it already
    /// has drops the frame (events of one call may cross on their way to a device).
    public var version: Int

    enum CodingKeys: String, CodingKey {
        case callID = "call_id", conversationID = "conversation_id", status, callType = "call_type"
        case initiatorID = "initiator_id", calleeID = "callee_id", startTime = "start_time"
        case answerTime = "answer_time", endTime = "end_time", durationSec = "duration_sec"
        case endedBy = "ended_by", participants, version
    }

    public init(callID: String, conversationID: String, status: CallStatus, callType: CallType, initiatorID: String,
                calleeID: String, startTime: Date, answerTime: Date?, endTime: Date?, durationSec: Int?,
                endedBy: String?, participants: [String], version: Int) {
        self.callID = callID; self.conversationID = conversationID; self.status = status; self.callType = callType
        self.initiatorID = initiatorID; self.calleeID = calleeID; self.startTime = startTime
        self.answerTime = answerTime; self.endTime = endTime; self.durationSec = durationSec
        self.endedBy = endedBy; self.participants = participants; self.version = version
    }

    /// Absent values are written as `null`, as the original did, so clients can index them.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(callID, forKey: .callID)
        try c.encode(conversationID, forKey: .conversationID)
        try c.encode(status, forKey: .status)
        try c.encode(callType, forKey: .callType)
        try c.encode(initiatorID, forKey: .initiatorID)
        try c.encode(calleeID, forKey: .calleeID)
        try c.encode(startTime, forKey: .startTime)
        try c.encode(answerTime, forKey: .answerTime)
        try c.encode(endTime, forKey: .endTime)
        try c.encode(durationSec, forKey: .durationSec)
        try c.encode(endedBy, forKey: .endedBy)
        try c.encode(participants, forKey: .participants)
        try c.encode(version, forKey: .version)
    }
}

/// One entry of `RTCConfiguration.iceServers`.
public struct ICEServer: Codable, Sendable, Equatable {
    public var urls: [String]
    public var username: String?
    public var credential: String?
    /// `password` on TURN entries (kept for the original's clients; browsers ignore it).
    public var credentialType: String?

    public init(urls: [String], username: String? = nil, credential: String? = nil, credentialType: String? = nil) {
        self.urls = urls; self.username = username; self.credential = credential; self.credentialType = credentialType
    }
}

/// An `RTCConfiguration` for one user, with TURN credentials minted for that user only.
/// Field names are WebRTC's, so a client passes the object to `RTCPeerConnection` as is.
public struct ICEConfiguration: Codable, Sendable, Equatable {
    public var iceServers: [ICEServer]
    public var iceTransportPolicy: String
    public var bundlePolicy: String
    public var rtcpMuxPolicy: String
    public var iceCandidatePoolSize: Int
    public var sdpSemantics: String
    /// Seconds the TURN credentials stay valid; nil when no TURN server is configured.
    public var ttl: Int?
    /// The TURN realm, for non-browser TURN clients that need it (browsers ignore the key).
    public var realm: String?

    public init(iceServers: [ICEServer], ttl: Int?, realm: String?, iceTransportPolicy: String = "all",
                bundlePolicy: String = "balanced", rtcpMuxPolicy: String = "require", iceCandidatePoolSize: Int = 4,
                sdpSemantics: String = "unified-plan") {
        self.iceServers = iceServers; self.ttl = ttl; self.realm = realm
        self.iceTransportPolicy = iceTransportPolicy; self.bundlePolicy = bundlePolicy
        self.rtcpMuxPolicy = rtcpMuxPolicy; self.iceCandidatePoolSize = iceCandidatePoolSize
        self.sdpSemantics = sdpSemantics
    }
}

/// A call together with the ICE configuration of the user who asked (initiate, accept).
public struct CallSession: Codable, Sendable, Equatable {
    public var call: CallDTO
    public var iceConfiguration: ICEConfiguration
    public init(call: CallDTO, iceConfiguration: ICEConfiguration) {
        self.call = call; self.iceConfiguration = iceConfiguration
    }
}

/// Starts a call in a conversation the actor belongs to. The callee is `calleeID`, or the one
/// other member when the conversation has exactly two. Fails with `conflict` when the
/// conversation already has an active call or the caller is in another call, and with `busy`
/// when the callee is (that attempt is recorded as a `busy` call).
public struct InitiateCall: BusCommand {
    public typealias Response = CallSession
    public static let type = "call.initiate"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var conversationID: String
    public var calleeID: String?
    public var callType: CallType
    public init(actor: Actor, conversationID: String, calleeID: String?, callType: CallType) {
        self.actor = actor; self.conversationID = conversationID; self.calleeID = calleeID; self.callType = callType
    }
}

/// A device of the callee rings: `initiated` → `ringing` (repeats are no-ops).
public struct MarkCallRinging: BusCommand {
    public typealias Response = CallDTO
    public static let type = "call.ringing"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var callID: String
    public init(actor: Actor, callID: String) { self.actor = actor; self.callID = callID }
}

/// The callee accepts on the device of `actor.connectionID`: → `answered`. A second device
/// gets `conflict`; the same connection again gets the same answer.
public struct AcceptCall: BusCommand {
    public typealias Response = CallSession
    public static let type = "call.accept"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var callID: String
    public init(actor: Actor, callID: String) { self.actor = actor; self.callID = callID }
}

/// The callee declines a call that is not answered yet: → `rejected`.
public struct RejectCall: BusCommand {
    public typealias Response = CallDTO
    public static let type = "call.reject"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var callID: String
    public init(actor: Actor, callID: String) { self.actor = actor; self.callID = callID }
}

/// A participant hangs up: `completed` when answered, else `cancelled` (caller) or `rejected`
/// (callee). On a call that already ended it changes nothing and returns the final state.
public struct HangupCall: BusCommand {
    public typealias Response = CallDTO
    public static let type = "call.hangup"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var callID: String
    public init(actor: Actor, callID: String) { self.actor = actor; self.callID = callID }
}

/// One call, for a participant or a member of its conversation.
public struct GetCall: BusCommand {
    public typealias Response = CallDTO
    public static let type = "call.get"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var callID: String
    public init(actor: Actor, callID: String) { self.actor = actor; self.callID = callID }
}

/// Calls of a conversation, newest first, for a member.
public struct ListCallHistory: BusCommand {
    public typealias Response = CallHistoryPage
    public static let type = "call.history"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var conversationID: String
    public var limit: Int
    public var offset: Int
    public init(actor: Actor, conversationID: String, limit: Int, offset: Int) {
        self.actor = actor; self.conversationID = conversationID; self.limit = limit; self.offset = offset
    }
}

public struct CallHistoryPage: Codable, Sendable, Equatable {
    public var conversationID: String
    public var calls: [CallDTO]
    /// Every call of the conversation, not just this page.
    public var total: Int
    public var limit: Int
    public var offset: Int
    enum CodingKeys: String, CodingKey { case conversationID = "conversation_id", calls, total, limit, offset }
    public init(conversationID: String, calls: [CallDTO], total: Int, limit: Int, offset: Int) {
        self.conversationID = conversationID; self.calls = calls; self.total = total; self.limit = limit; self.offset = offset
    }
}

/// STUN and TURN servers with fresh TURN credentials for the actor.
public struct GetICEConfiguration: BusCommand {
    public typealias Response = ICEConfiguration
    public static let type = "call.ice"
    public static let service = ServiceName.calls
    public var actor: Actor
    public init(actor: Actor) { self.actor = actor }
}

/// A WebRTC offer, answer, candidate or end-of-candidates for the other participant of an
/// active call. `toUserID` nil means the other participant. `payload` is checked with
/// `CallSignal.validate` and relayed unchanged to the addressee's devices only.
public struct RelayCallSignal: BusCommand {
    public typealias Response = Empty
    public static let type = "call.signal"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var callID: String
    public var toUserID: String?
    public var payload: JSONValue
    public init(actor: Actor, callID: String, toUserID: String?, payload: JSONValue) {
        self.actor = actor; self.callID = callID; self.toUserID = toUserID; self.payload = payload
    }
}

/// The gateway closed the last WebSocket of `actor.userID`. Active calls of that user fail
/// unless `UserReconnected` follows within `CALL_DISCONNECT_GRACE`. Sent fire-and-forget.
public struct UserDisconnected: BusCommand {
    public typealias Response = Empty
    public static let type = "call.user.disconnected"
    public static let service = ServiceName.calls
    public var actor: Actor
    /// When it happened; an older event than the last one applied for this user is ignored
    /// (disconnect and reconnect may be handled out of order).
    public var occurredAt: Date
    public init(actor: Actor, occurredAt: Date = Date()) { self.actor = actor; self.occurredAt = occurredAt }
}

/// The user has a WebSocket again (first connection after none). Sent fire-and-forget.
public struct UserReconnected: BusCommand {
    public typealias Response = Empty
    public static let type = "call.user.reconnected"
    public static let service = ServiceName.calls
    public var actor: Actor
    public var occurredAt: Date
    public init(actor: Actor, occurredAt: Date = Date()) { self.actor = actor; self.occurredAt = occurredAt }
}

/// Rules for `call.webrtc.signal` payloads, shared by the gateway (early rejection) and the
/// calls service (authoritative). Violations are `validation_failed`. SDP is checked, never
/// rewritten: it is relayed byte for byte, CRLF line endings included.
public enum CallSignal {
    /// Largest SDP accepted (a video offer with many codecs is ~10 KiB).
    public static let maxSDPBytes = 64 * 1024
    /// Largest candidate line.
    public static let maxCandidateBytes = 1024
    public static let maxMidBytes = 64
    public static let types = ["offer", "answer", "candidate", "end-of-candidates"]

    /// The payload to relay: only the fields WebRTC uses, each checked; unknown fields dropped.
    public static func validate(_ payload: JSONValue?) throws -> JSONValue {
        guard let payload, let object = payload.objectValue else {
            throw AIIMError.validation("payload must be an object")
        }
        guard let type = object["type"]?.stringValue else {
            throw AIIMError.validation("payload.type must be one of \(types.joined(separator: ", "))")
        }
        switch type {
        case "offer", "answer":
            guard let sdp = object["sdp"]?.stringValue else { throw AIIMError.validation("payload.sdp is required for \(type)") }
            try checkSDP(sdp)
            return .object(["type": .string(type), "sdp": .string(sdp)])
        case "candidate":
            guard let candidate = object["candidate"] else {
                throw AIIMError.validation("payload.candidate is required")
            }
            return .object(["type": .string(type), "candidate": try checkCandidate(candidate, endOfCandidates: false)])
        case "end-of-candidates":
            var out: [String: JSONValue] = ["type": .string(type)]
            if let candidate = object["candidate"], !candidate.isNull {
                out["candidate"] = try checkCandidate(candidate, endOfCandidates: true)
            }
            return .object(out)
        default:
            throw AIIMError.validation("payload.type must be one of \(types.joined(separator: ", "))")
        }
    }

    /// A session description: starts with `v=`, every line is `<letter>=<value>`, lines end
    /// with CRLF (or LF), no other control characters.
    static func checkSDP(_ sdp: String) throws {
        guard !sdp.isEmpty else { throw AIIMError.validation("payload.sdp must not be empty") }
        guard sdp.utf8.count <= maxSDPBytes else { throw AIIMError.validation("payload.sdp is larger than \(maxSDPBytes) bytes") }
        guard sdp.hasPrefix("v=") else { throw AIIMError.validation("payload.sdp must start with 'v='") }
        // Bytes, not Characters: Swift treats "\r\n" as one Character.
        let lines = Array(sdp.utf8).split(separator: 10, omittingEmptySubsequences: false)  // "\n"
        for (i, raw) in lines.enumerated() {
            let line = raw.last == 13 ? raw.dropLast() : raw  // "\r"
            if line.isEmpty {
                // Only the end of the text may be empty (after the last line break).
                guard i == lines.count - 1 else { throw AIIMError.validation("payload.sdp has an empty line \(i + 1)") }
                continue
            }
            let a = line.startIndex
            guard line.count >= 2, (97...122).contains(line[a]), line[a + 1] == 61 else {  // "[a-z]="
                throw AIIMError.validation("payload.sdp line \(i + 1) is not '<type>=<value>'")
            }
            guard !line.contains(where: { ($0 < 0x20 && $0 != 9) || $0 == 0x7F }) else {  // tab allowed
                throw AIIMError.validation("payload.sdp line \(i + 1) has a control character")
            }
        }
    }

    /// An `RTCIceCandidateInit`: `candidate` is `candidate:...`, or "" for end-of-candidates;
    /// `sdpMid` / `sdpMLineIndex` say which media section (at least one, except for "").
    static func checkCandidate(_ value: JSONValue, endOfCandidates: Bool) throws -> JSONValue {
        guard let object = value.objectValue else {
            throw AIIMError.validation("payload.candidate must be an object {candidate, sdpMid, sdpMLineIndex}")
        }
        guard let line = object["candidate"]?.stringValue else {
            throw AIIMError.validation("payload.candidate.candidate must be a string")
        }
        if endOfCandidates || line.isEmpty {
            guard line.isEmpty else { throw AIIMError.validation("end-of-candidates carries an empty candidate") }
        } else {
            guard line.hasPrefix("candidate:") else {
                throw AIIMError.validation("payload.candidate.candidate must start with 'candidate:'")
            }
            guard line.utf8.count <= maxCandidateBytes else {
                throw AIIMError.validation("payload.candidate.candidate is longer than \(maxCandidateBytes) bytes")
            }
            guard !line.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) else {
                throw AIIMError.validation("payload.candidate.candidate has a control character")
            }
        }
        var out: [String: JSONValue] = ["candidate": .string(line)]
        switch object["sdpMid"] {
        case nil, .null?: out["sdpMid"] = .null
        case .string(let mid)? where mid.utf8.count <= maxMidBytes && !mid.unicodeScalars.contains(where: { $0.value < 0x20 }):
            out["sdpMid"] = .string(mid)
        default: throw AIIMError.validation("payload.candidate.sdpMid must be a short string or null")
        }
        switch object["sdpMLineIndex"] {
        case nil, .null?: out["sdpMLineIndex"] = .null
        case let v? where v.intValue.map({ (0...65535).contains($0) }) == true: out["sdpMLineIndex"] = v
        default: throw AIIMError.validation("payload.candidate.sdpMLineIndex must be an integer 0-65535 or null")
        }
        if !line.isEmpty, out["sdpMid"] == .null, out["sdpMLineIndex"] == .null {
            throw AIIMError.validation("payload.candidate needs sdpMid or sdpMLineIndex")
        }
        switch object["usernameFragment"] {
        case nil: break
        case .null?: out["usernameFragment"] = .null
        case .string(let u)? where u.utf8.count <= 256 && !u.unicodeScalars.contains(where: { $0.value < 0x20 }):
            out["usernameFragment"] = .string(u)
        default: throw AIIMError.validation("payload.candidate.usernameFragment must be a short string or null")
        }
        return .object(out)
    }
}
