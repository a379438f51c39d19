import AIIMShared
import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// A pool of hiredis connections. Every blocking call runs on this client's own `NIOThreadPool`
/// (never on Swift's cooperative pool); the number of threads bounds the number of connections.
/// Broken connections are dropped and replaced on next use, so the client recovers by itself
/// when Redis comes back.
///
/// `command` and `pipeline` are automatically pipelined: calls made while a writer is busy wait
/// in a queue, and the next free writer sends everything queued in one round trip (each call's
/// commands stay together and in order). Under load this turns one round trip per command into
/// one per batch; an idle client still sends a lone command at once.
public final class RedisClient: Sendable {
    public let endpoint: RedisEndpoint
    let threadPool: NIOThreadPool
    let idle = NIOLockedValueBox<[RedisConnection]>([])
    let commandTimeout: Duration
    let logger: Logger
    let queue = NIOLockedValueBox(WriteQueue())
    /// Writers (connections) sending queued commands at once.
    let maxWriters: Int
    /// Commands sent in one round trip at most.
    static let maxBatch = 512

    struct WriteQueue {
        var calls: [QueuedCall] = []
        var writers = 0
    }

    struct QueuedCall {
        let commands: [[[UInt8]]]
        let done: CheckedContinuation<[RESPValue], any Error>
    }

    /// - Parameters:
    ///   - poolSize: threads = maximum simultaneous connections.
    ///   - pipelineWriters: connections sending auto-pipelined batches at once (fewer means larger
    ///     batches); at most `poolSize`.
    ///   - commandTimeout: bound on connect and on every command (hiredis socket timeout).
    public init(url: String, poolSize: Int = 8, pipelineWriters: Int = 2, commandTimeout: Duration = .seconds(5),
                logger: Logger) throws {
        endpoint = try RedisEndpoint(url: url)
        threadPool = NIOThreadPool(numberOfThreads: max(1, poolSize))
        threadPool.start()
        maxWriters = max(1, min(pipelineWriters, poolSize))
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
        let r = try await enqueue([cmd.args])[0]
        if case .error(let e) = r { throw RedisError(.server, e) }
        return r
    }

    /// Several commands in one round trip, in order; error replies are returned in place, not thrown.
    public func pipeline(_ cmds: [RedisCommand]) async throws -> [RESPValue] {
        if cmds.isEmpty { return [] }
        return try await enqueue(cmds.map(\.args))
    }

    private func enqueue(_ commands: [[[UInt8]]]) async throws -> [RESPValue] {
        try await withCheckedThrowingContinuation { cont in
            let startWriter = queue.withLockedValue { q in
                q.calls.append(QueuedCall(commands: commands, done: cont))
                guard q.writers < maxWriters else { return false }
                q.writers += 1
                return true
            }
            if startWriter { threadPool.submit { [self] state in write(active: state == .active) } }
        }
    }

    /// A writer: sends whatever is queued, batch after batch, until the queue is empty.
    private func write(active: Bool) {
        while true {
            let batch: [QueuedCall] = queue.withLockedValue { q in
                var n = 0, k = 0
                while k < q.calls.count, k == 0 || n + q.calls[k].commands.count <= Self.maxBatch {
                    n += q.calls[k].commands.count
                    k += 1
                }
                if k == 0 { q.writers -= 1 }
                defer { q.calls.removeFirst(k) }
                return Array(q.calls.prefix(k))
            }
            if batch.isEmpty { return }
            guard active else {
                for call in batch { call.done.resume(throwing: RedisError(.connection, "redis client is shut down")) }
                continue
            }
            do {
                let conn = try checkout()
                defer { checkin(conn) }
                let replies = try conn.pipeline(batch.flatMap(\.commands))
                var offset = 0
                for call in batch {
                    call.done.resume(returning: Array(replies[offset..<offset + call.commands.count]))
                    offset += call.commands.count
                }
            } catch {
                for call in batch { call.done.resume(throwing: error) }
            }
        }
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
