import Foundation
import Testing

@testable import AIIMS3

/// S3-specific signing: the S3 documentation's examples, addressing styles, presigned uploads that
/// bind type and length, redaction. No network.
@Suite("S3 signing and URLs")
struct S3SigningTests {
    /// The S3 documentation's example credentials and instant (2013-05-24T00:00:00Z).
    static let docCredentials = SigV4Credentials(
        accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
    static let docDate = Date(timeIntervalSince1970: 1_369_353_600)

    static func docConfiguration() -> S3Configuration {
        S3Configuration(
            endpoint: "s3.amazonaws.com", secure: true, region: "us-east-1",
            accessKey: docCredentials.accessKeyID, secretKey: docCredentials.secretAccessKey,
            bucket: "examplebucket", addressingStyle: .virtualHosted)
    }

    @Test("S3 documentation: presigned GET (query auth, virtual-hosted, UNSIGNED-PAYLOAD)")
    func documentationPresignedGet() throws {
        let presigned = try S3Presigner(configuration: Self.docConfiguration())
            .presignedURL(method: .get, key: "test.txt", expires: .seconds(86_400), date: Self.docDate)
        let expectedSignature = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        #expect(presigned.url == "https://examplebucket.s3.amazonaws.com/test.txt"
            + "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
            + "&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            + "&X-Amz-Date=20130524T000000Z&X-Amz-SignedHeaders=host&X-Amz-Expires=86400"
            + "&X-Amz-Signature=\(expectedSignature)")
        #expect(presigned.headers.isEmpty)
        #expect(presigned.expiresAt == Self.docDate.addingTimeInterval(86_400))

        let signer = SigV4Signer(credentials: Self.docCredentials, region: "us-east-1")
        let request = SigV4Request(method: "GET", host: "examplebucket.s3.amazonaws.com", path: "/test.txt")
        let signature = try signer.presign(request, expires: .seconds(86_400), date: Self.docDate)
        #expect(signature.canonicalRequest == """
            GET
            /test.txt
            X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host
            host:examplebucket.s3.amazonaws.com

            host
            UNSIGNED-PAYLOAD
            """)
        #expect(signature.signature == expectedSignature)
    }

    /// The S3 documentation's header-signed examples (GET with Range, PUT with `$` in the key and a
    /// signed body hash, a sub-resource query, a listing query).
    @Test("S3 documentation: header-signed requests", arguments: [
        DocExample(
            method: "GET", path: "/test.txt", headers: [.init("Range", "bytes=0-9")], payload: .empty,
            signature: "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"),
        DocExample(
            method: "PUT", path: "/test$file.text",
            headers: [.init("Date", "Fri, 24 May 2013 00:00:00 GMT"), .init("x-amz-storage-class", "REDUCED_REDUNDANCY")],
            payload: .hashing(Array("Welcome to Amazon S3.".utf8)),
            signature: "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"),
        DocExample(
            method: "GET", path: "/", query: [.init("lifecycle", "")], payload: .empty,
            signature: "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"),
        DocExample(
            method: "GET", path: "/", query: [.init("max-keys", "2"), .init("prefix", "J")], payload: .empty,
            signature: "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"),
    ])
    func documentationHeaderSigned(example: DocExample) {
        let signer = SigV4Signer(credentials: Self.docCredentials, region: "us-east-1")
        let request = SigV4Request(
            method: example.method, host: "examplebucket.s3.amazonaws.com", path: example.path,
            query: example.query, headers: example.headers)
        let signed = signer.sign(request, payload: example.payload, date: Self.docDate)
        #expect(signed.signature == example.signature, "\(signed.canonicalRequest)")
        #expect(signed.headers.first { $0.name == "x-amz-content-sha256" }?.value == example.payload.hashString)
        #expect(signed.authorization.hasPrefix(
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, SignedHeaders="))
    }

    @Test("path style: http://host:port/bucket/key, each key segment encoded once, nothing normalised")
    func pathStyleURL() throws {
        let configuration = S3Configuration(
            endpoint: "127.0.0.1:9000", secure: false, accessKey: "AK", secretKey: "SK", bucket: "media")
        let presigned = try S3Presigner(configuration: configuration)
            .presignedURL(method: .get, key: "a b/../ü//c+d%25.txt", expires: .seconds(60), date: Self.docDate)
        #expect(presigned.url.hasPrefix("http://127.0.0.1:9000/media/a%20b/../%C3%BC//c%2Bd%2525.txt?X-Amz-Algorithm="))
        #expect(presigned.url.contains("&X-Amz-Expires=60&"))
    }

    @Test("virtual-hosted style: https://bucket.host/key; default ports are not part of the host")
    func virtualHostedURL() throws {
        var configuration = S3Configuration(
            endpoint: "oss-cn-hangzhou.aliyuncs.com:443", secure: true, region: "cn-hangzhou",
            accessKey: "AK", secretKey: "SK", bucket: "aiim-media-bucket", addressingStyle: .virtualHosted)
        var presigned = try S3Presigner(configuration: configuration)
            .presignedURL(method: .put, key: "conversations/1/media/2", expires: .seconds(3600), date: Self.docDate)
        #expect(presigned.url.hasPrefix("https://aiim-media-bucket.oss-cn-hangzhou.aliyuncs.com/conversations/1/media/2?"))
        #expect(presigned.url.contains("%2Fcn-hangzhou%2Fs3%2Faws4_request"))

        configuration.endpoint = "minio.internal:80"
        configuration.secure = false
        configuration.addressingStyle = .path
        presigned = try S3Presigner(configuration: configuration)
            .presignedURL(method: .get, key: "k", expires: .seconds(1), date: Self.docDate)
        #expect(presigned.url.hasPrefix("http://minio.internal/aiim-media-bucket/k?"))
    }

    @Test("a presigned PUT signs content-type and content-length, and says the client must send them")
    func presignedPutBindsTypeAndLength() throws {
        let configuration = S3Configuration(
            endpoint: "127.0.0.1:9000", secure: false, accessKey: "AK", secretKey: "SK", bucket: "media",
            sessionToken: "TOKEN/+=")
        let presigned = try S3Presigner(configuration: configuration).presignedURL(
            method: .put, key: "k", expires: .seconds(600),
            signedHeaders: ["Content-Type": "audio/mpeg", "Content-Length": "16"], date: Self.docDate)
        #expect(presigned.headers == ["content-type": "audio/mpeg", "content-length": "16"])
        #expect(presigned.url.contains("&X-Amz-SignedHeaders=content-length%3Bcontent-type%3Bhost&"))
        #expect(presigned.url.contains("&X-Amz-Security-Token=TOKEN%2F%2B%3D&"))

        // The same URL without the bound headers would be a different signature.
        let unbound = try S3Presigner(configuration: configuration)
            .presignedURL(method: .put, key: "k", expires: .seconds(600), date: Self.docDate)
        #expect(Self.signature(of: unbound.url) != Self.signature(of: presigned.url))
    }

    @Test("X-Amz-Expires must be 1...604800 seconds", arguments: [
        (Duration.seconds(0), false), (.seconds(1), true), (.seconds(604_800), true), (.seconds(604_801), false),
        (.seconds(-5), false),
    ])
    func expiryBounds(expires: Duration, valid: Bool) {
        let signer = SigV4Signer(credentials: Self.docCredentials, region: "us-east-1")
        let request = SigV4Request(method: "GET", host: "h", path: "/b/k")
        do {
            _ = try signer.presign(request, expires: expires, date: Self.docDate)
            #expect(valid)
        } catch let error as S3Error {
            #expect(!valid)
            #expect(error.code == .invalidRequest)
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test("object keys must be 1...1024 bytes")
    func keyBounds() throws {
        let builder = S3Presigner(configuration: Self.docConfiguration())
        for key in ["", String(repeating: "k", count: 1025)] {
            #expect(throws: S3Error.self) {
                try builder.presignedURL(method: .get, key: key, expires: .seconds(60), date: Self.docDate)
            }
        }
        _ = try builder.presignedURL(method: .get, key: String(repeating: "k", count: 1024), expires: .seconds(60))
    }

    @Test("secrets never appear in descriptions, nor storage details in error descriptions")
    func redaction() {
        let configuration = S3Configuration(
            endpoint: "h:1", secure: false, accessKey: "visible-key", secretKey: "very-secret",
            bucket: "b", sessionToken: "secret-token")
        var dumped = ""
        dump(S3Presigner(configuration: configuration), to: &dumped)
        for text in ["\(configuration)", String(reflecting: configuration), "\(configuration.credentials)", dumped] {
            #expect(!text.contains("very-secret"))
            #expect(!text.contains("secret-token"))
            #expect(text.contains("visible-key"))
        }
        let error = S3Error(.accessDenied, httpStatus: 403, detail: "<Error><Code>SignatureDoesNotMatch</Code></Error>")
        #expect("\(error)" == "S3Error(access_denied, http 403)")
        #expect(error.logDetail.contains("SignatureDoesNotMatch"))
    }

    @Test("configuration from MINIO_* variables")
    func configurationFromEnvironment() throws {
        let configuration = try S3Configuration(environment: [
            "MINIO_ENDPOINT": "https://oss.example.com/", "MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk",
            "MINIO_BUCKET_NAME": "aiim-media", "MINIO_ADDRESSING": "virtual", "MINIO_REGION": "cn-hangzhou",
        ])
        #expect(configuration.endpoint == "oss.example.com")
        #expect(configuration.secure)
        #expect(configuration.addressingStyle == .virtualHosted)
        #expect(configuration.region == "cn-hangzhou")
        #expect(configuration.sessionToken == nil)

        let plain = try S3Configuration(environment: [
            "MINIO_ENDPOINT": "localhost:9000", "MINIO_ACCESS_KEY": "ak", "MINIO_SECRET_KEY": "sk",
            "MINIO_BUCKET_NAME": "aiim-media",
        ])
        #expect(!plain.secure && plain.addressingStyle == .path && plain.region == "us-east-1")

        #expect(throws: S3Error.self) {
            try S3Configuration(environment: ["MINIO_ENDPOINT": "localhost:9000", "MINIO_ACCESS_KEY": "ak"])
        }
        #expect(throws: S3Error.self) {
            try S3Configuration(environment: [
                "MINIO_ENDPOINT": "h", "MINIO_ACCESS_KEY": "a", "MINIO_SECRET_KEY": "s", "MINIO_BUCKET_NAME": "b",
                "MINIO_SECURE": "\"false\"",
            ])
        }
    }

    @Test("dates: SigV4 timestamps and HTTP Last-Modified")
    func dates() throws {
        #expect(AMZTime(Date(timeIntervalSince1970: 0)).timestamp == "19700101T000000Z")
        #expect(AMZTime(Date(timeIntervalSince1970: 1_709_251_199.9)).timestamp == "20240229T235959Z")
        #expect(AMZTime(Date(timeIntervalSince1970: 4_102_444_800)).day == "21000101")
        #expect(HTTPDate.parse("Fri, 24 May 2013 00:00:00 GMT") == Self.docDate)
        #expect(HTTPDate.parse("Thu, 29 Feb 2024 23:59:59 GMT") == Date(timeIntervalSince1970: 1_709_251_199))
        #expect(HTTPDate.parse("yesterday") == nil)
    }

    /// Not a benchmark: prints how long one presign takes (debug or release, whatever was built).
    @Test("time to presign 10,000 URLs")
    func presignTiming() throws {
        let builder = S3Presigner(configuration: S3Configuration(
            endpoint: "127.0.0.1:9000", secure: false, accessKey: "AK", secretKey: "SK", bucket: "media"))
        let clock = ContinuousClock()
        let count = 10_000
        var lastURL = ""
        let elapsed = try clock.measure {
            for index in 0..<count {
                lastURL = try builder.presignedURL(
                    method: .put, key: "conversations/42/media/\(index)", expires: .seconds(3600),
                    signedHeaders: ["content-type": "audio/mpeg", "content-length": "12345"]
                ).url
            }
        }
        #expect(lastURL.contains("/media/conversations/42/media/9999?"))
        let perURL = elapsed / count
        print("presign timing: \(count) presigned PUT URLs in \(elapsed), \(perURL) each")
    }

    static func signature(of url: String) -> Substring? {
        url.split(separator: "&").first { $0.hasPrefix("X-Amz-Signature=") }
    }
}

struct DocExample: Sendable, CustomTestStringConvertible {
    var method: String
    var path: String
    var query: [SigV4Request.Field] = []
    var headers: [SigV4Request.Field] = []
    var payload: SigV4Payload
    var signature: String

    var testDescription: String { "\(self.method) \(self.path) \(self.query.map(\.name))" }
}
