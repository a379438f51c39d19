import AIIMConfiguration
import AIIMJSON
import AIIMProtocol
@testable import CallsCore
import Foundation
import Testing

/// Who receives which frame for each transition: both parties always learn the new state,
/// TURN credentials reach only their owner, signals only their addressee.
@Suite struct CallEventsTests {
    static let t0 = Date(timeIntervalSince1970: 1_800_000_000)
    static let builder = ICEConfigurationBuilder(turn: try! TURNConfiguration(env: Environment([
        "TURN_SERVER": "turn.example.com:3478", "TURN_SECRET": "0123456789abcdef0123",
    ])))

    static func call(_ status: CallStatus) -> CallRecord {
        CallRecord(callID: "call_1", tenantID: "t", conversationID: "c", initiatorID: "alice", calleeID: "bob",
                   callType: .audio, status: status, version: 1, startTime: t0, answerTime: nil, endTime: nil,
                   durationSec: nil, endedBy: nil, answeredConnection: nil, ringDeadline: t0.addingTimeInterval(45),
                   disconnectDeadline: nil)
    }

    func frames(_ items: [OutboxItem], to user: String) -> [String] {
        items.compactMap(\.deliver).filter { $0.recipients.contains(user) }.compactMap { $0.frame["type"]?.stringValue }
    }

    @Test func aNewCallRingsOnlyTheCalleeWithTheCalleesCredentials() throws {
        let items = try CallEvents.created(Self.call(.initiated), calleeICE: Self.builder.configuration(for: "bob"))
        #expect(frames(items, to: "bob") == ["call.incoming", "call.status_changed"])
        #expect(frames(items, to: "alice") == ["call.status_changed"])
        let incoming = try #require(items.compactMap(\.deliver).first { $0.frame["type"]?.stringValue == "call.incoming" })
        #expect(incoming.recipients == ["bob"])
        #expect(incoming.tenantID == "t")
        #expect(incoming.frame["from_user_id"]?.stringValue == "alice")
        #expect(incoming.frame["call_type"]?.stringValue == "audio")
        var usernames: [String] = []
        if case .array(let servers)? = incoming.frame["ice_configuration"]?["iceServers"] {
            usernames = servers.compactMap { $0["username"]?.stringValue }
        }
        #expect(!usernames.isEmpty && usernames.allSatisfy { $0.hasSuffix(":bob") })
        // Nothing anyone else receives carries a TURN credential.
        for event in items.compactMap(\.deliver) where event.recipients != ["bob"] {
            #expect(!event.frame.jsonString().contains("credential"))
        }
        let system = try #require(items.compactMap(\.system).first)
        #expect(system.content["event"]?.stringValue == "call.started")
        #expect(system.clientMsgID == "call:call_1:call.started")
    }

    @Test func busyIsOnlyAStatusChangeAndARecord() throws {
        var call = Self.call(.busy)
        call.endTime = Self.t0
        let items = try CallEvents.created(call, calleeICE: Self.builder.configuration(for: "bob"))
        #expect(frames(items, to: "bob") == ["call.status_changed"])
        #expect(items.compactMap(\.system).first?.content["status"]?.stringValue == "busy")
    }

    @Test func acceptTellsTheCallerAndStopsTheCalleesOtherDevices() throws {
        let old = Self.call(.ringing)
        let new = try #require(try CallStateMachine.apply(.accept(connection: "bob-phone"), to: old, actor: "bob", now: Self.t0))
        let items = try CallEvents.transition(from: old, to: new, actor: Actor(userID: "bob", tenantID: "t", connectionID: "bob-phone"))
        let accepted = try #require(items.compactMap(\.deliver).first { $0.frame["type"]?.stringValue == "call.accepted" })
        #expect(Set(accepted.recipients) == ["alice", "bob"])
        #expect(accepted.excludeConnection == "bob-phone", "the accepting device has its reply")
        let elsewhere = try #require(items.compactMap(\.deliver).first { $0.frame["type"]?.stringValue == "call.accepted_elsewhere" })
        #expect(elsewhere.recipients == ["bob"] && elsewhere.excludeConnection == "bob-phone")
        let status = try #require(items.compactMap(\.deliver).first { $0.frame["type"]?.stringValue == "call.status_changed" })
        #expect(Set(status.recipients) == ["alice", "bob"] && status.excludeConnection == nil)
        #expect(status.frame["status"]?.stringValue == "answered")
        #expect(status.frame["previous_status"]?.stringValue == "ringing")
        #expect(status.frame["version"]?.intValue == 2)
        #expect(items.compactMap(\.system).first?.content["event"]?.stringValue == "call.answered")
    }

    @Test func endingLeavesTheDurationInTheConversation() throws {
        var old = Self.call(.answered)
        old.answerTime = Self.t0
        let new = try #require(try CallStateMachine.apply(.hangup, to: old, actor: "alice", now: Self.t0.addingTimeInterval(83.5)))
        let items = try CallEvents.transition(from: old, to: new, actor: Actor(userID: "alice", tenantID: "t"))
        #expect(frames(items, to: "alice") == ["call.status_changed"])
        #expect(frames(items, to: "bob") == ["call.status_changed"])
        let system = try #require(items.compactMap(\.system).first)
        #expect(system.content["event"]?.stringValue == "call.ended")
        #expect(system.content["duration_sec"]?.intValue == 83)
        #expect(system.content["text"]?.stringValue == "Audio call ended (1:23)")
        #expect(system.senderID == "alice" && system.conversationID == "c" && system.tenantID == "t")
    }

    @Test func ringingIsNotConversationHistory() throws {
        let old = Self.call(.initiated)
        let new = try #require(try CallStateMachine.apply(.ringing, to: old, actor: "bob", now: Self.t0))
        let items = try CallEvents.transition(from: old, to: new, actor: Actor(userID: "bob", tenantID: "t"))
        #expect(items.compactMap(\.system).isEmpty)
        #expect(frames(items, to: "alice") == ["call.status_changed"])
    }

    @Test func aMissedCallIsRecordedFromTheCaller() throws {
        let old = Self.call(.ringing)
        let new = try #require(try CallStateMachine.apply(.ringTimeout, to: old, actor: nil, now: Self.t0.addingTimeInterval(45)))
        let items = try CallEvents.transition(from: old, to: new, actor: nil)
        let system = try #require(items.compactMap(\.system).first)
        #expect(system.senderID == "alice")
        #expect(system.content["text"]?.stringValue == "Missed audio call")
        #expect(items.compactMap(\.deliver).first?.frame["user_id"] == .null)
    }

    @Test func signalsGoToTheAddresseeOnly() {
        let event = CallEvents.signal(Self.call(.answered), from: "alice", to: "bob", payload: .object(["type": .string("offer")]))
        #expect(event.recipients == ["bob"])
        #expect(event.frame["type"]?.stringValue == "call.webrtc.signal")
        #expect(event.frame["from_user_id"]?.stringValue == "alice" && event.frame["to_user_id"]?.stringValue == "bob")
    }

    @Test func durationsReadLikeAClock() {
        #expect(CallEvents.duration(0) == "0:00")
        #expect(CallEvents.duration(83) == "1:23")
        #expect(CallEvents.duration(3723) == "1:02:03")
    }

    @Test func outboxItemsSurviveTheirJSONRoundTrip() throws {
        let items = try CallEvents.created(Self.call(.initiated), calleeICE: Self.builder.configuration(for: "bob"))
        for item in items {
            let back = try JSONCoding.decode(OutboxItem.self, from: JSONCoding.encode(item))
            #expect(back == item)
        }
    }
}
