import Foundation
import Testing

@testable import AIIMS3

/// AWS's SigV4 test suite (awslabs/aws-c-auth, tests/aws-signing-test-suite/v4; see Vectors/README.md
/// and Vectors/LICENSE). Every case is checked twice: header signing (canonical request, string to
/// sign, signature, `Authorization`) and presigning (the `query-*` files: canonical request, string to
/// sign, signature and the `X-Amz-*` parameters in order).
@Suite("SigV4: AWS test suite")
struct SigV4VectorTests {
    /// Cases whose expected canonical URI is the path encoded once, untouched: exactly S3's rule.
    /// They run with the signer's S3 options (no normalisation). This includes the `*-unnormalized`
    /// cases, which pin down that `//`, `.` and `..` reach the canonical URI as they are.
    static let s3Cases = [
        "get-header-key-duplicate", "get-header-value-multiline", "get-header-value-order",
        "get-header-value-trim", "get-relative-relative-unnormalized", "get-relative-unnormalized",
        "get-slash-dot-slash-unnormalized", "get-slash-pointless-dot-unnormalized", "get-slash-unnormalized",
        "get-slashes-unnormalized", "get-space-normalized", "get-space-unnormalized", "get-unreserved",
        "get-utf8", "get-vanilla", "get-vanilla-empty-query-key", "get-vanilla-query",
        "get-vanilla-query-order-encoded", "get-vanilla-query-order-key-case", "get-vanilla-query-unreserved",
        "get-vanilla-utf8-query", "get-vanilla-with-session-token", "post-header-key-case",
        "post-header-key-sort", "post-header-value-case", "post-sts-header-after", "post-sts-header-before",
        "post-vanilla", "post-vanilla-empty-query-value", "post-vanilla-query", "post-x-www-form-urlencoded",
        "post-x-www-form-urlencoded-parameters",
    ]

    /// Not S3 semantics: these expect the path normalised (`/example/..` signs as `/`), which S3
    /// never does (a key may contain `..` or `//`), so signing them with S3's rules must give the
    /// `*-unnormalized` answers instead. They run with the non-S3 `normalizesPath` option, which
    /// proves the rest of the algorithm on them; `s3SigningDoesNotNormalise` checks the S3 side.
    static let pathNormalisingCases = [
        "get-relative-normalized", "get-relative-relative-normalized", "get-slash-dot-slash-normalized",
        "get-slash-normalized", "get-slash-pointless-dot-normalized", "get-slashes-normalized",
    ]

    @Test("every vector folder is covered by exactly one list")
    func everyCaseIsListed() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: Vector.root.path).filter { name in
            var isDirectory: ObjCBool = false
            let path = Vector.root.appendingPathComponent(name).path
            return FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) && isDirectory.boolValue
        }
        #expect(Set(folders) == Set(Self.s3Cases + Self.pathNormalisingCases))
        #expect(Set(Self.s3Cases).isDisjoint(with: Self.pathNormalisingCases))
        #expect(folders.count == 38)
    }

    @Test("header signing (S3 path rules)", arguments: Self.s3Cases)
    func headerSigningS3(name: String) throws {
        try Self.checkHeaderSigning(Vector(name), normalizesPath: false)
    }

    @Test("presigning (S3 path rules)", arguments: Self.s3Cases)
    func presigningS3(name: String) throws {
        try Self.checkPresigning(Vector(name), normalizesPath: false)
    }

    @Test("header signing (non-S3 path normalisation)", arguments: Self.pathNormalisingCases)
    func headerSigningNormalised(name: String) throws {
        try Self.checkHeaderSigning(Vector(name), normalizesPath: true)
    }

    @Test("presigning (non-S3 path normalisation)", arguments: Self.pathNormalisingCases)
    func presigningNormalised(name: String) throws {
        try Self.checkPresigning(Vector(name), normalizesPath: true)
    }

    /// With S3's rules a `*-normalized` request signs exactly like its `*-unnormalized` twin.
    @Test("S3 signing keeps the path of the normalising cases", arguments: Self.pathNormalisingCases)
    func s3SigningDoesNotNormalise(name: String) throws {
        let vector = try Vector(name)
        let twin = try Vector(name.replacingOccurrences(of: "-normalized", with: "-unnormalized"))
        let signer = vector.signer(normalizesPath: false)
        let signed = signer.sign(vector.request, payload: vector.payload, date: try vector.date)
        #expect(signed.canonicalRequest == (try twin.text("header-canonical-request.txt")))
        #expect(signed.signature == (try twin.text("header-signature.txt")))
    }

    static func checkHeaderSigning(_ vector: Vector, normalizesPath: Bool) throws {
        let signer = vector.signer(normalizesPath: normalizesPath)
        let signed = signer.sign(vector.request, payload: vector.payload, date: try vector.date)
        #expect(signed.canonicalRequest == (try vector.text("header-canonical-request.txt")))
        #expect(signed.stringToSign == (try vector.text("header-string-to-sign.txt")))
        #expect(signed.signature == (try vector.text("header-signature.txt")))

        // The headers the signer adds are the ones in the expected signed request.
        let expected = try vector.signedRequestHeaders("header-signed-request.txt")
        for field in signed.headers {
            #expect(expected[field.name.lowercased()] == field.value, "header \(field.name)")
        }
        #expect(signed.headers.contains { $0.name == "authorization" })
    }

    static func checkPresigning(_ vector: Vector, normalizesPath: Bool) throws {
        let signer = vector.signer(normalizesPath: normalizesPath)
        let presigned = try signer.presign(
            vector.request, expires: .seconds(vector.context.expirationInSeconds), payload: vector.payload,
            date: vector.date)
        #expect(presigned.canonicalRequest == (try vector.text("query-canonical-request.txt")))
        #expect(presigned.stringToSign == (try vector.text("query-string-to-sign.txt")))
        #expect(presigned.signature == (try vector.text("query-signature.txt")))

        // The X-Amz-* parameters, in order, are the ones of the expected presigned request line.
        let expectedQuery = try vector.signedRequestQuery("query-signed-request.txt")
            .filter { $0.name.hasPrefix("X-Amz-") }
        #expect(presigned.authorizationQuery == expectedQuery)
    }
}

/// One case folder of the suite.
struct Vector {
    struct Context: Decodable {
        struct Credentials: Decodable {
            var accessKeyID: String
            var secretAccessKey: String
            var token: String?

            enum CodingKeys: String, CodingKey {
                case accessKeyID = "access_key_id"
                case secretAccessKey = "secret_access_key"
                case token
            }
        }

        var credentials: Credentials
        var expirationInSeconds: Int
        var normalize: Bool
        var region: String
        var service: String
        var signBody: Bool
        var timestamp: String
        var omitSessionToken: Bool?

        enum CodingKeys: String, CodingKey {
            case credentials, normalize, region, service, timestamp
            case expirationInSeconds = "expiration_in_seconds"
            case signBody = "sign_body"
            case omitSessionToken = "omit_session_token"
        }
    }

    static var root: URL {
        Bundle.module.url(forResource: "Vectors", withExtension: nil)!
    }

    let name: String
    let context: Context
    let request: SigV4Request
    let body: [UInt8]

    init(_ name: String) throws {
        self.name = name
        let folder = Self.root.appendingPathComponent(name)
        self.context = try JSONDecoder().decode(
            Context.self, from: Data(contentsOf: folder.appendingPathComponent("context.json")))
        (self.request, self.body) = try Self.parseRequest(
            String(decoding: Data(contentsOf: folder.appendingPathComponent("request.txt")), as: UTF8.self))
    }

    var date: Date {
        get throws { try Date(self.context.timestamp, strategy: .iso8601) }
    }

    var payload: SigV4Payload {
        self.context.signBody ? .hashing(self.body) : .empty
    }

    func signer(normalizesPath: Bool) -> SigV4Signer {
        SigV4Signer(
            credentials: SigV4Credentials(
                accessKeyID: self.context.credentials.accessKeyID,
                secretAccessKey: self.context.credentials.secretAccessKey,
                sessionToken: self.context.credentials.token),
            region: self.context.region,
            service: self.context.service,
            options: SigV4Signer.Options(
                normalizesPath: normalizesPath,
                addsContentSHA256Header: self.context.signBody,
                signsSessionToken: !(self.context.omitSessionToken ?? false)))
    }

    func text(_ file: String) throws -> String {
        let url = Self.root.appendingPathComponent(self.name).appendingPathComponent(file)
        return String(decoding: try Data(contentsOf: url), as: UTF8.self)
    }

    /// Headers of an expected signed request (lower-cased names; folded lines kept as they are).
    func signedRequestHeaders(_ file: String) throws -> [String: String] {
        let (request, _) = try Self.parseRequest(try self.text(file))
        var headers = ["host": request.host]
        for field in request.headers { headers[field.name.lowercased()] = field.value }
        return headers
    }

    /// Query parameters (decoded) of an expected signed request line.
    func signedRequestQuery(_ file: String) throws -> [SigV4Request.Field] {
        try Self.parseRequest(try self.text(file)).0.query
    }

    /// `METHOD path[?query] HTTP/1.1`, header lines (a line starting with whitespace continues the
    /// previous header, joined by a newline the signer must fold), a blank line, the body.
    /// The path may contain spaces (`/example space/`), so the version is cut from the end.
    static func parseRequest(_ text: String) throws -> (SigV4Request, [UInt8]) {
        var lines = text.components(separatedBy: "\n")
        let requestLine = lines.removeFirst()
        let method = String(requestLine.prefix { $0 != " " })
        guard requestLine.hasSuffix(" HTTP/1.1") else { throw VectorError.malformed(requestLine) }
        let target = requestLine.dropFirst(method.count + 1).dropLast(" HTTP/1.1".count)
        let path = String(target.prefix { $0 != "?" })
        var query: [SigV4Request.Field] = []
        if let questionMark = target.firstIndex(of: "?") {
            for pair in target[target.index(after: questionMark)...].split(separator: "&") {
                let name = pair.prefix { $0 != "=" }
                let value = pair.dropFirst(name.count + 1)
                query.append(SigV4Request.Field(
                    String(name).removingPercentEncoding!, String(value).removingPercentEncoding!))
            }
        }
        var host = ""
        var headers: [SigV4Request.Field] = []
        while !lines.isEmpty {
            let line = lines.removeFirst()
            if line.isEmpty { break }
            if line.first == " " || line.first == "\t", !headers.isEmpty {
                headers[headers.count - 1].value += "\n" + line
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { throw VectorError.malformed(line) }
            let name = String(line[..<colon])
            let value = String(line[line.index(after: colon)...])
            if name.lowercased() == "host" { host = value } else { headers.append(SigV4Request.Field(name, value)) }
        }
        let body = Array(lines.joined(separator: "\n").utf8)
        return (SigV4Request(method: method, host: host, path: path, query: query, headers: headers), body)
    }

    enum VectorError: Error {
        case malformed(String)
    }
}
