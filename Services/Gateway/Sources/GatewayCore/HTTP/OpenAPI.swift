import AIIMJSON
import AIIMProtocol

/// The OpenAPI 3.1 document served at `/openapi.json` (kept in step with docs/API.md), built
/// from `operations`: one row per route the gateway registers. `ContractTests` compares the
/// rows with the router's routes, and `deploy/local/contract` fuzzes the running gateway
/// against the document (schemathesis), so a route, a status or a field the document does not
/// tell is a failing test.
enum OpenAPI {
    /// One operation: a method on a path. Path parameters come from the path's `{…}` segments.
    struct Operation: Sendable {
        var method: String
        var path: String
        var summary: String
        /// Whether the route needs a token (every `/api/aiim` route).
        var secured = true
        var query: [Parameter] = []
        /// The JSON request body's schema, if the route reads one.
        var body: JSONValue?
        var status = 200
        /// The success body's schema; nil for an empty body.
        var response: JSONValue?
        /// Error statuses besides the ones every secured route can answer.
        var errors: [Int] = []
        var contentType = "application/json"
        /// Registered only with `DEV_LOGIN=true` (the document then lists it).
        var devOnly = false
    }

    struct Parameter: Sendable {
        var name: String
        var schema: JSONValue
        var required = false
        var description: String?
    }

    /// Statuses every `/api/aiim` route can answer (docs/API.md, "Errors"): a bad body or field,
    /// no or a bad token, not a member, no such thing, a state conflict, a body over
    /// `MAX_BODY_BYTES`, rate limits, a backend down or slow.
    static let securedErrors = [400, 401, 403, 404, 409, 413, 429, 503, 504]

    static let operations: [Operation] = {
        let message = ["type": "object", "required": ["message"], "properties": ["message": ref("Message")]] as JSONValue
        let call = ref("Call")
        return [
            // System (no token).
            Operation(method: "get", path: "/", summary: "Service banner", secured: false,
                      response: object(["service": string, "version": string, "status": string, "docs": string])),
            Operation(method: "get", path: "/openapi.json", summary: "This document", secured: false,
                      response: ["type": "object", "required": ["openapi", "paths"]]),
            Operation(method: "get", path: "/health", summary: "Health with dependency checks", secured: false,
                      response: object(["status": ["type": "string", "enum": ["healthy", "unhealthy"]], "timestamp": number,
                                        "version": string, "service": string, "instance": string,
                                        "checks": ["type": "object"]])),
            Operation(method: "get", path: "/healthz", summary: "Liveness", secured: false, response: object(["status": string])),
            Operation(method: "get", path: "/ready", summary: "Readiness (503 with the reasons while a dependency is down)",
                      secured: false, response: object(["status": string]), errors: [503]),
            Operation(method: "get", path: "/metrics", summary: "Prometheus metrics", secured: false,
                      response: string, contentType: "text/plain"),
            Operation(method: "get", path: "/api/aiim/ws",
                      summary: "WebSocket upgrade (docs/PROTOCOL.md); token in Authorization, Sec-WebSocket-Protocol or ?token=. A request without `Upgrade: websocket` is 400 bad_request.",
                      query: [Parameter(name: "token", schema: string, description: "a user JWT or an aiim_ API key")],
                      status: 101),
            Operation(method: "get", path: "/web/{file}", summary: "A file of the web client (index.html, app.js, …); 304 on a matching If-None-Match",
                      secured: false, response: string, errors: [404], contentType: "text/plain"),
            Operation(method: "head", path: "/web/{file}", summary: "The headers of a web client file (no body)", secured: false,
                      response: string, errors: [404], contentType: "text/plain"),
            Operation(method: "post", path: "/api/aiim/dev/login",
                      summary: "Development sign-in: a 24-hour token for a user name, no password (only with DEV_LOGIN=true; otherwise no such route)",
                      secured: false, body: object(["user": ["type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"]]),
                      response: object(["token": string, "user_id": string, "tenant_id": string, "expires_in": integer]),
                      errors: [400, 413], devOnly: true),
            Operation(method: "get", path: "/api/aiim/bus/ping", summary: "Round trip to a backend over the bus",
                      response: object(["service": string, "instance": string, "trace_id": string])),

            // Conversations.
            Operation(method: "post", path: "/api/aiim/conversations", summary: "Create a conversation (a direct one is de-duplicated)",
                      body: object(["type": ["type": "string", "enum": ["direct", "group"]], "name": nullable(string),
                                    "member_ids": array(id), "settings": ref("ConversationSettings")], required: ["member_ids"]),
                      response: ref("Conversation")),
            Operation(method: "get", path: "/api/aiim/conversations", summary: "The caller's conversations, newest activity first",
                      query: [limitParameter, Parameter(name: "before", schema: string, description: "next_cursor of the previous page")],
                      response: object(["conversations": array(ref("Conversation")), "next_cursor": nullable(string)],
                                       required: ["conversations"])),
            Operation(method: "get", path: "/api/aiim/conversations/{conversation_id}", summary: "A conversation with its members",
                      response: ref("Conversation")),
            Operation(method: "patch", path: "/api/aiim/conversations/{conversation_id}",
                      summary: "Rename a group or change its settings (owner/admin)",
                      body: object(["name": string, "settings": ref("ConversationSettings")], required: []),
                      response: ref("Conversation")),
            Operation(method: "post", path: "/api/aiim/conversations/{conversation_id}/members", summary: "Add members (owner/admin; groups)",
                      body: object(["user_ids": array(id), "role": ["type": "string", "enum": ["member", "admin", "assistant"]]],
                                   required: ["user_ids"]),
                      response: ref("Conversation")),
            Operation(method: "delete", path: "/api/aiim/conversations/{conversation_id}/members/{user_id}",
                      summary: "Remove a member (owner/admin) or leave", status: 204),

            // Messages.
            Operation(method: "post", path: "/api/aiim/messages", summary: "Send a message (idempotent on client_msg_id)",
                      body: object(["conversation_id": id, "type": string, "content": anyValue, "reply_to": nullable(id),
                                    "client_msg_id": nullable(id)], required: ["conversation_id", "content"]),
                      response: message),
            Operation(method: "post", path: "/api/aiim/messages/stream", summary: "Append a chunk to an AI stream",
                      body: object(["conversation_id": id, "stream_id": id, "client_msg_id": id, "chunk": anyValue,
                                    "chunk_index": integer, "stream_end": boolean], required: ["conversation_id"]),
                      response: object(["message": object(["message_id": id, "stream_id": id, "seq": integer,
                                                           "chunk_index": nullable(integer), "stream_end": boolean, "state": string],
                                                          required: ["message_id", "stream_id", "seq", "stream_end", "state"])])),
            Operation(method: "get", path: "/api/aiim/messages/{id}",
                      summary: "History of conversation {id}, ascending by seq (before_seq, after_seq or before_id)",
                      query: [limitParameter, Parameter(name: "before_seq", schema: position), Parameter(name: "after_seq", schema: position),
                              Parameter(name: "before_id", schema: string)],
                      response: ref("MessagePage")),
            Operation(method: "patch", path: "/api/aiim/messages/{id}", summary: "Edit own message {id}",
                      body: object(["content": anyValue], required: ["content"]), response: message),
            Operation(method: "delete", path: "/api/aiim/messages/{id}", summary: "Recall own message {id}", response: message),
            Operation(method: "post", path: "/api/aiim/sync", summary: "Everything after each cursor, in one round trip",
                      body: object(["cursors": ["type": "object", "additionalProperties": integer], "limit": integer],
                                   required: ["cursors"]),
                      response: object(["conversations": array(ref("MessagePage"))])),

            // Receipts.
            Operation(method: "post", path: "/api/aiim/receipts/delivered", summary: "Move the delivered cursor",
                      body: object(["conversation_id": id, "message_id": id, "seq": integer], required: ["conversation_id"]),
                      status: 204),
            Operation(method: "post", path: "/api/aiim/receipts/read", summary: "Move the read cursor (implies delivered)",
                      body: object(["conversation_id": id, "last_read_message_id": id, "last_read_seq": integer,
                                    "message_id": id, "seq": integer, "user_id": string], required: ["conversation_id"]),
                      status: 204),
            Operation(method: "get", path: "/api/aiim/receipts/{conversation_id}/{message_id}",
                      summary: "Who has received and read a message",
                      response: object(["conversation_id": id, "message_id": id,
                                        "receipts": array(object(["user_id": string, "delivered_at": nullable(timestamp),
                                                                  "read_at": nullable(timestamp)], required: ["user_id"]))])),

            // Presence, API keys.
            Operation(method: "get", path: "/api/aiim/presence", summary: "Online state of users of the caller's tenant",
                      query: [Parameter(name: "user_ids", schema: string, required: true, description: "1-200 user ids, comma-separated")],
                      response: object(["presence": array(object(["user_id": string,
                                                                  "status": ["type": "string", "enum": ["online", "offline"]]]))])),
            Operation(method: "post", path: "/api/aiim/api_keys", summary: "Create an API key for an AI agent (shown once; the caller owns it)",
                      body: object(["name": string, "expires_in_seconds": ["type": "integer", "minimum": 1, "maximum": 315_360_000]],
                                   required: ["name"]), status: 201,
                      response: object(["api_key": ["type": "string", "pattern": "^aiim_"], "key_id": string, "user_id": string, "name": string,
                                        "created_at": timestamp, "expires_at": nullable(timestamp)],
                                       required: ["api_key", "key_id", "user_id", "name"])),
            Operation(method: "get", path: "/api/aiim/api_keys", summary: "The caller's own API keys (never the keys themselves)",
                      response: object(["keys": array(ref("APIKeyInfo"))], required: ["keys"])),
            Operation(method: "delete", path: "/api/aiim/api_keys/{key_id}",
                      summary: "Revoke one of the caller's API keys (its sockets close with 4003)", response: ref("APIKeyInfo")),

            // Media (docs/MEDIA.md).
            Operation(method: "post", path: "/api/aiim/media/upload_token", summary: "A presigned upload",
                      body: object(["conversation_id": id, "filename": string, "content_type": string, "file_size": integer],
                                   required: ["conversation_id", "filename", "content_type"]),
                      response: object(["media_id": id, "upload_url": string, "expires_at": timestamp, "method": string,
                                        "headers": ["type": "object", "additionalProperties": string]]),
                      errors: [415]),
            Operation(method: "post", path: "/api/aiim/media/upload_complete", summary: "Verify an upload (size, SHA-256, type)",
                      body: object(["media_id": id, "conversation_id": id, "file_hash": string, "file_size": integer],
                                   required: ["media_id", "conversation_id", "file_hash"]),
                      response: object(["status": string, "media_id": id, "content_type": string, "file_size": integer,
                                        "filename": string, "duration_ms": nullable(integer)],
                                       required: ["status", "media_id", "content_type", "file_size", "filename"]),
                      errors: [415]),
            Operation(method: "get", path: "/api/aiim/media/{media_id}/download", summary: "A presigned download",
                      query: [mediaConversation],
                      response: object(["download_url": string, "content_type": string, "filename": string, "file_size": integer,
                                        "expires_at": timestamp, "duration_ms": nullable(integer)],
                                       required: ["download_url", "content_type", "filename", "file_size", "expires_at"])),
            Operation(method: "get", path: "/api/aiim/media/{media_id}/metadata", summary: "Media metadata",
                      query: [mediaConversation],
                      response: object(["media_id": id, "size": integer, "content_type": string, "last_modified": nullable(timestamp),
                                        "etag": nullable(string), "filename": string, "status": string, "duration_ms": nullable(integer),
                                        "metadata": ["type": "object"]],
                                       required: ["media_id", "size", "content_type", "filename", "status", "metadata"])),
            Operation(method: "delete", path: "/api/aiim/media/{media_id}", summary: "Delete media (uploader or owner)",
                      query: [mediaConversation], response: object(["status": string, "media_id": id])),

            // Calls (docs/CALLS.md).
            Operation(method: "post", path: "/api/aiim/calls/initiate", summary: "Start a call",
                      body: object(["conversation_id": id, "to_user_id": nullable(id),
                                    "call_type": ["type": ["string", "null"], "enum": ["audio", "video", nil]],
                                    "type": ["type": ["string", "null"], "enum": ["audio", "video", nil]]],
                                   required: ["conversation_id"]),
                      response: callWithICE(extra: ["created_at": timestamp])),
            Operation(method: "post", path: "/api/aiim/calls/{call_id}/ringing", summary: "A callee's device rings", response: call),
            Operation(method: "post", path: "/api/aiim/calls/{call_id}/accept", summary: "Accept a call", response: callWithICE(extra: [:])),
            Operation(method: "post", path: "/api/aiim/calls/{call_id}/reject", summary: "Reject a call", response: call),
            Operation(method: "post", path: "/api/aiim/calls/{call_id}/hangup", summary: "Hang up a call", response: call),
            Operation(method: "get", path: "/api/aiim/calls/{call_id}/status", summary: "A call's state", response: call),
            Operation(method: "get", path: "/api/aiim/calls/conversation/{conversation_id}/history", summary: "Calls of a conversation, newest first",
                      query: [Parameter(name: "limit", schema: ["type": "integer", "minimum": 1, "maximum": 200]),
                              Parameter(name: "offset", schema: ["type": "integer", "minimum": 0, "maximum": 1_000_000])],
                      response: object(["conversation_id": id, "calls": array(call), "total": integer, "limit": integer,
                                        "offset": integer])),
            Operation(method: "get", path: "/api/aiim/calls/ice-configuration", summary: "STUN/TURN servers with the caller's credentials",
                      response: ref("ICEConfiguration")),

            // AI answers (docs/AI.md).
            Operation(method: "post", path: "/api/aiim/generations", summary: "Start an AI answer",
                      body: object(["conversation_id": id, "client_generation_id": id, "reply_to": id, "requester_id": id,
                                    "state": ref("GenerationState"), "label": string, "label_ttl_ms": integer],
                                   required: ["conversation_id"]),
                      status: 201, response: ref("GenerationSnapshot")),
            Operation(method: "get", path: "/api/aiim/generations/{message_id}", summary: "An answer's parts so far and the deltas after after_offset",
                      query: [Parameter(name: "after_offset", schema: position)], response: ref("GenerationSnapshot")),
            Operation(method: "post", path: "/api/aiim/generations/{message_id}/deltas", summary: "Append deltas",
                      body: object(["deltas": array(["type": "object", "required": ["offset", "part"],
                                                     "properties": ["offset": integer, "part": integer, "type": string]])],
                                   required: ["deltas"]),
                      response: ref("GenerationAck")),
            Operation(method: "post", path: "/api/aiim/generations/{message_id}/status", summary: "Set the state or the status label",
                      body: object(["state": ref("GenerationState"), "label": string, "label_ttl_ms": integer], required: []),
                      response: ref("GenerationAck")),
            Operation(method: "post", path: "/api/aiim/generations/{message_id}/end", summary: "End an answer",
                      body: object(["state": ref("GenerationState"), "error": string, "last_offset": integer], required: ["state"]),
                      response: ref("GenerationSnapshot")),
            Operation(method: "post", path: "/api/aiim/generations/{message_id}/stop", summary: "Ask the producer to stop",
                      response: ref("GenerationAck")),
        ]
    }()

    // MARK: schema helpers

    static let string: JSONValue = ["type": "string"]
    static let integer: JSONValue = ["type": "integer"]
    /// A seq or an offset in a log: what `Request.positionQuery` accepts (0...Validation.maxJSONInteger).
    static let position: JSONValue = ["type": "integer", "minimum": 0, "maximum": 9_007_199_254_740_991]
    static let number: JSONValue = ["type": "number"]
    static let boolean: JSONValue = ["type": "boolean"]
    static let timestamp: JSONValue = ["type": "string", "format": "date-time"]
    /// An id in a path segment (`Validation.id`: 1-128 printable characters, no spaces).
    static let pathID: JSONValue = ["type": "string", "minLength": 1, "maxLength": .number(Double(Validation.maxIDLength)),
                                    "pattern": "^[^\\s/]+$"]
    /// An id in a body (`Validation.id`).
    static let id: JSONValue = ["type": "string", "minLength": 1, "maxLength": .number(Double(Validation.maxIDLength))]
    /// Any JSON value.
    static let anyValue: JSONValue = [:]

    static let limitParameter = Parameter(name: "limit", schema: ["type": "integer", "minimum": 1, "maximum": 200])
    static let mediaConversation = Parameter(name: "conversation_id", schema: string, required: true,
                                             description: "the conversation the media belongs to")

    static func ref(_ name: String) -> JSONValue { ["$ref": .string("#/components/schemas/\(name)")] }
    static func array(_ items: JSONValue) -> JSONValue { ["type": "array", "items": items] }
    static func nullable(_ schema: JSONValue) -> JSONValue { ["anyOf": [schema, ["type": "null"]]] }

    /// An object with `properties`; `required` defaults to every property.
    static func object(_ properties: [String: JSONValue], required: [String]? = nil) -> JSONValue {
        let names = (required ?? properties.keys.sorted()).map { JSONValue.string($0) }
        return ["type": "object", "properties": .object(properties), "required": .array(names)]
    }

    /// A call object with its `ice_configuration` (initiate, accept).
    static func callWithICE(extra: [String: JSONValue]) -> JSONValue {
        ["allOf": [ref("Call"), object(extra.merging(["ice_configuration": ref("ICEConfiguration")]) { $1 })]]
    }

    static let components: JSONValue = [
        "securitySchemes": [
            "jwt": ["type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "a user token (HS256, JWT_SECRET)"],
            "apiKey": ["type": "http", "scheme": "bearer", "bearerFormat": "aiim_ API key",
                       "description": "an AI agent's API key from POST /api/aiim/api_keys"],
        ],
        "schemas": [
            "Error": object([
                "error": object(["code": ["type": "string", "enum": .array(ErrorCode.allCases.map { .string($0.rawValue) })],
                                 "message": string]),
            ]),
            "Message": object([
                "message_id": id, "conversation_id": id, "sender_id": string, "type": string, "content": anyValue,
                "created_at": timestamp, "seq": integer, "reply_to": nullable(id), "client_msg_id": nullable(id),
                "edited_at": nullable(timestamp), "deleted_at": nullable(timestamp),
                "stream": nullable(object(["stream_id": id,
                                           "state": ["type": "string", "enum": ["streaming", "completed", "interrupted"]],
                                           "chunk_count": integer])),
                "generation": nullable(object(["state": ref("GenerationState"), "label": nullable(string),
                                               "label_expires_at": nullable(timestamp), "offset": integer, "persisted_offset": integer,
                                               "producer_id": string, "requester_id": nullable(string),
                                               "stop_requested_by": nullable(string), "error": nullable(string),
                                               "reasoning": nullable(["type": "string", "enum": ["hidden"]])],
                                              required: ["state", "offset", "persisted_offset", "producer_id"])),
            ], required: ["message_id", "conversation_id", "sender_id", "type", "content", "created_at", "seq"]),
            "Conversation": object([
                "conversation_id": id, "type": string, "name": nullable(string), "created_at": timestamp,
                "updated_at": timestamp, "last_seq": integer, "last_message": nullable(ref("Message")),
                "unread_count": nullable(integer), "role": nullable(string),
                "members": nullable(array(object(["user_id": string, "role": string, "last_read_seq": integer,
                                                  "last_delivered_seq": integer]))),
                "settings": ref("ConversationSettings"),
            ], required: ["conversation_id", "type", "created_at", "updated_at", "last_seq"]),
            "ConversationSettings": object(["ai_reasoning": ["type": "string", "enum": .array(ConversationSettings.reasoningRules.sorted().map { .string($0) })]]),
            "APIKeyInfo": object(["key_id": string, "name": string, "created_at": timestamp, "expires_at": nullable(timestamp),
                                  "revoked_at": nullable(timestamp)], required: ["key_id", "name"]),
            "MessagePage": object(["conversation_id": id, "messages": array(ref("Message")), "has_more": boolean]),
            "Call": object([
                "call_id": string, "conversation_id": id,
                "status": ["type": "string", "enum": .array(CallStatus.allCases.map { .string($0.rawValue) })],
                "call_type": ["type": "string", "enum": .array(CallType.allCases.map { .string($0.rawValue) })],
                "initiator_id": string, "callee_id": string, "start_time": timestamp, "answer_time": nullable(timestamp),
                "end_time": nullable(timestamp), "duration_sec": nullable(integer), "ended_by": nullable(string),
                "participants": array(string), "version": integer,
            ]),
            "ICEConfiguration": object([
                "iceServers": array(object(["urls": array(string), "username": nullable(string), "credential": nullable(string),
                                            "credentialType": nullable(string)], required: ["urls"])),
                "iceTransportPolicy": string, "bundlePolicy": string, "rtcpMuxPolicy": string, "iceCandidatePoolSize": integer,
                "sdpSemantics": string, "ttl": nullable(integer), "realm": nullable(string),
            ], required: ["iceServers", "iceTransportPolicy", "bundlePolicy", "rtcpMuxPolicy", "iceCandidatePoolSize", "sdpSemantics"]),
            "GenerationState": ["type": "string", "enum": .array(GenerationState.allCases.map { .string($0.rawValue) })],
            "GenerationSnapshot": object(["message": ref("Message"),
                                          "deltas": nullable(array(["type": "object", "required": ["offset", "part"]]))],
                                         required: ["message"]),
            "GenerationAck": object(["message_id": id, "offset": integer, "persisted_offset": integer,
                                     "state": ref("GenerationState"), "stop_requested": boolean]),
        ],
        "responses": [
            "Error": ["description": "The JSON error body of docs/API.md",
                      "content": ["application/json": ["schema": ref("Error")]]],
        ],
    ]

    // MARK: the document

    /// `{name}` segments of a path.
    static func pathParameters(_ path: String) -> [String] {
        path.split(separator: "/").compactMap { segment in
            segment.hasPrefix("{") && segment.hasSuffix("}") ? String(segment.dropFirst().dropLast()) : nil
        }
    }

    static func operationObject(_ op: Operation) -> JSONValue {
        var parameters: [JSONValue] = pathParameters(op.path).map {
            ["name": .string($0), "in": "path", "required": true, "schema": pathID]
        }
        parameters += op.query.map { p in
            var o: [String: JSONValue] = ["name": .string(p.name), "in": "query", "required": .bool(p.required), "schema": p.schema]
            if let d = p.description { o["description"] = .string(d) }
            return .object(o)
        }
        var success: [String: JSONValue] = ["description": .string(op.status == 101 ? "Switching Protocols" : "OK")]
        if let schema = op.response {
            success["content"] = .object([op.contentType: ["schema": schema]])
        }
        var responses: [String: JSONValue] = [String(op.status): .object(success)]
        let errors = op.secured ? securedErrors + op.errors : op.errors
        for status in errors { responses[String(status)] = ["$ref": "#/components/responses/Error"] }
        if op.path == "/ready" {
            responses["503"] = ["description": "Not ready", "content": ["application/json": ["schema": object(
                ["status": string, "reasons": ["type": "object", "additionalProperties": string]])]]]
        }
        var o: [String: JSONValue] = [
            "operationId": .string(operationID(op)), "summary": .string(op.summary), "responses": .object(responses),
        ]
        if !parameters.isEmpty { o["parameters"] = .array(parameters) }
        if op.secured { o["security"] = [["jwt": []], ["apiKey": []]] }
        if let body = op.body {
            o["requestBody"] = ["required": true, "content": ["application/json": ["schema": body]]]
        }
        return .object(o)
    }

    /// `get_api_aiim_messages_id`: unique per method and path.
    static func operationID(_ op: Operation) -> String {
        let words = op.path.split(whereSeparator: { !$0.isLetter && !$0.isNumber }).map(String.init)
        return ([op.method] + (words.isEmpty ? ["root"] : words)).joined(separator: "_")
    }

    static func value(devLogin: Bool) -> JSONValue {
        var paths: [String: [String: JSONValue]] = [:]
        for op in operations where devLogin || !op.devOnly { paths[op.path, default: [:]][op.method] = operationObject(op) }
        return [
            "openapi": "3.1.0",
            "info": ["title": "AIIM", "version": .string("2.0.0"), "description": "See docs/API.md and docs/PROTOCOL.md"],
            "paths": .object(paths.mapValues { .object($0) }),
            "components": components,
        ]
    }

    /// The document a gateway serves: without `/api/aiim/dev/login` unless `DEV_LOGIN` is on.
    static let document: String = value(devLogin: false).jsonString()
    static let devLoginDocument: String = value(devLogin: true).jsonString()
}
