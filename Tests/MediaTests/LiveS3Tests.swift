import Crypto
import Foundation
import Logging
import NIOPosix
import Synchronization
import Testing

@testable import AIIMS3

/// Against a real S3 server (SeaweedFS in the project's test script) that checks signatures.
/// Needs AIIM_TEST_S3_ENDPOINT (host:port), AIIM_TEST_S3_ACCESS_KEY, AIIM_TEST_S3_SECRET_KEY,
/// AIIM_TEST_S3_BUCKET and AIIM_TEST_S3_REGION; without them every test here fails (never skips).
/// Presigned URLs are exercised with the system's `curl`, a client nobody here wrote.
@Suite("S3 against a live server", .serialized)
struct LiveS3Tests {
    static let variables = [
        "AIIM_TEST_S3_ENDPOINT", "AIIM_TEST_S3_ACCESS_KEY", "AIIM_TEST_S3_SECRET_KEY", "AIIM_TEST_S3_BUCKET",
        "AIIM_TEST_S3_REGION",
    ]

    static func configuration() throws -> S3Configuration {
        let environment = ProcessInfo.processInfo.environment
        let missing = Self.variables.filter { (environment[$0] ?? "").isEmpty }
        try #require(
            missing.isEmpty,
            "live S3 tests need \(missing.joined(separator: ", ")): run them through the project's test script, which starts SeaweedFS and sets these")
        return S3Configuration(
            endpoint: environment["AIIM_TEST_S3_ENDPOINT"]!, secure: false, region: environment["AIIM_TEST_S3_REGION"]!,
            accessKey: environment["AIIM_TEST_S3_ACCESS_KEY"]!, secretKey: environment["AIIM_TEST_S3_SECRET_KEY"]!,
            bucket: environment["AIIM_TEST_S3_BUCKET"]!)
    }

    /// A client on its own thread pool; the bucket exists before `body` runs.
    static func withClient<T>(
        _ configuration: S3Configuration? = nil, _ body: (S3Client) async throws -> T
    ) async throws -> T {
        let configuration = try configuration ?? Self.configuration()
        let pool = NIOThreadPool(numberOfThreads: 2)
        pool.start()
        let client = S3Client(configuration: configuration, threadPool: pool, logger: Logger(label: "aiim.s3.test"))
        do {
            try await client.createBucket()
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

    static func uniqueKey(_ name: String) -> String {
        "tests/\(UUID().uuidString.lowercased())/\(name)"
    }

    static func temporaryFile(_ bytes: [UInt8]) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-s3-\(UUID().uuidString)")
        try Data(bytes).write(to: url)
        return url
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    @Test("the bucket exists after createBucket, which is idempotent")
    func bucket() async throws {
        try await Self.withClient { client in
            try await client.createBucket()
            #expect(try await client.headBucket())
        }
    }

    @Test("put, head, get (file and stream) byte-identical, delete, then head is nil and get is notFound")
    func objectLifecycle() async throws {
        try await Self.withClient { client in
            let key = Self.uniqueKey("voice note ü+%.mp3")  // needs encoding in the path
            let bytes = Self.randomBytes(300_000)
            let etag = try await client.putObject(key, data: Data(bytes), contentType: "audio/mpeg")
            #expect(etag?.isEmpty == false)

            let info = try #require(try await client.headObject(key))
            #expect(info.size == Int64(bytes.count))
            #expect(info.contentType == "audio/mpeg")
            #expect(info.etag == etag)
            let modified = try #require(info.lastModified)
            #expect(abs(modified.timeIntervalSinceNow) < 600)

            let file = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-s3-\(UUID()).bin")
            defer { try? FileManager.default.removeItem(at: file) }
            let fetched = try await client.getObject(key, to: file)
            #expect(fetched.size == Int64(bytes.count))
            #expect(try Data(contentsOf: file) == Data(bytes))

            let streamed = Mutex<[UInt8]>([])
            let chunks = Mutex(0)
            try await client.getObject(key) { chunk in
                streamed.withLock { $0.append(contentsOf: chunk) }
                chunks.withLock { $0 += 1 }
            }
            #expect(streamed.withLock { $0 } == bytes)
            #expect(chunks.withLock { $0 } > 1)  // it arrived in pieces, not as one buffer

            try await client.deleteObject(key)
            #expect(try await client.headObject(key) == nil)
            do {
                try await client.getObject(key, to: file)
                Issue.record("expected notFound")
            } catch let error as S3Error {
                #expect(error.code == .notFound)
                #expect(error.httpStatus == 404)
            }
            try await client.deleteObject(key)  // deleting a missing object succeeds
        }
    }

    @Test("a presigned PUT from our signer works with the system curl, and the object reads back")
    func presignedPutWithSystemCurl() async throws {
        try await Self.withClient { client in
            let key = Self.uniqueKey("upload.ogg")
            let bytes = Self.randomBytes(70_000)
            let file = try Self.temporaryFile(bytes)
            defer { try? FileManager.default.removeItem(at: file) }
            let presigned = try client.presignedURL(
                method: .put, key: key, expires: .seconds(300), signedHeaders: ["content-type": "audio/ogg"])
            let status = try SystemCurl.run(["--upload-file", file.path, "-H", "Content-Type: audio/ogg", presigned.url])
            #expect(status == 200)

            let info = try #require(try await client.headObject(key))
            #expect(info.size == Int64(bytes.count))
            #expect(info.contentType == "audio/ogg")
            let digest = try await client.sha256OfObject(key)
            #expect(digest.sha256 == Hex.encode(SHA256.hash(data: bytes)))

            // And a presigned GET reads it back through curl too.
            let get = try client.presignedURL(method: .get, key: key, expires: .seconds(300))
            let downloaded = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-s3-\(UUID())")
            defer { try? FileManager.default.removeItem(at: downloaded) }
            #expect(try SystemCurl.run(["-o", downloaded.path, get.url]) == 200)
            #expect(try Data(contentsOf: downloaded) == Data(bytes))
            try await client.deleteObject(key)
        }
    }

    @Test("a URL signed with a wrong secret is refused (403); the right one is accepted")
    func wrongSecretIsRefused() async throws {
        let configuration = try Self.configuration()
        var wrong = configuration
        wrong.secretKey = configuration.secretKey + "-wrong"
        try await Self.withClient { client in
            let key = Self.uniqueKey("secret.txt")
            try await client.putObject(key, data: Data("hello".utf8), contentType: "text/plain")
            let good = try client.presignedURL(method: .get, key: key, expires: .seconds(300))
            let bad = try S3Presigner(configuration: wrong).presignedURL(method: .get, key: key, expires: .seconds(300))
            #expect(try SystemCurl.run(["-o", "/dev/null", good.url]) == 200)
            #expect(try SystemCurl.run(["-o", "/dev/null", bad.url]) == 403)

            // Header-signed requests with the wrong secret map to accessDenied.
            let pool = NIOThreadPool(numberOfThreads: 1)
            pool.start()
            let wrongClient = S3Client(configuration: wrong, threadPool: pool, logger: Logger(label: "test"))
            do {
                _ = try await wrongClient.headObject(key)
                Issue.record("expected accessDenied")
            } catch let error as S3Error {
                #expect(error.code == .accessDenied)
            }
            wrongClient.shutdown()
            try await pool.shutdownGracefully()
            try await client.deleteObject(key)
        }
    }

    @Test("an expired presigned URL is refused (403); the same URL still valid is accepted")
    func expiredURLIsRefused() async throws {
        try await Self.withClient { client in
            let key = Self.uniqueKey("expiring.txt")
            try await client.putObject(key, data: Data("soon gone".utf8))
            let expired = try client.presignedURL(
                method: .get, key: key, expires: .seconds(60), date: Date().addingTimeInterval(-3600))
            let valid = try client.presignedURL(
                method: .get, key: key, expires: .seconds(3700), date: Date().addingTimeInterval(-3600))
            #expect(try SystemCurl.run(["-o", "/dev/null", expired.url]) == 403)
            #expect(try SystemCurl.run(["-o", "/dev/null", valid.url]) == 200)
            try await client.deleteObject(key)
        }
    }

    /// Presigned PUTs bind content-type and content-length into the signature. SeaweedFS (4.x)
    /// enforces both: it rebuilds the canonical request from the request's real `Content-Type` and
    /// `Content-Length`, so another type, a longer or shorter body, or a chunked body without a
    /// length all fail with 403 SignatureDoesNotMatch, and nothing is stored. (A client that sends
    /// `Content-Length: 1000` followed by more bytes only gets the first 1000 stored: HTTP framing.)
    @Test("a presigned PUT bound to a type and length refuses another type or length")
    func presignedPutBindsTypeAndLength() async throws {
        try await Self.withClient { client in
            let key = Self.uniqueKey("bound.mp3")
            let declared = Self.randomBytes(1000)
            let presigned = try client.presignedURL(
                method: .put, key: key, expires: .seconds(300),
                signedHeaders: ["content-type": "audio/mpeg", "content-length": "\(declared.count)"])

            let longer = try Self.temporaryFile(declared + [0x42])
            let shorter = try Self.temporaryFile(Array(declared.prefix(999)))
            let exact = try Self.temporaryFile(declared)
            defer { for file in [longer, shorter, exact] { try? FileManager.default.removeItem(at: file) } }

            // A longer body with the declared type: curl sends Content-Length: 1001.
            #expect(try SystemCurl.run(["--upload-file", longer.path, "-H", "Content-Type: audio/mpeg", presigned.url]) == 403)
            #expect(try await client.headObject(key) == nil)
            // A shorter body.
            #expect(try SystemCurl.run(["--upload-file", shorter.path, "-H", "Content-Type: audio/mpeg", presigned.url]) == 403)
            #expect(try await client.headObject(key) == nil)
            // The declared length with another type.
            #expect(try SystemCurl.run(["--upload-file", exact.path, "-H", "Content-Type: text/html", presigned.url]) == 403)
            #expect(try await client.headObject(key) == nil)
            // The declared bytes without a Content-Length (chunked, as a client streaming stdin does).
            #expect(try SystemCurl.run(
                ["--upload-file", "-", "-H", "Content-Type: audio/mpeg", presigned.url], standardInput: exact) == 403)
            #expect(try await client.headObject(key) == nil)
            // The declared length and type.
            #expect(try SystemCurl.run(["--upload-file", exact.path, "-H", "Content-Type: audio/mpeg", presigned.url]) == 200)
            let info = try #require(try await client.headObject(key))
            #expect(info.size == 1000)
            #expect(info.contentType == "audio/mpeg")
            try await client.deleteObject(key)
        }
    }

    @Test("streaming SHA-256 of a 20 MB object matches swift-crypto's hash, with flat memory")
    func streamingDigestOfLargeObject() async throws {
        try await Self.withClient { client in
            let key = Self.uniqueKey("large.bin")
            // Written and hashed chunk by chunk, so the test itself never holds the object either.
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-s3-\(UUID())")
            defer { try? FileManager.default.removeItem(at: file) }
            _ = FileManager.default.createFile(atPath: file.path, contents: nil)
            let handle = try FileHandle(forWritingTo: file)
            var hasher = SHA256()
            var firstBytes: [UInt8] = []
            let chunkSize = 1 << 20
            let size = 20 * chunkSize + 12_345
            var written = 0
            var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
            while written < size {
                let count = min(chunkSize, size - written)
                var chunk = [UInt8](repeating: 0, count: count)
                for index in 0..<count {
                    seed ^= seed << 13
                    seed ^= seed >> 7
                    seed ^= seed << 17
                    chunk[index] = UInt8(truncatingIfNeeded: seed)
                }
                if firstBytes.isEmpty { firstBytes = Array(chunk.prefix(64)) }
                hasher.update(data: chunk)
                try handle.write(contentsOf: chunk)
                written += count
            }
            try handle.close()
            let expected = Hex.encode(hasher.finalize())

            try await client.putObject(key, file: file, contentType: "application/octet-stream")
            ResidentMemory.resetPeak()
            let before = ResidentMemory.peakBytes()
            let digest = try await client.sha256OfObject(key)
            let growth = ResidentMemory.peakBytes() - before
            #expect(digest.sha256 == expected)
            #expect(digest.size == Int64(size))
            #expect(digest.firstBytes == firstBytes)
            #expect(digest.contentType == "application/octet-stream")
            // Holding the object would raise the peak by at least its 20 MB.
            #expect(growth < 8 << 20, "peak resident memory grew by \(growth) bytes")
            print("streaming sha256: \(size) bytes, peak RSS growth \(growth) bytes")
            try await client.deleteObject(key)
        }
    }
}

/// Runs the system's curl and returns the HTTP status it got.
enum SystemCurl {
    static func run(_ arguments: [String], standardInput: URL? = nil) throws -> Int {
        let process = Process()
        if let standardInput { process.standardInput = try FileHandle(forReadingFrom: standardInput) }
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["--silent", "--show-error", "--max-time", "30", "--write-out", "%{http_code}"]
            + (arguments.contains("-o") ? [] : ["-o", "/dev/null"]) + arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Int(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
}

/// Peak resident set size of this process (`VmHWM`), in bytes.
enum ResidentMemory {
    /// Lowers the peak to the current resident size (Linux `clear_refs` 5), so a later peak
    /// measures only what happened since.
    static func resetPeak() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

    static func peakBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        let kilobytes = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kilobytes * 1024
    }
}
