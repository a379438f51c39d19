import AIIMProtocol
import Foundation

/// A row of `calls`, as the state machine sees it.
struct CallRecord: Sendable, Equatable {
    var callID: String
    var tenantID: String
    var conversationID: String
    var initiatorID: String
    var calleeID: String
    var callType: CallType
    var status: CallStatus
    var version: Int
    var startTime: Date
    var answerTime: Date?
    var endTime: Date?
    var durationSec: Int?
    var endedBy: String?
    var answeredConnection: String?
    var ringDeadline: Date
    var disconnectDeadline: Date?

    func isParticipant(_ userID: String) -> Bool { userID == initiatorID || userID == calleeID }

    /// The other side of a 1:1 call.
    func peer(of userID: String) -> String { userID == initiatorID ? calleeID : initiatorID }

    var dto: CallDTO {
        let participants: [String] = switch status {
        case .initiated, .ringing: [initiatorID]
        case .answered: [initiatorID, calleeID]
        default: []
        }
        return CallDTO(callID: callID, conversationID: conversationID, status: status, callType: callType,
                       initiatorID: initiatorID, calleeID: calleeID, startTime: startTime, answerTime: answerTime,
                       endTime: endTime, durationSec: durationSec, endedBy: endedBy, participants: participants,
                       version: version)
    }
}

/// What happens to a call.
enum CallAction: Sendable, Equatable {
    /// A callee device rings.
    case ringing
    /// The callee accepts on `connection` (nil: over REST).
    case accept(connection: String?)
    case reject
    case hangup
    /// The timer: the ring deadline passed.
    case ringTimeout
    /// The timer: a participant stayed disconnected past the grace period.
    case disconnectTimeout
    /// The timer: the call has been answered for `seconds` (`CALL_MAX_DURATION_SECONDS`).
    case maxDuration(seconds: Double)

    /// For logs and metrics.
    var name: String {
        switch self {
        case .ringing: "ringing"
        case .accept: "accept"
        case .reject: "reject"
        case .hangup: "hangup"
        case .ringTimeout: "ring_timeout"
        case .disconnectTimeout: "disconnect_timeout"
        case .maxDuration: "max_duration"
        }
    }
}

/// The legal transitions, as a pure function (the store runs it under the call's row lock).
///
///     initiated ─ringing→ ringing ─accept→ answered ─hangup→ completed
///     initiated/ringing ─reject or callee hangup→ rejected
///     initiated/ringing ─caller hangup→ cancelled
///     initiated/ringing ─ring timeout→ missed
///     initiated/ringing/answered ─disconnect grace over→ failed
///     answered ─CALL_MAX_DURATION_SECONDS after the answer→ completed (ended by nobody)
///     (busy is created final by `initiate`)
enum CallStateMachine {
    /// The call after `action` by `actor` (nil: the timer) at `now`, or nil when the action
    /// changes nothing (a repeat). Throws `forbidden` for non-participants and for the wrong
    /// party, `invalid_state` for illegal transitions, `conflict` for a second device's accept.
    static func apply(_ action: CallAction, to call: CallRecord, actor: String?, now: Date) throws -> CallRecord? {
        if let actor, !call.isParticipant(actor) {
            throw AIIMError.forbidden("you are not a participant of this call")
        }
        let isCallee = actor == call.calleeID
        var next = call
        switch action {
        case .ringing:
            guard isCallee else { throw AIIMError.forbidden("only the callee's devices ring") }
            switch call.status {
            case .initiated: next.status = .ringing
            case .ringing, .answered: return nil
            default: throw invalid("ring", call)
            }
        case .accept(let connection):
            guard isCallee else { throw AIIMError.forbidden("only the callee can accept") }
            switch call.status {
            case .initiated, .ringing:
                next.status = .answered
                next.answerTime = now
                next.answeredConnection = connection
            case .answered:
                // A retry from the device that accepted gets the same answer; any other device lost.
                if let connection, connection == call.answeredConnection { return nil }
                throw AIIMError.conflict("the call was already accepted on another device")
            default: throw invalid("accept", call)
            }
        case .reject:
            guard isCallee else { throw AIIMError.forbidden("only the callee can reject; the caller hangs up") }
            switch call.status {
            case .initiated, .ringing: end(&next, .rejected, by: actor, now: now)
            case .rejected: return nil
            default: throw invalid("reject", call)
            }
        case .hangup:
            switch call.status {
            case .initiated, .ringing: end(&next, isCallee ? .rejected : .cancelled, by: actor, now: now)
            case .answered: end(&next, .completed, by: actor, now: now)
            default: return nil  // already over: hanging up again (or at the same time) is fine
            }
        case .ringTimeout:
            guard call.status == .initiated || call.status == .ringing, call.ringDeadline <= now else { return nil }
            end(&next, .missed, by: nil, now: now)
        case .disconnectTimeout:
            guard call.status.isActive, let deadline = call.disconnectDeadline, deadline <= now else { return nil }
            end(&next, .failed, by: nil, now: now)
        case .maxDuration(let seconds):
            guard call.status == .answered, let answered = call.answerTime,
                  answered.addingTimeInterval(seconds) <= now else { return nil }
            end(&next, .completed, by: nil, now: now)
        }
        next.version += 1
        return next
    }

    static func end(_ call: inout CallRecord, _ status: CallStatus, by actor: String?, now: Date) {
        call.status = status
        call.endTime = now
        call.endedBy = actor
        call.disconnectDeadline = nil
        if let answered = call.answerTime {
            call.durationSec = max(0, Int(now.timeIntervalSince(answered).rounded(.down)))
        }
    }

    static func invalid(_ verb: String, _ call: CallRecord) -> AIIMError {
        AIIMError(.invalidState, "cannot \(verb) a call that is \(call.status.rawValue)")
    }
}
