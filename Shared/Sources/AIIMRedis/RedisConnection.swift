import AIIMShared
internal import CHiredis
import Foundation

/// A value Redis answered with, converted from hiredis' reply before leaving the pool thread.
public enum RESPValue: Sendable, Equatable {
    case string([UInt8])
    case status(String)
    case integer(Int64)
    case array([RESPValue])
    case null
    case error(String)

    public var text: String? {
        switch self {
        case .string(let b): String(decoding: b, as: UTF8.self)
        case .status(let s): s
        case .integer(let i): String(i)
        default: nil
        }
    }
    public var int: Int64? {
        switch self {
        case .integer(let i): i
        case .string(let b): Int64(String(decoding: b, as: UTF8.self))
        default: nil
        }
    }
    public var array: [RESPValue]? { if case .array(let a) = self { return a }; return nil }
    public var isNull: Bool { self == .null }
}

/// Why a Redis call failed. `description` is for logs only; clients get `unavailable`.
public struct RedisError: Error, CustomStringConvertible {
    public enum Kind: Sendable { case connection, server, protocolViolation }
    public var kind: Kind
    public var description: String
    public init(_ kind: Kind, _ d: String) { self.kind = kind; self.description = d }
}

/// Where a Redis server is, parsed from `REDIS_URL` (`redis://[user:]password@host:port/db`).
public struct RedisEndpoint: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var password: String?
    public var username: String?
    public var database: Int

    public init(url: String) throws {
        guard let u = URLComponents(string: url), u.scheme == "redis", let host = u.host, !host.isEmpty else {
            throw ConfigurationError("REDIS_URL must look like redis://[:password@]host:port[/db]")
        }
        self.host = host
        port = u.port ?? 6379
        password = u.password.flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding }
        username = u.user.flatMap { $0.isEmpty ? nil : $0 }
        database = Int(u.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))) ?? 0
    }

    /// Never prints the password.
    public var description: String { "redis://\(host):\(port)/\(database)" }
}

/// One hiredis connection.
///
/// `@unchecked Sendable`: a `redisContext` is not thread-safe, so a connection is only ever used
/// by one thread at a time: the pool hands it to exactly one closure running on a pool thread
/// (`RedisClient.withConnection`) and takes it back afterwards; a `RedisBlockingReader` owns
/// its connection on its single thread. The handle never escapes those scopes.
public final class RedisConnection: @unchecked Sendable {
    private var ctx: UnsafeMutablePointer<redisContext>?
    /// Set once an I/O error happened; the pool then discards the connection.
    public private(set) var isBroken = false

    /// Connects (blocking), authenticates and selects the database. `timeout` bounds connect
    /// and every later read/write on this connection.
    init(endpoint: RedisEndpoint, timeout: Duration) throws {
        let tv = Self.timeval(timeout)
        guard let c = redisConnectWithTimeout(endpoint.host, Int32(endpoint.port), tv) else {
            throw RedisError(.connection, "cannot allocate redis context")
        }
        if c.pointee.err != 0 {
            let msg = Self.errstr(c)
            redisFree(c)
            throw RedisError(.connection, "connect \(endpoint): \(msg)")
        }
        redisSetTimeout(c, tv)
        ctx = c
        do {
            if let pw = endpoint.password {
                var args = ["AUTH"]
                if let user = endpoint.username { args.append(user) }
                args.append(pw)
                if case .error(let e) = try command(args.map { Array($0.utf8) }) {
                    throw RedisError(.server, "AUTH failed: \(e.prefix(60))")
                }
            }
            if endpoint.database != 0 {
                if case .error(let e) = try command([Array("SELECT".utf8), Array(String(endpoint.database).utf8)]) {
                    throw RedisError(.server, "SELECT failed: \(e)")
                }
            }
        } catch {
            close()
            throw error
        }
    }

    deinit { assert(ctx == nil, "RedisConnection dropped without close()") }

    /// Frees the hiredis context. Idempotent.
    public func close() {
        if let c = ctx { redisFree(c) }
        ctx = nil
        isBroken = true
    }

    /// Runs one command. Server errors come back as `.error`; I/O errors throw.
    public func command(_ args: [[UInt8]]) throws -> RESPValue {
        guard let c = ctx, !isBroken else { throw RedisError(.connection, "connection closed") }
        let raw: UnsafeMutableRawPointer? = Self.withArgv(args) { argc, argv, lens in
            redisCommandArgv(c, argc, argv, lens)
        }
        guard let raw else {
            isBroken = true
            throw RedisError(.connection, Self.errstr(c))
        }
        defer { freeReplyObject(raw) }
        return Self.convert(raw.assumingMemoryBound(to: redisReply.self))
    }

    /// Pipelining: appends every command, then reads every reply (one round trip).
    public func pipeline(_ commands: [[[UInt8]]]) throws -> [RESPValue] {
        guard let c = ctx, !isBroken else { throw RedisError(.connection, "connection closed") }
        for args in commands {
            let rc = Self.withArgv(args) { argc, argv, lens in redisAppendCommandArgv(c, argc, argv, lens) }
            if rc != REDIS_OK {
                isBroken = true
                throw RedisError(.connection, Self.errstr(c))
            }
        }
        var out: [RESPValue] = []
        out.reserveCapacity(commands.count)
        for _ in commands {
            var reply: UnsafeMutableRawPointer?
            if redisGetReply(c, &reply) != REDIS_OK || reply == nil {
                isBroken = true
                throw RedisError(.connection, Self.errstr(c))
            }
            out.append(Self.convert(reply!.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(reply)
        }
        return out
    }

    private static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RESPValue {
        let reply = r.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .string(reply.str == nil ? [] : Array(UnsafeRawBufferPointer(start: reply.str, count: reply.len)))
        case REDIS_REPLY_STATUS:
            return .status(reply.str == nil ? "" : String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(reply.str == nil ? "ERR" : String(decoding: UnsafeRawBufferPointer(start: reply.str, count: reply.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(Int64(reply.integer))
        case REDIS_REPLY_ARRAY:
            var items: [RESPValue] = []
            items.reserveCapacity(reply.elements)
            for i in 0..<reply.elements {
                if let e = reply.element[i] { items.append(convert(e)) } else { items.append(.null) }
            }
            return .array(items)
        default:
            return .null
        }
    }

    /// Lays the arguments out contiguously and passes hiredis pointers into that one buffer.
    private static func withArgv<R>(
        _ args: [[UInt8]],
        _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
    ) -> R {
        let total = args.reduce(0) { $0 + $1.count }
        var flat = [UInt8]()
        flat.reserveCapacity(total + 1)
        for a in args { flat.append(contentsOf: a) }
        flat.append(0)
        var lens = args.map(\.count)
        return flat.withUnsafeBufferPointer { buf in
            buf.baseAddress!.withMemoryRebound(to: CChar.self, capacity: buf.count) { base in
                var ptrs = [UnsafePointer<CChar>?]()
                ptrs.reserveCapacity(args.count)
                var offset = 0
                for a in args {
                    ptrs.append(base + offset)
                    offset += a.count
                }
                return ptrs.withUnsafeMutableBufferPointer { p in
                    lens.withUnsafeMutableBufferPointer { l in
                        body(Int32(args.count), p.baseAddress!, UnsafePointer(l.baseAddress!))
                    }
                }
            }
        }
    }

    private static func errstr(_ c: UnsafeMutablePointer<redisContext>) -> String {
        withUnsafeBytes(of: c.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
    }

    static func timeval(_ d: Duration) -> Glibc.timeval {
        let (s, atto) = d.components
        return Glibc.timeval(tv_sec: Int(s), tv_usec: Int(atto / 1_000_000_000_000))
    }
}

/// Arguments of a Redis command, built from strings or raw bytes.
public struct RedisCommand: Sendable, ExpressibleByArrayLiteral {
    public var args: [[UInt8]]
    public init(_ args: [[UInt8]]) { self.args = args }
    public init(arrayLiteral elements: String...) { args = elements.map { Array($0.utf8) } }
    public init(_ strings: [String]) { args = strings.map { Array($0.utf8) } }
    public mutating func append(_ s: String) { args.append(Array(s.utf8)) }
    public mutating func append(bytes: [UInt8]) { args.append(bytes) }
}
