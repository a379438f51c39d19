import Foundation
import NIOConcurrencyHelpers

/// What `/ready` reports: each dependency (redis, database, storage) is either up or down with a
/// reason. Updated by `DependencyMonitor`; read by the HTTP handler.
public final class Readiness: Sendable {
    let state = NIOLockedValueBox<[String: String?]>([:])

    public init(components: [String]) {
        state.withLockedValue { s in for c in components { s[c] = "not checked yet" } }
    }

    /// Records a component as up (`reason` nil) or down.
    public func set(_ component: String, down reason: String?) {
        state.withLockedValue { $0[component] = .some(reason) }
    }

    /// (ready, component → reason for those down).
    public func report() -> (ready: Bool, down: [String: String]) {
        let s = state.withLockedValue { $0 }
        var down: [String: String] = [:]
        for (k, v) in s { if let r = v { down[k] = r } }
        return (down.isEmpty, down)
    }

    /// Every component's name.
    public var components: [String] { state.withLockedValue { Array($0.keys) }.sorted() }

    public func isUp(_ component: String) -> Bool {
        state.withLockedValue { $0[component].map { $0 == nil } ?? false }
    }
}

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

extension Duration {
    /// Whole milliseconds (rounded down), for protocols that count in them.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }
}

extension ContinuousClock.Instant {
    /// Nanoseconds from this instant to now, for `Timer.recordNanoseconds`.
    public var elapsedNanoseconds: Int64 {
        let d = ContinuousClock.now - self
        return d.components.seconds * 1_000_000_000 + d.components.attoseconds / 1_000_000_000
    }
}
