import AIIMBackendKit
import AIIMConfiguration
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import AIIMServiceKit
import CallsCore
import Foundation
@testable import GatewayCore
import NIOConcurrencyHelpers
import Prometheus
import ServiceLifecycle
import Testing

/// Calls end to end: real gateways, messaging and calls replicas, real Redis, PostgreSQL and
/// coturn, real WebSocket devices. Each test runs in a tenant of its own, so its users never
/// meet another suite's sockets or calls.
@Suite(.serialized) struct CallsFlowTests {
    init() { TestLog.bootstrap() }

    // MARK: State machine

    @Test func aCallRingsIsAnsweredAndEndsWithItsDuration() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob")
        let conv = try await world.conversation(alice, [bob], type: "direct")

        // REST initiate (no to_user_id in a direct conversation) notifies the callee like WS does.
        let started = try await world.stack.http("POST", "/api/aiim/calls/initiate", token: alice.token,
                                                 body: ["conversation_id": .string(conv), "type": "video"])
        #expect(started.status == 200, "\(started.json)")
        let callID = try #require(started.json["call_id"]?.stringValue)
        #expect(callID.hasPrefix("call_"))
        #expect(started.json["status"] == "initiated")
        #expect(started.json["call_type"] == "video")
        #expect(started.json["created_at"]?.stringValue != nil)
        let aliceCreds = CallsWorld.turnUsernames(started.json["ice_configuration"])
        #expect(!aliceCreds.isEmpty && aliceCreds.allSatisfy { $0.hasSuffix(":\(alice.id)") }, "the caller's own credentials")

        let incoming = try #require(await bob.device.waitFor { $0["type"] == "call.incoming" && $0["call_id"] == .string(callID) })
        #expect(incoming["from_user_id"] == .string(alice.id))
        #expect(incoming["call_type"] == "video")
        let bobCreds = CallsWorld.turnUsernames(incoming["ice_configuration"])
        #expect(!bobCreds.isEmpty && bobCreds.allSatisfy { $0.hasSuffix(":\(bob.id)") }, "the callee gets only their own credentials")
        #expect(try await alice.device.waitFor { $0.isStatus(callID, "initiated") } != nil)
        #expect(alice.device.frames(event: "call.incoming").isEmpty, "only the callee's devices ring")

        // Ringing, then accept on one device over WebSocket.
        let ack = try await bob.device.request(["type": "call.ringing", "call_id": .string(callID)])
        #expect(ack?["status"] == "ringing")
        #expect(try await alice.device.waitFor { $0.isStatus(callID, "ringing") } != nil)
        let accepted = try await bob.device.request(["type": "call.accept", "call_id": .string(callID)])
        #expect(accepted?["type"] == "call.accepted")
        #expect(accepted?["status"] == "answered")
        let acceptCreds = CallsWorld.turnUsernames(accepted?["ice_configuration"])
        #expect(!acceptCreds.isEmpty && acceptCreds.allSatisfy { $0.hasSuffix(":\(bob.id)") })
        #expect(try await alice.device.waitFor { $0["type"] == "call.accepted" && $0["user_id"] == .string(bob.id) } != nil)

        // Longer than the ring timeout: an answered call does not time out.
        try await Task.sleep(for: .milliseconds(2300))
        let ended = try await world.stack.http("POST", "/api/aiim/calls/\(callID)/hangup", token: alice.token)
        #expect(ended.status == 200)
        #expect(ended.json["status"] == "completed")
        #expect((ended.json["duration_sec"]?.intValue ?? 0) >= 2)
        #expect(ended.json["ended_by"] == .string(alice.id))
        for device in [alice.device, bob.device] {
            #expect(try await device.waitFor { $0.isStatus(callID, "completed") } != nil)
        }
        let status = try await world.stack.http("GET", "/api/aiim/calls/\(callID)/status", token: bob.token)
        #expect(status.json["status"] == "completed" && status.json["call_type"] == "video")
        #expect(status.json["answer_time"]?.stringValue != nil && status.json["end_time"]?.stringValue != nil)
        #expect(status.json["participants"] == [])

        // The conversation keeps the record: started, answered, ended with the duration.
        let records = try await world.systemMessages(conv, as: alice, count: 3)
        #expect(records.map { $0["event"]?.stringValue } == ["call.started", "call.answered", "call.ended"])
        #expect(records.last?["duration_sec"] == ended.json["duration_sec"])
        #expect(records.last?["text"]?.stringValue?.hasPrefix("Video call ended (0:0") == true)

        let history = try await world.stack.http("GET", "/api/aiim/calls/conversation/\(conv)/history", token: bob.token)
        #expect(history.json["total"] == 1)
        #expect(history.json["calls"]?.items?.first?["call_id"] == .string(callID))
    }

    @Test func unansweredCallsAreMissedAfterTheRingTimeout() async throws {
        let world = try await CallsWorld.start(env: ["CALL_RING_TIMEOUT": "1"])
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob")
        let conv = try await world.conversation(alice, [bob])
        let reply = try await alice.device.request(["type": "call.initiate", "conversation_id": .string(conv),
                                                    "to_user_id": .string(bob.id)])
        #expect(reply?["type"] == "call.initiated", "\(String(describing: reply))")
        let callID = try #require(reply?["call_id"]?.stringValue)
        #expect(reply?["call_type"] == "audio", "audio by default")
        for device in [alice.device, bob.device] {
            let missed = try await device.waitFor(timeout: .seconds(5)) { $0.isStatus(callID, "missed") }
            #expect(missed?["previous_status"] == "initiated")
            #expect(missed?["duration_sec"] == .null)
        }
        let records = try await world.systemMessages(conv, as: bob, count: 2)
        #expect(records.last?["status"] == "missed")
        #expect(records.last?["text"] == "Missed audio call")
        // The conversation is free again.
        let again = try await alice.device.request(["type": "call.initiate", "conversation_id": .string(conv),
                                                    "to_user_id": .string(bob.id)])
        #expect(again?["type"] == "call.initiated")
    }

    @Test func cancelDeclineAndBusyAreRecorded() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob"), carol = try await world.user("carol")
        let ab = try await world.conversation(alice, [bob]), cb = try await world.conversation(carol, [bob])

        // Caller hangs up before the answer: cancelled.
        let first = try await world.initiate(alice, ab, to: bob)
        #expect(try await bob.device.request(["type": "call.hangup", "call_id": .string(first)]) != nil)
        let cancelled = try await world.stack.http("POST", "/api/aiim/calls/\(first)/hangup", token: alice.token)
        #expect(cancelled.json["status"] == "rejected", "the callee hanging up first declined it")

        let second = try await world.initiate(alice, ab, to: bob)
        let byCaller = try await world.stack.http("POST", "/api/aiim/calls/\(second)/hangup", token: alice.token)
        #expect(byCaller.json["status"] == "cancelled")
        #expect(try await bob.device.waitFor { $0.isStatus(second, "cancelled") } != nil)

        // Callee declines.
        let third = try await world.initiate(alice, ab, to: bob)
        let rejected = try await world.stack.http("POST", "/api/aiim/calls/\(third)/reject", token: bob.token)
        #expect(rejected.json["status"] == "rejected" && rejected.json["end_time"]?.stringValue != nil)
        #expect(try await alice.device.waitFor { $0.isStatus(third, "rejected") } != nil)

        // Busy: bob is in a call with alice; carol's call to bob is refused and recorded.
        let fourth = try await world.initiate(alice, ab, to: bob)
        _ = try await world.stack.http("POST", "/api/aiim/calls/\(fourth)/accept", token: bob.token)
        let busy = try await world.stack.http("POST", "/api/aiim/calls/initiate", token: carol.token,
                                              body: ["conversation_id": .string(cb)])
        #expect(busy.status == 409)
        #expect(busy.json["error"]?["code"] == "busy")
        let busyEvent = try #require(await bob.device.waitFor { $0["type"] == "call.status_changed" && $0["status"] == "busy" })
        #expect(busyEvent["initiator_id"] == .string(carol.id))
        #expect(try await carol.device.waitFor { $0["type"] == "call.status_changed" && $0["status"] == "busy" } != nil)
        let history = try await world.stack.http("GET", "/api/aiim/calls/conversation/\(cb)/history", token: carol.token)
        #expect(history.json["calls"]?.items?.map { $0["status"] } == ["busy"])
        // Alice, in the call, cannot start another one either.
        let ac = try await world.conversation(alice, [carol])
        let second2 = try await world.stack.http("POST", "/api/aiim/calls/initiate", token: alice.token,
                                                 body: ["conversation_id": .string(ac)])
        #expect(second2.json["error"]?["code"] == "conflict")

        let abHistory = try await world.stack.http("GET", "/api/aiim/calls/conversation/\(ab)/history?limit=2&offset=1",
                                                   token: alice.token)
        #expect(abHistory.json["total"] == 4, "the real total, not the page size")
        #expect(abHistory.json["calls"]?.items?.map { $0["call_id"] } == [.string(third), .string(second)],
                "newest first, paged")
    }

    @Test func oneActiveCallPerConversationEvenUnderConcurrency() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        // Both parties call each other several times at once ("glare"), in fresh pairs each round.
        for _ in 0..<5 {
            let alice = try await world.user("alice"), bob = try await world.user("bob")
            let conv = try await world.conversation(alice, [bob])
            let statuses = try await withThrowingTaskGroup(of: (Int, String?).self) { group in
                for i in 0..<8 {
                    let who = i.isMultiple(of: 2) ? alice : bob
                    group.addTask {
                        let r = try await world.stack.http("POST", "/api/aiim/calls/initiate", token: who.token,
                                                           body: ["conversation_id": .string(conv)])
                        return (r.status, r.json["error"]?["code"]?.stringValue)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0.0 == 200 }.count == 1, "\(statuses)")
            #expect(statuses.filter { $0.0 != 200 }.allSatisfy { $0 == (409, "conflict") }, "\(statuses)")
            let calls = try await world.sql("SELECT status FROM calls WHERE conversation_id = $1", [conv])
            #expect(calls.map { $0.optional("status", as: String.self) } == ["initiated"], "one call, nothing recorded as busy")
        }
    }

    @Test func racesBothHangUpAndTwoDevicesAccept() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob")
        let tablet = try await world.device(bob)
        let conv = try await world.conversation(alice, [bob])
        let callID = try await world.initiate(alice, conv, to: bob)
        _ = try #require(await tablet.waitFor { $0["type"] == "call.incoming" })

        // Both of bob's devices accept at once: one wins, the other is told so.
        async let onPhone = bob.device.request(["type": "call.accept", "call_id": .string(callID)])
        async let onTablet = tablet.request(["type": "call.accept", "call_id": .string(callID)])
        let replies = [try await onPhone, try await onTablet]
        #expect(replies.filter { $0?["type"] == "call.accepted" }.count == 1, "\(replies)")
        #expect(replies.filter { $0?["type"] == "error" && $0?["code"] == "conflict" }.count == 1, "\(replies)")
        let loser = replies[0]?["type"] == "call.accepted" ? tablet : bob.device
        let winner = loser === tablet ? bob.device : tablet
        #expect(try await loser.waitFor { $0["type"] == "call.accepted_elsewhere" } != nil, "the other device stops ringing")
        #expect(try await alice.device.waitFor { $0.isStatus(callID, "answered") } != nil)
        #expect(winner.frames(event: "call.accepted_elsewhere").isEmpty)
        #expect(alice.device.frames(event: "call.accepted").count == 1)

        // Both hang up at once: both succeed, the call ends once.
        async let a = world.stack.http("POST", "/api/aiim/calls/\(callID)/hangup", token: alice.token)
        async let b = world.stack.http("POST", "/api/aiim/calls/\(callID)/hangup", token: bob.token)
        let (ra, rb) = try await (a, b)
        #expect(ra.status == 200 && rb.status == 200)
        #expect(ra.json["status"] == "completed" && rb.json["status"] == "completed")
        #expect(ra.json["version"] == rb.json["version"])
        _ = try await world.systemMessages(conv, as: alice, count: 3)
        try await Task.sleep(for: .milliseconds(300))
        #expect(alice.device.received.withLockedValue { $0.filter { $0.isStatus(callID, "completed") }.count } == 1)
        #expect(try await world.systemMessages(conv, as: alice, count: 3).filter { $0["event"] == "call.ended" }.count == 1)
        await tablet.close()
    }

    @Test func badInputIsRefusedAndChangesNothing() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob"), carol = try await world.user("carol")
        let conv = try await world.conversation(alice, [bob, carol])
        let other = try await world.conversation(bob, [carol])
        let http = world.stack

        #expect(try await http.http("POST", "/api/aiim/calls/initiate", token: alice.token, body: ["conversation_id": .string(conv)])
            .json["error"]?["code"] == "validation_failed", "three members: to_user_id is required")
        #expect(try await http.http("POST", "/api/aiim/calls/initiate", token: alice.token,
                                    body: ["conversation_id": .string(other), "to_user_id": .string(bob.id)])
            .status == 403, "not a member")
        #expect(try await http.http("POST", "/api/aiim/calls/initiate", token: alice.token,
                                    body: ["conversation_id": .string(conv), "to_user_id": .string(alice.id)])
            .json["error"]?["code"] == "validation_failed")
        #expect(try await http.http("POST", "/api/aiim/calls/initiate", token: alice.token,
                                    body: ["conversation_id": .string(conv), "to_user_id": .string(bob.id), "type": "hologram"])
            .json["error"]?["code"] == "validation_failed")
        #expect(try await http.http("POST", "/api/aiim/calls/initiate", body: ["conversation_id": .string(conv)]).status == 401)

        let callID = try await world.initiate(alice, conv, to: bob)
        _ = try await http.http("POST", "/api/aiim/calls/\(callID)/accept", token: bob.token)
        let before = try await http.http("GET", "/api/aiim/calls/\(callID)/status", token: alice.token).json

        let refused: [(String, String, String, JSONValue?)] = [
            ("POST", "/api/aiim/calls/call_nope/accept", bob.token, nil),
            ("POST", "/api/aiim/calls/\(callID)/accept", carol.token, nil),
            ("POST", "/api/aiim/calls/\(callID)/hangup", carol.token, nil),
            ("POST", "/api/aiim/calls/\(callID)/reject", carol.token, nil),
            ("POST", "/api/aiim/calls/\(callID)/reject", alice.token, nil),
            ("POST", "/api/aiim/calls/\(callID)/reject", bob.token, nil),
            ("POST", "/api/aiim/calls/\(callID)/accept", alice.token, nil),
            ("GET", "/api/aiim/calls/call_nope/status", alice.token, nil),
        ]
        let codes = try await refused.asyncMap { try await http.http($0.0, $0.1, token: $0.2).json["error"]?["code"]?.stringValue }
        #expect(codes == ["not_found", "forbidden", "forbidden", "forbidden", "forbidden", "invalid_state", "forbidden", "not_found"])
        #expect(try await http.http("POST", "/api/aiim/calls/\(callID)/accept", token: await world.token("bob", tenant: "elsewhere"))
            .status == 404, "another tenant cannot see the call")

        // Malformed and misaddressed signals, over WebSocket.
        let offer = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
        let signals: [([String: JSONValue], String)] = [
            (["call_id": .string(callID), "payload": ["type": "offer", "sdp": "not sdp"]], "validation_failed"),
            (["call_id": .string(callID), "payload": ["type": "candidate", "candidate": ["candidate": "bogus", "sdpMid": "0"]]], "validation_failed"),
            (["call_id": .string(callID), "payload": ["type": "offer", "sdp": .string(offer)], "to_user_id": .string(carol.id)], "forbidden"),
            (["call_id": "call_nope", "payload": ["type": "offer", "sdp": .string(offer)]], "not_found"),
        ]
        for (frame, code) in signals {
            var f = frame
            f["type"] = "call.webrtc.signal"
            let reply = try await alice.device.request(f)
            #expect(reply?["type"] == "error" && reply?["code"] == .string(code), "\(frame) → \(String(describing: reply))")
        }
        let carolSignal = try await carol.device.request(["type": "call.webrtc.signal", "call_id": .string(callID),
                                                          "payload": ["type": "offer", "sdp": .string(offer)]])
        #expect(carolSignal?["code"] == "forbidden", "a non-participant cannot signal")
        #expect(try await carol.device.request(["type": "call.bogus", "call_id": .string(callID)])?["code"] == "unknown_type")

        let after = try await http.http("GET", "/api/aiim/calls/\(callID)/status", token: alice.token).json
        #expect(after == before, "state unchanged")
        #expect(bob.device.frames(event: "call.webrtc.signal").isEmpty)
        #expect(CallsWorld.callFrames(carol.device).isEmpty)

        // After it ended, accepting is an illegal transition; hanging up again is harmless.
        _ = try await http.http("POST", "/api/aiim/calls/\(callID)/hangup", token: bob.token)
        #expect(try await http.http("POST", "/api/aiim/calls/\(callID)/accept", token: bob.token).json["error"]?["code"] == "invalid_state")
        #expect(try await http.http("POST", "/api/aiim/calls/\(callID)/hangup", token: alice.token).json["status"] == "completed")
        let late = try await alice.device.request(["type": "call.webrtc.signal", "call_id": .string(callID),
                                                   "payload": ["type": "offer", "sdp": .string(offer)]])
        #expect(late?["code"] == "invalid_state")
    }

    // MARK: Signalling

    @Test func signalsReachOnlyTheAddresseeUnchangedAndInOrder() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob"), carol = try await world.user("carol")
        let tablet = try await world.device(bob)
        let conv = try await world.conversation(alice, [bob, carol])
        let callID = try await world.initiate(alice, conv, to: bob)

        // An offer before the answer reaches every device of the callee, byte for byte.
        let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
            + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"
        try await alice.device.send(["type": "call.webrtc.signal", "call_id": .string(callID),
                                     "to_user_id": .string(bob.id), "payload": ["type": "offer", "sdp": .string(sdp)]])
        for device in [bob.device, tablet] {
            let got = try #require(await device.waitFor { $0["type"] == "call.webrtc.signal" })
            #expect(got["payload"]?["sdp"]?.stringValue == sdp, "CRLF kept, nothing trimmed")
            #expect(got["from_user_id"] == .string(alice.id) && got["to_user_id"] == .string(bob.id))
        }
        _ = try await world.stack.http("POST", "/api/aiim/calls/\(callID)/accept", token: bob.token)
        try await bob.device.send(["type": "call.webrtc.signal", "call_id": .string(callID),
                                   "payload": ["type": "answer", "sdp": .string(sdp)]])

        // Twenty candidates then end-of-candidates, in the order sent.
        for i in 0..<20 {
            try await alice.device.send(["type": "call.webrtc.signal", "call_id": .string(callID), "payload": [
                "type": "candidate",
                "candidate": ["candidate": .string("candidate:\(i) 1 udp 2122260223 192.0.2.1 \(50000 + i) typ host"),
                              "sdpMid": "0", "sdpMLineIndex": 0],
            ]])
        }
        try await alice.device.send(["type": "call.webrtc.signal", "call_id": .string(callID), "payload": [
            "type": "candidate", "candidate": ["candidate": "", "sdpMid": "0"]]])
        _ = try #require(await bob.device.waitFor { $0["payload"]?["candidate"]?["candidate"] == "" })
        let order = bob.device.frames(event: "call.webrtc.signal").compactMap { $0["payload"]?["candidate"]?["candidate"]?.stringValue }
        #expect(order == (0..<20).map { "candidate:\($0) 1 udp 2122260223 192.0.2.1 \(50000 + $0) typ host" } + [""])
        #expect(try await alice.device.waitFor { $0["type"] == "call.webrtc.signal" && $0["payload"]?["type"] == "answer" } != nil)

        // A frame both parties get after all of that: nobody else saw a signal.
        _ = try await world.stack.http("POST", "/api/aiim/calls/\(callID)/hangup", token: bob.token)
        for device in [alice.device, bob.device] { _ = try await device.waitFor { $0.isStatus(callID, "completed") } }
        #expect(alice.device.frames(event: "call.webrtc.signal").allSatisfy { $0["from_user_id"] == .string(bob.id) },
                "the sender never receives its own signals")
        #expect(CallsWorld.callFrames(carol.device).isEmpty,
                "another member of the conversation sees nothing of the call")
        await tablet.close()
    }

    // MARK: Disconnects and timers

    @Test func aPartyThatDoesNotComeBackFailsTheCall() async throws {
        let world = try await CallsWorld.start(env: ["CALL_DISCONNECT_GRACE": "1"])
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob")
        let conv = try await world.conversation(alice, [bob])
        let bus = world.stack.gateways[0].bus

        // Back within the grace period: the call goes on.
        let kept = try await world.initiate(alice, conv, to: bob)
        _ = try await world.stack.http("POST", "/api/aiim/calls/\(kept)/accept", token: bob.token)
        let t0 = Date()
        try await bus.send(UserDisconnected(actor: alice.actor, occurredAt: t0))
        #expect(try await bob.device.waitFor { $0["type"] == "call.participant_disconnected" && $0["user_id"] == .string(alice.id) } != nil)
        try await bus.send(UserReconnected(actor: alice.actor, occurredAt: t0.addingTimeInterval(0.1)))
        #expect(try await bob.device.waitFor { $0["type"] == "call.participant_reconnected" } != nil)
        // A stale disconnect (older than the reconnect) that arrives late is ignored.
        try await bus.send(UserDisconnected(actor: alice.actor, occurredAt: t0.addingTimeInterval(0.05)))
        try await Task.sleep(for: .milliseconds(2000))
        #expect(try await world.stack.http("GET", "/api/aiim/calls/\(kept)/status", token: bob.token).json["status"] == "answered")
        _ = try await world.stack.http("POST", "/api/aiim/calls/\(kept)/hangup", token: bob.token)

        // Gone for good: failed, on both sides and in the conversation.
        let lost = try await world.initiate(alice, conv, to: bob)
        _ = try await world.stack.http("POST", "/api/aiim/calls/\(lost)/accept", token: bob.token)
        try await bus.send(UserDisconnected(actor: bob.actor, occurredAt: Date()))
        let failed = try await alice.device.waitFor(timeout: .seconds(5)) { $0.isStatus(lost, "failed") }
        #expect(failed?["duration_sec"]?.intValue != nil)
        #expect(try await world.systemMessages(conv, as: alice, count: 6).last?["status"] == "failed")
    }

    @Test func aParticipantWhoseGatewayIsKilledFailsTheCall() async throws {
        let world = try await CallsWorld.start(env: ["CALL_DISCONNECT_GRACE": "1", "CALL_PRESENCE_CHECK_MS": "200"])
        defer { world.stopInBackground() }
        let alice = try await world.user("alice")
        // Bob's only connection is on a real aiim-gateway process, which is then SIGKILLed: no
        // close, no UserDisconnected; only his presence entry expiring (ping timeout + interval) tells.
        let port = freePort()
        let log = FileManager.default.temporaryDirectory.appendingPathComponent(uniqueName("calls-gw") + ".log")
        let gateway = try CallsWorld.startGatewayProcess(port: port, log: log)
        defer { kill(gateway.processIdentifier, SIGKILL) }
        let ready = try await eventually(timeout: .seconds(30)) { (try? await world.stack.http("GET", port: port, "/ready").status) == 200 }
        try #require(ready, "aiim-gateway did not become ready: \((try? String(contentsOf: log, encoding: .utf8))?.suffix(2000) ?? "")")
        let bobID = uniqueName("bob"), bobToken = try await world.token(bobID)
        let bob = CallsWorld.User(id: bobID, token: bobToken, device: try await WSTestClient.connect(port: port, token: bobToken),
                                  tenant: world.tenant)
        let conv = try await world.conversation(alice, [bob])
        let callID = try await world.initiate(alice, conv, to: bob)
        _ = try #require(await bob.device.waitFor { $0["type"] == "call.incoming" && $0["call_id"] == .string(callID) })
        let accepted = try await bob.device.request(["type": "call.accept", "call_id": .string(callID)])
        #expect(accepted?["status"] == "answered", "\(String(describing: accepted))")
        // A live device answers the server's pings (the test client does not by itself).
        let keepAlive = Task {  // unstructured: runs beside the waits below until cancelled
            while !Task.isCancelled {
                try? await bob.device.send(["type": "pong"])
                try? await Task.sleep(for: .milliseconds(300))
            }
        }
        defer { keepAlive.cancel() }
        // Alive past its heartbeat: a connection that pongs keeps the call.
        try await Task.sleep(for: .seconds(5))
        #expect(try await world.stack.http("GET", "/api/aiim/calls/\(callID)/status", token: alice.token).json["status"] == "answered")
        #expect(alice.device.frames(event: "call.participant_disconnected").isEmpty)

        kill(gateway.processIdentifier, SIGKILL)
        let gone = try await alice.device.waitFor(timeout: .seconds(30)) {
            $0["type"] == "call.participant_disconnected" && $0["user_id"] == .string(bobID)
        }
        #expect(gone != nil, "the caller hears that the callee's last connection is gone")
        let failed = try await alice.device.waitFor(timeout: .seconds(10)) { $0.isStatus(callID, "failed") }
        #expect(failed != nil)
        #expect(failed?["ended_by"] == .null)
        let status = try await world.stack.http("GET", "/api/aiim/calls/\(callID)/status", token: alice.token)
        #expect(status.json["status"] == "failed")
        #expect(try await world.systemMessages(conv, as: alice, count: 3).last?["status"] == "failed")
    }

    @Test func answeredCallsEndAfterTheMaximumDuration() async throws {
        let world = try await CallsWorld.start(env: ["CALL_MAX_DURATION_SECONDS": "2"])
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob")
        let conv = try await world.conversation(alice, [bob])
        let callID = try await world.initiate(alice, conv, to: bob)
        let accepted = try await bob.device.request(["type": "call.accept", "call_id": .string(callID)])
        #expect(accepted?["status"] == "answered")
        // Both stay connected and nobody hangs up: the limit ends the call, for both sides.
        for device in [alice.device, bob.device] {
            let ended = try await device.waitFor(timeout: .seconds(15)) { $0.isStatus(callID, "completed") }
            #expect(ended?["ended_by"] == .null, "ended by the limit, not by a participant")
            #expect((ended?["duration_sec"]?.intValue ?? 0) >= 2)
            #expect(ended?["previous_status"] == "answered")
        }
        #expect(try await world.systemMessages(conv, as: alice, count: 3).last?["status"] == "completed")
        // The conversation and both users are free again.
        let again = try await alice.device.request(["type": "call.initiate", "conversation_id": .string(conv),
                                                    "to_user_id": .string(bob.id)])
        #expect(again?["type"] == "call.initiated")
    }

    @Test func timersLiveInTheDatabaseNotInAProcess() async throws {
        let world = try await CallsWorld.start(env: ["CALL_RING_TIMEOUT": "2"])
        defer { world.stopInBackground() }
        var calls: [(id: String, conversation: String, caller: CallsWorld.User)] = []
        for _ in 0..<3 {
            let caller = try await world.user("caller"), callee = try await world.user("callee")
            let conv = try await world.conversation(caller, [callee])
            calls.append((try await world.initiate(caller, conv, to: callee), conv, caller))
        }
        // The replica that created the calls stops; two new ones, started later, end them on time.
        try await world.replaceCalls(replicas: 2)
        for call in calls {
            #expect(try await call.caller.device.waitFor(timeout: .seconds(8)) { $0.isStatus(call.id, "missed") } != nil)
        }
        try await Task.sleep(for: .milliseconds(500))
        for call in calls {
            #expect(call.caller.device.received.withLockedValue { $0.filter { $0.isStatus(call.id, "missed") }.count } == 1,
                    "two replicas scan; each call is missed once")
            #expect(try await world.systemMessages(call.conversation, as: call.caller, count: 2)
                .filter { $0["status"] == "missed" }.count == 1)
        }
    }

    @Test func eventsAWriterCouldNotPublishAreRelayed() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        let bob = try await world.user("bob")
        let callID = uniqueName("call_relayed")
        let event = DeliveryEvent(tenantID: world.tenant, recipients: [bob.id],
                                  frame: ["type": "call.status_changed", "call_id": .string(callID)])
        let body = String(decoding: try JSONCoding.encode(["deliver": event]), as: UTF8.self)
        // As if the writer crashed between its commit and its publish.
        _ = try await world.sql("""
            INSERT INTO call_outbox (call_id, body, claimed_until) VALUES ($1, $2::jsonb, now() - interval '1 second')
            """, [callID, body])
        #expect(try await bob.device.waitFor(timeout: .seconds(5)) { $0["call_id"] == .string(callID) } != nil)
        #expect(try await eventually { try await world.sql("SELECT 1 FROM call_outbox WHERE call_id = $1", [callID]).isEmpty })
    }

    // MARK: TURN against a real coturn

    @Test func issuedCredentialsAllocateARelayOnCoturnAndForgedOrExpiredOnesDoNot() async throws {
        let world = try await CallsWorld.start()
        defer { world.stopInBackground() }
        let alice = try await world.user("alice"), bob = try await world.user("bob")
        let turnServer = try TestEnv.value("AIIM_TEST_TURN_SERVER")
        let secret = try TestEnv.value("AIIM_TEST_TURN_SECRET")
        let port = String(try #require(turnServer.split(separator: ":").last))

        let ice = try await world.stack.http("GET", "/api/aiim/calls/ice-configuration", token: alice.token)
        #expect(ice.status == 200)
        #expect(ice.json["ttl"] == 300)
        #expect(ice.json["realm"] == .string(try TestEnv.value("AIIM_TEST_TURN_REALM")))
        let turn = try #require(ice.json["iceServers"]?.items?.first { $0["username"] != nil })
        #expect(turn["urls"] == .array([.string("turn:\(turnServer)?transport=udp"), .string("turn:\(turnServer)?transport=tcp")]))
        let username = try #require(turn["username"]?.stringValue), password = try #require(turn["credential"]?.stringValue)
        let expiry = try #require(Int(username.split(separator: ":")[0]))
        #expect(abs(expiry - Int(Date().timeIntervalSince1970) - 300) <= 2)

        // The callee's credentials, from call.incoming, work for the callee as well.
        let conv = try await world.conversation(alice, [bob])
        _ = try await world.initiate(alice, conv, to: bob)
        let incoming = try #require(await bob.device.waitFor { $0["type"] == "call.incoming" })
        let bobTURN = try #require(incoming["ice_configuration"]?["iceServers"]?.items?.first { $0["username"] != nil })

        async let aliceAllocates = CallsWorld.turnAllocate(port: port, username: username, password: password)
        async let bobAllocates = CallsWorld.turnAllocate(port: port, username: bobTURN["username"]?.stringValue ?? "",
                                                         password: bobTURN["credential"]?.stringValue ?? "")
        let forged = try await CallsWorld.turnAllocate(port: port, username: username, password: "AAAA" + password.dropFirst(4))
        let stolen = try await CallsWorld.turnAllocate(port: port, username: username.replacingOccurrences(of: alice.id, with: bob.id),
                                                       password: password)
        let old = ICEConfigurationBuilder.credential(userID: alice.id, expiry: Int64(Date().timeIntervalSince1970) - 60, secret: secret)
        let expired = try await CallsWorld.turnAllocate(port: port, username: old.username, password: old.password)
        #expect(try await aliceAllocates == 0, "coturn allocates a relay with the credentials we issued")
        #expect(try await bobAllocates == 0)
        #expect(forged != 0, "a forged password is refused")
        #expect(stolen != 0, "a password is bound to its user")
        #expect(expired != 0, "an expired credential is refused")
    }
}

// MARK: - Harness

/// A stack (gateway + messaging) plus calls replicas, one tenant, and WebSocket devices.
final class CallsWorld: Sendable {
    let stack: Stack
    let tenant: String
    let env: [String: String]
    let replicas: NIOLockedValueBox<[(service: CallsService, group: ServiceGroup, runner: Task<Void, any Error>)]>
    let devices = NIOLockedValueBox<[WSTestClient]>([])
    let database: PostgresClient

    struct User: Sendable {
        let id: String
        let token: String
        let device: WSTestClient
        let tenant: String
        var actor: Actor { Actor(userID: id, tenantID: tenant) }
    }

    static func start(env extra: [String: String] = [:]) async throws -> CallsWorld {
        var env = [
            "CALL_RING_TIMEOUT": "2", "CALL_DISCONNECT_GRACE": "1", "CALL_TIMER_INTERVAL_MS": "100",
            "TURN_SERVER": try TestEnv.value("AIIM_TEST_TURN_SERVER"), "TURN_SECRET": try TestEnv.value("AIIM_TEST_TURN_SECRET"),
            "TURN_REALM": try TestEnv.value("AIIM_TEST_TURN_REALM"),
        ]
        env.merge(extra) { $1 }
        let stack = try await Stack.start()
        let world = CallsWorld(stack: stack, tenant: uniqueName("calls"), env: env,
                               database: try PostgresClient(url: try TestEnv.databaseURL(), poolSize: 2, logger: TestLog.logger))
        try await world.startCalls(replicas: 1)
        return world
    }

    private init(stack: Stack, tenant: String, env: [String: String], database: PostgresClient) {
        self.stack = stack; self.tenant = tenant; self.env = env; self.database = database
        replicas = NIOLockedValueBox([])
    }

    /// Starts the built `aiim-gateway` executable (a real process a test can SIGKILL) on the
    /// test Redis, with the JWT secret of the in-process gateways and a 1 s / 3 s heartbeat (presence TTL 4 s).
    static func startGatewayProcess(port: Int, log: URL) throws -> Process {
        let env = try TestEnv.serviceEnvironment().values.merging([
            "HTTP_PORT": String(port), "INSTANCE_ID": uniqueName("calls-gw"), "WS_PING_INTERVAL": "1", "WS_PING_TIMEOUT": "3",
            "LOG_LEVEL": "warning",
        ]) { $1 }
        return try startBuiltProcess("aiim-gateway", env: env, log: log)
    }

    func startCalls(replicas count: Int) async throws {
        for _ in 0..<count {
            let env = try TestEnv.serviceEnvironment(env.merging(["INSTANCE_ID": uniqueName("calls")]) { $1 })
            let service = try buildCalls(env: env, registry: PrometheusCollectorRegistry())
            let group = ServiceGroup(configuration: .init(services: try service.services(), logger: TestLog.logger))
            let runner = Task { try await group.run() }
            replicas.withLockedValue { $0.append((service, group, runner)) }
            _ = try await eventually(timeout: .seconds(30)) { service.runtime.readiness.isUp("migrations") }
        }
    }

    /// Stops every calls replica (graceful drain), then starts `replicas` new ones.
    func replaceCalls(replicas count: Int) async throws {
        await stopCalls()
        try await startCalls(replicas: count)
    }

    func stopCalls() async {
        let running = replicas.withLockedValue { r in defer { r.removeAll() }; return r }
        for r in running {
            await r.group.triggerGracefulShutdown()
            _ = try? await r.runner.value
            await r.service.runtime.shutdown()
        }
    }

    func stop() async {
        for d in devices.withLockedValue({ $0 }) { await d.close() }
        await stopCalls()
        await stack.stop()
        await database.shutdown()
    }

    func stopInBackground() {
        Task { await stop() }  // unstructured: `defer` cannot await; the world stops in the background
    }

    func token(_ name: String, tenant: String? = nil) async throws -> String {
        try await stack.gateways[0].auth.mint(user: name, tenant: tenant ?? self.tenant, ttl: .seconds(600))
    }

    /// A user with a unique id and one connected device.
    func user(_ name: String) async throws -> User {
        let id = uniqueName(name)
        let token = try await token(id)
        let device = try await WSTestClient.connect(port: stack.ports[0], token: token)
        devices.withLockedValue { $0.append(device) }
        return User(id: id, token: token, device: device, tenant: tenant)
    }

    /// Another device of `user`.
    func device(_ user: User) async throws -> WSTestClient {
        let device = try await WSTestClient.connect(port: stack.ports[0], token: user.token)
        devices.withLockedValue { $0.append(device) }
        return device
    }

    func conversation(_ owner: User, _ members: [User], type: String = "group") async throws -> String {
        let r = try await stack.http("POST", "/api/aiim/conversations", token: owner.token, body: [
            "type": .string(type), "name": "call test", "member_ids": .array(members.map { .string($0.id) }),
        ])
        #expect(r.status == 200, "create conversation: \(r.json)")
        return try #require(r.json["conversation_id"]?.stringValue)
    }

    /// `call.initiate` over the caller's WebSocket; the call id.
    func initiate(_ caller: User, _ conversation: String, to callee: User) async throws -> String {
        let reply = try await caller.device.request(["type": "call.initiate", "conversation_id": .string(conversation),
                                                     "to_user_id": .string(callee.id)])
        #expect(reply?["type"] == "call.initiated", "\(String(describing: reply))")
        return try #require(reply?["call_id"]?.stringValue)
    }

    /// The content of the conversation's system messages, oldest first, once there are `count`.
    func systemMessages(_ conversation: String, as user: User, count: Int) async throws -> [JSONValue] {
        let found = NIOLockedValueBox<[JSONValue]>([])
        _ = try await eventually {
            let page = try await self.stack.http("GET", "/api/aiim/messages/\(conversation)?limit=200", token: user.token)
            let system = (page.json["messages"]?.items ?? []).filter { $0["type"] == "system" }.compactMap { $0["content"] }
            found.withLockedValue { $0 = system }
            return system.count >= count
        }
        let messages = found.withLockedValue { $0 }
        #expect(messages.count == count, "system messages: \(messages)")
        return messages
    }

    func sql(_ query: String, _ params: [any PostgresEncodable]) async throws -> [PostgresRow] {
        try await database.query(query, params).rows
    }

    /// Every `call.*` frame a device received.
    static func callFrames(_ device: WSTestClient) -> [JSONValue] {
        device.received.withLockedValue { $0.filter { $0["type"]?.stringValue?.hasPrefix("call.") == true } }
    }

    /// The `turn:` usernames in an ICE configuration.
    static func turnUsernames(_ config: JSONValue?) -> [String] {
        (config?["iceServers"]?.items ?? []).compactMap { $0["username"]?.stringValue }
    }

    /// coturn's own client allocates a relay with these credentials: exit status 0 on success
    /// (after ~5 s), 255 within milliseconds when coturn refuses them.
    static func turnAllocate(port: String, username: String, password: String) async throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // `timeout` bounds a hung client; `-O` is never used (it exits 0 even when refused).
        process.arguments = ["timeout", "30", "turnutils_uclient", "-p", port, "-u", username, "-w", password,
                             "-y", "-c", "-n", "1", "127.0.0.1"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        return try await withCheckedThrowingContinuation { cont in
            process.terminationHandler = { cont.resume(returning: $0.terminationStatus) }
            do { try process.run() } catch { cont.resume(throwing: error) }
        }
    }
}

extension JSONValue {
    fileprivate func isStatus(_ callID: String, _ status: String) -> Bool {
        self["type"] == "call.status_changed" && self["call_id"] == .string(callID) && self["status"] == .string(status)
    }
}

extension JSONValue {
    fileprivate var items: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
}

extension Array {
    fileprivate func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}
