/// An object-storage failure with a stable code.
///
/// `description` shows only the code and HTTP status, so it is safe to show to clients;
/// storage's XML error body and libcurl's text stay in `logDetail`, for logs only.
public struct S3Error: Error, Sendable, CustomStringConvertible {
    /// Stable codes; their raw values are part of the documented API and never change.
    public enum Code: String, Sendable, Hashable, CaseIterable {
        /// The bucket or object does not exist (HTTP 404).
        case notFound = "not_found"
        /// Storage refused the credentials, signature or an expired presigned URL (HTTP 401/403).
        case accessDenied = "access_denied"
        /// The bucket exists and belongs to someone else (HTTP 409).
        case conflict = "conflict"
        /// Storage rejected the request as malformed (other 4xx), or an argument was refused
        /// before anything was sent (empty key, expiry out of range, …).
        case invalidRequest = "invalid_request"
        /// Storage answered 5xx or could not be reached, after the retries.
        case unavailable = "unavailable"
        /// Connecting or transferring took longer than the configured bound, after the retries.
        case timeout = "timeout"
        /// Storage answered something this client cannot interpret (a redirect, a bad header, …).
        case badResponse = "bad_response"
        /// A local file could not be read or written.
        case localIO = "local_io"
    }

    /// The stable code to branch on and to report.
    public let code: Code
    /// The HTTP status storage answered with, if it answered.
    public let httpStatus: Int?
    /// For logs only: storage's error code and message, libcurl's error text, the file path.
    /// Never put this in a client-facing response.
    public let logDetail: String

    public init(_ code: Code, httpStatus: Int? = nil, detail: String) {
        self.code = code
        self.httpStatus = httpStatus
        self.logDetail = detail
    }

    public var description: String {
        if let httpStatus = self.httpStatus {
            return "S3Error(\(self.code.rawValue), http \(httpStatus))"
        }
        return "S3Error(\(self.code.rawValue))"
    }
}
