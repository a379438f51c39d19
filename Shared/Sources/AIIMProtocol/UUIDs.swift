/// Ids on the wire.
public enum UUIDs {
    /// A lower-case UUID4 string (the original's id format). Made from the system generator
    /// (`getrandom`) directly: Foundation's `UUID()` opens and reads `/dev/urandom` on every call
    /// here, three system calls for each of the several ids a message needs.
    public static func make() -> String {
        var rng = SystemRandomNumberGenerator()
        var hi = rng.next() as UInt64, lo = rng.next() as UInt64
        hi = (hi & ~0xF000) | 0x4000  // version 4
        lo = (lo & ~(0xC << 60)) | (0x8 << 60)  // RFC 4122 variant
        let hex: [UInt8] = Array("0123456789abcdef".utf8)
        var out = [UInt8](repeating: UInt8(ascii: "-"), count: 36)
        var k = 0
        for (word, range) in [(hi, 0..<16), (lo, 16..<32)] {
            for i in range {
                if k == 8 || k == 13 || k == 18 || k == 23 { k += 1 }
                out[k] = hex[Int((word >> UInt64(60 - 4 * (i % 16))) & 0xF)]
                k += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
