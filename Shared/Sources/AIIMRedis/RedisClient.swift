import AIIMProtocol
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOPosix

/// A small set of pipelined Redis connections (`RedisConnection`: NIO sockets, hiredis codec),
/// used round-robin. Any number of calls can be in flight on one connection, and calls made
/// together leave in one write, so concurrency needs no more connections. A broken connection is
/// replaced on next use, so the client recovers by itself when Redis comes back.
public final class RedisClient: Sendable {
    public let endpoint: RedisEndpoint
    let commandTimeout: Duration
    let logger: Logger
    private let slots: [Slot]
    private let next = NIOLockedValueBox(0)

    /// One connection of the pool, connected on first use and reconnected after a failure;
    /// callers that arrive while it connects wait for the same attempt.
    final class Slot: Sendable {
        enum State {
            case idle
            case connecting(EventLoopFuture<RedisConnection>)
            case ready(RedisConnection)
        }
        let state = NIOLockedValueBox(State.idle)
    }

    /// - Parameters:
    ///   - poolSize: connections.
    ///   - commandTimeout: bound on connecting (TLS handshake included) and on every command's reply.
    ///   - tls: certificate files for a `rediss://` URL (`RedisTLSFiles(environment)` reads `REDIS_TLS_*`).
    public init(url: String, poolSize: Int = 4, commandTimeout: Duration = .seconds(5),
                tls: RedisTLSFiles = RedisTLSFiles(), logger: Logger) throws {
        endpoint = try RedisEndpoint(url: url, tls: tls)
        slots = (0..<max(1, poolSize)).map { _ in Slot() }
        self.commandTimeout = commandTimeout
        self.logger = logger
    }

    /// Closes every connection; calls in flight fail.
    public func shutdown() async {
        for slot in slots {
            let old = slot.state.withLockedValue { s -> State? in defer { s = .idle }; return s }
            if case .ready(let c)? = old { c.close() }
        }
    }

    private typealias State = Slot.State

    private func connection() async throws -> RedisConnection {
        let slot = slots[next.withLockedValue { n in defer { n = (n + 1) % slots.count }; return n }]
        let (endpoint, timeout) = (self.endpoint, commandTimeout)
        // The common case answers at once: awaiting even a completed future hops to its event loop.
        if case .ready(let c) = slot.state.withLockedValue({ $0 }), !c.isBroken { return c }
        let future: EventLoopFuture<RedisConnection> = slot.state.withLockedValue { s in
            switch s {
            case .ready(let c) where !c.isBroken:
                return MultiThreadedEventLoopGroup.singleton.any().makeSucceededFuture(c)
            case .connecting(let f):
                return f
            default:
                let promise = MultiThreadedEventLoopGroup.singleton.any().makePromise(of: RedisConnection.self)
                promise.completeWithTask { try await RedisConnection.connect(endpoint: endpoint, timeout: timeout) }
                s = .connecting(promise.futureResult)
                return promise.futureResult
            }
        }
        do {
            let c = try await future.get()
            slot.state.withLockedValue { s in
                if case .connecting(let f) = s, f === future { s = .ready(c) }
            }
            return c
        } catch {
            slot.state.withLockedValue { s in
                if case .connecting(let f) = s, f === future { s = .idle }
            }
            throw error
        }
    }

    /// One command; a Redis error reply becomes a thrown `RedisError(.server)`.
    @discardableResult
    public func command(_ cmd: RedisCommand) async throws -> RESPValue {
        let r = try await connection().send([cmd.args])[0]
        if case .error(let e) = r { throw RedisError(.server, e) }
        return r
    }

    /// Several commands in one round trip, in order; error replies are returned in place, not thrown.
    public func pipeline(_ cmds: [RedisCommand]) async throws -> [RESPValue] {
        if cmds.isEmpty { return [] }
        return try await connection().send(cmds.map(\.args))
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

    /// A reader with its own connection, for `XREAD(GROUP) BLOCK`, so a blocking read never
    /// holds up the pool's pipelines.
    public func makeBlockingReader(block: Duration) -> RedisBlockingReader {
        RedisBlockingReader(endpoint: endpoint, block: block, logger: logger)
    }
}

/// Owns one connection for blocking stream reads, one read at a time. A read with no reply
/// within the BLOCK time plus a margin fails, so it never hangs past it.
public final class RedisBlockingReader: Sendable {
    let endpoint: RedisEndpoint
    let block: Duration
    let conn = NIOLockedValueBox<RedisConnection?>(nil)
    let stopped = NIOLockedValueBox(false)
    let logger: Logger

    init(endpoint: RedisEndpoint, block: Duration, logger: Logger) {
        self.endpoint = endpoint
        self.block = block
        self.logger = logger
    }

    public var blockMillis: Int { Int(block.wholeMilliseconds) }

    /// Runs a (blocking) command on the reader's connection, reconnecting if needed.
    public func command(_ cmd: RedisCommand) async throws -> RESPValue {
        if stopped.withLockedValue({ $0 }) { throw RedisError(.connection, "reader is shut down") }
        let c: RedisConnection
        if let existing = conn.withLockedValue({ $0 }), !existing.isBroken {
            c = existing
        } else {
            c = try await RedisConnection.connect(endpoint: endpoint, timeout: block + .seconds(5))
            let old = conn.withLockedValue { v -> RedisConnection? in defer { v = c }; return v }
            old?.close()
            if stopped.withLockedValue({ $0 }) { c.close() }
        }
        let r = try await c.send([cmd.args])[0]
        if case .error(let e) = r { throw RedisError(.server, e) }
        return r
    }

    /// Closes the connection; a read in progress fails at once. Safe to call from a cancelled task.
    public func shutdown() async {
        stopped.withLockedValue { $0 = true }
        conn.withLockedValue { $0?.close(); $0 = nil }
    }
}
