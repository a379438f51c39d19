#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Makes presigned URLs for the configured bucket. Pure computation, no I/O: usable without an
/// `S3Client` (and without its thread pool).
public struct S3Presigner: Sendable {
    public let configuration: S3Configuration
    private let signer: SigV4Signer

    public init(configuration: S3Configuration) {
        self.configuration = configuration
        self.signer = SigV4Signer(credentials: configuration.credentials, region: configuration.region)
    }

    /// A presigned URL for `method` on `key`, valid for `expires` (1 second to 7 days) from `date`.
    ///
    /// `signedHeaders` (e.g. `["content-type": "audio/mpeg", "content-length": "12345"]`) are bound
    /// into the signature: the holder must send exactly those values, so storage refuses a request
    /// that declares another type or length. The payload is `UNSIGNED-PAYLOAD`.
    ///
    /// `query` parameters are signed too, so the holder cannot change them: S3's response overrides
    /// (`response-content-disposition`, `response-content-type`) make a GET answer with the
    /// original filename and type.
    /// - Throws: `S3Error` with code `.invalidRequest` for an empty or over-long key or an expiry
    ///   outside 1...604800 seconds.
    public func presignedURL(
        method: S3Method, key: String, expires: Duration, signedHeaders: [String: String] = [:],
        query: [String: String] = [:], date: Date = Date()
    ) throws -> S3PresignedRequest {
        let (host, path) = self.configuration.location(key: try Self.validated(key))
        let headers = signedHeaders
            .map { SigV4Request.Field($0.key.lowercased(), $0.value) }
            .sorted { $0.name < $1.name }
        let parameters = query.map { SigV4Request.Field($0.key, $0.value) }.sorted { $0.name < $1.name }
        let request = SigV4Request(method: method.rawValue, host: host, path: path, query: parameters, headers: headers)
        let signature = try self.signer.presign(request, expires: expires, date: date)
        return S3PresignedRequest(
            method: method,
            url: "\(self.configuration.scheme)://\(host)\(self.signer.canonicalURI(path))?\(signature.encodedQuery)",
            headers: Dictionary(headers.map { ($0.name, $0.value) }, uniquingKeysWith: { $1 }),
            expiresAt: date.addingTimeInterval(TimeInterval(expires.components.seconds))
        )
    }

    static func validated(_ key: String) throws -> String {
        guard !key.isEmpty, key.utf8.count <= 1024 else {
            throw S3Error(.invalidRequest, detail: "object key must be 1...1024 UTF-8 bytes")
        }
        return key
    }
}
