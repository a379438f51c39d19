import AIIMShared
import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// A pool of hiredis connections. Every blocking call runs on this client's own `NIOThreadPool`
/// (never on Swift's cooperative pool); the number of threads bounds the number of connections.
/// Broken connections are dropped and replaced on next use, so the client recovers by itself
/// when Redis comes back.
public final class RedisClient: Sendable {
    public let endpoint: RedisEndpoint
    let threadPool: NIOThreadPool
    let idle = NIOLockedValueBox<[RedisConnection]>([])
    let commandTimeout: Duration
    let logger: Logger

    /// - Parameters:
    ///   - poolSize: threads = maximum simultaneous connections.
    ///   - commandTimeout: bound on connect and on every command (hiredis socket timeout).
    public init(url: String, poolSize: Int = 8, commandTimeout: Duration = .seconds(5), logger: Logger) throws {
        endpoint = try RedisEndpoint(url: url)
        threadPool = NIOThreadPool(numberOfThreads: max(1, poolSize))
        threadPool.start()
        self.commandTimeout = commandTimeout
        self.logger = logger
    }

    /// Closes every idle connection and stops the threads.
    public func shutdown() async {
        try? await threadPool.shutdownGracefully()
        idle.withLockedValue { conns in
            conns.forEach { $0.close() }
            conns.removeAll()
        }
    }

    /// Leases one connection to `body` on a pool thread. The connection never escapes.
    public func withConnection<T: Sendable>(_ body: @escaping @Sendable (RedisConnection) throws -> T) async throws -> T {
        try await threadPool.runIfActive { [self] in
            let conn = try checkout()
            defer { checkin(conn) }
            return try body(conn)
        }
    }

    private func checkout() throws -> RedisConnection {
        if let c = idle.withLockedValue({ $0.popLast() }) { return c }
        return try RedisConnection(endpoint: endpoint, timeout: commandTimeout)
    }

    private func checkin(_ c: RedisConnection) {
        if c.isBroken { c.close(); return }
        idle.withLockedValue { $0.append(c) }
    }

    /// One command; a Redis error reply becomes a thrown `RedisError(.server)`.
    @discardableResult
    public func command(_ cmd: RedisCommand) async throws -> RESPValue {
        let r = try await withConnection { try $0.command(cmd.args) }
        if case .error(let e) = r { throw RedisError(.server, e) }
        return r
    }

    /// Several commands in one round trip; error replies are returned in place, not thrown.
    public func pipeline(_ cmds: [RedisCommand]) async throws -> [RESPValue] {
        if cmds.isEmpty { return [] }
        return try await withConnection { try $0.pipeline(cmds.map(\.args)) }
    }

    /// `PING`, for readiness.
    public func ping() async throws {
        _ = try await command(["PING"])
    }

    /// `XADD stream MAXLEN ~ maxLen * field value ...`; returns the entry id.
    @discardableResult
    public func xadd(_ stream: String, maxLen: Int, envelope: Envelope) async throws -> String {
        let r = try await command(Self.xaddCommand(stream, maxLen: maxLen, envelope: envelope))
        return r.text ?? ""
    }

    public static func xaddCommand(_ stream: String, maxLen: Int, envelope: Envelope) -> RedisCommand {
        var c: RedisCommand = ["XADD", stream, "MAXLEN", "~", String(maxLen), "*"]
        for (k, v) in envelope.fields {
            c.append(k)
            c.append(bytes: v)
        }
        return c
    }

    /// A reader with its own thread and connection, for `XREAD(GROUP) BLOCK`, so blocking reads
    /// never starve the pool.
    public func makeBlockingReader(block: Duration) -> RedisBlockingReader {
        RedisBlockingReader(endpoint: endpoint, block: block, logger: logger)
    }
}

/// Owns one connection and one thread for blocking stream reads. The hiredis timeout is the
/// BLOCK time plus a margin, so a read never hangs past it.
public final class RedisBlockingReader: Sendable {
    let endpoint: RedisEndpoint
    let block: Duration
    let threadPool = NIOThreadPool(numberOfThreads: 1)
    let conn = NIOLockedValueBox<RedisConnection?>(nil)
    let logger: Logger

    init(endpoint: RedisEndpoint, block: Duration, logger: Logger) {
        self.endpoint = endpoint
        self.block = block
        self.logger = logger
        threadPool.start()
    }

    public var blockMillis: Int {
        let (s, a) = block.components
        return Int(s) * 1000 + Int(a / 1_000_000_000_000_000)
    }

    /// Runs a (blocking) command on the reader's thread, reconnecting if needed.
    public func command(_ cmd: RedisCommand) async throws -> RESPValue {
        let r = try await threadPool.runIfActive { [self] in
            let c: RedisConnection
            if let existing = conn.withLockedValue({ $0 }), !existing.isBroken {
                c = existing
            } else {
                conn.withLockedValue { $0?.close(); $0 = nil }
                c = try RedisConnection(endpoint: endpoint, timeout: block + .seconds(5))
                conn.withLockedValue { $0 = c }
            }
            return try c.command(cmd.args)
        }
        if case .error(let e) = r { throw RedisError(.server, e) }
        return r
    }

    /// Stops the thread (after any read in progress, bounded by BLOCK), then closes the
    /// connection; safe to call from a cancelled task.
    public func shutdown() async {
        try? await threadPool.shutdownGracefully()
        conn.withLockedValue { $0?.close(); $0 = nil }
    }
}
