import AIIMJSON
import AIIMProtocol
import Foundation
import Testing

/// What `call.webrtc.signal` accepts: real offers, answers and candidates pass unchanged
/// (CRLF kept), anything malformed is `validation_failed`.
@Suite struct CallSignalTests {
    static let offer = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\n"
        + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=rtpmap:111 opus/48000/2\r\n"

    func code(_ payload: JSONValue?) -> ErrorCode? {
        do { _ = try CallSignal.validate(payload); return nil } catch let e as AIIMError { return e.code } catch { return nil }
    }

    @Test func offerAndAnswerPassByteForByte() throws {
        for type in ["offer", "answer"] {
            let out = try CallSignal.validate(.object(["type": .string(type), "sdp": .string(Self.offer), "junk": .bool(true)]))
            #expect(out["sdp"]?.stringValue == Self.offer, "CRLF and every byte kept")
            #expect(out["sdp"]?.stringValue?.contains("\r\n") == true)
            #expect(out["type"]?.stringValue == type)
            #expect(out["junk"] == nil, "unknown fields are not relayed")
        }
        // LF-only SDP (some libraries) is passed through as is, too.
        let lf = Self.offer.replacingOccurrences(of: "\r\n", with: "\n")
        #expect(try CallSignal.validate(.object(["type": .string("offer"), "sdp": .string(lf)]))["sdp"]?.stringValue == lf)
    }

    @Test func malformedSDPIsRefused() {
        let bad = [
            "", "hello", "o=- 1 2 IN IP4 127.0.0.1\r\nv=0\r\n", "v=0\r\n\r\ns=-\r\n", "v=0\r\nnot a line\r\n",
            "v=0\r\nS=upper\r\n", "v=0\r\ns=\u{0}\r\n",
        ]
        for sdp in bad {
            #expect(code(.object(["type": .string("offer"), "sdp": .string(sdp)])) == .validationFailed, "\(sdp.prefix(30))")
        }
        #expect(code(.object(["type": .string("offer"), "sdp": .string("v=0\r\n" + String(repeating: "a=x\r\n", count: 20_000))])) == .validationFailed,
                "larger than 64 KiB")
        #expect(code(.object(["type": .string("answer")])) == .validationFailed)
        #expect(code(.object(["type": .string("answer"), "sdp": .number(1)])) == .validationFailed)
    }

    @Test func candidatesAreCheckedAndNormalised() throws {
        let line = "candidate:842163049 1 udp 1677729535 203.0.113.7 46154 typ srflx raddr 0.0.0.0 rport 0 generation 0"
        let out = try CallSignal.validate(.object(["type": .string("candidate"), "candidate": .object([
            "candidate": .string(line), "sdpMid": .string("0"), "sdpMLineIndex": .number(0), "usernameFragment": .string("abcd"),
        ])]))
        #expect(out["candidate"]?["candidate"]?.stringValue == line)
        #expect(out["candidate"]?["sdpMid"]?.stringValue == "0")
        #expect(out["candidate"]?["sdpMLineIndex"]?.intValue == 0)
        #expect(out["candidate"]?["usernameFragment"]?.stringValue == "abcd")
        // Only an index is fine too.
        #expect(code(.object(["type": .string("candidate"), "candidate": .object(["candidate": .string(line), "sdpMLineIndex": .number(1)])])) == nil)
    }

    @Test func malformedCandidatesAreRefused() {
        let line = "candidate:1 1 udp 2122260223 192.0.2.1 54321 typ host"
        let bad: [JSONValue?] = [
            nil, .string("offer"), .object([:]), .object(["type": .string("rollback")]),
            .object(["type": .string("candidate")]),
            .object(["type": .string("candidate"), "candidate": .string(line)]),
            .object(["type": .string("candidate"), "candidate": .object(["candidate": .string("a=candidate:1"), "sdpMid": .string("0")])]),
            .object(["type": .string("candidate"), "candidate": .object(["candidate": .string(line)])]),
            .object(["type": .string("candidate"), "candidate": .object(["candidate": .string(line + "\r\na=evil"), "sdpMid": .string("0")])]),
            .object(["type": .string("candidate"), "candidate": .object(["candidate": .string(line), "sdpMLineIndex": .number(-1)])]),
            .object(["type": .string("candidate"), "candidate": .object(["candidate": .string(line), "sdpMLineIndex": .number(0.5)])]),
            .object(["type": .string("candidate"), "candidate": .object(["candidate": .string(line), "sdpMid": .number(3)])]),
            .object(["type": .string("candidate"), "candidate": .object([
                "candidate": .string("candidate:" + String(repeating: "x", count: 2000)), "sdpMid": .string("0")])]),
            .object(["type": .string("end-of-candidates"), "candidate": .object(["candidate": .string(line), "sdpMid": .string("0")])]),
        ]
        for payload in bad {
            #expect(code(payload) == .validationFailed, "\(String(describing: payload))")
        }
    }

    @Test func endOfCandidatesInBothForms() throws {
        // The explicit marker, and WebRTC's empty candidate (which the original refused).
        #expect(try CallSignal.validate(.object(["type": .string("end-of-candidates")])) == .object(["type": .string("end-of-candidates")]))
        let empty = try CallSignal.validate(.object(["type": .string("candidate"), "candidate": .object(["candidate": .string(""), "sdpMid": .string("0")])]))
        #expect(empty["candidate"]?["candidate"]?.stringValue == "")
        #expect(code(.object(["type": .string("candidate"), "candidate": .object(["candidate": .string("")])])) == nil,
                "an empty candidate without a section ends every section")
        #expect(code(.object(["type": .string("end-of-candidates"), "candidate": .object(["candidate": .string(""), "sdpMLineIndex": .number(0)])])) == nil)
    }
}
