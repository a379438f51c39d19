import AIIMJSON
import AIIMProtocol
import AIIMRedis
import Foundation
import Hummingbird
import NIOConcurrencyHelpers

/// A JSON object body with typed field access that answers `validation_failed` naming the
/// field, instead of a decoder's internals.
struct JSONObject: Sendable {
    let fields: [String: JSONValue]

    init(_ value: JSONValue) throws {
        guard let o = value.objectValue else { throw AIIMError.validation("body must be a JSON object") }
        fields = o
    }

    /// Reads and parses a request body of at most `maxBytes`.
    static func read(_ request: Request, context: some RequestContext, maxBytes: Int) async throws -> JSONObject {
        let buffer: ByteBuffer
        do { buffer = try await request.body.collect(upTo: maxBytes) } catch {
            throw AIIMError(.payloadTooLarge, "body is larger than \(maxBytes) bytes")
        }
        return try parse(Array(buffer.readableBytesView))
    }

    static func parse(_ bytes: [UInt8]) throws -> JSONObject {
        guard String(validating: bytes, as: UTF8.self) != nil else { throw AIIMError.badRequest("body is not valid UTF-8") }
        guard let v = try? JSONValue(parsing: bytes) else { throw AIIMError.badRequest("body is not valid JSON") }
        return try JSONObject(v)
    }

    subscript(_ key: String) -> JSONValue? { fields[key].flatMap { $0.isNull ? nil : $0 } }

    func string(_ key: String) throws -> String {
        guard let v = try optionalString(key) else { throw AIIMError.validation("\(key) is required") }
        return v
    }

    func optionalString(_ key: String) throws -> String? {
        guard let v = self[key] else { return nil }
        guard let s = v.stringValue else { throw AIIMError.validation("\(key) must be a string") }
        return s
    }

    func optionalInt(_ key: String) throws -> Int? {
        guard let v = self[key] else { return nil }
        guard let i = v.intValue else { throw AIIMError.validation("\(key) must be an integer") }
        return i
    }

    func bool(_ key: String, default def: Bool) throws -> Bool {
        guard let v = self[key] else { return def }
        guard let b = v.boolValue else { throw AIIMError.validation("\(key) must be true or false") }
        return b
    }

    func stringArray(_ key: String) throws -> [String] {
        guard case .array(let items)? = self[key] else { throw AIIMError.validation("\(key) must be an array of strings") }
        return try items.map {
            guard let s = $0.stringValue else { throw AIIMError.validation("\(key) must be an array of strings") }
            return s
        }
    }
}

extension Request {
    /// A query parameter as an integer (nil when absent), or `validation_failed`.
    func intQuery(_ name: String) throws -> Int? {
        guard let s = uri.queryParameters[name[...]].map(String.init), !s.isEmpty else { return nil }
        guard let v = Int(s) else { throw AIIMError.validation("\(name) must be an integer") }
        return v
    }

    func stringQuery(_ name: String) -> String? {
        uri.queryParameters[name[...]].map(String.init).flatMap { $0.isEmpty ? nil : $0 }
    }
}

/// JSON responses.
func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try JSONCoding.encode(value)
    return Response(status: status, headers: [.contentType: "application/json; charset=utf-8"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func noContent() -> Response { Response(status: .noContent) }
