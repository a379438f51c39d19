/// The stable error codes AIIM documents (docs/API.md). Clients switch on these strings;
/// the human message may change, the code never does.
public enum ErrorCode: String, Codable, Sendable, CaseIterable {
    case badRequest = "bad_request"
    case validationFailed = "validation_failed"
    case unauthorized = "unauthorized"
    case forbidden = "forbidden"
    case notFound = "not_found"
    case conflict = "conflict"
    case payloadTooLarge = "payload_too_large"
    case unsupportedMediaType = "unsupported_media_type"
    case rateLimited = "rate_limited"
    case timeout = "timeout"
    case unavailable = "unavailable"
    case storageUnavailable = "storage_unavailable"
    case internalError = "internal"
    case unknownType = "unknown_type"
    case unsupportedVersion = "unsupported_version"
    case invalidState = "invalid_state"
    case busy = "busy"
    case slowConsumer = "slow_consumer"

    /// The HTTP status a REST client sees for this code.
    public var httpStatus: Int {
        switch self {
        case .badRequest, .validationFailed, .unknownType, .unsupportedVersion: 400
        case .unauthorized: 401
        case .forbidden: 403
        case .notFound: 404
        case .conflict, .invalidState, .busy: 409
        case .payloadTooLarge: 413
        case .unsupportedMediaType: 415
        case .rateLimited: 429
        case .timeout: 504
        case .unavailable, .storageUnavailable, .slowConsumer: 503
        case .internalError: 500
        }
    }
}

/// An error that may cross a service boundary or reach a client: a stable `code` and a safe
/// `message`. Internal detail (SQL, Redis, curl text) stays in logs, never in this struct.
public struct AIIMError: Error, Codable, Sendable, Equatable, CustomStringConvertible {
    public var code: ErrorCode
    public var message: String

    public init(_ code: ErrorCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    public static func badRequest(_ m: String) -> AIIMError { .init(.badRequest, m) }
    public static func validation(_ m: String) -> AIIMError { .init(.validationFailed, m) }
    public static func forbidden(_ m: String = "not a member of this conversation") -> AIIMError { .init(.forbidden, m) }
    public static func notFound(_ m: String) -> AIIMError { .init(.notFound, m) }
    public static func conflict(_ m: String) -> AIIMError { .init(.conflict, m) }
    public static func unavailable(_ m: String) -> AIIMError { .init(.unavailable, m) }
    public static let internalError = AIIMError(.internalError, "internal error")
}
