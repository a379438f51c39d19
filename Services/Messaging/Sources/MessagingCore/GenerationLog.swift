import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Crypto
import Foundation

/// The live side of an answer, in Redis: its deltas as a stream whose entry ids are the offsets
/// (`<offset>-1`), and its state in a hash beside it. One Lua script appends a batch atomically
/// (state live, the producer's, offsets in order with no gap, parts opened in order, a repeated
/// offset identical to what is stored, the size caps), so any messaging replica may take any
/// append and two of them never interleave. The stream key and the hash share a hash tag (one
/// Redis Cluster slot). PostgreSQL gets the deltas at checkpoints (`Generations.swift`).
struct GenerationLog: Sendable {
    let redis: RedisClient
    /// Caps of one answer (`AI_STREAM_MAX_BYTES`, `AI_STREAM_MAX_CHUNKS`).
    let maxBytes: Int
    let maxDeltas: Int
    /// How long a finished answer's log stays for devices that resume late.
    static let keepFinished = 600

    static func stream(_ id: String) -> String { "aiim:gen:{\(id)}" }
    static func meta(_ id: String) -> String { "aiim:gen:{\(id)}:m" }

    /// What the hash holds about an answer.
    struct Meta: Sendable {
        var state: GenerationState
        var last: Int64
        var persisted: Int64
        var producer: String
        var tenant: String
        var conversation: String
        var recipients: [String]
        var stopRequestedBy: String?
        var stopAt: Int64?
        var lastActivity: Int64
        var persistedAt: Int64
        /// Stamped when the answer starts (or is stopped) by the replica that handles it, so every
        /// replica ends it by the same rule even while their settings differ (a rolling change).
        var silenceTimeoutMillis: Int64? = nil
        var stopGraceMillis: Int64? = nil
        /// The conversation hid reasoning when the answer started (GenerationParts.hidingReasoning).
        var reasoningHidden = false
        /// One letter per part, in part order (GenerationParts.code).
        var partTypes = ""
        /// When the log ended it (ms): a watcher finishes a finalize that died after it.
        var finishedAt: Int64? = nil

        func isReasoning(_ part: Int) -> Bool {
            guard part >= 0, part < partTypes.utf8.count else { return false }
            return partTypes.utf8[partTypes.utf8.index(partTypes.utf8.startIndex, offsetBy: part)] == UInt8(ascii: "r")
        }
    }

    struct AppendResult: Sendable {
        var last: Int64
        var state: GenerationState
        /// The deltas this call added (repeats excluded), in offset order.
        var accepted: [GenerationDelta]
        var previousState: GenerationState
    }

    func create(_ id: String, meta m: Meta) async throws {
        let k = Self.meta(id)
        _ = try await redis.pipeline([
            ["HSET", k, "st", m.state.rawValue, "last", "0", "pers", "0", "np", "0", "pt", "", "by", "0",
             "prod", m.producer, "ten", m.tenant, "conv", m.conversation, "rcp", JSONValue.array(m.recipients.map { .string($0) }).jsonString(),
             "t", String(m.lastActivity), "pts", String(m.lastActivity), "tmo", String(m.silenceTimeoutMillis ?? 30_000),
             "maxb", String(maxBytes), "maxd", String(maxDeltas), "rh", m.reasoningHidden ? "1" : "0"],
            ["EXPIRE", k, "86400"],
        ])
    }

    /// Drops a log whose message was never written (a start that lost a race or failed).
    func discard(_ id: String) async throws {
        _ = try await redis.command(["DEL", Self.meta(id), Self.stream(id)])
    }

    func meta(_ id: String) async throws -> Meta? {
        let r = try await redis.command(["HGETALL", Self.meta(id)])
        guard let items = r.array, !items.isEmpty else { return nil }
        var f: [String: String] = [:]
        var i = 0
        while i + 1 < items.count { f[items[i].text ?? ""] = items[i + 1].text ?? ""; i += 2 }
        guard let state = f["st"].flatMap(GenerationState.init(rawValue:)) else { return nil }
        let recipients = (try? JSONValue(parsing: Array((f["rcp"] ?? "[]").utf8)))?.arrayValue?.compactMap(\.stringValue) ?? []
        return Meta(state: state, last: Int64(f["last"] ?? "") ?? 0, persisted: Int64(f["pers"] ?? "") ?? 0,
                    producer: f["prod"] ?? "", tenant: f["ten"] ?? "", conversation: f["conv"] ?? "", recipients: recipients,
                    stopRequestedBy: f["stop"].flatMap { $0.isEmpty ? nil : $0 }, stopAt: f["stopat"].flatMap { Int64($0) },
                    lastActivity: Int64(f["t"] ?? "") ?? 0, persistedAt: Int64(f["pts"] ?? "") ?? 0,
                    silenceTimeoutMillis: f["tmo"].flatMap { Int64($0) }, stopGraceMillis: f["stopgr"].flatMap { Int64($0) },
                    reasoningHidden: f["rh"] == "1", partTypes: f["pt"] ?? "", finishedAt: f["fin"].flatMap { Int64($0) })
    }

    /// Appends deltas (validated: `codes[i]` from `GenerationParts.validate`).
    func append(_ id: String, producer: String, deltas: [GenerationDelta], codes: [String]) async throws -> AppendResult {
        var args = [producer, String(maxBytes), String(maxDeltas), String(Timestamp.nowMillis())]
        for (d, code) in zip(deltas, codes) {
            args += [String(d.offset), String(d.part), code, Self.payload(d)]
        }
        let r = try await eval(Self.appendScript, keys: [Self.stream(id), Self.meta(id)], args: args)
        guard let a = r.array, let status = a.first?.text else { throw AIIMError.internalError }
        if status == "err" {
            let code = a.count > 1 ? a[1].text ?? "" : ""
            let detail = a.count > 2 ? a[2].text ?? "" : ""
            throw Self.error(code, detail)
        }
        let last = a[1].int ?? 0
        let state = a[2].text.flatMap(GenerationState.init(rawValue:)) ?? .generating
        let previous = a[3].text.flatMap(GenerationState.init(rawValue:)) ?? state
        let firstAdded = a[4].int ?? (last + 1)
        return AppendResult(last: last, state: state, accepted: deltas.filter { $0.offset >= firstAdded && $0.offset <= last },
                            previousState: previous)
    }

    static func error(_ code: String, _ detail: String) -> AIIMError {
        switch code {
        case "not_found": .notFound("no such answer")
        case "forbidden": .forbidden("only the answer's producer can change it")
        case "invalid_state": AIIMError(.invalidState, "the answer has ended (\(detail))")
        case "gap": .validation("offset is out of order; expected \(detail)")
        case "part": .validation("part skips an index; the next new part is \(detail)")
        case "part_type": .validation("part \(detail) does not exist yet: a delta that opens it needs a type")
        case "part_open": .validation("part \(detail) exists: only text or arguments can be added to it")
        case "part_closed": .validation("part \(detail) is complete: only text, reasoning and tool_call parts grow")
        case "part_kind": .validation("part \(detail) does not take that field (text for text/reasoning, arguments for tool_call)")
        case "conflict": .conflict("offset \(detail) was already stored with different content")
        case "too_large": AIIMError(.payloadTooLarge, "the answer would exceed \(detail) bytes")
        case "too_many": AIIMError(.payloadTooLarge, "the answer would exceed \(detail) deltas")
        default: .internalError
        }
    }

    /// Sets the live state and/or label (only while live; only the producer).
    func setStatus(_ id: String, producer: String, state: GenerationState?) async throws -> (GenerationState, Int64) {
        let r = try await eval(Self.statusScript, keys: [Self.meta(id)],
                               args: [producer, state?.rawValue ?? "", String(Timestamp.nowMillis())])
        guard let a = r.array, let status = a.first?.text else { throw AIIMError.internalError }
        if status == "err" { throw Self.error(a.count > 1 ? a[1].text ?? "" : "", a.count > 2 ? a[2].text ?? "" : "") }
        return (a[1].text.flatMap(GenerationState.init(rawValue:)) ?? .generating, a[2].int ?? 0)
    }

    /// Ends a live answer once (whoever comes first: the producer, the stop grace, the silence
    /// timeout); nil when it had already ended. `producer` nil: the server ends it.
    func finish(_ id: String, producer: String?, state: GenerationState) async throws -> Meta? {
        let r = try await eval(Self.finishScript, keys: [Self.stream(id), Self.meta(id)],
                               args: [producer ?? "", state.rawValue, String(Self.keepFinished), String(Timestamp.nowMillis())])
        guard let a = r.array, let status = a.first?.text else { throw AIIMError.internalError }
        if status == "err" { throw Self.error(a.count > 1 ? a[1].text ?? "" : "", a.count > 2 ? a[2].text ?? "" : "") }
        if status == "ended" { return nil }
        return try await meta(id)
    }

    /// Records a stop request (first one wins); returns the meta after it.
    func requestStop(_ id: String, by user: String, grace: Duration) async throws -> Meta? {
        _ = try await redis.pipeline([
            ["HSETNX", Self.meta(id), "stop", user],
            ["HSETNX", Self.meta(id), "stopat", String(Timestamp.nowMillis())],
            ["HSETNX", Self.meta(id), "stopgr", String(grace.wholeMilliseconds)],
        ])
        return try await meta(id)
    }

    func markPersisted(_ id: String, upTo offset: Int64) async throws {
        _ = try await eval(Self.persistedScript, keys: [Self.meta(id)], args: [String(offset), String(Timestamp.nowMillis())])
    }

    /// The deltas after `after` (up to `upTo`), in offset order.
    func deltas(_ id: String, after: Int64, upTo: Int64? = nil) async throws -> [GenerationDelta] {
        let r = try await redis.command(["XRANGE", Self.stream(id), "\(after + 1)-1", upTo.map { "\($0)-1" } ?? "+"])
        return try (r.array ?? []).compactMap { entry -> GenerationDelta? in
            guard let parts = entry.array, parts.count == 2, let fields = parts[1].array, fields.count >= 2,
                  case .string(let bytes) = fields[1] else { return nil }
            return try JSONCoding.decode(GenerationDelta.self, from: bytes)
        }
    }

    /// The stored text of a delta: canonical (sorted keys), so a repeat compares equal in any process.
    static func payload(_ d: GenerationDelta) -> String {
        (try? JSONValue(encoding: d)).map(JSONWriter.canonical) ?? "{}"
    }

    // MARK: scripts

    private func eval(_ script: Script, keys: [String], args: [String]) async throws -> RESPValue {
        var cmd: RedisCommand = ["EVALSHA", script.sha, String(keys.count)]
        for k in keys { cmd.append(k) }
        for a in args { cmd.append(a) }
        do { return try await redis.command(cmd) } catch let e as RedisError where e.description.contains("NOSCRIPT") {
            cmd.args[0] = Array("EVAL".utf8)
            cmd.args[1] = Array(script.source.utf8)
            return try await redis.command(cmd)
        }
    }

    struct Script: Sendable {
        let source: String
        let sha: String
        init(_ source: String) {
            self.source = source
            sha = Insecure.SHA1.hash(data: Data(source.utf8)).map { String(format: "%02x", $0) }.joined()
        }
    }

    static let live = "local function live(s) return s=='queued' or s=='thinking' or s=='generating' or s=='tool_call' end\n"

    static let appendScript = Script(live + """
        local m = redis.call('HMGET', KEYS[2], 'st', 'last', 'np', 'pt', 'by', 'prod', 'maxb', 'maxd')
        if not m[1] then return {'err', 'not_found'} end
        if m[6] ~= ARGV[1] then return {'err', 'forbidden'} end
        local st, last, np, pt, by = m[1], tonumber(m[2]), tonumber(m[3]), m[4], tonumber(m[5])
        local maxb, maxd = m[7] or ARGV[2], m[8] or ARGV[3]
        local newst, first = st, nil
        for i = 5, #ARGV, 4 do
          local off, part, code, p = tonumber(ARGV[i]), tonumber(ARGV[i+1]), ARGV[i+2], ARGV[i+3]
          if off <= last then
            local e = redis.call('XRANGE', KEYS[1], off .. '-1', off .. '-1')
            if #e > 0 and e[1][2][2] ~= p then return {'err', 'conflict', tostring(off)} end
          else
            if not live(st) then return {'err', 'invalid_state', st} end
            if off ~= last + 1 then return {'err', 'gap', tostring(last + 1)} end
            local kind
            if part > np then return {'err', 'part', tostring(np)} end
            if part == np then
              if string.sub(code, 1, 1) == '+' then return {'err', 'part_type', tostring(part)} end
              pt = pt .. code; np = np + 1; kind = code
            else
              if string.sub(code, 1, 1) ~= '+' then return {'err', 'part_open', tostring(part)} end
              kind = string.sub(pt, part + 1, part + 1)
              if kind ~= 't' and kind ~= 'r' and kind ~= 'c' then return {'err', 'part_closed', tostring(part)} end
              if (code == '+a') ~= (kind == 'c') then return {'err', 'part_kind', tostring(part)} end
            end
            by = by + #p
            if by > tonumber(maxb) then return {'err', 'too_large', maxb} end
            if off > tonumber(maxd) then return {'err', 'too_many', maxd} end
            redis.call('XADD', KEYS[1], off .. '-1', 'd', p)
            if not first then first = off end
            last = off
            if kind == 'c' then newst = 'tool_call' elseif kind == 'r' then newst = 'thinking' else newst = 'generating' end
          end
        end
        redis.call('HSET', KEYS[2], 'last', last, 'np', np, 'pt', pt, 'by', by, 'st', newst, 't', ARGV[4])
        return {'ok', last, newst, st, first or (last + 1)}
        """)

    static let statusScript = Script(live + """
        local m = redis.call('HMGET', KEYS[1], 'st', 'last', 'prod')
        if not m[1] then return {'err', 'not_found'} end
        if m[3] ~= ARGV[1] then return {'err', 'forbidden'} end
        if not live(m[1]) then return {'err', 'invalid_state', m[1]} end
        local st = m[1]
        if ARGV[2] ~= '' then st = ARGV[2] end
        redis.call('HSET', KEYS[1], 'st', st, 't', ARGV[3])
        return {'ok', st, tonumber(m[2])}
        """)

    static let finishScript = Script(live + """
        local m = redis.call('HMGET', KEYS[2], 'st', 'prod')
        if not m[1] then return {'err', 'not_found'} end
        if ARGV[1] ~= '' and m[2] ~= ARGV[1] then return {'err', 'forbidden'} end
        if not live(m[1]) then return {'ended'} end
        redis.call('HSET', KEYS[2], 'st', ARGV[2], 'fin', ARGV[4])
        redis.call('EXPIRE', KEYS[2], ARGV[3])
        redis.call('EXPIRE', KEYS[1], ARGV[3])
        return {'ok'}
        """)

    static let persistedScript = Script("""
        local p = tonumber(redis.call('HGET', KEYS[1], 'pers') or '0')
        if tonumber(ARGV[1]) > p then redis.call('HSET', KEYS[1], 'pers', ARGV[1], 'pts', ARGV[2]) end
        return 1
        """)
}
