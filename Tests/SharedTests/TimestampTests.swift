import AIIMJSON
import AIIMProtocol
import Foundation
import Testing

@Suite struct TimestampTests {
    @Test func parsesWhatTheWireCarries() throws {
        let d = try #require(Timestamp.parse("2026-11-25T13:30:38.123456Z"))
        #expect(Timestamp.iso8601(d) == "2026-11-25T13:30:38.123456Z")
        #expect(Timestamp.parse("2026-11-25T13:30:38Z")?.timeIntervalSince1970 == 1_795_613_438)
        // An offset is applied: 21:30 at +08:00 is 13:30 UTC.
        #expect(Timestamp.parse("2026-11-25T21:30:38+08:00")?.timeIntervalSince1970 == 1_795_613_438)
        #expect(Timestamp.parse("2026-11-25T08:00:38.5-05:30")?.timeIntervalSince1970 == 1_795_613_438.5)
    }

    @Test func roundTripsMicroseconds() throws {
        for t in [0.0, 1_795_613_438.000001, 1_795_613_438.999999, 1_700_000_000.5] {
            let d = Date(timeIntervalSince1970: t)
            let back = try #require(Timestamp.parse(Timestamp.iso8601(d)))
            #expect(abs(back.timeIntervalSince1970 - t) < 0.000_001)
        }
    }

    @Test func rejectsMalformedText() {
        for bad in ["", "2026-11-25", "2026-11-25T13:30:38", "2026-13-25T13:30:38Z", "2026-11-25T25:30:38Z",
                    "2026-11-25T13:30:38.Z", "2026-11-25T13:30:38Zjunk", "2026-11-25T13:30:38+0800",
                    "20x6-11-25T13:30:38Z", "2026-11-25T13:30:38.12a4Z"] {
            #expect(Timestamp.parse(bad) == nil, "\(bad) was accepted")
        }
    }
}

@Suite struct UUIDTests {
    @Test func idsAreVersion4UUIDsAndDistinct() throws {
        var seen = Set<String>()
        for _ in 0..<1000 {
            let id = UUIDs.make()
            let parsed = try #require(UUID(uuidString: id), "\(id) is not a UUID")
            #expect(parsed.uuidString.lowercased() == id)
            let bytes = Array(id.utf8)
            #expect(bytes[14] == UInt8(ascii: "4"))
            #expect("89ab".utf8.contains(bytes[19]))
            seen.insert(id)
        }
        #expect(seen.count == 1000)
    }
}
