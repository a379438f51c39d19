import AIIMConfiguration
import AIIMJSON
import AIIMProtocol
import AIIMServiceKit
import Foundation
import Testing

@Suite struct EnvelopeTests {
    @Test func roundTripsThroughStreamFields() throws {
        let trace = Trace.root()
        let env = try Envelope.make(type: PingCommand.type, payload: PingCommand(note: "hi"), replyTo: "aiim:reply:x",
                                    deadline: 42, trace: trace, origin: "gateway/x")
        var fields: [String: [UInt8]] = [:]
        for (k, v) in env.fields { fields[k] = v }
        let back = try Envelope(fields: fields)
        #expect(back.header == env.header)
        #expect(try back.decode(PingCommand.self).note == "hi")
        #expect(back.trace.traceID == trace.traceID)
        #expect(back.trace.spanID != trace.spanID)
    }

    @Test func rejectsUnknownVersionAndGarbage() throws {
        #expect(throws: AIIMError.self) { try Envelope(fields: ["h": Array("not json".utf8)]) }
        #expect(throws: AIIMError.self) { try Envelope(fields: [:]) }
        var header = try Envelope.make(type: "x", payload: Empty()).header
        header.version = 99
        let h = Array(try JSONEncoder().encode(header))
        do {
            _ = try Envelope(fields: ["h": h, "p": Array("{}".utf8)])
            Issue.record("version 99 accepted")
        } catch let e as AIIMError {
            #expect(e.code == .unsupportedVersion)
        }
    }

    @Test func traceparentParsesAndFormats() throws {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        let t = try #require(Trace(traceparent: tp))
        #expect(t.traceID == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(t.traceparent == tp)
        #expect(Trace(traceparent: "garbage") == nil)
    }

    @Test func jsonValueKeepsStructure() throws {
        let text = #"{"delta":"x","n":3,"f":1.5,"ok":true,"list":[null,"a"]}"#
        let v = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
        #expect(v["delta"]?.stringValue == "x")
        #expect(v["n"]?.intValue == 3)
        let again = try JSONDecoder().decode(JSONValue.self, from: Data(v.jsonString().utf8))
        #expect(again == v)
    }

    @Test func errorCodesMapToDocumentedStatuses() {
        #expect(ErrorCode.forbidden.httpStatus == 403)
        #expect(ErrorCode.rateLimited.httpStatus == 429)
        #expect(ErrorCode.validationFailed.httpStatus == 400)
        #expect(ErrorCode.unauthorized.httpStatus == 401)
    }

    @Test func configurationRejectsMissingRedis() {
        #expect(throws: ConfigurationError.self) {
            try CommonConfiguration(service: .messaging, env: Environment([:]), requireDatabase: true)
        }
    }
}
