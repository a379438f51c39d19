import AIIMJSON
import Foundation

/// The header of every stream entry. Stored as field `h` (JSON) next to the payload field `p`,
/// so a consumer can route on `type`/`version` before decoding the payload it expects.
public struct EnvelopeHeader: Codable, Sendable, Equatable {
    /// What the entry is, e.g. `messaging.send` or `reply`.
    public var type: String
    /// Unique id of this entry (UUID).
    public var id: String
    /// Protocol version; consumers reject versions they do not know.
    public var version: Int
    /// Creation time, milliseconds since the epoch.
    public var timestamp: Int64
    /// 1 on the first send; a producer's retry increments it.
    public var attempt: Int
    /// Stream that wants the reply, if any.
    public var replyTo: String?
    /// On replies: the `id` of the request answered.
    public var correlationId: String?
    /// Milliseconds since the epoch after which the requester no longer waits.
    public var deadline: Int64?
    /// W3C `traceparent` of the request.
    public var traceparent: String
    /// On replies that failed: the error (payload is then empty).
    public var error: AIIMError?
    /// `service/instance` that wrote the entry.
    public var origin: String?

    enum CodingKeys: String, CodingKey {
        case type = "t", id, version = "v", timestamp = "ts", attempt = "at", replyTo = "rt"
        case correlationId = "cid", deadline = "dl", traceparent = "tp", error = "err", origin = "o"
    }

    public static let currentVersion = 1

    public init(type: String, id: String, version: Int, timestamp: Int64, attempt: Int, replyTo: String?,
                correlationId: String?, deadline: Int64?, traceparent: String, error: AIIMError?, origin: String?) {
        self.type = type; self.id = id; self.version = version; self.timestamp = timestamp; self.attempt = attempt
        self.replyTo = replyTo; self.correlationId = correlationId; self.deadline = deadline
        self.traceparent = traceparent; self.error = error; self.origin = origin
    }
}

extension EnvelopeHeader {
    /// The header as JSON, keyed as `CodingKeys` says; written by hand because every entry on
    /// the bus carries one. Even `JSONCoding` costs more here: the bus round trip's p50 was
    /// 0.38 ms with this and 0.48–0.51 ms with the generic coder (release, `Benchmarks/run`).
    var json: JSONValue {
        var o: [String: JSONValue] = [
            "t": .string(type), "id": .string(id), "v": .number(Double(version)), "ts": .number(Double(timestamp)),
            "at": .number(Double(attempt)), "tp": .string(traceparent),
        ]
        if let replyTo { o["rt"] = .string(replyTo) }
        if let correlationId { o["cid"] = .string(correlationId) }
        if let deadline { o["dl"] = .number(Double(deadline)) }
        if let error { o["err"] = .object(["code": .string(error.code.rawValue), "message": .string(error.message)]) }
        if let origin { o["o"] = .string(origin) }
        return .object(o)
    }

    /// Reads what `json` (or the `Codable` conformance) wrote.
    init(json: JSONValue) throws {
        struct Malformed: Error {}
        guard case .object(let o) = json else { throw Malformed() }
        func string(_ k: String) throws -> String? {
            guard let v = o[k], !v.isNull else { return nil }
            guard let s = v.stringValue else { throw Malformed() }
            return s
        }
        func int(_ k: String) throws -> Int64? {
            guard let v = o[k], !v.isNull else { return nil }
            guard let i = v.intValue else { throw Malformed() }
            return Int64(i)
        }
        guard let type = try string("t"), let id = try string("id"), let version = try int("v"),
              let timestamp = try int("ts"), let attempt = try int("at"), let traceparent = try string("tp") else {
            throw Malformed()
        }
        var error: AIIMError?
        if let e = o["err"], !e.isNull {
            guard let code = e["code"]?.stringValue.flatMap(ErrorCode.init(rawValue:)), let message = e["message"]?.stringValue else {
                throw Malformed()
            }
            error = AIIMError(code, message)
        }
        self.init(type: type, id: id, version: Int(version), timestamp: timestamp, attempt: Int(attempt),
                  replyTo: try string("rt"), correlationId: try string("cid"), deadline: try int("dl"),
                  traceparent: traceparent, error: error, origin: try string("o"))
    }
}

/// One stream entry: a header, a JSON payload and, optionally, an attachment: bytes that
/// travel beside the payload unparsed (field `a`), so a large opaque part such as a rendered
/// frame is neither escaped into the payload's JSON nor unescaped out of it.
public struct Envelope: Sendable {
    public var header: EnvelopeHeader
    public var payload: [UInt8]
    public var attachment: [UInt8]?

    public init(header: EnvelopeHeader, payload: [UInt8], attachment: [UInt8]? = nil) {
        self.header = header
        self.payload = payload
        self.attachment = attachment
    }

    /// A new envelope under the current trace (or a new root trace).
    public static func make(
        type: String, payload: some Encodable, replyTo: String? = nil, deadline: Int64? = nil,
        correlationId: String? = nil, trace: Trace? = nil, origin: String? = nil
    ) throws -> Envelope {
        let t = trace ?? Trace.current ?? Trace.root()
        let header = EnvelopeHeader(
            type: type, id: UUIDs.make(), version: EnvelopeHeader.currentVersion,
            timestamp: Timestamp.nowMillis(), attempt: 1, replyTo: replyTo,
            correlationId: correlationId, deadline: deadline, traceparent: t.traceparent,
            error: nil, origin: origin)
        return Envelope(header: header, payload: try JSONCoding.encode(payload))
    }

    /// Stream fields for XADD.
    public var fields: [(String, [UInt8])] {
        var f = [("h", header.json.jsonBytes()), ("p", payload)]
        if let attachment { f.append(("a", attachment)) }
        return f
    }

    /// Parses stream fields; throws `unknownType`/`unsupportedVersion`/`badRequest` for entries
    /// that must go to the dead-letter stream.
    public init(fields: [String: [UInt8]]) throws {
        guard let h = fields["h"] else { throw AIIMError(.badRequest, "entry has no header") }
        let header: EnvelopeHeader
        do { header = try EnvelopeHeader(json: JSONValue(parsing: h)) } catch {
            throw AIIMError(.badRequest, "entry header is not valid JSON")
        }
        guard header.version == EnvelopeHeader.currentVersion else {
            throw AIIMError(.unsupportedVersion, "unsupported envelope version \(header.version)")
        }
        self.init(header: header, payload: fields["p"] ?? [], attachment: fields["a"])
    }

    public func decode<P: Decodable>(_ type: P.Type = P.self) throws -> P {
        do { return try JSONCoding.decode(P.self, from: payload) } catch {
            throw AIIMError(.badRequest, "payload of \(header.type) does not match its schema")
        }
    }

    /// The trace this entry belongs to (a child span for this hop).
    public var trace: Trace { (Trace(traceparent: header.traceparent) ?? Trace.root()).child() }
}
