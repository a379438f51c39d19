import AIIMJSON
import AIIMProtocol
import Foundation
import Testing

/// AI answers as generations (docs/AI.md) against real Redis, PostgreSQL and WebSocket clients:
/// typed parts the same live and stored, resume by offset, stop apart from disconnect.
@Suite struct GenerationTests {
    /// User names of this run only: other suites share the database and their users.
    static let run = uniqueName("gen")
    func u(_ name: String) -> String { Self.run + "_" + name }

    /// A producer's WebSocket and the answer it produces.
    struct Producer: Sendable {
        let ws: WSTestClient
        let messageID: String
        var offset: Int64 = 0

        static func start(_ ws: WSTestClient, conversation: String, id: String = UUIDs.make()) async throws -> Producer {
            let ack = try await ws.request(["type": "generation.start", "conversation_id": .string(conversation),
                                            "client_generation_id": .string(id), "label": "thinking…"])
            #expect(ack?["event"]?.stringValue == "generation.started", "\(String(describing: ack))")
            return Producer(ws: ws, messageID: try #require(ack?["message_id"]?.stringValue))
        }

        /// Sends deltas (offsets assigned in order) in one frame.
        mutating func send(_ deltas: [[String: JSONValue]]) async throws {
            var out: [JSONValue] = []
            for var d in deltas {
                offset += 1
                d["offset"] = .number(Double(offset))
                out.append(.object(d))
            }
            try await ws.send(["type": "generation.delta", "message_id": .string(messageID), "deltas": .array(out)])
        }

        func acked(_ offset: Int64) async throws -> Bool {
            try await ws.waitFor { f in
                f["event"]?.stringValue == "generation.delta" && f["message_id"]?.stringValue == messageID
                    && (f["offset"]?.intValue ?? 0) >= Int(offset)
            } != nil
        }

        func end(_ state: String = "completed") async throws -> JSONValue? {
            try await ws.request(["type": "generation.end", "message_id": .string(messageID), "state": .string(state),
                                  "last_offset": .number(Double(offset))])
        }
    }

    /// The deltas of one answer a device received, in arrival order.
    static func deltas(_ ws: WSTestClient, _ id: String) -> [JSONValue] {
        var out: [JSONValue] = []
        for f in ws.all {
            if f["data"]?["event"]?.stringValue == "generation.delta", f["data"]?["message_id"]?.stringValue == id {
                out += f["data"]?["deltas"]?.arrayValue ?? []
            } else if f["type"]?.stringValue == "generation.snapshot", f["message"]?["message_id"]?.stringValue == id {
                out += f["deltas"]?.arrayValue ?? []
            }
        }
        return out
    }

    static func text(_ deltas: [JSONValue], textParts: Set<Int>) -> String {
        deltas.filter { textParts.contains($0["part"]?.intValue ?? -1) }.compactMap { $0["text"]?.stringValue }.joined()
    }

    func history(_ stack: Stack, _ conversation: String, as user: String) async throws -> JSONValue? {
        let r = try await stack.http("GET", "/api/aiim/messages/\(conversation)", token: try await stack.token(user))
        return r.json["messages"]?.arrayValue?.last
    }

    @Test func anAnswerWithReasoningAToolCallAResultAndTextIsTheSameLiveAndStored() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: u("alice"), members: [u("agent")])
        let alice = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(u("alice")))
        let agentWS = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(u("agent")))
        var p = try await Producer.start(agentWS, conversation: conv)
        let pid = p.messageID
        let created = try await alice.waitFor { $0["data"]?["message"]?["message_id"]?.stringValue == pid }
        #expect(created?["data"]?["message"]?["generation"]?["state"]?.stringValue == "thinking")
        #expect(created?["data"]?["message"]?["generation"]?["label"]?.stringValue == "thinking…")

        try await p.send([["part": 0, "type": "reasoning", "text": "The user wants "], ["part": 0, "text": "the weather."]])
        try await p.send([["part": 1, "type": "tool_call", "id": "call_1", "name": "weather", "arguments": "{\"city\":"]])
        try await p.send([["part": 1, "arguments": "\"Paris\"}"]])
        let toolState = try await alice.waitFor { $0["data"]?["event"]?.stringValue == "generation.status" && $0["data"]?["state"]?.stringValue == "tool_call" }
        #expect(toolState != nil, "the members see the tool call as a state")
        try await p.send([["part": 2, "type": "tool_result", "tool_call_id": "call_1", "content": ["temp_c": 18]]])
        let words = ["It ", "is ", "18 °C ", "in ", "Paris."]
        try await p.send([["part": 3, "type": "text", "text": .string(words[0])]])
        for w in words.dropFirst() { try await p.send([["part": 3, "text": .string(w)]]) }
        try await p.send([["part": 4, "type": "citation", "url": "https://example.org/paris", "title": "Paris weather"]])
        #expect(try await p.acked(p.offset))
        let ended = try await p.end()
        #expect(ended?["event"]?.stringValue == "generation.ended" && ended?["state"]?.stringValue == "completed", "\(String(describing: ended))")
        let done = try await alice.waitFor { $0["data"]?["event"]?.stringValue == "generation.status" && $0["data"]?["state"]?.stringValue == "completed" }
        #expect(done?["data"]?["offset"]?.intValue == Int(p.offset))

        // Live: every delta once, in offset order.
        let live = Self.deltas(alice, p.messageID)
        #expect(live.compactMap { $0["offset"]?.intValue } == Array(1...Int(p.offset)))
        // Stored: the same parts, the tool call's arguments as JSON.
        let stored = try #require(try await history(stack, conv, as: u("alice")))
        #expect(stored["generation"]?["state"]?.stringValue == "completed")
        let parts = try #require(stored["content"]?["parts"]?.arrayValue)
        #expect(parts.map { $0["type"]?.stringValue ?? "" } == ["reasoning", "tool_call", "tool_result", "text", "citation"])
        #expect(parts[0]["text"]?.stringValue == "The user wants the weather.")
        #expect(parts[1]["arguments"] == ["city": "Paris"])
        #expect(parts[2]["content"] == ["temp_c": 18])
        #expect(parts[4]["url"]?.stringValue == "https://example.org/paris")
        #expect(stored["content"]?["text"]?.stringValue == words.joined())
        #expect(Self.text(live, textParts: [3]) == words.joined())
        await alice.close(); await agentWS.close()
    }

    @Test func aDeviceThatReconnectsThreeTimesMidAnswerEndsWithExactlyTheStoredText() async throws {
        let stack = try await Stack.start(gateways: 2, messaging: 2)
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: u("bob"), members: [u("agent")])
        let agentWS = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(u("agent")))
        var p = try await Producer.start(agentWS, conversation: conv)
        let id = p.messageID
        let bobToken = try await stack.token(u("bob"))
        // The producer streams 120 text deltas while bob's device drops and resumes three times
        // (on either gateway), each time from the last offset it applied.
        let first = p
        let producing = Task {
            var p = first
            try await p.send([["part": 0, "type": "text", "text": "t0 "]])
            for i in 1..<120 {
                try await p.send([["part": 0, "text": .string("t\(i) ")]])
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(try await p.acked(p.offset))
            return p
        }
        var applied: [Int64] = []
        var text = ""
        func apply(_ deltas: [JSONValue]) {
            for d in deltas {
                let o = Int64(d["offset"]?.intValue ?? 0)
                if o <= (applied.last ?? 0) { continue }  // never happens: checked below
                applied.append(o)
                text += d["text"]?.stringValue ?? ""
            }
        }
        var repeats = 0
        for round in 0..<4 {
            let ws = try await WSTestClient.connect(port: stack.ports[round % 2], token: bobToken)
            let after = applied.last ?? 0
            let snap = try await ws.request(["type": "generation.resume", "message_id": .string(id), "after_offset": .number(Double(after))])
            #expect(snap?["type"]?.stringValue == "generation.snapshot", "\(String(describing: snap))")
            try await Task.sleep(for: .milliseconds(round == 3 ? 0 : 250))
            if round == 3 {
                let produced = try await producing.value
                _ = try await produced.end()
                _ = try await ws.waitFor { $0["data"]?["state"]?.stringValue == "completed" }
            }
            let got = Self.deltas(ws, id)
            var last = after
            for d in got {
                let o = Int64(d["offset"]?.intValue ?? 0)
                if o != last + 1 { repeats += 1 }
                last = max(last, o)
            }
            apply(got)
            await ws.close()
        }
        p = try await producing.value
        #expect(repeats == 0, "every device session got the deltas after its offset once, in order")
        #expect(applied == Array(1...p.offset))
        let stored = try #require(try await history(stack, conv, as: u("bob")))
        #expect(stored["content"]?["text"]?.stringValue == text)
        #expect(text == (0..<120).map { "t\($0) " }.joined())
        await agentWS.close()
    }

    @Test func twentyConcurrentAnswersAcrossTwoGatewaysAndTwoReplicasReachEveryDeviceOnceInOrder() async throws {
        let stack = try await Stack.start(gateways: 2, messaging: 2)
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        // Four conversations, each watched by one device on either gateway, each with an agent
        // producing five answers at once (its producers alternate gateways): 20 answers, 60
        // text deltas each, sent in frames of one to three deltas.
        let deltasPerAnswer = 60
        var watchers: [(conversation: String, devices: [WSTestClient])] = []
        var producers: [Producer] = []
        for c in 0..<4 {
            let conv = try await stack.conversation(owner: u("watch\(c)"), members: [u("bot\(c)")])
            let token = try await stack.token(u("watch\(c)"))
            watchers.append((conv, [try await WSTestClient.connect(port: stack.ports[0], token: token),
                                    try await WSTestClient.connect(port: stack.ports[1], token: token)]))
            let botToken = try await stack.token(u("bot\(c)"))
            for a in 0..<5 {
                let ws = try await WSTestClient.connect(port: stack.ports[a % 2], token: botToken)
                producers.append(try await Producer.start(ws, conversation: conv))
            }
        }
        let finished = try await withThrowingTaskGroup(of: Producer.self) { group in
            for (i, start) in producers.enumerated() {
                group.addTask {
                    var p = start
                    var sent = 0
                    while sent < deltasPerAnswer {
                        let n = min(1 + (sent + i) % 3, deltasPerAnswer - sent)
                        try await p.send((sent..<sent + n).map { k in
                            k == 0 ? ["part": 0, "type": "text", "text": .string("a\(i).\(k) ")] : ["part": 0, "text": .string("a\(i).\(k) ")]
                        })
                        sent += n
                    }
                    #expect(try await p.acked(p.offset))
                    let ended = try await p.end()
                    #expect(ended?["state"]?.stringValue == "completed", "\(String(describing: ended))")
                    return p
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        #expect(finished.count == 20)
        for (c, w) in watchers.enumerated() {
            let mine = finished.filter { p in producers.firstIndex { $0.messageID == p.messageID }! / 5 == c }
            for device in w.devices {
                for p in mine {
                    let done = try await device.waitFor(timeout: .seconds(20)) {
                        $0["data"]?["event"]?.stringValue == "generation.status" && $0["data"]?["message_id"]?.stringValue == p.messageID
                            && $0["data"]?["state"]?.stringValue == "completed"
                    }
                    #expect(done != nil)
                    let got = Self.deltas(device, p.messageID).compactMap { $0["offset"]?.intValue }
                    #expect(got == Array(1...deltasPerAnswer), "answer \(p.messageID): every delta once, in order")
                }
            }
            let stored = try await stack.http("GET", "/api/aiim/messages/\(w.conversation)", token: try await stack.token(u("watch\(c)")))
            let texts = Set(stored.json["messages"]?.arrayValue?.compactMap { $0["content"]?["text"]?.stringValue } ?? [])
            for p in mine {
                let i = producers.firstIndex { $0.messageID == p.messageID }!
                #expect(texts.contains((0..<deltasPerAnswer).map { "a\(i).\($0) " }.joined()))
            }
            for d in w.devices { await d.close() }
        }
        for p in producers { await p.ws.close() }
    }

    @Test func aConversationThatHidesReasoningShowsItsPlaceButNotItsText() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: u("hana"), members: [u("agent"), u("ivan")])
        let hana = try await stack.token(u("hana"))
        // Only the owner or an admin changes settings; a bad value changes nothing.
        let byMember = try await stack.http("PATCH", "/api/aiim/conversations/\(conv)", token: try await stack.token(u("ivan")),
                                            body: ["settings": ["ai_reasoning": "hidden"]])
        #expect(byMember.status == 403 && byMember.json["error"]?["code"]?.stringValue == "forbidden", "\(byMember.json)")
        let bad = try await stack.http("PATCH", "/api/aiim/conversations/\(conv)", token: hana, body: ["settings": ["ai_reasoning": "secret"]])
        #expect(bad.status == 400 && bad.json["error"]?["code"]?.stringValue == "validation_failed", "\(bad.json)")
        let ivan = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(u("ivan")))
        let set = try await stack.http("PATCH", "/api/aiim/conversations/\(conv)", token: hana, body: ["settings": ["ai_reasoning": "hidden"]])
        #expect(set.status == 200 && set.json["settings"]?["ai_reasoning"]?.stringValue == "hidden", "\(set.json)")
        let updated = try await ivan.waitFor { $0["data"]?["event"]?.stringValue == "conversation.updated" }
        #expect(updated?["data"]?["conversation"]?["settings"]?["ai_reasoning"]?.stringValue == "hidden")

        let agentWS = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(u("agent")))
        var p = try await Producer.start(agentWS, conversation: conv)
        try await p.send([["part": 0, "type": "reasoning", "text": "private chain "], ["part": 0, "text": "of thought"]])
        try await p.send([["part": 1, "type": "text", "text": "Hello."]])
        #expect(try await p.acked(p.offset))
        // A device joining mid-answer gets the snapshot without the reasoning's text.
        let late = try await WSTestClient.connect(port: stack.ports[0], token: hana)
        let snap = try await late.request(["type": "generation.resume", "message_id": .string(p.messageID), "after_offset": 0])
        #expect(snap?["message"]?["content"]?["parts"]?[0] == ["type": "reasoning", "hidden": true], "\(String(describing: snap))")
        #expect(snap?["deltas"]?.arrayValue?.count == 3)
        #expect(snap?["deltas"]?[1] == ["offset": 2, "part": 0, "hidden": true], "\(String(describing: snap))")
        _ = try await p.end()
        _ = try await ivan.waitFor { $0["data"]?["state"]?.stringValue == "completed" }
        let live = Self.deltas(ivan, p.messageID)
        #expect(live.compactMap { $0["offset"]?.intValue } == [1, 2, 3])
        #expect(live.first == ["offset": 1, "part": 0, "type": "reasoning", "hidden": true], "\(live)")
        #expect(live.last?["text"]?.stringValue == "Hello.")
        #expect(!ivan.all.description.contains("private chain"), "no frame carries the hidden text")
        let stored = try #require(try await history(stack, conv, as: u("ivan")))
        #expect(stored["generation"]?["reasoning"]?.stringValue == "hidden")
        #expect(stored["content"]?["parts"]?.arrayValue == [["type": "reasoning", "hidden": true], ["type": "text", "text": "Hello."]])
        #expect(stored["content"]?["text"]?.stringValue == "Hello.")
        // An answer started before the change keeps showing; one started after shows again when shown.
        _ = try await stack.http("PATCH", "/api/aiim/conversations/\(conv)", token: hana, body: ["settings": ["ai_reasoning": "shown"]])
        var q = try await Producer.start(agentWS, conversation: conv)
        try await q.send([["part": 0, "type": "reasoning", "text": "visible"]])
        _ = try await q.end()
        let second = try #require(try await history(stack, conv, as: u("ivan")))
        #expect(second["content"]?["parts"]?[0]?["text"]?.stringValue == "visible")
        await ivan.close(); await late.close(); await agentWS.close()
    }

    @Test func aStopFromAResumedDeviceEndsTheAnswerAsStoppedAndTheProducerIsTold() async throws {
        let stack = try await Stack.start(env: ["GENERATION_STOP_GRACE_SECONDS": "2"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: u("carol"), members: [u("agent")])
        let agentWS = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(u("agent")))
        var p = try await Producer.start(agentWS, conversation: conv)
        try await p.send([["part": 0, "type": "text", "text": "Once upon "], ["part": 0, "text": "a time"]])
        #expect(try await p.acked(2))
        let carol = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(u("carol")))
        let snap = try await carol.request(["type": "generation.resume", "message_id": .string(p.messageID)])
        #expect(snap?["message"]?["content"]?["text"]?.stringValue == "Once upon a time")
        let stop = try await carol.request(["type": "generation.stop", "message_id": .string(p.messageID)])
        #expect(stop?["event"]?.stringValue == "generation.stop" && stop?["stop_requested"] == true, "\(String(describing: stop))")
        let told = try await agentWS.waitFor { $0["data"]?["event"]?.stringValue == "generation.stop_requested" }
        #expect(told?["data"]?["requested_by"]?.stringValue == u("carol"))
        #expect(told?["data"]?["offset"]?.intValue == 2)
        // The producer acknowledges with its last offset; the partial text is kept.
        let ended = try await p.end("stopped")
        #expect(ended?["state"]?.stringValue == "stopped")
        let status = try await carol.waitFor { $0["data"]?["event"]?.stringValue == "generation.status" && $0["data"]?["state"]?.stringValue == "stopped" }
        #expect(status != nil)
        #expect(try await history(stack, conv, as: u("carol"))?["content"]?["text"]?.stringValue == "Once upon a time")

        // A producer that ignores the stop is ended by the server after the grace period.
        var q = try await Producer.start(agentWS, conversation: conv)
        let qid = q.messageID
        try await q.send([["part": 0, "type": "text", "text": "ignoring"]])
        #expect(try await q.acked(1))
        _ = try await carol.request(["type": "generation.stop", "message_id": .string(q.messageID)])
        let forced = try await carol.waitFor(timeout: .seconds(15)) {
            $0["data"]?["message_id"]?.stringValue == qid && $0["data"]?["state"]?.stringValue == "stopped"
        }
        #expect(forced != nil, "ended as stopped after the grace")
        try await q.send([["part": 0, "text": " more"]])
        let refused = try await agentWS.waitFor { $0["type"]?.stringValue == "error" && $0["message_id"]?.stringValue == qid }
        #expect(refused?["code"]?.stringValue == "invalid_state")
        await carol.close(); await agentWS.close()
    }

    @Test func badInputGetsItsDocumentedCodeAndChangesNothing() async throws {
        // Ending a 1 MiB answer folds it in one statement: on a loaded machine that may take longer
        // than the default bus timeout.
        let stack = try await Stack.start(env: ["BUS_TIMEOUT_MS": "30000"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: u("erin"), members: [u("agent")])
        let agent = try await stack.token(u("agent"))
        let start = try await stack.http("POST", "/api/aiim/generations", token: agent, body: ["conversation_id": .string(conv)])
        #expect(start.status == 201, "\(start.json)")
        let id = try #require(start.json["message"]?["message_id"]?.stringValue)
        func deltas(_ ds: [JSONValue], as token: String? = nil) async throws -> (status: Int, json: JSONValue) {
            try await stack.http("POST", "/api/aiim/generations/\(id)/deltas", token: token ?? agent, body: ["deltas": .array(ds)])
        }
        let ok = try await deltas([["offset": 1, "part": 0, "type": "text", "text": "a"]])
        #expect(ok.status == 200 && ok.json["offset"]?.intValue == 1, "\(ok.json)")
        // A repeat with the same content is accepted and changes nothing; different content is a conflict.
        #expect(try await deltas([["offset": 1, "part": 0, "type": "text", "text": "a"]]).json["offset"]?.intValue == 1)
        #expect(try await deltas([["offset": 1, "part": 0, "type": "text", "text": "b"]]).json["error"]?["code"]?.stringValue == "conflict")
        #expect(try await deltas([["offset": 3, "part": 0, "text": "x"]]).json["error"]?["code"]?.stringValue == "validation_failed", "offset gap")
        #expect(try await deltas([["offset": 2, "part": 2, "type": "text", "text": "x"]]).json["error"]?["code"]?.stringValue == "validation_failed", "part skips")
        #expect(try await deltas([["offset": 2, "part": 0, "type": "bogus"]]).json["error"]?["code"]?.stringValue == "validation_failed")
        #expect(try await deltas([["offset": 2, "part": 0, "text": "nul\u{0}"]]).json["error"]?["code"]?.stringValue == "validation_failed")
        #expect(try await deltas([["offset": 2, "part": 0, "text": .string(String(repeating: "x", count: 40_000))]]).json["error"]?["code"]?.stringValue == "payload_too_large", "one delta over 32 KiB")
        let stranger = try await stack.token(u("mallory"))
        #expect(try await deltas([["offset": 2, "part": 0, "text": "x"]], as: stranger).json["error"]?["code"]?.stringValue == "forbidden")
        let stop = try await stack.http("POST", "/api/aiim/generations/\(id)/stop", token: stranger)
        #expect(stop.status == 403, "a non-member cannot stop: \(stop.json)")
        let label = try await stack.http("POST", "/api/aiim/generations/\(id)/status", token: agent,
                                         body: ["label": .string(String(repeating: "l", count: 201))])
        #expect(label.json["error"]?["code"]?.stringValue == "validation_failed")
        // The answer as a whole is capped (AI_STREAM_MAX_BYTES, 1 MiB by default); past it the
        // delta is refused and the answer can still be ended.
        var offset = 1
        var capped = false
        var last: JSONValue = .null
        for _ in 0..<40 where !capped {
            let r = try await deltas([.object(["offset": .number(Double(offset + 1)), "part": 0, "text": .string(String(repeating: "y", count: 30_000))])])
            last = r.json
            if r.json["error"]?["code"]?.stringValue == "payload_too_large" { capped = true } else { offset += 1 }
        }
        #expect(capped && offset > 30, "refused after about 1 MiB (\(offset) deltas): \(last)")
        let end = try await stack.http("POST", "/api/aiim/generations/\(id)/end", token: agent,
                                       body: ["state": "completed", "last_offset": .number(Double(offset))])
        #expect(end.status == 200 && end.json["message"]?["content"]?["text"]?.stringValue?.hasPrefix("ayyy") == true, "\(end.json)")
        #expect(try await deltas([.object(["offset": .number(Double(offset + 1)), "part": 0, "text": "late"])]).json["error"]?["code"]?.stringValue == "invalid_state")
        #expect(try await history(stack, conv, as: u("erin"))?["content"]?["text"]?.stringValue?.utf8.count == 1 + 30_000 * (offset - 1))
    }
}

/// Runs alone (after the other suites, `deploy/local/test`): its short silence timeout would end
/// other suites' answers, and their replicas would not end its answer in time.
/// With the disruptive tests (one at a time, after the rest): its two-second silence timeout
/// must not be outrun by a loaded machine, and its messaging replica must not answer for the
/// one that `gapFillRetriesUntilMessagingIsBack` stops.
extension DisruptiveTests {
    @Test func aProducerWhoseSocketDropsIsNotAStopButEndsInterruptedWithItsPartialText() async throws {
        let stack = try await Stack.start(env: ["GENERATION_TIMEOUT_SECONDS": "2"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let conv = try await stack.conversation(owner: GenerationTests().u("dave"), members: [GenerationTests().u("agent")])
        let dave = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(GenerationTests().u("dave")))
        let agentWS = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(GenerationTests().u("agent")))
        var p = try await GenerationTests.Producer.start(agentWS, conversation: conv)
        try await p.send([["part": 0, "type": "text", "text": "half an "], ["part": 0, "text": "answer"]])
        #expect(try await p.acked(2))
        await agentWS.close()
        // Still live (resumable) right after the drop.
        let soon = try await stack.http("GET", "/api/aiim/generations/\(p.messageID)", token: try await stack.token(GenerationTests().u("dave")))
        #expect(soon.json["message"]?["generation"]?["state"]?.stringValue == "generating", "\(soon.json)")
        let ended = try await dave.waitFor(timeout: .seconds(15)) {
            $0["data"]?["event"]?.stringValue == "generation.status" && $0["data"]?["state"]?.stringValue == "interrupted"
        }
        #expect(ended != nil)
        let stored = try #require(try await GenerationTests().history(stack, conv, as: GenerationTests().u("dave")))
        #expect(stored["content"]?["text"]?.stringValue == "half an answer")
        #expect(stored["generation"]?["state"]?.stringValue == "interrupted")
        await dave.close()
    }

}

extension DisruptiveTests {
    /// A batch of deltas whose append times out (messaging away for a moment) is tried again
    /// instead of dropped: the producer gets its ack and no error, and the answer holds every
    /// delta once.
    @Test func deltasSentWhileMessagingIsAwayForAMomentAreAppendedWhenItIsBack() async throws {
        let stack = try await Stack.start(gateways: 1, messaging: 0, env: ["BUS_TIMEOUT_MS": "1000"])
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        var messaging = try await InProcessMessaging.start()
        let t = GenerationTests()
        var conversation: String?
        for _ in 0..<10 where conversation == nil {  // a replica's first commands may outlast the short timeout
            let r = try await stack.http("POST", "/api/aiim/conversations", token: try await stack.token(t.u("gina")),
                                         body: ["type": "group", "name": "gap", "member_ids": [.string(t.u("agent"))]])
            conversation = r.json["conversation_id"]?.stringValue
        }
        let conv = try #require(conversation)
        let agentWS = try await WSTestClient.connect(port: stack.ports[0], token: try await stack.token(t.u("agent")))
        var p = try await GenerationTests.Producer.start(agentWS, conversation: conv)
        try await p.send([["part": 0, "type": "text", "text": "before "]])
        #expect(try await p.acked(1))
        await messaging.stop()
        try await p.send([["part": 0, "text": "during "]])
        try await p.send([["part": 0, "text": "the gap"]])
        try await Task.sleep(for: .milliseconds(1_500))  // longer than BUS_TIMEOUT_MS: the first try times out
        messaging = try await InProcessMessaging.start()
        #expect(try await p.acked(3), "\(agentWS.all.suffix(3))")
        let errors = agentWS.all.filter { $0["type"]?.stringValue == "error" && $0["message_id"]?.stringValue == p.messageID }
        #expect(errors.isEmpty, "\(errors)")
        #expect(try await p.end()?["state"]?.stringValue == "completed")
        let stored = try await t.history(stack, conv, as: t.u("gina"))
        #expect(stored?["content"]?["text"]?.stringValue == "before during the gap", "\(String(describing: stored))")
        await agentWS.close()
        await messaging.stop()
    }
}
