import AIIMJSON
import AIIMProtocol
import Foundation
@testable import GatewayCore
import Hummingbird
import Testing

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The REST contract: `/openapi.json` describes exactly the routes the gateway registers, with
/// every parameter, body and response a fuzzer needs (deploy/local/contract runs schemathesis
/// against it), and the server does what docs/API.md and docs/PROTOCOL.md promise.
@Suite struct ContractTests {
    /// The served document, parsed.
    static func document(_ stack: Stack) async throws -> JSONValue {
        let r = try await stack.http("GET", "/openapi.json")
        #expect(r.status == 200)
        return r.json
    }

    /// `METHOD path` of every operation in the document.
    static func operations(_ doc: JSONValue) -> [(method: String, path: String, operation: JSONValue)] {
        (doc["paths"]?.objectValue ?? [:]).flatMap { path, ops in
            (ops.objectValue ?? [:]).map { (method: $0.key.uppercased(), path: path, operation: $0.value) }
        }
    }

    @Test func theDocumentListsExactlyTheRegisteredRoutes() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }  // unstructured: defer cannot await
        let registered = Set(stack.gateways[0].buildRouter().routes.map { "\($0.method.rawValue) \($0.path)" })
        let documented = Set(Self.operations(try await Self.document(stack)).map { "\($0.method) \($0.path)" })
        #expect(registered.subtracting(documented).sorted() == [], "routes missing from /openapi.json")
        #expect(documented.subtracting(registered).sorted() == [], "operations in /openapi.json without a route")
        #expect(registered.count >= 40)
    }

    @Test func everyOperationDeclaresItsParametersBodiesResponsesAndSecurity() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }
        let doc = try await Self.document(stack)
        #expect(doc["openapi"]?.stringValue?.hasPrefix("3.") == true)
        let schemes = doc["components"]?["securitySchemes"]
        #expect(schemes?["jwt"]?["scheme"]?.stringValue == "bearer")
        #expect(schemes?["jwt"]?["bearerFormat"]?.stringValue == "JWT")
        #expect(schemes?["apiKey"]?["scheme"]?.stringValue == "bearer")
        let codes = doc["components"]?["schemas"]?["Error"]?["properties"]?["error"]?["properties"]?["code"]?["enum"]?
            .arrayValue?.compactMap(\.stringValue)
        #expect(Set(codes ?? []) == Set(ErrorCode.allCases.map(\.rawValue)), "the error body's code enum")
        for (method, path, op) in Self.operations(doc) {
            let where_ = "\(method) \(path)"
            let params = op["parameters"]?.arrayValue ?? []
            let declared = Set(params.filter { $0["in"]?.stringValue == "path" && $0["required"]?.boolValue == true }
                .compactMap { $0["name"]?.stringValue })
            let inPath = Set(path.split(separator: "/").filter { $0.hasPrefix("{") }.map { String($0.dropFirst().dropLast()) })
            #expect(declared == inPath, "path parameters of \(where_)")
            let responses = op["responses"]?.objectValue ?? [:]
            #expect(responses.keys.contains { $0.hasPrefix("2") || $0 == "101" }, "success response of \(where_)")
            for (status, response) in responses where status != "204" && status != "101" {
                let schema = response["$ref"] != nil ? response : response["content"]?.objectValue?.values.first?["schema"]
                #expect(schema != nil, "schema of \(status) of \(where_)")
            }
            if path.hasPrefix("/api/aiim/") {
                #expect(op["security"] != nil, "security of \(where_)")
                for status in ["400", "401", "403", "429", "503", "504"] {
                    #expect(responses[status] != nil, "\(status) of \(where_)")
                }
            }
            if ["POST", "PATCH"].contains(method), path.hasPrefix("/api/aiim/"),
               !path.hasSuffix("/stop"), !path.contains("/calls/{call_id}") {
                #expect(op["requestBody"]?["content"]?["application/json"]?["schema"] != nil, "request body of \(where_)")
            }
        }
    }

    /// docs/PROTOCOL.md: a plain GET on the WebSocket route (no `Upgrade: websocket`) is a
    /// client error with the JSON body, with or without a token (it used to answer an empty 200
    /// to a valid token, after admitting a connection that never came).
    @Test func aPlainGetOnTheWebSocketRouteIs400WithTheJSONError() async throws {
        let stack = try await Stack.start()
        defer { Task { await stack.stop() } }
        let token = try await stack.token(uniqueName("plain-ws"))
        for t in [token, nil] {
            let r = try await stack.http("GET", "/api/aiim/ws", token: t)
            #expect(r.status == 400, "token: \(t != nil)")
            #expect(r.json["error"]?["code"]?.stringValue == "bad_request", "\(r.json)")
        }
    }

    // MARK: the docs tell every route and every error code

    /// docs/*.md, read from the checkout the tests were built from.
    static func docs(_ names: [String]) throws -> String {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return try names.map { try String(contentsOf: root.appendingPathComponent("docs/\($0)"), encoding: .utf8) }.joined(separator: "\n")
    }

    /// `{conversation_id}`, `{id}` … all read as `{}`: the docs name parameters for the reader.
    static func normalised(_ text: String) -> String {
        text.replacingOccurrences(of: #"\{[^}/]*\}"#, with: "{}", options: .regularExpression)
    }

    /// Every registered route is described in docs/ (API.md, or the feature's page, which
    /// may write the path relative to its prefix: `POST /{call_id}/ringing`). `GET /bus/ping`
    /// was served but documented nowhere.
    @Test func theDocsDescribeEveryRoute() throws {
        let text = Self.normalised(try Self.docs(["API.md", "PROTOCOL.md", "MEDIA.md", "CALLS.md", "AI.md"]))
        var undocumented: [String] = []
        for op in OpenAPI.operations {
            let path = Self.normalised(op.path)
            let method = op.method.uppercased()
            guard path.hasPrefix("/api/aiim/"), path != "/api/aiim/ws" else {
                if !text.contains("`\(path)") && !text.contains(", `\(path)`") { undocumented.append("\(method) \(path)") }
                continue
            }
            let rest = String(path.dropFirst("/api/aiim".count))
            // Relative to the feature's prefix only below it (`/calls/{}/ringing` → `/{}/ringing`).
            let segments = rest.split(separator: "/")
            let relative = segments.count > 1 ? ["/" + segments.dropFirst().joined(separator: "/")] : []
            if !([path, rest] + relative).contains(where: { text.contains("`\(method) \($0)") || text.contains("| `\(method) \($0)") }) {
                undocumented.append("\(method) \(path)")
            }
        }
        #expect(undocumented == [], "routes docs/ does not describe")
    }

    /// Every error code a client can receive (`ErrorCode`) is in docs/API.md's error table.
    /// `unsupported_media_type`, `unsupported_version` and `slow_consumer` were missing.
    @Test func theErrorTableListsEveryCode() throws {
        let api = try Self.docs(["API.md"])
        let missing = ErrorCode.allCases.map(\.rawValue).filter { !api.contains("`\($0)`") }
        #expect(missing == [], "codes docs/API.md does not list")
    }
}
