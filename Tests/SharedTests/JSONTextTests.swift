import AIIMJSON
import Foundation
import Testing

@Suite struct JSONTextTests {
    /// What Foundation's decoder reads, our parser reads the same.
    @Test func agreesWithFoundationOnValidText() throws {
        let texts = [
            #"{"type":"send_msg","conversation_id":"c1","content":{"text":"héllo \"q\" \\ \/ \n\t 😀"},"n":-12.5e3}"#,
            #"[1,2.5,-0.25,1e-7,12345678901234567,true,false,null,"",{},[],{"a":{"b":[{"c":null}]}}]"#,
            #"  "\u00e9\u4e2d\ud83d\ude00"  "#,
            "0", "-0", "123456789012345", "9007199254740993", "1.7976931348623157e308",
        ]
        for text in texts {
            let ours = try JSONValue(parsing: text)
            let theirs = try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
            #expect(ours == theirs, "\(text)")
        }
    }

    @Test func writesTextThatReadsBack() throws {
        let v: JSONValue = [
            "s": .string("quote \" backslash \\ newline \n tab \t bell \u{07} nul \u{00} emoji 😀 slash /"),
            "n": 42, "f": .number(0.1), "big": .number(1e300), "neg": .number(-3.5),
            "a": [nil, true, false, "x"], "o": ["k": ["deep": 1]],
        ]
        let text = v.jsonString()
        #expect(try JSONValue(parsing: text) == v)
        #expect(try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) == v)
        #expect(text.contains(#"\u0007"#) && text.contains(#"\u0000"#) && text.contains("/"))
        #expect(JSONValue.number(3).jsonString() == "3")
        #expect(JSONValue.number(.infinity).jsonString() == "null")
    }

    @Test func rejectsMalformedText() {
        let bad = [
            "", " ", "{", "}", "[1,]", "[1 2]", #"{"a" 1}"#, #"{"a":1,}"#, #"{a:1}"#, "01", "1.", ".5", "-", "1e",
            "+1", "NaN", "Infinity", "1e400", "tru", "nulll", #""abc"#, "\"a\u{01}b\"", #""\x""#, #""\u12""#,
            #""\ud800""#, #""\udc00x""#, #""\ud800\u0041""#, "[1] 2", "'a'",
        ]
        for text in bad {
            #expect(throws: JSONParseError.self, "\(text.debugDescription) was accepted") { try JSONValue(parsing: text) }
        }
        // Invalid UTF-8 inside a string.
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: [0x22, 0xC3, 0x28, 0x22]) }
    }

    @Test func boundsNesting() throws {
        let ok = String(repeating: "[", count: JSONValue.maxDepth) + String(repeating: "]", count: JSONValue.maxDepth)
        _ = try JSONValue(parsing: ok)
        let deep = String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deep) }
        let deepObject = String(repeating: #"{"a":"#, count: 1000) + "1" + String(repeating: "}", count: 1000)
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: deepObject) }
    }

    @Test func randomValuesRoundTrip() throws {
        var rng = SystemRandomNumberGenerator()
        func random(_ depth: Int) -> JSONValue {
            switch Int.random(in: 0..<(depth > 3 ? 4 : 6), using: &rng) {
            case 0: return .null
            case 1: return .bool(Bool.random(using: &rng))
            case 2: return .number(Bool.random() ? Double(Int.random(in: -1_000_000...1_000_000)) : Double.random(in: -1e9...1e9))
            case 3: return .string(String((0..<Int.random(in: 0...12)).map { _ in
                Character(Unicode.Scalar([0x22, 0x5C, 0x0A, 0x41, 0xE9, 0x4E2D, 0x1F600, 0x01][Int.random(in: 0..<8)])!) }))
            case 4: return .array((0..<Int.random(in: 0...4)).map { _ in random(depth + 1) })
            default: return .object(Dictionary((0..<Int.random(in: 0...4)).map { ("k\($0)", random(depth + 1)) }, uniquingKeysWith: { a, _ in a }))
            }
        }
        for _ in 0..<500 {
            let v = random(0)
            #expect(try JSONValue(parsing: v.jsonString()) == v)
        }
    }
}
