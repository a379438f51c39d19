
/// One entry of a Redis stream.
public struct StreamEntry: Sendable {
    public var id: String
    public var fields: [String: [UInt8]]

    /// Parses `[[id, [f, v, ...]], ...]`; entries deleted meanwhile (nil fields) get no fields.
    static func parseList(_ v: RESPValue) -> [StreamEntry] {
        guard let items = v.array else { return [] }
        return items.compactMap { item in
            guard let pair = item.array, pair.count >= 1, let id = pair[0].text else { return nil }
            var fields: [String: [UInt8]] = [:]
            if pair.count > 1, let kv = pair[1].array {
                var i = 0
                while i + 1 < kv.count {
                    if let k = kv[i].text, case .string(let val) = kv[i + 1] { fields[k] = val }
                    i += 2
                }
            }
            return StreamEntry(id: id, fields: fields)
        }
    }

    /// Parses an `XREAD`/`XREADGROUP` reply: `[[stream, entries], ...]` or nil on timeout.
    static func parseRead(_ v: RESPValue) -> [StreamEntry] {
        guard let streams = v.array else { return [] }
        return streams.flatMap { s -> [StreamEntry] in
            guard let pair = s.array, pair.count == 2 else { return [] }
            return parseList(pair[1])
        }
    }
}
