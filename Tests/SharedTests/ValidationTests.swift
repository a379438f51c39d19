import AIIMJSON
import AIIMProtocol
import Testing

/// The shared input rules that keep what PostgreSQL would refuse out of every command.
@Suite struct ValidationTests {
    func refused(_ bytes: [UInt8]) -> Bool {
        do { try Validation.storable(json: bytes); return false } catch let e as AIIMError {
            return e.code == .validationFailed
        } catch { return false }
    }

    @Test func aNULAnywhereInAJSONTextIsRefusedAndNothingElseIs() throws {
        #expect(refused(JSONValue.string("a\u{0}b").jsonBytes()))
        #expect(refused(JSONValue.object(["k\u{0}": .number(1)]).jsonBytes()))
        #expect(refused(JSONValue.array([.object(["deep": .array([.string("\u{0}")])])]).jsonBytes()))
        #expect(refused(Array(#"{"a":"\u0000"}"#.utf8)))
        #expect(refused([UInt8(ascii: "\""), 0, UInt8(ascii: "\"")]))
        // A backslash followed by the text u0000, and other escapes, are fine.
        #expect(!refused(JSONValue.string(#"\u0000"#).jsonBytes()))
        #expect(!refused(Array(#"{"a":"\\u0000","b":"\u0001\n\"\\"}"#.utf8)))
        #expect(!refused(JSONValue.string("ünïcode \u{1F600} \u{1}").jsonBytes()))
        #expect(throws: AIIMError.self) { try Validation.storable("x\u{0}", field: "name") }
        #expect(try Validation.storable("x", field: "name") == "x")
    }

    @Test func aCursorTimestampMustBeOneThePostgreSQLTextCouldBe() throws {
        for good in ["2026-11-25 13:30:38.123456+00", "2026-11-25 13:30:38+00", "2026-01-01 00:00:00.5+00"] {
            #expect(try Validation.cursorTimestamp(good) == good)
        }
        for bad in ["2026-13-25 13:30:38+00", "2026-11-25 24:00:00+00", "2026-11-25 13:30:38+00junk", "2026-11-25 13:30:38",
                    "2026-11-25T13:30:38+00", "2026-11-25 13:30:38.+00", "2026-11-25 13:30:38.1234567+00", "", "x"] {
            #expect(throws: AIIMError.self, "\(bad)") { try Validation.cursorTimestamp(bad) }
        }
    }
}
