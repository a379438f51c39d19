import Foundation

/// Timestamps on the wire: ISO-8601 UTC with microseconds and a `Z`.
public enum Timestamp {
    public static func iso8601(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var secs = Int64(t.rounded(.down))
        var micros = Int64(((t - Double(secs)) * 1_000_000).rounded())
        if micros >= 1_000_000 { secs += 1; micros -= 1_000_000 }
        var tmv = tm()
        var tt = time_t(secs)
        gmtime_r(&tt, &tmv)
        // Digits by hand: String(format:) goes through CFString and cost more than a message insert.
        var out = [UInt8](repeating: 0, count: 27)
        func put(_ v: Int, at: Int, width: Int) {
            var v = v
            for k in stride(from: at + width - 1, through: at, by: -1) { out[k] = UInt8(48 + v % 10); v /= 10 }
        }
        put(Int(tmv.tm_year) + 1900, at: 0, width: 4); out[4] = 45
        put(Int(tmv.tm_mon) + 1, at: 5, width: 2); out[7] = 45
        put(Int(tmv.tm_mday), at: 8, width: 2); out[10] = 84
        put(Int(tmv.tm_hour), at: 11, width: 2); out[13] = 58
        put(Int(tmv.tm_min), at: 14, width: 2); out[16] = 58
        put(Int(tmv.tm_sec), at: 17, width: 2); out[19] = 46
        put(Int(micros), at: 20, width: 6); out[26] = 90
        return String(decoding: out, as: UTF8.self)
    }

    /// Parses RFC 3339 UTC or offset timestamps (`2026-11-25T13:30:38.123456Z`,
    /// `…+08:00`, fraction optional). Hand-written: a formatter per call cost more than the rest
    /// of decoding a message (it sits on the path of every reply that carries a message).
    public static func parse(_ s: String) -> Date? {
        var s = s
        return s.withUTF8 { u -> Date? in
            func num(_ a: Int, _ b: Int) -> Int? {
                var v = 0
                for i in a..<b {
                    let c = u[i]
                    guard c >= 48 && c <= 57 else { return nil }
                    v = v * 10 + Int(c - 48)
                }
                return v
            }
            guard u.count >= 20, u[4] == 45, u[7] == 45, u[10] == 84 || u[10] == 116 || u[10] == 32,
                  u[13] == 58, u[16] == 58,
                  let y = num(0, 4), let mo = num(5, 7), let d = num(8, 10), let h = num(11, 13),
                  let mi = num(14, 16), let se = num(17, 19),
                  (1...12).contains(mo), (1...31).contains(d), h < 24, mi < 60, se < 61 else { return nil }
            var i = 19
            var frac = 0.0
            if u[i] == 46 {  // "."
                i += 1
                var scale = 0.1
                let start = i
                while i < u.count, u[i] >= 48, u[i] <= 57 { frac += Double(u[i] - 48) * scale; scale /= 10; i += 1 }
                guard i > start else { return nil }
            }
            guard i < u.count else { return nil }
            var offset = 0
            switch u[i] {
            case 90, 122: i += 1  // "Z"
            case 43, 45:  // "+hh:mm" / "-hh:mm"
                guard i + 6 == u.count, u[i + 3] == 58, let oh = num(i + 1, i + 3), let om = num(i + 4, i + 6),
                      oh < 24, om < 60 else { return nil }
                offset = (oh * 3600 + om * 60) * (u[i] == 43 ? 1 : -1)
                i += 6
            default: return nil
            }
            guard i == u.count else { return nil }
            var t = tm()
            t.tm_year = Int32(y - 1900); t.tm_mon = Int32(mo - 1); t.tm_mday = Int32(d)
            t.tm_hour = Int32(h); t.tm_min = Int32(mi); t.tm_sec = Int32(se)
            let secs = timegm(&t) - offset
            return Date(timeIntervalSince1970: Double(secs) + frac)
        }
    }

    public static func nowMillis() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
