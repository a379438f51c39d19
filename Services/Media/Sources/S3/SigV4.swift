import Crypto

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

// AWS Signature Version 4 (AWS4-HMAC-SHA256), as S3 and S3-compatible stores (MinIO, SeaweedFS,
// Alibaba OSS) verify it. Pure value types: nothing here does I/O, so every step is testable
// against AWS's published vectors with a fixed date.

/// Credentials used to sign requests. `description` never shows the secret or the session token.
public struct SigV4Credentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// Access key id; appears in every signed request (not a secret).
    public var accessKeyID: String
    /// Secret access key; used only to derive signing keys, never sent or logged.
    public var secretAccessKey: String
    /// Session token of temporary (STS) credentials, sent as `x-amz-security-token`.
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String {
        "SigV4Credentials(accessKeyID: \(self.accessKeyID), secretAccessKey: <redacted>, "
            + "sessionToken: \(self.sessionToken == nil ? "nil" : "<redacted>"))"
    }

    public var debugDescription: String { self.description }

    /// `dump()` shows the redacted description too.
    public var customMirror: Mirror { Mirror(self, children: ["redacted": self.description]) }
}

/// The parts of an HTTP request that SigV4 covers.
public struct SigV4Request: Sendable, Hashable {
    /// One header or query parameter, in the order the request carries it.
    public struct Field: Sendable, Hashable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// Upper-case HTTP method (`GET`, `PUT`, …).
    public var method: String
    /// Value of the `Host` header exactly as the client will send it (`host`, or `host:port` for a
    /// non-default port). Always signed.
    public var host: String
    /// Decoded path (`/bucket/my key.txt`). It is URI-encoded once, segment by segment, which is
    /// both the canonical URI and the path to put on the wire for S3.
    public var path: String
    /// Decoded query parameters (an absent value is the empty string, as in `?uploads`).
    public var query: [Field]
    /// Headers to sign besides `host`. Repeated names are joined with commas in order.
    public var headers: [Field]

    public init(method: String, host: String, path: String, query: [Field] = [], headers: [Field] = []) {
        self.method = method
        self.host = host
        self.path = path
        self.query = query
        self.headers = headers
    }
}

/// What the signature says about the body.
public enum SigV4Payload: Sendable, Hashable {
    /// `UNSIGNED-PAYLOAD`: the body is not covered (presigned URLs, streamed uploads).
    case unsigned
    /// Lower-case hex SHA-256 of the exact body bytes.
    case sha256(String)

    /// The payload hash of an empty body.
    public static let empty = SigV4Payload.sha256(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")

    /// The payload hash of `bytes`.
    public static func hashing(_ bytes: some DataProtocol) -> SigV4Payload {
        .sha256(Hex.encode(SHA256.hash(data: bytes)))
    }

    /// The value for the canonical request and `x-amz-content-sha256`.
    public var hashString: String {
        switch self {
        case .unsigned: "UNSIGNED-PAYLOAD"
        case .sha256(let hex): hex
        }
    }
}

/// Result of signing with an `Authorization` header.
public struct SigV4HeaderSignature: Sendable, Hashable {
    public var canonicalRequest: String
    public var stringToSign: String
    /// Lower-case hex signature.
    public var signature: String
    /// `host;x-amz-date;…`
    public var signedHeaders: String
    /// The full `Authorization` header value.
    public var authorization: String
    /// Headers to add to the request as they are: `x-amz-date`, `x-amz-content-sha256` (when the
    /// signer adds it), `x-amz-security-token` (with a session token) and `authorization`.
    public var headers: [SigV4Request.Field]
}

/// Result of presigning (query-string authentication).
public struct SigV4QuerySignature: Sendable, Hashable {
    public var canonicalRequest: String
    public var stringToSign: String
    /// Lower-case hex signature.
    public var signature: String
    /// `host;content-type;…`: the headers the holder of the URL must send with these exact values.
    public var signedHeaders: String
    /// Decoded `X-Amz-*` parameters to append after the request's own query, ending with
    /// `X-Amz-Signature`, in the order AWS SDKs emit them.
    public var authorizationQuery: [SigV4Request.Field]
    /// The request's own query followed by `authorizationQuery`, URI-encoded and joined with `&`.
    public var encodedQuery: String
}

/// Signs requests with AWS Signature Version 4.
///
/// The defaults are S3's rules: the path is encoded once and never normalised, and header-signed
/// requests carry `x-amz-content-sha256`. The other options exist for the generic AWS test suite.
public struct SigV4Signer: Sendable, Hashable {
    /// Signing behaviours that differ between S3 and other AWS services.
    public struct Options: Sendable, Hashable {
        /// Remove empty, `.` and `..` path segments before encoding. S3 never does this (a key may
        /// contain `//` or `..`); other AWS services do.
        public var normalizesPath: Bool
        /// Add and sign `x-amz-content-sha256` on header-signed requests (S3 requires it).
        public var addsContentSHA256Header: Bool
        /// Sign the session token. When `false` it is added after signing, which some non-S3
        /// services expect.
        public var signsSessionToken: Bool

        public init(normalizesPath: Bool = false, addsContentSHA256Header: Bool = true, signsSessionToken: Bool = true) {
            self.normalizesPath = normalizesPath
            self.addsContentSHA256Header = addsContentSHA256Header
            self.signsSessionToken = signsSessionToken
        }

        /// S3's rules.
        public static let s3 = Options()
    }

    /// The shortest and longest lifetimes SigV4 allows for a presigned URL, in seconds.
    public static let presignedExpiryRange: ClosedRange<Int> = 1...604_800

    public var credentials: SigV4Credentials
    /// Signing region, e.g. `us-east-1` (MinIO and SeaweedFS accept their configured region).
    public var region: String
    /// Signing service name: `s3` for object storage.
    public var service: String
    public var options: Options

    public init(credentials: SigV4Credentials, region: String, service: String = "s3", options: Options = .s3) {
        self.credentials = credentials
        self.region = region
        self.service = service
        self.options = options
    }

    /// Signs `request` for an `Authorization` header.
    public func sign(_ request: SigV4Request, payload: SigV4Payload, date: Date) -> SigV4HeaderSignature {
        let time = AMZTime(date)
        var added: [SigV4Request.Field] = [SigV4Request.Field("x-amz-date", time.timestamp)]
        if self.options.addsContentSHA256Header {
            added.append(SigV4Request.Field("x-amz-content-sha256", payload.hashString))
        }
        var signedFields = self.fieldsToSign(request) + added
        if let token = self.credentials.sessionToken {
            let field = SigV4Request.Field("x-amz-security-token", token)
            if self.options.signsSessionToken { signedFields.append(field) }
            added.append(field)
        }
        let headers = Self.canonicalHeaders(signedFields)
        let canonicalRequest = [
            request.method,
            self.canonicalURI(request.path),
            Self.canonicalQuery(request.query),
            headers.canonical,
            headers.signed,
            payload.hashString,
        ].joined(separator: "\n")
        let stringToSign = self.stringToSign(canonicalRequest, time: time)
        let signature = self.signature(of: stringToSign, time: time)
        let authorization = "AWS4-HMAC-SHA256 Credential=\(self.credentials.accessKeyID)/\(self.scope(time)), "
            + "SignedHeaders=\(headers.signed), Signature=\(signature)"
        return SigV4HeaderSignature(
            canonicalRequest: canonicalRequest,
            stringToSign: stringToSign,
            signature: signature,
            signedHeaders: headers.signed,
            authorization: authorization,
            headers: added + [SigV4Request.Field("authorization", authorization)]
        )
    }

    /// Presigns `request` (query-string authentication) valid for `expires` from `date`.
    ///
    /// Every header in `request.headers` is signed, so the URL only works when sent with those
    /// exact values (e.g. `content-type`, `content-length` for an upload).
    /// - Throws: `S3Error` with code `.invalidRequest` unless `expires` is 1…604800 seconds.
    public func presign(
        _ request: SigV4Request, expires: Duration, payload: SigV4Payload = .unsigned, date: Date
    ) throws -> SigV4QuerySignature {
        let seconds = Int(expires.components.seconds)
        guard Self.presignedExpiryRange.contains(seconds) else {
            throw S3Error(.invalidRequest, detail: "presigned URL expiry \(expires) is outside 1...604800 seconds")
        }
        let time = AMZTime(date)
        let headers = Self.canonicalHeaders(self.fieldsToSign(request))
        var authorizationQuery = [
            SigV4Request.Field("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
            SigV4Request.Field("X-Amz-Credential", "\(self.credentials.accessKeyID)/\(self.scope(time))"),
            SigV4Request.Field("X-Amz-Date", time.timestamp),
            SigV4Request.Field("X-Amz-SignedHeaders", headers.signed),
            SigV4Request.Field("X-Amz-Expires", String(seconds)),
        ]
        let token = self.credentials.sessionToken.map { SigV4Request.Field("X-Amz-Security-Token", $0) }
        if let token, self.options.signsSessionToken { authorizationQuery.append(token) }
        let canonicalRequest = [
            request.method,
            self.canonicalURI(request.path),
            Self.canonicalQuery(request.query + authorizationQuery),
            headers.canonical,
            headers.signed,
            payload.hashString,
        ].joined(separator: "\n")
        let stringToSign = self.stringToSign(canonicalRequest, time: time)
        let signature = self.signature(of: stringToSign, time: time)
        if let token, !self.options.signsSessionToken { authorizationQuery.append(token) }
        authorizationQuery.append(SigV4Request.Field("X-Amz-Signature", signature))
        let encodedQuery = (request.query + authorizationQuery)
            .map { "\(URIEncoding.encode($0.name))=\(URIEncoding.encode($0.value))" }
            .joined(separator: "&")
        return SigV4QuerySignature(
            canonicalRequest: canonicalRequest,
            stringToSign: stringToSign,
            signature: signature,
            signedHeaders: headers.signed,
            authorizationQuery: authorizationQuery,
            encodedQuery: encodedQuery
        )
    }

    /// The canonical URI: the path (normalised only if the options say so), each segment encoded once.
    public func canonicalURI(_ path: String) -> String {
        var segments = path.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
        if self.options.normalizesPath {
            var kept: [String] = []
            for segment in segments {
                switch segment {
                case "", ".": continue
                case "..": _ = kept.popLast()
                default: kept.append(segment)
                }
            }
            let trailingSlash = path.hasSuffix("/") && !kept.isEmpty
            segments = [""] + kept + (trailingSlash ? [""] : [])
        }
        let encoded = segments.map { URIEncoding.encode($0) }.joined(separator: "/")
        if encoded.isEmpty || encoded == "/" { return "/" }
        return encoded.hasPrefix("/") ? encoded : "/" + encoded
    }

    // MARK: Steps

    private func fieldsToSign(_ request: SigV4Request) -> [SigV4Request.Field] {
        // `host` comes from `request.host`; a copy in `headers` would be signed twice.
        [SigV4Request.Field("host", request.host)] + request.headers.filter { $0.name.lowercased() != "host" }
    }

    private func scope(_ time: AMZTime) -> String {
        "\(time.day)/\(self.region)/\(self.service)/aws4_request"
    }

    private func stringToSign(_ canonicalRequest: String, time: AMZTime) -> String {
        let hash = Hex.encode(SHA256.hash(data: Array(canonicalRequest.utf8)))
        return "AWS4-HMAC-SHA256\n\(time.timestamp)\n\(self.scope(time))\n\(hash)"
    }

    private func signature(of stringToSign: String, time: AMZTime) -> String {
        let key = self.signingKey(day: time.day)
        let mac = HMAC<SHA256>.authenticationCode(for: Array(stringToSign.utf8), using: key)
        return Hex.encode(mac)
    }

    /// kSigning = HMAC(HMAC(HMAC(HMAC("AWS4" + secret, day), region), service), "aws4_request").
    func signingKey(day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Array("AWS4\(self.credentials.secretAccessKey)".utf8))
        for part in [day, self.region, self.service, "aws4_request"] {
            key = SymmetricKey(data: HMAC<SHA256>.authenticationCode(for: Array(part.utf8), using: key))
        }
        return key
    }

    /// Lower-cased names sorted, values trimmed with inner whitespace runs collapsed to one space,
    /// repeated names joined with commas in request order.
    static func canonicalHeaders(_ fields: [SigV4Request.Field]) -> (canonical: String, signed: String) {
        var values: [String: [String]] = [:]
        for field in fields {
            values[field.name.lowercased(), default: []].append(Self.normalizeHeaderValue(field.value))
        }
        let names = values.keys.sorted { Array($0.utf8).lexicographicallyPrecedes(Array($1.utf8)) }
        var canonical = ""
        for name in names {
            canonical += name + ":" + values[name]!.joined(separator: ",") + "\n"
        }
        return (canonical, names.joined(separator: ";"))
    }

    static func normalizeHeaderValue(_ value: String) -> String {
        value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" || $0 == "\r\n" })
            .joined(separator: " ")
    }

    /// Each name and value URI-encoded, sorted by encoded name then encoded value (byte order).
    static func canonicalQuery(_ query: [SigV4Request.Field]) -> String {
        query.map { (URIEncoding.encode($0.name), URIEncoding.encode($0.value)) }
            .sorted { lhs, rhs in
                lhs.0 == rhs.0
                    ? Array(lhs.1.utf8).lexicographicallyPrecedes(Array(rhs.1.utf8))
                    : Array(lhs.0.utf8).lexicographicallyPrecedes(Array(rhs.0.utf8))
            }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }
}

/// SigV4's URI encoding: every byte but `A-Z a-z 0-9 - . _ ~` becomes `%XX` (upper-case hex).
enum URIEncoding {
    static func encode(_ string: String) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(string.utf8.count)
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."),
                UInt8(ascii: "_"), UInt8(ascii: "~"):
                output.append(byte)
            default:
                output.append(UInt8(ascii: "%"))
                output.append(Hex.upperDigits[Int(byte >> 4)])
                output.append(Hex.upperDigits[Int(byte & 0x0F)])
            }
        }
        return String(decoding: output, as: UTF8.self)
    }
}

enum Hex {
    static let lowerDigits = Array("0123456789abcdef".utf8)
    static let upperDigits = Array("0123456789ABCDEF".utf8)

    static func encode(_ bytes: some Sequence<UInt8>) -> String {
        var output: [UInt8] = []
        for byte in bytes {
            output.append(Self.lowerDigits[Int(byte >> 4)])
            output.append(Self.lowerDigits[Int(byte & 0x0F)])
        }
        return String(decoding: output, as: UTF8.self)
    }
}

/// `yyyyMMdd` and `yyyyMMdd'T'HHmmss'Z'` in UTC, computed without a (slow, non-Sendable) formatter.
struct AMZTime {
    let day: String
    let timestamp: String

    init(_ date: Date) {
        let civil = CivilTime(secondsSince1970: Int64(date.timeIntervalSince1970.rounded(.down)))
        self.day = Self.pad(civil.year, 4) + Self.pad(civil.month, 2) + Self.pad(civil.day, 2)
        self.timestamp = self.day + "T" + Self.pad(civil.hour, 2) + Self.pad(civil.minute, 2)
            + Self.pad(civil.second, 2) + "Z"
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }
}

/// Proleptic Gregorian calendar fields for a UTC instant (Howard Hinnant's days-from-civil algorithms).
struct CivilTime: Hashable {
    var year: Int
    var month: Int
    var day: Int
    var hour: Int
    var minute: Int
    var second: Int

    init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        (self.year, self.month, self.day) = (year, month, day)
        (self.hour, self.minute, self.second) = (hour, minute, second)
    }

    init(secondsSince1970 seconds: Int64) {
        let days = Int(seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400)
        let secondOfDay = Int(seconds - Int64(days) * 86_400)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let shiftedMonth = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * shiftedMonth + 2) / 5 + 1
        let month = shiftedMonth < 10 ? shiftedMonth + 3 : shiftedMonth - 9
        self.init(
            year: yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month: month, day: day,
            hour: secondOfDay / 3600, minute: secondOfDay % 3600 / 60, second: secondOfDay % 60
        )
    }

    var secondsSince1970: Int64 {
        let y = self.month <= 2 ? self.year - 1 : self.year
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let dayOfYear = (153 * (self.month > 2 ? self.month - 3 : self.month + 9) + 2) / 5 + self.day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return Int64(days) * 86_400 + Int64(self.hour * 3600 + self.minute * 60 + self.second)
    }
}
