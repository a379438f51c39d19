import AIIMProtocol
@testable import CallsCore
import Foundation
import Testing

/// Every action in every state, by each kind of actor: the legal transitions happen, the rest
/// fail with the documented code and change nothing.
@Suite struct CallStateMachineTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)

    static func call(_ status: CallStatus, answeredOn connection: String? = nil) -> CallRecord {
        let answered = [.answered, .completed].contains(status)
        return CallRecord(
            callID: "call_1", tenantID: "t", conversationID: "c", initiatorID: "alice", calleeID: "bob",
            callType: .video, status: status, version: 3, startTime: t0, answerTime: answered ? t0.addingTimeInterval(5) : nil,
            endTime: status.isActive ? nil : t0.addingTimeInterval(60), durationSec: nil, endedBy: nil,
            answeredConnection: connection, ringDeadline: t0.addingTimeInterval(45), disconnectDeadline: nil)
    }

    func apply(_ action: CallAction, _ status: CallStatus, by actor: String?, at offset: Double = 10,
               answeredOn: String? = nil) throws -> CallRecord? {
        try CallStateMachine.apply(action, to: Self.call(status, answeredOn: answeredOn), actor: actor,
                                   now: Self.t0.addingTimeInterval(offset))
    }

    func code(_ body: () throws -> Void) -> ErrorCode? {
        do { try body(); return nil } catch let e as AIIMError { return e.code } catch { return nil }
    }

    @Test func theHappyPath() throws {
        let ringing = try #require(try apply(.ringing, .initiated, by: "bob"))
        #expect(ringing.status == .ringing && ringing.version == 4)
        let answered = try #require(try CallStateMachine.apply(.accept(connection: "bob-phone"), to: ringing, actor: "bob",
                                                               now: Self.t0.addingTimeInterval(5)))
        #expect(answered.status == .answered)
        #expect(answered.answerTime == Self.t0.addingTimeInterval(5))
        #expect(answered.answeredConnection == "bob-phone")
        let done = try #require(try CallStateMachine.apply(.hangup, to: answered, actor: "alice",
                                                           now: Self.t0.addingTimeInterval(47.9)))
        #expect(done.status == .completed)
        #expect(done.durationSec == 42, "whole seconds from answer to end")
        #expect(done.endedBy == "alice")
        #expect(done.endTime == Self.t0.addingTimeInterval(47.9))
        #expect(done.callType == .video, "the call type is kept")
        #expect(done.version == 6)
    }

    @Test func acceptWorksWithoutRinging() throws {
        #expect(try apply(.accept(connection: nil), .initiated, by: "bob")?.status == .answered)
    }

    @Test func hangupBeforeAnswerIsCancelOrDecline() throws {
        for status in [CallStatus.initiated, .ringing] {
            let cancelled = try #require(try apply(.hangup, status, by: "alice"))
            #expect(cancelled.status == .cancelled && cancelled.durationSec == nil && cancelled.endedBy == "alice")
            #expect(try apply(.hangup, status, by: "bob")?.status == .rejected)
            #expect(try apply(.reject, status, by: "bob")?.status == .rejected)
        }
    }

    @Test func onlyParticipantsAct() {
        let actions: [CallAction] = [.ringing, .accept(connection: "x"), .reject, .hangup]
        for status in CallStatus.allCases {
            for action in actions {
                #expect(code { _ = try apply(action, status, by: "mallory") } == .forbidden, "\(action) on \(status)")
            }
        }
    }

    @Test func onlyTheCalleeRingsAcceptsOrRejects() {
        for action in [CallAction.ringing, .accept(connection: "a"), .reject] {
            #expect(code { _ = try apply(action, .ringing, by: "alice") } == .forbidden)
        }
    }

    @Test func illegalTransitionsAreInvalidState() {
        let final: [CallStatus] = [.completed, .rejected, .missed, .cancelled, .busy, .failed]
        for status in final {
            #expect(code { _ = try apply(.accept(connection: "a"), status, by: "bob") } == .invalidState, "accept \(status)")
            #expect(code { _ = try apply(.ringing, status, by: "bob") } == .invalidState, "ringing \(status)")
            if status != .rejected {
                #expect(code { _ = try apply(.reject, status, by: "bob") } == .invalidState, "reject \(status)")
            }
        }
        #expect(code { _ = try apply(.reject, .answered, by: "bob") } == .invalidState, "an answered call is hung up, not rejected")
    }

    @Test func repeatsChangeNothing() throws {
        #expect(try apply(.ringing, .ringing, by: "bob") == nil)
        #expect(try apply(.ringing, .answered, by: "bob") == nil, "a late device acknowledgement")
        #expect(try apply(.reject, .rejected, by: "bob") == nil)
        for status in [CallStatus.completed, .rejected, .missed, .cancelled, .busy, .failed] {
            #expect(try apply(.hangup, status, by: "alice") == nil, "hanging up an ended call is fine: \(status)")
            #expect(try apply(.hangup, status, by: "bob") == nil)
        }
        #expect(try apply(.accept(connection: "phone"), .answered, by: "bob", answeredOn: "phone") == nil,
                "the accepting device retried")
    }

    @Test func aSecondDeviceCannotAcceptAgain() {
        #expect(code { _ = try apply(.accept(connection: "tablet"), .answered, by: "bob", answeredOn: "phone") } == .conflict)
        #expect(code { _ = try apply(.accept(connection: nil), .answered, by: "bob", answeredOn: "phone") } == .conflict)
    }

    @Test func ringTimeoutMissesOnlyUnansweredCallsPastTheirDeadline() throws {
        #expect(try apply(.ringTimeout, .ringing, by: nil, at: 44) == nil, "not yet")
        let missed = try #require(try apply(.ringTimeout, .ringing, by: nil, at: 45))
        #expect(missed.status == .missed && missed.endedBy == nil && missed.durationSec == nil)
        #expect(try apply(.ringTimeout, .initiated, by: nil, at: 46)?.status == .missed)
        #expect(try apply(.ringTimeout, .answered, by: nil, at: 100) == nil, "answered calls do not time out")
        #expect(try apply(.ringTimeout, .completed, by: nil, at: 100) == nil)
    }

    @Test func disconnectTimeoutFailsActiveCallsPastTheGrace() throws {
        var call = Self.call(.answered)
        #expect(try CallStateMachine.apply(.disconnectTimeout, to: call, actor: nil, now: Self.t0.addingTimeInterval(100)) == nil,
                "nobody is disconnected")
        call.disconnectDeadline = Self.t0.addingTimeInterval(30)
        #expect(try CallStateMachine.apply(.disconnectTimeout, to: call, actor: nil, now: Self.t0.addingTimeInterval(29)) == nil)
        let failed = try #require(try CallStateMachine.apply(.disconnectTimeout, to: call, actor: nil,
                                                             now: Self.t0.addingTimeInterval(30)))
        #expect(failed.status == .failed && failed.durationSec == 25 && failed.disconnectDeadline == nil)
    }

    @Test func theMaximumDurationCompletesOnlyAnsweredCallsPastIt() throws {
        // Answered at t0 + 5; a 100 s limit.
        #expect(try apply(.maxDuration(seconds: 100), .answered, by: nil, at: 104) == nil, "not yet")
        let ended = try #require(try apply(.maxDuration(seconds: 100), .answered, by: nil, at: 105))
        #expect(ended.status == .completed && ended.endedBy == nil && ended.durationSec == 100 && ended.version == 4)
        #expect(try apply(.maxDuration(seconds: 100), .ringing, by: nil, at: 1000) == nil, "the ring timeout is for those")
        #expect(try apply(.maxDuration(seconds: 100), .completed, by: nil, at: 1000) == nil)
    }

    @Test func participantsDependOnTheState() {
        #expect(Self.call(.ringing).dto.participants == ["alice"])
        #expect(Self.call(.answered).dto.participants == ["alice", "bob"])
        #expect(Self.call(.completed).dto.participants == [])
    }
}
