import AIIMJSON
import AIIMProtocol
import Foundation
import Hummingbird
import NIOCore

/// Decodes REST bodies with `JSONCoding` (strict RFC 8259, no Foundation coders). A body over
/// the context's `maxUploadSize` is `payload_too_large`; text that is not UTF-8 or not JSON is
/// `bad_request`; a body that does not fit the route's type is `validation_failed` naming the
/// field ("member_ids is required", "limit must be an integer").
public struct JSONBodyDecoder: RequestDecoder {
    public func decode<T: Decodable>(_ type: T.Type, from request: Request, context: some RequestContext) async throws -> T {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: context.maxUploadSize) } catch {
            throw AIIMError(.payloadTooLarge, "body is larger than \(context.maxUploadSize) bytes")
        }
        let bytes = Array(buffer.readableBytesView)
        let value = try Self.object(bytes)
        // Refused here, before a bus round trip (the backends check every command again).
        try Validation.storable(json: bytes)
        return try Self.decode(T.self, from: value)
    }

    /// The same rules for a JSON text that arrived another way (a WebSocket frame).
    public static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try decode(T.self, from: try object(bytes))
    }

    /// Parses a body that must be a JSON object.
    public static func object(_ bytes: [UInt8]) throws -> JSONValue {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw AIIMError.badRequest("body is not valid UTF-8") }
        guard let value = try? JSONValue(parsing: bytes) else { throw AIIMError.badRequest("body is not valid JSON") }
        guard value.objectValue != nil else { throw AIIMError.validation("body must be a JSON object") }
        return value
    }

    /// Decodes a parsed object; schema mismatches become `validation_failed`.
    public static func decode<T: Decodable>(_ type: T.Type, from value: JSONValue) throws -> T {
        do { return try JSONCoding.decode(T.self, from: value) } catch let e as DecodingError {
            throw AIIMError.validation(Self.message(e))
        }
    }

    /// What a client needs to fix, without the decoder's internals.
    static func message(_ error: DecodingError) -> String {
        func path(_ keys: [any CodingKey]) -> String {
            keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
                .replacingOccurrences(of: ".[", with: "[")
        }
        switch error {
        case .keyNotFound(let key, let ctx): return "\(path(ctx.codingPath + [key])) is required"
        case .valueNotFound(_, let ctx): return "\(path(ctx.codingPath)) is required"
        case .typeMismatch(let type, let ctx):
            let expected: String = switch type {
            case is String.Type: "a string"
            case is Bool.Type: "true or false"
            case is Int.Type, is Int64.Type, is Int32.Type: "an integer"
            case is Double.Type: "a number"
            case is [String].Type, is [Any].Type: "an array"
            default: "of another type"
            }
            return "\(path(ctx.codingPath)) must be \(expected)"
        case .dataCorrupted(let ctx):
            return ctx.codingPath.isEmpty ? "body does not match the schema" : "\(path(ctx.codingPath)) is not valid"
        @unknown default: return "body does not match the schema"
        }
    }
}

/// Encodes route results with `JSONCoding`: `200` and `application/json; charset=utf-8`.
public struct JSONBodyEncoder: ResponseEncoder {
    public func encode(_ value: some Encodable, from request: Request, context: some RequestContext) throws -> Response {
        try JSONBodyEncoder.response(value)
    }

    static func response(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                 body: .init(byteBuffer: ByteBuffer(bytes: try JSONCoding.encode(value))))
    }
}

/// A result answered with `201 Created`.
struct Created<Value: Encodable & Sendable>: ResponseGenerator {
    let value: Value
    func response(from request: Request, context: some RequestContext) throws -> Response {
        try JSONBodyEncoder.response(value, status: .created)
    }
}

/// `204 No Content`.
struct NoContent: ResponseGenerator {
    func response(from request: Request, context: some RequestContext) throws -> Response { Response(status: .noContent) }
}

/// A JSON object body of any shape (routes that wrap a backend result in the original's shape).
struct JSONResponse: ResponseGenerator {
    let value: JSONValue
    func response(from request: Request, context: some RequestContext) throws -> Response { try JSONBodyEncoder.response(value) }
}

// Backend results a route returns as they are.
extension ConversationDTO: ResponseEncodable {}
extension ConversationList: ResponseEncodable {}
extension MessagePage: ResponseEncodable {}
extension SyncResult: ResponseEncodable {}
extension ReceiptList: ResponseEncodable {}
extension MediaUploadTicket: ResponseEncodable {}
extension MediaUploadResult: ResponseEncodable {}
extension MediaDownloadLink: ResponseEncodable {}
extension MediaInfo: ResponseEncodable {}
extension MediaDeleted: ResponseEncodable {}
extension CallDTO: ResponseEncodable {}
extension CallHistoryPage: ResponseEncodable {}
extension ICEConfiguration: ResponseEncodable {}
extension APIKeyDTO: ResponseEncodable {}
extension APIKeyList: ResponseEncodable {}

extension Request {
    /// A query parameter as an integer (nil when absent), or `validation_failed`. Only integers
    /// JSON carries exactly (|v| <= 2^53 - 1) are accepted, so a value echoed back cannot fail to
    /// encode. (`magnitude`, not `abs`: `abs(Int.min)` traps.)
    func intQuery(_ name: String) throws -> Int? {
        guard let s = uri.queryParameters[name[...]].map(String.init), !s.isEmpty else { return nil }
        guard let v = Int(s), v.magnitude <= Validation.maxJSONInteger.magnitude else {
            throw AIIMError.validation("\(name) must be an integer")
        }
        return v
    }

    /// A position in a log (a seq or an offset): an integer from 0 to 2^53 - 1, or `validation_failed`.
    func positionQuery(_ name: String) throws -> Int64? {
        guard let v = try intQuery(name) else { return nil }
        guard v >= 0 else { throw AIIMError.validation("\(name) must not be negative") }
        return Int64(v)
    }

    func stringQuery(_ name: String) -> String? {
        uri.queryParameters[name[...]].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
    }
}
