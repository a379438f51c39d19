internal import CCurlShim
import Synchronization

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

// Blocking libcurl "easy" transfers. Everything in this file runs on an NIOThreadPool thread:
// `S3Client` only calls it from inside `NIOThreadPool.runIfActive`.

/// libcurl's process-wide state. `curl_global_init` must run once before any handle exists and
/// not concurrently with itself; a `static let` initialiser runs exactly once, thread-safely.
enum CurlGlobal {
    static let initialization: CURLcode = curl_global_init(Int(CURL_GLOBAL_DEFAULT))
}

/// One HTTP exchange, fully described, ready to hand to a pool thread.
struct CurlRequest: Sendable {
    enum Body: Sendable {
        case none
        case data(Data)
        /// Streamed from the file with its size as `Content-Length` (never chunked).
        case file(path: String)
    }

    var method: String
    var url: String
    /// Sent as they are (`Name: value`); includes `Host` and the signature headers.
    var headers: [SigV4Request.Field]
    var body: Body
    var connectTimeoutMilliseconds: Int
    var timeoutMilliseconds: Int
    var lowSpeedBytesPerSecond: Int
    var lowSpeedSeconds: Int
}

/// What came back from one attempt, as plain Swift values (no libcurl type leaves the pool thread).
struct CurlOutcome: Sendable {
    enum Failure: Sendable {
        /// `CURLE_OPERATION_TIMEDOUT`: connect, total or low-speed bound hit.
        case timeout
        /// Could not resolve, connect, send or receive; worth a retry.
        case connection
        /// The upload file could not be opened or read.
        case localIO
        /// The body consumer threw; the transfer was aborted.
        case consumer(any Error)
        /// The server's reply was not valid HTTP.
        case protocolError
        /// Anything else (TLS verification, bad URL, …); not retried.
        case other
    }

    var failure: Failure?
    /// libcurl's error text or the local error, for logs.
    var failureDetail: String = ""
    /// HTTP status of the final response, 0 when there was none.
    var status: Int = 0
    /// Headers of the final response, names lower-cased.
    var headers: [String: String] = [:]
    /// Body of a non-2xx response (storage's XML error), capped at `CurlTransfer.errorBodyLimit`.
    var errorBody: [UInt8] = []
    /// Body bytes of a 2xx response handed to the consumer.
    var bodyBytes: Int64 = 0

    var succeeded: Bool { self.failure == nil && (200..<300).contains(self.status) }
}

/// A libcurl easy handle.
///
/// `@unchecked Sendable` because libcurl's rule for easy handles is "one thread at a time", and
/// that is what the only owner, `CurlHandlePool`, guarantees: a handle is either in the pool's
/// mutex-protected idle list (touched by nobody) or leased by `withHandle` to exactly one
/// NIOThreadPool job, which gives it back (reset) before the job ends. No reference to a handle
/// escapes a lease, so the stored pointer and error buffer are never accessed concurrently.
final class CurlEasy: @unchecked Sendable {
    private var handle: UnsafeMutableRawPointer?
    private let errorBuffer: UnsafeMutablePointer<CChar>

    init() throws {
        guard CurlGlobal.initialization == CURLE_OK, let handle = curl_easy_init() else {
            throw S3Error(.unavailable, detail: "libcurl could not be initialised")
        }
        self.handle = handle
        self.errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        self.errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
    }

    /// Clears every option (so no pointer from the last transfer stays set) but keeps the
    /// connection cache, so the next request on this handle can reuse the TCP/TLS connection.
    func reset() {
        if let handle = self.handle { curl_easy_reset(handle) }
        self.errorBuffer[0] = 0
    }

    /// Frees the handle and closes its connections. Called exactly once, by the pool.
    func close() {
        guard let handle = self.handle else { return }
        curl_easy_cleanup(handle)
        self.handle = nil
        self.errorBuffer.deallocate()
    }

    deinit {
        assert(self.handle == nil, "CurlEasy released without close()")
    }

    /// Runs one blocking transfer. Successful (2xx) body bytes go to `consume`, in order, on this
    /// thread; an error response's body is kept (capped) in the outcome instead.
    func perform(_ request: CurlRequest, consume: @escaping (UnsafeRawBufferPointer) throws -> Void) -> CurlOutcome {
        guard let handle = self.handle else {
            return CurlOutcome(failure: .other, failureDetail: "curl handle already closed")
        }
        let transfer = CurlTransfer(consume: consume)
        defer { transfer.closeUpload() }
        if let failure = transfer.openUpload(request.body) {
            return failure
        }

        var headerList: UnsafeMutablePointer<curl_slist>?
        defer { curl_slist_free_all(headerList) }
        for field in request.headers {
            headerList = curl_slist_append(headerList, "\(field.name): \(field.value)")
        }
        // No `Expect: 100-continue` round trip, and an explicit length (never chunked uploads).
        headerList = curl_slist_append(headerList, "Expect:")
        headerList = curl_slist_append(headerList, "Transfer-Encoding:")

        var setup = CurlSetup(handle: handle)
        setup.set(CURLOPT_URL, request.url)
        setup.set(CURLOPT_PROTOCOLS_STR, "http,https")
        // The signed path must be the sent path: no `..`/`.` squashing by curl.
        setup.set(CURLOPT_PATH_AS_IS, 1)
        // Blocking-thread use: no signals for DNS timeouts.
        setup.set(CURLOPT_NOSIGNAL, 1)
        setup.set(CURLOPT_CONNECTTIMEOUT_MS, request.connectTimeoutMilliseconds)
        setup.set(CURLOPT_TIMEOUT_MS, request.timeoutMilliseconds)
        setup.set(CURLOPT_LOW_SPEED_LIMIT, request.lowSpeedBytesPerSecond)
        setup.set(CURLOPT_LOW_SPEED_TIME, request.lowSpeedSeconds)
        setup.set(CURLOPT_TCP_KEEPALIVE, 1)
        setup.set(CURLOPT_FOLLOWLOCATION, 0)
        setup.setPointer(CURLOPT_ERRORBUFFER, UnsafeMutableRawPointer(self.errorBuffer))
        setup.setHeaders(headerList)

        switch (request.method, request.body) {
        case ("HEAD", _):
            setup.set(CURLOPT_NOBODY, 1)
        case ("GET", _):
            setup.set(CURLOPT_HTTPGET, 1)
        case (let method, .none):
            setup.set(CURLOPT_CUSTOMREQUEST, method)
        case (let method, _):
            setup.set(CURLOPT_UPLOAD, 1)
            setup.set(CURLOPT_INFILESIZE_LARGE, offset: transfer.uploadSize)
            if method != "PUT" { setup.set(CURLOPT_CUSTOMREQUEST, method) }
        }

        let context = Unmanaged.passUnretained(transfer).toOpaque()
        setup.check(aiim_curl_set_header_callback(handle, { buffer, size, count, userdata in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
            transfer.receiveHeaderLine(UnsafeRawBufferPointer(start: buffer, count: size * count))
            return size * count
        }, context), "header callback")
        setup.check(aiim_curl_set_write_callback(handle, { buffer, size, count, userdata in
            let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
            let accepted = transfer.receiveBody(UnsafeRawBufferPointer(start: buffer, count: size * count))
            return accepted ? size * count : 0  // a short count makes curl abort with CURLE_WRITE_ERROR
        }, context), "write callback")
        if case .none = request.body {} else {
            setup.check(aiim_curl_set_read_callback(handle, { buffer, size, count, userdata in
                let transfer = Unmanaged<CurlTransfer>.fromOpaque(userdata!).takeUnretainedValue()
                return transfer.readUpload(into: UnsafeMutableRawPointer(buffer!), capacity: size * count)
            }, context), "read callback")
        }
        if let problem = setup.problem {
            return CurlOutcome(failure: .other, failureDetail: problem)
        }

        let code = withExtendedLifetime(transfer) { curl_easy_perform(handle) }

        var status = 0
        if aiim_curl_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK { status = transfer.status }
        var outcome = CurlOutcome(
            status: status, headers: transfer.headers, errorBody: transfer.errorBody, bodyBytes: transfer.bodyBytes)
        if code != CURLE_OK {
            let text = self.errorBuffer[0] != 0 ? String(cString: self.errorBuffer) : String(cString: curl_easy_strerror(code))
            outcome.failureDetail = "curl error \(code.rawValue): \(text)"
            if let consumerError = transfer.consumerError {
                outcome.failure = .consumer(consumerError)
            } else if let readError = transfer.readError {
                outcome.failure = .localIO
                outcome.failureDetail = readError
            } else {
                outcome.failure = Self.classify(code)
            }
        }
        return outcome
    }

    private static func classify(_ code: CURLcode) -> CurlOutcome.Failure {
        switch code {
        case CURLE_OPERATION_TIMEDOUT:
            return .timeout
        case CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY, CURLE_COULDNT_CONNECT, CURLE_SEND_ERROR,
            CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_SSL_CONNECT_ERROR, CURLE_HTTP2,
            CURLE_HTTP2_STREAM, CURLE_SEND_FAIL_REWIND:
            return .connection
        case CURLE_READ_ERROR, CURLE_ABORTED_BY_CALLBACK:
            return .localIO
        case CURLE_WEIRD_SERVER_REPLY, CURLE_BAD_CONTENT_ENCODING, CURLE_TOO_MANY_REDIRECTS:
            return .protocolError
        default:
            return .other
        }
    }
}

/// Applies options and remembers the first one libcurl refused.
private struct CurlSetup {
    let handle: UnsafeMutableRawPointer
    var problem: String?

    init(handle: UnsafeMutableRawPointer) { self.handle = handle }

    mutating func check(_ code: CURLcode, _ what: @autoclosure () -> String) {
        if code != CURLE_OK, self.problem == nil {
            self.problem = "curl_easy_setopt(\(what())) failed: \(String(cString: curl_easy_strerror(code)))"
        }
    }

    mutating func set(_ option: CURLoption, _ value: Int) {
        self.check(aiim_curl_setopt_long(self.handle, option, value), "option \(option.rawValue)")
    }

    mutating func set(_ option: CURLoption, offset value: Int64) {
        self.check(aiim_curl_setopt_off_t(self.handle, option, curl_off_t(value)), "option \(option.rawValue)")
    }

    /// libcurl copies string options, so the temporary C string may go away after the call.
    mutating func set(_ option: CURLoption, _ value: String) {
        self.check(aiim_curl_setopt_string(self.handle, option, value), "option \(option.rawValue)")
    }

    mutating func setPointer(_ option: CURLoption, _ value: UnsafeMutableRawPointer) {
        self.check(aiim_curl_setopt_pointer(self.handle, option, value), "option \(option.rawValue)")
    }

    mutating func setHeaders(_ list: UnsafeMutablePointer<curl_slist>?) {
        self.check(aiim_curl_setopt_slist(self.handle, CURLOPT_HTTPHEADER, list), "HTTPHEADER")
    }
}

/// Per-transfer state reached from libcurl's callbacks through their `userdata` pointer.
/// Lives on one pool thread for the duration of one `perform`.
private final class CurlTransfer {
    static let errorBodyLimit = 64 * 1024

    let consume: (UnsafeRawBufferPointer) throws -> Void
    var status = 0
    var headers: [String: String] = [:]
    var errorBody: [UInt8] = []
    var bodyBytes: Int64 = 0
    var consumerError: (any Error)?

    private var uploadData: Data?
    private var uploadOffset = 0
    private var uploadFD: Int32 = -1
    private(set) var uploadSize: Int64 = 0
    private(set) var readError: String?

    init(consume: @escaping (UnsafeRawBufferPointer) throws -> Void) {
        self.consume = consume
    }

    /// Prepares the request body; returns a failed outcome if the file cannot be opened.
    func openUpload(_ body: CurlRequest.Body) -> CurlOutcome? {
        switch body {
        case .none:
            return nil
        case .data(let data):
            self.uploadData = data
            self.uploadSize = Int64(data.count)
            return nil
        case .file(let path):
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else {
                return CurlOutcome(failure: .localIO, failureDetail: "cannot open \(path): \(Self.errnoText())")
            }
            var info = stat()
            guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
                close(fd)
                return CurlOutcome(failure: .localIO, failureDetail: "\(path) is not a readable regular file")
            }
            self.uploadFD = fd
            self.uploadSize = Int64(info.st_size)
            return nil
        }
    }

    func closeUpload() {
        if self.uploadFD >= 0 {
            close(self.uploadFD)
            self.uploadFD = -1
        }
    }

    func readUpload(into buffer: UnsafeMutableRawPointer, capacity: Int) -> Int {
        if let data = self.uploadData {
            let count = min(capacity, data.count - self.uploadOffset)
            guard count > 0 else { return 0 }
            let start = data.startIndex + self.uploadOffset
            data.copyBytes(to: buffer.assumingMemoryBound(to: UInt8.self), from: start..<(start + count))
            self.uploadOffset += count
            return count
        }
        while true {
            let count = read(self.uploadFD, buffer, capacity)
            if count >= 0 { return count }
            if errno == EINTR { continue }
            self.readError = "reading the upload file failed: \(Self.errnoText())"
            return Int(CURL_READFUNC_ABORT)
        }
    }

    func receiveHeaderLine(_ bytes: UnsafeRawBufferPointer) {
        var line = String(decoding: bytes, as: UTF8.self)
        while line.hasSuffix("\n") || line.hasSuffix("\r") || line.hasSuffix("\r\n") { line.removeLast() }
        if line.hasPrefix("HTTP/") {
            // A new response starts (after a 1xx, for instance): forget the previous one's headers.
            let parts = line.split(separator: " ", maxSplits: 2)
            self.status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
            self.headers = [:]
        } else if let colon = line.firstIndex(of: ":") {
            let name = line[..<colon].lowercased()
            let value = line[line.index(after: colon)...].trimmingSpaces()
            self.headers[name] = self.headers[name].map { "\($0), \(value)" } ?? value
        }
    }

    func receiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard (200..<300).contains(self.status) else {
            let room = Self.errorBodyLimit - self.errorBody.count
            if room > 0 { self.errorBody.append(contentsOf: bytes.prefix(room)) }
            return true
        }
        do {
            try self.consume(bytes)
            self.bodyBytes += Int64(bytes.count)
            return true
        } catch {
            self.consumerError = error
            return false
        }
    }

    static func errnoText() -> String {
        String(cString: strerror(errno))
    }
}

/// Idle easy handles, reused so connections stay alive between requests.
final class CurlHandlePool: Sendable {
    private struct State {
        var idle: [CurlEasy] = []
        var closed = false
    }

    private let state = Mutex(State())
    private let maximumIdle: Int

    init(maximumIdle: Int) {
        self.maximumIdle = maximumIdle
    }

    /// Leases a handle to `body` on the calling (pool) thread; the handle never outlives the call.
    func withHandle<Result>(_ body: (CurlEasy) throws -> Result) throws -> Result {
        let reused = self.state.withLock { $0.closed ? nil : $0.idle.popLast() }
        let handle = try reused ?? CurlEasy()
        defer { self.giveBack(handle) }
        return try body(handle)
    }

    private func giveBack(_ handle: CurlEasy) {
        handle.reset()
        let kept = self.state.withLock { state -> Bool in
            guard !state.closed, state.idle.count < self.maximumIdle else { return false }
            state.idle.append(handle)
            return true
        }
        if !kept { handle.close() }
    }

    /// Closes the idle handles; handles still leased are closed when they come back.
    func close() {
        let idle = self.state.withLock { state -> [CurlEasy] in
            state.closed = true
            defer { state.idle.removeAll() }
            return state.idle
        }
        for handle in idle { handle.close() }
    }

    deinit {
        self.close()
    }
}

extension Substring {
    func trimmingSpaces() -> String {
        String(self.drop(while: { $0 == " " || $0 == "\t" }).reversed().drop(while: { $0 == " " || $0 == "\t" }).reversed())
    }
}
