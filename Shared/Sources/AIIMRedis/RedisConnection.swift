import AIIMConfiguration
internal import CHiredis
import Foundation
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS

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

/// Where a Redis server is, parsed from `REDIS_URL` (`redis://[user:]password@host:port/db`, or
/// `rediss://…` for TLS with the certificate checked against `tls`' CA and the URL's host).
public struct RedisEndpoint: Sendable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var password: String?
    public var username: String?
    public var database: Int
    /// Set for `rediss://`: the client context every connection's TLS handshake uses (built once,
    /// so a bad file fails at start-up, not on the first command).
    public var tls: NIOSSLContext?

    public init(url: String, tls files: RedisTLSFiles = RedisTLSFiles()) throws {
        guard let u = URLComponents(string: url), u.scheme == "redis" || u.scheme == "rediss",
              let host = u.host, !host.isEmpty else {
            throw ConfigurationError("REDIS_URL must look like redis://[:password@]host:port[/db] (rediss:// for TLS)")
        }
        self.host = host
        port = u.port ?? 6379
        password = u.password.flatMap { $0.isEmpty ? nil : $0.removingPercentEncoding }
        username = u.user.flatMap { $0.isEmpty ? nil : $0 }
        database = Int(u.path.trimmingCharacters(in: CharacterSet(charactersIn: "/"))) ?? 0
        if u.scheme == "rediss" {
            tls = try files.makeContext()
        } else if files.isSet {
            // Certificates configured for a clear-text URL: the operator meant TLS; never fall back silently.
            throw ConfigurationError("REDIS_TLS_CA_FILE/REDIS_TLS_CERT_FILE/REDIS_TLS_KEY_FILE are set but REDIS_URL is redis://; use rediss:// for TLS")
        }
    }

    /// Never prints the password.
    public var description: String { "\(tls == nil ? "redis" : "rediss")://\(host):\(port)/\(database)" }

    /// The name the server's certificate must carry: the URL's host. An IP address is checked
    /// against the certificate's IP addresses (it cannot be sent as SNI).
    var tlsServerName: String? {
        (try? SocketAddress(ipAddress: host, port: 0)) == nil ? host : nil
    }
}

/// The certificate files of a `rediss://` connection (PEM): `REDIS_TLS_CA_FILE` (the CAs the
/// server's certificate must chain to; default the system's trust store), and for servers that
/// require client certificates (`tls-auth-clients yes`) `REDIS_TLS_CERT_FILE` + `REDIS_TLS_KEY_FILE`.
/// Verification is always on: chain, expiry and host name.
public struct RedisTLSFiles: Sendable, Equatable {
    public var caFile: String?
    public var certificateFile: String?
    public var keyFile: String?

    public init(caFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil) {
        self.caFile = caFile
        self.certificateFile = certificateFile
        self.keyFile = keyFile
    }

    /// `REDIS_TLS_CA_FILE`, `REDIS_TLS_CERT_FILE`, `REDIS_TLS_KEY_FILE`.
    public init(_ env: Environment) {
        self.init(caFile: env.string("REDIS_TLS_CA_FILE"), certificateFile: env.string("REDIS_TLS_CERT_FILE"),
                  keyFile: env.string("REDIS_TLS_KEY_FILE"))
    }

    var isSet: Bool { caFile != nil || certificateFile != nil || keyFile != nil }

    func makeContext() throws -> NIOSSLContext {
        var config = TLSConfiguration.makeClientConfiguration()
        config.certificateVerification = .fullVerification
        config.minimumTLSVersion = .tlsv12
        if let caFile {
            let cas: [NIOSSLCertificate]
            do { cas = try NIOSSLCertificate.fromPEMFile(caFile) } catch {
                throw ConfigurationError("REDIS_TLS_CA_FILE \(caFile): not a readable PEM certificate file (\(error))")
            }
            guard !cas.isEmpty else { throw ConfigurationError("REDIS_TLS_CA_FILE \(caFile) holds no certificate") }
            config.trustRoots = .certificates(cas)
        }
        switch (certificateFile, keyFile) {
        case (nil, nil):
            break
        case (let cert?, let key?):
            do {
                config.certificateChain = try NIOSSLCertificate.fromPEMFile(cert).map { .certificate($0) }
            } catch {
                throw ConfigurationError("REDIS_TLS_CERT_FILE \(cert): not a readable PEM certificate file (\(error))")
            }
            guard !config.certificateChain.isEmpty else { throw ConfigurationError("REDIS_TLS_CERT_FILE \(cert) holds no certificate") }
            do {
                config.privateKey = .privateKey(try NIOSSLPrivateKey(file: key, format: .pem))
            } catch {
                // Never the key's contents.
                throw ConfigurationError("REDIS_TLS_KEY_FILE \(key): not a readable PEM private key")
            }
        default:
            throw ConfigurationError("REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE go together")
        }
        do { return try NIOSSLContext(configuration: config) } catch {
            throw ConfigurationError("REDIS_TLS_*: the certificate files do not make a TLS context (\(error))")
        }
    }
}

/// One Redis connection: a non-blocking NIO socket with hiredis as the protocol codec
/// (`redisFormatCommandArgv` writes commands, a `redisReader` parses replies). Commands are
/// pipelined: any number may be in flight, replies are matched to requests in order. No thread
/// ever blocks on Redis, so a command costs no thread hand-off beyond the event loop's.
public final class RedisConnection: Sendable {
    let channel: any Channel
    let timeout: Duration

    private init(channel: any Channel, timeout: Duration) {
        self.channel = channel
        self.timeout = timeout
    }

    /// Connects, authenticates and selects the database. A request that has no reply after
    /// `timeout` closes the connection and fails with everything else in flight on it.
    static func connect(endpoint: RedisEndpoint, timeout: Duration,
                        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> RedisConnection {
        let channel: any Channel
        // rediss://: TLS is one more handler in front of the codec, on the same socket; a plain
        // connection's pipeline is exactly the codec, as before.
        let handshake = endpoint.tls.map { _ in group.any().makePromise(of: Void.self) }
        do {
            channel = try await ClientBootstrap(group: group)
                .connectTimeout(TimeAmount(timeout))
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        if let context = endpoint.tls, let handshake {
                            try channel.pipeline.syncOperations.addHandler(
                                NIOSSLClientHandler(context: context, serverHostname: endpoint.tlsServerName))
                            try channel.pipeline.syncOperations.addHandler(TLSHandshakeWatcher(done: handshake))
                        }
                        try channel.pipeline.syncOperations.addHandler(RESPHandler(timeout: timeout))
                    }
                }
                .connect(host: endpoint.host, port: endpoint.port).get()
        } catch {
            handshake?.fail(error)
            throw RedisError(.connection, "connect \(endpoint): \(error)")
        }
        if let handshake {
            // A server that accepts TCP but never finishes the handshake must not hang the caller.
            let timer = channel.eventLoop.scheduleTask(in: TimeAmount(timeout)) {
                handshake.fail(RedisError(.connection, "no TLS handshake within \(timeout)"))
            }
            do {
                try await handshake.futureResult.get()
                timer.cancel()
            } catch {
                timer.cancel()
                channel.close(promise: nil)
                throw RedisError(.connection, "TLS handshake with \(endpoint) failed: \(Self.describeTLS(error))")
            }
        }
        let conn = RedisConnection(channel: channel, timeout: timeout)
        do {
            if let pw = endpoint.password {
                var args = ["AUTH"]
                if let user = endpoint.username { args.append(user) }
                args.append(pw)
                if case .error(let e) = try await conn.send([args.map { Array($0.utf8) }])[0] {
                    throw RedisError(.server, "AUTH failed: \(e.prefix(60))")
                }
            }
            if endpoint.database != 0 {
                if case .error(let e) = try await conn.send([["SELECT", String(endpoint.database)].map { Array($0.utf8) }])[0] {
                    throw RedisError(.server, "SELECT failed: \(e)")
                }
            }
        } catch {
            conn.close()
            throw error
        }
        return conn
    }

    /// A handshake error in words an operator can act on (BoringSSL's reason, e.g.
    /// CERTIFICATE_VERIFY_FAILED, or the host name the certificate does not carry).
    static func describeTLS(_ error: any Error) -> String {
        if let e = error as? RedisError { return e.description }
        if let e = error as? NIOSSLExtraError, e == .failedToValidateHostname {
            return "the certificate is not for this host name (\(e))"
        }
        if case NIOSSLError.handshakeFailed(let inner) = error {
            return "certificate not accepted (\(inner))"
        }
        return "\(error)"
    }

    /// Gone: closed, or failed; the pool replaces it.
    public var isBroken: Bool { !channel.isActive }

    /// Sends commands in order, back to back; their replies in the same order. Server errors
    /// come back as `.error` in place; I/O errors and timeouts throw.
    public func send(_ commands: [[[UInt8]]]) async throws -> [RESPValue] {
        let promise = channel.eventLoop.makePromise(of: [RESPValue].self)
        let request = RESPRequest(commands: commands, promise: promise)
        channel.writeAndFlush(request).whenFailure { error in
            // A channel that closed before the handler saw the request: nobody else will answer it.
            if !request.taken.value { promise.fail(RedisError(.connection, "connection closed: \(error)")) }
        }
        return try await promise.futureResult.get()
    }

    /// Closes the socket; requests in flight fail.
    public func close() {
        channel.close(promise: nil)
    }
}

/// Completes `done` when the TLS handshake finished (or failed, or the socket closed first),
/// then leaves the pipeline: afterwards a TLS connection is the TLS handler and the codec.
final class TLSHandshakeWatcher: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    private let done: EventLoopPromise<Void>
    init(done: EventLoopPromise<Void>) { self.done = done }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        let completed: Bool
        if case .handshakeCompleted = event as? TLSUserEvent { completed = true } else { completed = false }
        context.fireUserInboundEventTriggered(event)
        if completed {
            done.succeed(())
            context.pipeline.syncOperations.removeHandler(context: context, promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        done.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        done.fail(RedisError(.connection, "closed by the server during the TLS handshake"))
        context.fireChannelInactive()
    }
}

/// Commands written together and the promise of their replies.
struct RESPRequest: Sendable {
    let commands: [[[UInt8]]]
    let promise: EventLoopPromise<[RESPValue]>
    /// Set by the handler when it takes the request (and so answers for its promise).
    let taken = Flag()

    /// `@unchecked Sendable`: read and written only on the channel's event loop (by the handler's
    /// `write` and by the write future's callback, which runs on the same loop).
    final class Flag: @unchecked Sendable {
        var value = false
    }
}

/// Encodes requests with hiredis' formatter and decodes replies with a hiredis reader; lives on
/// its channel's event loop. Flushes are deferred to the end of the event loop's current batch
/// of work, so requests queued together leave in one write.
final class RESPHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = RESPRequest
    typealias OutboundOut = ByteBuffer

    private struct Waiting {
        let expected: Int
        var replies: [RESPValue]
        let promise: EventLoopPromise<[RESPValue]>
        let sent: NIODeadline
    }

    private var waiting = CircularBuffer<Waiting>()
    private let reader: UnsafeMutablePointer<redisReader>
    private let timeout: TimeAmount
    private var flushScheduled = false
    private var timer: RepeatedTask?

    init(timeout: Duration) {
        reader = redisReaderCreate()
        self.timeout = TimeAmount(timeout)
    }

    deinit { redisReaderFree(reader) }

    func handlerAdded(context: ChannelHandlerContext) {
        // A request without a reply for `timeout` means the server or the link is stuck.
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in
            let (handler, context) = loopBound.value
            if let oldest = handler.waiting.first, oldest.sent + handler.timeout < .now() {
                handler.failAll(RedisError(.connection, "no reply from redis in time"))
                context.close(promise: nil)
            }
        }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        timer?.cancel()
        failAll(RedisError(.connection, "connection closed"))
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        request.taken.value = true
        guard context.channel.isActive else {
            request.promise.fail(RedisError(.connection, "connection closed"))
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        var buffer = context.channel.allocator.buffer(capacity: request.commands.reduce(0) { $0 + $1.reduce(16) { $0 + $1.count + 16 } })
        for args in request.commands {
            let encoded: Bool = Self.withArgv(args) { argc, argv, lens in
                var target: UnsafeMutablePointer<CChar>?
                let n = redisFormatCommandArgv(&target, argc, argv, lens)
                guard n > 0, let target else { return false }
                buffer.writeBytes(UnsafeRawBufferPointer(start: target, count: Int(n)))
                redisFreeCommand(target)
                return true
            }
            if !encoded {
                request.promise.fail(RedisError(.protocolViolation, "cannot encode command"))
                promise?.fail(RedisError(.protocolViolation, "cannot encode command"))
                return
            }
        }
        waiting.append(Waiting(expected: request.commands.count, replies: [], promise: request.promise, sent: .now()))
        context.write(wrapOutboundOut(buffer), promise: promise)
    }

    func flush(context: ChannelHandlerContext) {
        guard !flushScheduled else { return }
        flushScheduled = true
        let loopBound = NIOLoopBound((self, context), eventLoop: context.eventLoop)
        context.eventLoop.execute {
            let (handler, context) = loopBound.value
            handler.flushScheduled = false
            context.flush()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let bytes = unwrapInboundIn(data)
        let fed: Int32 = bytes.withUnsafeReadableBytes { raw in
            raw.withMemoryRebound(to: CChar.self) { redisReaderFeed(reader, $0.baseAddress, $0.count) }
        }
        guard fed == REDIS_OK else { return protocolError(context) }
        while true {
            var raw: UnsafeMutableRawPointer?
            guard redisReaderGetReply(reader, &raw) == REDIS_OK else { return protocolError(context) }
            guard let raw else { return }  // needs more bytes
            let value = Self.convert(raw.assumingMemoryBound(to: redisReply.self))
            freeReplyObject(raw)
            guard !waiting.isEmpty else { return protocolError(context) }
            waiting[waiting.startIndex].replies.append(value)
            if waiting[waiting.startIndex].replies.count == waiting[waiting.startIndex].expected {
                let done = waiting.removeFirst()
                done.promise.succeed(done.replies)
            }
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(RedisError(.connection, "connection closed by redis"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        failAll(RedisError(.connection, "\(error)"))
        context.close(promise: nil)
    }

    private func protocolError(_ context: ChannelHandlerContext) {
        failAll(RedisError(.protocolViolation, "unparseable reply from redis"))
        context.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        while let w = waiting.popFirst() { w.promise.fail(error) }
    }

    static func convert(_ r: UnsafeMutablePointer<redisReply>) -> RESPValue {
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
    static func withArgv<R>(
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
