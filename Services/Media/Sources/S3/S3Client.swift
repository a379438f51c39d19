import Crypto
import Logging
import NIOPosix

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Metadata of a stored object.
public struct S3ObjectInfo: Sendable, Hashable {
    /// Size in bytes.
    public var size: Int64
    /// The `Content-Type` the object was stored with.
    public var contentType: String?
    /// Entity tag, without the surrounding quotes.
    public var etag: String?
    /// When the object was last written, from `Last-Modified` (whole seconds).
    public var lastModified: Date?

    public init(size: Int64, contentType: String?, etag: String?, lastModified: Date?) {
        self.size = size
        self.contentType = contentType
        self.etag = etag
        self.lastModified = lastModified
    }
}

/// SHA-256 of an object's bytes, computed while they stream past.
public struct S3ObjectDigest: Sendable, Hashable {
    /// Lower-case hex SHA-256 of the whole object.
    public var sha256: String
    /// Bytes received.
    public var size: Int64
    /// The first `S3Client.digestPrefixLength` bytes (fewer for a smaller object), for sniffing the
    /// real file type.
    public var firstBytes: [UInt8]
    /// The `Content-Type` the object was stored with.
    public var contentType: String?
    /// Entity tag, without the surrounding quotes.
    public var etag: String?
}

/// HTTP methods a presigned URL can be made for.
public enum S3Method: String, Sendable, Hashable {
    case get = "GET"
    case put = "PUT"
    case head = "HEAD"
    case delete = "DELETE"
}

/// A presigned request to hand to a client that holds no credentials.
public struct S3PresignedRequest: Sendable, Hashable {
    /// The method the URL was signed for; any other is refused.
    public var method: S3Method
    /// The full URL, authorization included.
    public var url: String
    /// Headers the client must send with exactly these values, because they are signed
    /// (e.g. `content-type`, `content-length`). `host` is signed too and comes from the URL.
    public var headers: [String: String]
    /// The instant storage starts refusing the URL.
    public var expiresAt: Date
}

/// An S3 client over libcurl for one bucket (MinIO, SeaweedFS, Alibaba OSS, AWS).
///
/// Every blocking libcurl call runs on the `NIOThreadPool` given at creation, never on Swift's
/// cooperative pool, and is bounded by the configuration's timeouts (running pool work cannot be
/// cancelled). Connections are kept alive between calls; call `shutdown()` to close them.
/// 5xx (and 429 throttling) answers and connection failures are retried with backoff; other 4xx never.
/// Every method throws `S3Error` (or `CancellationError`, or the error your chunk handler threw).
public final class S3Client: Sendable {
    /// How many leading bytes `sha256OfObject` returns.
    public static let digestPrefixLength = 64

    public let configuration: S3Configuration
    /// Presigns URLs for this client's bucket.
    public let presigner: S3Presigner
    private let signer: SigV4Signer
    private let threadPool: NIOThreadPool
    private let handles: CurlHandlePool
    private let logger: Logger

    /// - Parameters:
    ///   - threadPool: a started pool dedicated to storage I/O; its size bounds concurrent
    ///     transfers. The caller owns it and shuts it down after `shutdown()`.
    ///   - logger: used when a call is not given its own (request) logger.
    public init(configuration: S3Configuration, threadPool: NIOThreadPool, logger: Logger) {
        self.configuration = configuration
        self.signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region)
        self.presigner = S3Presigner(configuration: configuration)
        self.threadPool = threadPool
        self.handles = CurlHandlePool(maximumIdle: 16)
        self.logger = logger
    }

    /// Closes the kept-alive connections. Calls still running finish; later calls reconnect.
    public func shutdown() {
        self.handles.close()
    }

    // MARK: Buckets

    /// Creates the bucket; succeeds if it already exists and is ours.
    public func createBucket(logger: Logger? = nil) async throws {
        var body = Data()
        if self.configuration.region != "us-east-1" {
            body = Data(("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                + "<LocationConstraint>\(self.configuration.region)</LocationConstraint>"
                + "</CreateBucketConfiguration>").utf8)
        }
        let call = Call(operation: "CreateBucket", method: "PUT", key: nil, body: .data(body),
                        payload: .hashing(body), tolerated: [409])
        let (outcome, _) = try await self.execute(call, logger: logger) { DiscardingConsumer() }
        if outcome.status == 409 {
            let storage = StorageError(outcome.errorBody)
            guard storage.code == "BucketAlreadyOwnedByYou" else {
                throw Self.error(for: outcome, storage: storage, call: call)
            }
        }
    }

    /// Whether the bucket exists (`false` on 404). Throws `.accessDenied` if it is not ours.
    public func headBucket(logger: Logger? = nil) async throws -> Bool {
        let call = Call(operation: "HeadBucket", method: "HEAD", key: nil, tolerated: [404])
        let (outcome, _) = try await self.execute(call, logger: logger) { DiscardingConsumer() }
        return outcome.status != 404
    }

    // MARK: Objects

    /// Uploads `data` as `key` (its SHA-256 is signed, so storage verifies the bytes).
    /// - Returns: the new object's entity tag.
    @discardableResult
    public func putObject(_ key: String, data: Data, contentType: String? = nil, logger: Logger? = nil) async throws -> String? {
        let call = Call(operation: "PutObject", method: "PUT", key: try Self.validated(key),
                        headers: Self.contentTypeHeader(contentType), body: .data(data),
                        payload: .hashing(data), isTransfer: true)
        let (outcome, _) = try await self.execute(call, logger: logger) { DiscardingConsumer() }
        return outcome.headers["etag"].map(Self.unquoted)
    }

    /// Uploads the file at `file` as `key`, streamed from disk with its size as `Content-Length`
    /// (`UNSIGNED-PAYLOAD`: the file is read once).
    /// - Returns: the new object's entity tag.
    @discardableResult
    public func putObject(_ key: String, file: URL, contentType: String? = nil, logger: Logger? = nil) async throws -> String? {
        let call = Call(operation: "PutObject", method: "PUT", key: try Self.validated(key),
                        headers: Self.contentTypeHeader(contentType), body: .file(path: try Self.filePath(file)),
                        payload: .unsigned, isTransfer: true)
        let (outcome, _) = try await self.execute(call, logger: logger) { DiscardingConsumer() }
        return outcome.headers["etag"].map(Self.unquoted)
    }

    /// Downloads `key` into `file`, streamed to disk. The bytes go to a temporary file beside it
    /// that is renamed over `file` only when the download completed.
    @discardableResult
    public func getObject(_ key: String, to file: URL, logger: Logger? = nil) async throws -> S3ObjectInfo {
        let path = try Self.filePath(file)
        let call = Call(operation: "GetObject", method: "GET", key: try Self.validated(key), isTransfer: true)
        let (outcome, size) = try await self.execute(call, logger: logger) { FileConsumer(path: path) }
        return Self.info(outcome, size: size ?? outcome.bodyBytes)
    }

    /// Downloads `key`, handing each chunk to `onChunk` as it arrives, in order, on the client's
    /// I/O thread (keep it quick; the bytes are only valid during the call). Nothing is buffered
    /// whole. If `onChunk` throws, the transfer stops and that error is rethrown. A failure after
    /// the first chunk is not retried, so `onChunk` never sees a byte twice.
    @discardableResult
    public func getObject(
        _ key: String, logger: Logger? = nil,
        onChunk: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void
    ) async throws -> S3ObjectInfo {
        var call = Call(operation: "GetObject", method: "GET", key: try Self.validated(key), isTransfer: true)
        call.restartableAfterBody = false
        let (outcome, _) = try await self.execute(call, logger: logger) { ChunkConsumer(onChunk) }
        return Self.info(outcome, size: outcome.bodyBytes)
    }

    /// Size, type, entity tag and modification date of `key`, or `nil` if it does not exist.
    public func headObject(_ key: String, logger: Logger? = nil) async throws -> S3ObjectInfo? {
        let call = Call(operation: "HeadObject", method: "HEAD", key: try Self.validated(key), tolerated: [404])
        let (outcome, _) = try await self.execute(call, logger: logger) { DiscardingConsumer() }
        if outcome.status == 404 { return nil }
        return Self.info(outcome, size: outcome.headers["content-length"].flatMap { Int64($0) } ?? 0)
    }

    /// Copies `source` to `key` inside the bucket, on the storage server (the bytes never pass
    /// through this process). S3 may report a copy that failed midway inside a 200 answer, so a
    /// caller that must be sure reads the copy back (the media service hashes it).
    public func copyObject(from source: String, to key: String, logger: Logger? = nil) async throws {
        let segments = [self.configuration.bucket] + (try Self.validated(source)).split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        let encoded = "/" + segments.map { URIEncoding.encode($0) }.joined(separator: "/")
        let call = Call(operation: "CopyObject", method: "PUT", key: try Self.validated(key),
                        headers: [SigV4Request.Field("x-amz-copy-source", encoded)], body: .data(Data()),
                        payload: .hashing(Data()), isTransfer: true)
        _ = try await self.execute(call, logger: logger) { DiscardingConsumer() }
    }

    /// Deletes `key`. Deleting a missing object succeeds, as S3 answers 204 either way.
    public func deleteObject(_ key: String, logger: Logger? = nil) async throws {
        let call = Call(operation: "DeleteObject", method: "DELETE", key: try Self.validated(key))
        _ = try await self.execute(call, logger: logger) { DiscardingConsumer() }
    }

    /// SHA-256, size and first bytes of `key`, hashed chunk by chunk as the object streams in:
    /// memory stays flat whatever the object's size.
    public func sha256OfObject(_ key: String, logger: Logger? = nil) async throws -> S3ObjectDigest {
        let call = Call(operation: "GetObjectDigest", method: "GET", key: try Self.validated(key), isTransfer: true)
        let (outcome, digest) = try await self.execute(call, logger: logger) { DigestConsumer() }
        guard var digest else { throw Self.error(for: outcome, storage: StorageError([]), call: call) }
        digest.contentType = outcome.headers["content-type"]
        digest.etag = outcome.headers["etag"].map(Self.unquoted)
        return digest
    }

    // MARK: Presigning

    /// A presigned URL for `method` on `key`; see `S3Presigner.presignedURL`.
    public func presignedURL(
        method: S3Method, key: String, expires: Duration, signedHeaders: [String: String] = [:],
        query: [String: String] = [:], date: Date = Date()
    ) throws -> S3PresignedRequest {
        try self.presigner.presignedURL(
            method: method, key: key, expires: expires, signedHeaders: signedHeaders, query: query, date: date)
    }

    // MARK: Execution

    /// One S3 operation, described before any attempt.
    private struct Call: Sendable {
        var operation: String
        var method: String
        var key: String?
        var headers: [SigV4Request.Field] = []
        var body: CurlRequest.Body = .none
        var payload: SigV4Payload = .empty
        /// Streams an object: bounded by `transferTimeout` rather than `requestTimeout`.
        var isTransfer = false
        /// Error statuses the caller interprets itself (404 for HEAD, 409 for create bucket).
        var tolerated: Set<Int> = []
        /// Whether a retry may restart the consumer after it received bytes.
        var restartableAfterBody = true
    }

    /// Runs `call` with retries. Returns the outcome of a 2xx (or tolerated) answer and what the
    /// consumer made of the body; throws `S3Error` otherwise.
    private func execute<Consumer: ResponseBodyConsumer>(
        _ call: Call, logger: Logger?, consumer makeConsumer: @escaping @Sendable () -> Consumer
    ) async throws -> (CurlOutcome, Consumer.Output?) {
        var logger = logger ?? self.logger
        logger[metadataKey: "s3.operation"] = "\(call.operation)"
        logger[metadataKey: "s3.bucket"] = "\(self.configuration.bucket)"
        if let key = call.key { logger[metadataKey: "s3.key"] = "\(key)" }
        let configuration = self.configuration
        let policy = configuration.retry
        var attempt = 1
        while true {
            let request = self.curlRequest(for: call, date: Date())
            let (outcome, output) = try await self.perform(request, consumer: makeConsumer)
            if outcome.succeeded || (outcome.failure == nil && call.tolerated.contains(outcome.status)) {
                logger.debug("s3 call done", metadata: ["s3.status": "\(outcome.status)", "s3.attempt": "\(attempt)"])
                return (outcome, output)
            }
            if case .consumer(let error)? = outcome.failure { throw error }
            let storage = StorageError(outcome.errorBody)
            let error = Self.error(for: outcome, storage: storage, call: call)
            let retryable = Self.isRetryable(outcome) && (call.restartableAfterBody || outcome.bodyBytes == 0)
            guard retryable, attempt < policy.maxAttempts else {
                logger.debug("s3 call failed", metadata: [
                    "s3.status": "\(outcome.status)", "s3.attempt": "\(attempt)",
                    "s3.error_code": "\(error.code.rawValue)", "s3.detail": "\(error.logDetail)",
                ])
                throw error
            }
            let delay = Self.backoff(attempt: attempt, policy: policy)
            logger.warning("s3 call failed, retrying", metadata: [
                "s3.status": "\(outcome.status)", "s3.attempt": "\(attempt)",
                "s3.error_code": "\(error.code.rawValue)", "s3.detail": "\(error.logDetail)",
                "s3.retry_in_ms": "\(delay.curlMilliseconds)",
            ])
            try await Task.sleep(for: delay)
            attempt += 1
        }
    }

    /// One attempt on the thread pool. The consumer is made, fed and finished on the pool thread.
    private func perform<Consumer: ResponseBodyConsumer>(
        _ request: CurlRequest, consumer makeConsumer: @escaping @Sendable () -> Consumer
    ) async throws -> (CurlOutcome, Consumer.Output?) {
        let handles = self.handles
        do {
            return try await self.threadPool.runIfActive {
                try handles.withHandle { handle -> (CurlOutcome, Consumer.Output?) in
                    let consumer = makeConsumer()
                    var outcome = handle.perform(request, consume: consumer.consume)
                    guard outcome.succeeded else {
                        consumer.abandon()
                        return (outcome, nil)
                    }
                    do {
                        return (outcome, try consumer.finish())
                    } catch {
                        consumer.abandon()
                        outcome.failure = .consumer(error)
                        return (outcome, nil)
                    }
                }
            }
        } catch let error as S3Error {
            throw error
        } catch is CancellationError {
            throw CancellationError()
        } catch {
            throw S3Error(.unavailable, detail: "storage thread pool is not running: \(error)")
        }
    }

    private func curlRequest(for call: Call, date: Date) -> CurlRequest {
        let configuration = self.configuration
        let (host, path) = configuration.location(key: call.key)
        let request = SigV4Request(method: call.method, host: host, path: path, headers: call.headers)
        let signature = self.signer.sign(request, payload: call.payload, date: date)
        return CurlRequest(
            method: call.method,
            url: "\(configuration.scheme)://\(host)\(self.signer.canonicalURI(path))",
            headers: [SigV4Request.Field("Host", host)] + call.headers + signature.headers,
            body: call.body,
            connectTimeoutMilliseconds: configuration.connectTimeout.curlMilliseconds,
            timeoutMilliseconds: (call.isTransfer ? configuration.transferTimeout : configuration.requestTimeout)
                .curlMilliseconds,
            lowSpeedBytesPerSecond: configuration.lowSpeedBytesPerSecond,
            lowSpeedSeconds: max(1, Int(configuration.lowSpeedWindow.components.seconds))
        )
    }

    // MARK: Errors and retries

    private static func isRetryable(_ outcome: CurlOutcome) -> Bool {
        switch outcome.failure {
        case .timeout?, .connection?: true
        case .localIO?, .consumer?, .protocolError?, .other?: false
        // 429 is throttling (like S3's 503 SlowDown), not a mistake in the request: retried too.
        case nil: outcome.status >= 500 || outcome.status == 429
        }
    }

    private static func error(for outcome: CurlOutcome, storage: StorageError, call: Call) -> S3Error {
        let context = "\(call.operation) \(call.method)"
        switch outcome.failure {
        case .timeout?:
            return S3Error(.timeout, detail: "\(context): \(outcome.failureDetail)")
        case .connection?, .other?:
            return S3Error(.unavailable, detail: "\(context): \(outcome.failureDetail)")
        case .localIO?:
            return S3Error(.localIO, detail: "\(context): \(outcome.failureDetail)")
        case .protocolError?:
            return S3Error(.badResponse, detail: "\(context): \(outcome.failureDetail)")
        case .consumer(let error)?:
            if let error = error as? S3Error { return error }
            return S3Error(.localIO, detail: "\(context): \(error)")
        case nil:
            break
        }
        let status = outcome.status
        let detail = "\(context): HTTP \(status) \(storage.code ?? "-"): \(storage.message ?? "")"
        let code: S3Error.Code
        switch status {
        case 404: code = .notFound
        case 401, 403: code = .accessDenied
        case 409: code = .conflict
        case 429, 500...: code = .unavailable
        case 400..<500: code = .invalidRequest
        default: code = .badResponse  // 1xx/3xx: a redirect usually means the wrong region or style
        }
        return S3Error(code, httpStatus: status, detail: detail)
    }

    /// A wait between half and all of `initialBackoff * 2^(attempt-1)`, capped at `maxBackoff`; the
    /// jitter keeps clients that failed together from retrying together.
    private static func backoff(attempt: Int, policy: S3Configuration.RetryPolicy) -> Duration {
        let ceiling = min(policy.maxBackoff, policy.initialBackoff * (1 << min(attempt - 1, 20)))
        return ceiling * Double.random(in: 0.5...1.0)
    }

    // MARK: Helpers

    private static func validated(_ key: String) throws -> String {
        try S3Presigner.validated(key)
    }

    private static func filePath(_ url: URL) throws -> String {
        guard url.isFileURL else {
            throw S3Error(.invalidRequest, detail: "\(url) is not a file URL")
        }
        return url.path(percentEncoded: false)
    }

    private static func contentTypeHeader(_ contentType: String?) -> [SigV4Request.Field] {
        contentType.map { [SigV4Request.Field("content-type", $0)] } ?? []
    }

    private static func unquoted(_ etag: String) -> String {
        etag.count >= 2 && etag.hasPrefix("\"") && etag.hasSuffix("\"") ? String(etag.dropFirst().dropLast()) : etag
    }

    private static func info(_ outcome: CurlOutcome, size: Int64) -> S3ObjectInfo {
        S3ObjectInfo(
            size: size,
            contentType: outcome.headers["content-type"],
            etag: outcome.headers["etag"].map(Self.unquoted),
            lastModified: outcome.headers["last-modified"].flatMap(HTTPDate.parse)
        )
    }
}

/// `<Code>` and `<Message>` of an S3 XML error body, for logs.
struct StorageError {
    var code: String?
    var message: String?

    init(_ body: [UInt8]) {
        let text = String(decoding: body, as: UTF8.self)
        self.code = Self.element("Code", in: text)
        self.message = Self.element("Message", in: text)
    }

    private static func element(_ name: String, in text: String) -> String? {
        guard let start = text.firstRange(of: "<\(name)>"),
              let end = text[start.upperBound...].firstRange(of: "</\(name)>")
        else { return nil }
        return String(text[start.upperBound..<end.lowerBound].prefix(200))
    }
}

/// RFC 7231 IMF-fixdate (`Tue, 25 Nov 2025 13:34:43 GMT`), as S3 sends `Last-Modified`.
enum HTTPDate {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    static func parse(_ text: String) -> Date? {
        let parts = text.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT",
              let day = Int(parts[1]), let month = Self.months.firstIndex(of: String(parts[2])),
              let year = Int(parts[3])
        else { return nil }
        let clock = parts[4].split(separator: ":").compactMap { Int($0) }
        guard clock.count == 3 else { return nil }
        let civil = CivilTime(year: year, month: month + 1, day: day, hour: clock[0], minute: clock[1], second: clock[2])
        return Date(timeIntervalSince1970: TimeInterval(civil.secondsSince1970))
    }
}

// MARK: Body consumers (made, fed and finished on one pool thread)

/// Receives a 2xx response body on the pool thread, in order.
protocol ResponseBodyConsumer: AnyObject {
    associatedtype Output: Sendable
    func consume(_ bytes: UnsafeRawBufferPointer) throws
    /// After the whole body arrived.
    func finish() throws -> Output
    /// After a failed transfer or an error answer; undoes any side effect.
    func abandon()
}

private final class DiscardingConsumer: ResponseBodyConsumer {
    func consume(_ bytes: UnsafeRawBufferPointer) {}
    func finish() {}
    func abandon() {}
}

private final class ChunkConsumer: ResponseBodyConsumer {
    let onChunk: @Sendable (UnsafeRawBufferPointer) throws -> Void

    init(_ onChunk: @escaping @Sendable (UnsafeRawBufferPointer) throws -> Void) {
        self.onChunk = onChunk
    }

    func consume(_ bytes: UnsafeRawBufferPointer) throws { try self.onChunk(bytes) }
    func finish() {}
    func abandon() {}
}

private final class DigestConsumer: ResponseBodyConsumer {
    private var hasher = SHA256()
    private var firstBytes: [UInt8] = []
    private var size: Int64 = 0

    func consume(_ bytes: UnsafeRawBufferPointer) {
        self.hasher.update(bufferPointer: bytes)
        let wanted = S3Client.digestPrefixLength - self.firstBytes.count
        if wanted > 0 { self.firstBytes.append(contentsOf: bytes.prefix(wanted)) }
        self.size += Int64(bytes.count)
    }

    func finish() -> S3ObjectDigest {
        S3ObjectDigest(sha256: Hex.encode(self.hasher.finalize()), size: self.size, firstBytes: self.firstBytes)
    }

    func abandon() {}
}

/// Writes to `<path>.part-<random>` and renames it over `path` once complete.
private final class FileConsumer: ResponseBodyConsumer {
    private let path: String
    private let temporaryPath: String
    private var fd: Int32 = -1
    private var size: Int64 = 0

    init(path: String) {
        self.path = path
        self.temporaryPath = "\(path).part-\(UInt32.random(in: .min ... .max))"
    }

    private func openIfNeeded() throws {
        guard self.fd < 0 else { return }
        self.fd = open(self.temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard self.fd >= 0 else {
            throw S3Error(.localIO, detail: "cannot create \(self.temporaryPath): \(String(cString: strerror(errno)))")
        }
    }

    func consume(_ bytes: UnsafeRawBufferPointer) throws {
        try self.openIfNeeded()
        var offset = 0
        while offset < bytes.count {
            let written = write(self.fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                throw S3Error(.localIO, detail: "writing \(self.temporaryPath) failed: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
        self.size += Int64(bytes.count)
    }

    func finish() throws -> Int64 {
        try self.openIfNeeded()  // an empty object still makes an (empty) file
        let closed = close(self.fd)
        self.fd = -1
        guard closed == 0, rename(self.temporaryPath, self.path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(self.temporaryPath)
            throw S3Error(.localIO, detail: "finishing \(self.path) failed: \(reason)")
        }
        return self.size
    }

    func abandon() {
        if self.fd >= 0 {
            close(self.fd)
            self.fd = -1
            unlink(self.temporaryPath)
        }
    }
}
