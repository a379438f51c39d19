import Foundation
import Logging
import NIOPosix
import Synchronization
import Testing

@testable import AIIMS3

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Error codes and retries against local stand-ins for a broken store: a stub HTTP server with a
/// fixed answer, a port nobody listens on, a listener that never answers. Loopback only.
@Suite("S3 client failure handling", .serialized)
struct S3FailureTests {
    static func withClient<T>(
        port: Int, maxAttempts: Int = 3, requestTimeout: Duration = .seconds(5),
        _ body: (S3Client) async throws -> T
    ) async throws -> T {
        let pool = NIOThreadPool(numberOfThreads: 1)
        pool.start()
        let client = S3Client(
            configuration: S3Configuration(
                endpoint: "127.0.0.1:\(port)", secure: false, accessKey: "AK", secretKey: "SK", bucket: "b",
                connectTimeout: .seconds(2), requestTimeout: requestTimeout,
                retry: .init(maxAttempts: maxAttempts, initialBackoff: .milliseconds(10), maxBackoff: .milliseconds(50))),
            threadPool: pool, logger: Logger(label: "test"))
        do {
            let result = try await body(client)
            client.shutdown()
            try await pool.shutdownGracefully()
            return result
        } catch {
            client.shutdown()
            try await pool.shutdownGracefully()
            throw error
        }
    }

    static func expectS3Error(_ code: S3Error.Code, status: Int?, _ body: () async throws -> Void) async {
        do {
            try await body()
            Issue.record("expected S3Error(\(code.rawValue))")
        } catch let error as S3Error {
            #expect(error.code == code, "\(error.logDetail)")
            #expect(error.httpStatus == status)
            #expect(!"\(error)".contains("<"))
        } catch {
            Issue.record("expected S3Error, got \(error)")
        }
    }

    @Test("5xx is retried up to maxAttempts, then unavailable")
    func serverErrorsAreRetried() async throws {
        let server = try StubHTTPServer(status: 503, body: "<Error><Code>SlowDown</Code></Error>")
        defer { server.stop() }
        try await Self.withClient(port: server.port, maxAttempts: 3) { client in
            await Self.expectS3Error(.unavailable, status: 503) { try await client.deleteObject("k") }
        }
        #expect(server.requestCount == 3)
    }

    @Test("4xx is not retried; storage's code stays in the log detail only")
    func clientErrorsAreNotRetried() async throws {
        let server = try StubHTTPServer(status: 403, body: "<Error><Code>SignatureDoesNotMatch</Code></Error>")
        defer { server.stop() }
        try await Self.withClient(port: server.port, maxAttempts: 3) { client in
            do {
                try await client.deleteObject("k")
                Issue.record("expected accessDenied")
            } catch let error as S3Error {
                #expect(error.code == .accessDenied)
                #expect(error.logDetail.contains("SignatureDoesNotMatch"))
                #expect(!error.description.contains("SignatureDoesNotMatch"))
            }
        }
        #expect(server.requestCount == 1)
    }

    @Test("404: headObject is nil, getObject is notFound, and the error body never reaches the sink")
    func notFound() async throws {
        let server = try StubHTTPServer(status: 404, body: "<Error><Code>NoSuchKey</Code></Error>")
        defer { server.stop() }
        let received = Mutex(0)
        try await Self.withClient(port: server.port) { client in
            let head = try await client.headObject("k")
            #expect(head == nil)
            await Self.expectS3Error(.notFound, status: 404) {
                try await client.getObject("k") { bytes in received.withLock { $0 += bytes.count } }
            }
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-s3-\(UUID()).bin")
            await Self.expectS3Error(.notFound, status: 404) { try await client.getObject("k", to: file) }
            #expect(!FileManager.default.fileExists(atPath: file.path))
        }
        #expect(received.withLock { $0 } == 0)
        #expect(server.requestCount == 3)  // 404 is final: no retries
    }

    @Test("nobody listening: connection errors are retried, then unavailable")
    func connectionRefused() async throws {
        let port = try StubHTTPServer.unusedPort()
        let started = ContinuousClock.now
        try await Self.withClient(port: port, maxAttempts: 2) { client in
            await Self.expectS3Error(.unavailable, status: nil) { _ = try await client.headBucket() }
        }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("a server that never answers hits the request timeout")
    func silentServerTimesOut() async throws {
        let listener = try StubHTTPServer.silentListener()
        defer { close(listener.fd) }
        let started = ContinuousClock.now
        try await Self.withClient(port: listener.port, maxAttempts: 1, requestTimeout: .milliseconds(300)) { client in
            await Self.expectS3Error(.timeout, status: nil) { _ = try await client.headObject("k") }
        }
        #expect(ContinuousClock.now - started < .seconds(3))
    }

    @Test("a missing upload file is a local error, not a storage one")
    func missingUploadFile() async throws {
        let server = try StubHTTPServer(status: 200, body: "")
        defer { server.stop() }
        try await Self.withClient(port: server.port) { client in
            await Self.expectS3Error(.localIO, status: nil) {
                try await client.putObject("k", file: URL(fileURLWithPath: "/nonexistent/aiim/file.bin"))
            }
        }
        #expect(server.requestCount == 0)
    }
}

/// A loopback HTTP/1.1 server on its own thread that answers every request with one fixed
/// response and counts requests. Good for requests without a body (HEAD, GET, DELETE).
final class StubHTTPServer: Sendable {
    let port: Int
    private let listenFD: Int32
    private let count = Mutex(0)
    private let done = Mutex(false)

    var requestCount: Int { self.count.withLock { $0 } }

    init(status: Int, body: String) throws {
        (self.listenFD, self.port) = try Self.listen()
        let response = "HTTP/1.1 \(status) Stub\r\nContent-Length: \(body.utf8.count)\r\n"
            + "Content-Type: application/xml\r\nConnection: close\r\n\r\n\(body)"
        let fd = self.listenFD
        // A plain thread: blocking accept/read/write must not sit on Swift's cooperative pool.
        let thread = Thread { [self] in
            while true {
                let connection = accept(fd, nil, nil)
                if connection < 0 {
                    if self.done.withLock({ $0 }) { return }
                    continue
                }
                var request: [UInt8] = []
                var buffer = [UInt8](repeating: 0, count: 4096)
                while !request.ends(with: Array("\r\n\r\n".utf8)) {
                    let n = read(connection, &buffer, buffer.count)
                    if n <= 0 { break }
                    request.append(contentsOf: buffer[0..<n])
                }
                self.count.withLock { $0 += 1 }
                _ = response.withCString { write(connection, $0, strlen($0)) }
                close(connection)
            }
        }
        thread.start()
    }

    func stop() {
        self.done.withLock { $0 = true }
        shutdown(self.listenFD, Int32(SHUT_RDWR))
        close(self.listenFD)
    }

    /// A port that was free a moment ago (bound, then closed).
    static func unusedPort() throws -> Int {
        let (fd, port) = try Self.listen()
        close(fd)
        return port
    }

    /// A socket that accepts TCP connections (the kernel completes the handshake) but never reads
    /// or answers.
    static func silentListener() throws -> (fd: Int32, port: Int) {
        try Self.listen()
    }

    private static func listen() throws -> (Int32, Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw StubError.socket }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                bind(fd, socketAddress, length) == 0 && Glibc.listen(fd, 16) == 0
                    && getsockname(fd, socketAddress, &length) == 0
            }
        }
        guard bound else {
            close(fd)
            throw StubError.socket
        }
        return (fd, Int(UInt16(bigEndian: address.sin_port)))
    }

    enum StubError: Error {
        case socket
    }
}

extension Array where Element == UInt8 {
    func ends(with suffix: [UInt8]) -> Bool {
        self.count >= suffix.count && Array(self[(self.count - suffix.count)...]) == suffix
    }
}
