import AIIMBackendKit
import AIIMJSON
import AIIMPostgres
import AIIMProtocol
import AIIMRedis
import AIIMS3
import AIIMServiceKit
import Crypto
import Foundation
import GatewayCore
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import MessagingCore
import NIOCore
import Prometheus
import ServiceLifecycle
import Synchronization
import Testing

@testable import MediaCore

// The media flow through the gateway, the bus and the media service against the project's real
// Redis, PostgreSQL and SeaweedFS (S3 with SigV4 checking). Files travel as a client would send
// them: the system `curl` PUTs to and GETs from the presigned URLs (a client nobody here wrote).

/// A gateway router and media service(s) running against the test servers.
struct MediaStack: Sendable {
    let client: any TestClientProtocol
    let gateway: Gateway
    let media: [MediaService]
    let db: PostgresClient
    let tenant: String

    var primary: MediaService { media[0] }

    func token(_ user: String, tenant: String? = nil) async throws -> String {
        try await gateway.auth.mint(user: user, tenant: tenant ?? self.tenant, ttl: .seconds(600))
    }

    /// A conversation with `owner` as owner and `members` as members (rows as messaging writes them).
    func conversation(owner: String, members: [String], tenant: String? = nil) async throws -> String {
        let id = UUID().uuidString.lowercased()
        let tenant = tenant ?? self.tenant
        try await db.query(
            "INSERT INTO conversations (conversation_id, tenant_id, type, name, created_by) VALUES ($1, $2, 'group', 'media', $3)",
            [id, tenant, owner])
        for (user, role) in [(owner, "owner")] + members.map({ ($0, "member") }) {
            try await db.query(
                "INSERT INTO conversation_members (conversation_id, user_id, tenant_id, role) VALUES ($1, $2, $3, $4)",
                [id, user, tenant, role])
        }
        return id
    }

    /// Sends a request as `user`; returns the status and the JSON body.
    @discardableResult
    func call(_ method: HTTPRequest.Method, _ uri: String, as user: String?, body: JSONValue? = nil,
              rawBody: String? = nil) async throws -> (status: Int, json: JSONValue) {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let user { headers[.authorization] = "Bearer \(try await token(user))" }
        let payload = rawBody ?? body.map { $0.jsonString() }
        return try await client.execute(uri: uri, method: method, headers: headers,
                                        body: payload.map { ByteBuffer(string: $0) }) { response in
            let json = (try? JSONDecoder().decode(JSONValue.self, from: Data(response.body.readableBytesView))) ?? .null
            return (Int(response.status.code), json)
        }
    }

    func uploadToken(_ user: String, conversation: String, filename: String, type: String, size: Int) async throws
        -> (status: Int, json: JSONValue)
    {
        try await call(.post, "/api/aiim/media/upload_token", as: user, body: .object([
            "conversation_id": .string(conversation), "filename": .string(filename), "content_type": .string(type),
            "file_size": .number(Double(size)),
        ]))
    }

    func complete(_ user: String, conversation: String, mediaID: String, hash: String, size: Int) async throws
        -> (status: Int, json: JSONValue)
    {
        try await call(.post, "/api/aiim/media/upload_complete", as: user, body: .object([
            "media_id": .string(mediaID), "conversation_id": .string(conversation), "file_hash": .string(hash),
            "file_size": .number(Double(size)),
        ]))
    }

    /// Token, PUT with curl, complete: the whole upload as a client does it.
    func upload(_ bytes: [UInt8], as user: String, conversation: String, filename: String, type: String) async throws
        -> (mediaID: String, complete: (status: Int, json: JSONValue))
    {
        let token = try await uploadToken(user, conversation: conversation, filename: filename, type: type, size: bytes.count)
        try #require(token.status == 200, "upload_token: \(token.json.jsonString())")
        let mediaID = try #require(token.json["media_id"]?.stringValue)
        let file = try MediaTempFile(bytes)
        defer { file.remove() }
        let put = try await SystemCurlClient.put(file: file.url, to: try #require(token.json["upload_url"]?.stringValue),
                                             contentType: type)
        try #require(put == 200, "PUT to storage answered \(put)")
        let done = try await complete(user, conversation: conversation, mediaID: mediaID, hash: mediaSHA256(bytes),
                                      size: bytes.count)
        return (mediaID, done)
    }

    func objectKey(_ mediaID: String) async throws -> String? {
        try await db.query("SELECT object_key FROM media WHERE media_id = $1", [mediaID]).first?.optional("object_key")
    }

    /// Whether the media has an object: at its upload key, or at the key its row names (a
    /// verified media is served from a copy under `verified/`).
    func objectExists(conversation: String, mediaID: String) async throws -> Bool {
        var keys = ["conversations/\(conversation)/media/\(mediaID)"]
        if let key = try await objectKey(mediaID), !keys.contains(key) { keys.append(key) }
        for key in keys where try await primary.storage.headObject(key) != nil { return true }
        return false
    }

    /// Runs `body` with a gateway and `replicas` media services (and messaging, if asked).
    static func run<T: Sendable>(
        _ extra: [String: String] = [:], replicas: Int = 1, messaging: Bool = false, waitForStorage: Bool = true,
        _ body: @Sendable (MediaStack) async throws -> T
    ) async throws -> T {
        TestLog.bootstrap()
        let s3 = try s3Environment()
        let gateway = try await Gateway(
            config: try GatewayConfiguration(env: try TestEnv.serviceEnvironment(
                // Rate limiting is not under test here; the flows make many quick calls as one user.
                ["RATE_LIMIT_PER_SEC": "100000"].merging(extra) { _, new in new }
                    .merging(["INSTANCE_ID": uniqueName("gateway")]) { _, new in new })),
            registry: PrometheusCollectorRegistry())
        var media: [MediaService] = []
        for _ in 0..<replicas {
            let env = try TestEnv.serviceEnvironment(s3.merging(extra) { _, new in new }.merging(["INSTANCE_ID": uniqueName("media")]) { _, new in new })
            media.append(try buildMedia(env: env, registry: PrometheusCollectorRegistry()))
        }
        var services: [any Service] = try media.flatMap { try $0.services() } + [gateway.bus]
        var messagingService: MessagingService?
        if messaging {
            let m = try buildMessaging(env: try TestEnv.serviceEnvironment(["INSTANCE_ID": uniqueName("messaging")]),
                                       registry: PrometheusCollectorRegistry())
            services += try m.services()
            messagingService = m
        }
        let db = try PostgresClient(url: try TestEnv.databaseURL(), poolSize: 2, logger: TestLog.logger)
        // The conversations these tests create live in messaging's tables, and media reads them
        // through messaging's view: apply messaging's migrations as its service would, running or not.
        _ = try await Migrator.run(try MessagingService.migrations(), on: db, logger: TestLog.logger)
        let group = ServiceGroup(configuration: .init(services: services, logger: TestLog.logger))
        let app = Application(router: gateway.buildRouter())
        let stackMedia = media
        let result: Result<T, any Error>
        do {
            result = try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                let outcome: Result<T, any Error>
                do {
                    let ready = try await eventually(timeout: .seconds(30)) {
                        stackMedia.allSatisfy { m in
                            m.runtime.readiness.isUp("migrations") && (!waitForStorage || m.runtime.readiness.isUp("storage"))
                        }
                    }
                    try #require(ready, "the media service did not become ready")
                    outcome = .success(try await app.test(.router) { client in
                        try await body(MediaStack(client: client, gateway: gateway, media: stackMedia, db: db,
                                                  tenant: uniqueName("tenant")))
                    })
                } catch {
                    outcome = .failure(error)
                }
                await group.triggerGracefulShutdown()
                try await tasks.waitForAll()
                return outcome
            }
        } catch {
            result = .failure(error)
        }
        await gateway.shutdown()
        for m in media { await m.shutdown() }
        if let messagingService { await messagingService.runtime.shutdown() }
        await db.shutdown()
        return try result.get()
    }

    static func s3Environment() throws -> [String: String] {
        [
            "MINIO_ENDPOINT": try TestEnv.value("AIIM_TEST_S3_ENDPOINT"),
            "MINIO_ACCESS_KEY": try TestEnv.value("AIIM_TEST_S3_ACCESS_KEY"),
            "MINIO_SECRET_KEY": try TestEnv.value("AIIM_TEST_S3_SECRET_KEY"),
            "MINIO_BUCKET_NAME": try TestEnv.value("AIIM_TEST_S3_BUCKET"),
            "MINIO_REGION": try TestEnv.value("AIIM_TEST_S3_REGION"),
            "MINIO_SECURE": "false",
        ]
    }
}

@Suite("Media flow through gateway, bus, media service and S3", .serialized)
struct MediaFlowTests {
    @Test("a .wav voice message: uploaded with curl, verified, sent as an audio message, played back byte-identical")
    func wavVoiceMessage() async throws {
        try await MediaStack.run(messaging: true) { stack in
            let conversation = try await stack.conversation(owner: "alice", members: ["bob"])
            let voice = MediaSamples.wav(milliseconds: 1500)
            let (mediaID, done) = try await stack.upload(voice, as: "alice", conversation: conversation,
                                                         filename: "voice note ü.wav", type: "audio/wav")
            #expect(done.status == 200, "\(done.json.jsonString())")
            #expect(done.json["status"]?.stringValue == "success")
            #expect(done.json["media_id"]?.stringValue == mediaID)
            #expect(done.json["duration_ms"]?.intValue == 1500)
            #expect(mediaID.count == 38 && mediaID.hasPrefix("media_"))

            // What an audio message copies, as messaging asks the media service (the documented contract).
            let info = try await stack.gateway.bus.request(
                MediaAttachment(tenantID: stack.tenant, conversationID: conversation, mediaID: mediaID))
            #expect(info == MediaAttachmentInfo(durationMs: 1500, contentType: "audio/wav", size: Int64(voice.count)))

            // Sent as a voice message: the duration shows in the message.
            let sent = try await stack.call(.post, "/api/aiim/messages", as: "alice", body: .object([
                "conversation_id": .string(conversation), "type": .string("audio"),
                "content": .object(["media_id": .string(mediaID), "filename": .string("voice note ü.wav")]),
            ]))
            #expect(sent.status == 200, "\(sent.json.jsonString())")
            #expect(sent.json["message"]?["content"]?["duration_ms"]?.intValue == 1500)
            #expect(sent.json["message"]?["content"]?["content_type"]?.stringValue == "audio/wav")
            #expect(sent.json["message"]?["content"]?["file_size"]?.intValue == voice.count)

            // A file whose upload was never completed cannot be sent.
            let pending = try await stack.uploadToken("alice", conversation: conversation, filename: "later.wav",
                                                      type: "audio/wav", size: voice.count)
            let refused = try await stack.call(.post, "/api/aiim/messages", as: "alice", body: .object([
                "conversation_id": .string(conversation), "type": .string("audio"),
                "content": .object(["media_id": .string(try #require(pending.json["media_id"]?.stringValue))]),
            ]))
            #expect(refused.status == 400 && refused.json["error"]?["code"]?.stringValue == "validation_failed")
            #expect(refused.json["error"]?["message"]?.stringValue == "media_id must be an uploaded, verified file of this conversation")

            // Bob (a member) plays it back.
            let link = try await stack.call(.get, "/api/aiim/media/\(mediaID)/download?conversation_id=\(conversation)", as: "bob")
            #expect(link.status == 200, "\(link.json.jsonString())")
            #expect(link.json["content_type"]?.stringValue == "audio/wav")
            #expect(link.json["filename"]?.stringValue == "voice note ü.wav")
            #expect(link.json["file_size"]?.intValue == voice.count)
            #expect(link.json["duration_ms"]?.intValue == 1500)
            #expect(link.json["expires_at"]?.stringValue != nil)
            let fetched = try await SystemCurlClient.get(try #require(link.json["download_url"]?.stringValue))
            #expect(fetched.status == 200)
            #expect(fetched.body == voice, "played back byte-identical")
            #expect(fetched.headers["content-type"] == "audio/wav")
            let disposition = fetched.headers["content-disposition"] ?? ""
            #expect(disposition.hasPrefix("attachment;"), "\(disposition)")
            #expect(disposition.contains("filename*=UTF-8''voice%20note%20%C3%BC.wav"), "\(disposition)")

            let meta = try await stack.call(.get, "/api/aiim/media/\(mediaID)/metadata?conversation_id=\(conversation)", as: "bob")
            #expect(meta.status == 200)
            #expect(meta.json["media_id"]?.stringValue == mediaID)
            #expect(meta.json["size"]?.intValue == voice.count)
            #expect(meta.json["content_type"]?.stringValue == "audio/wav")
            #expect(meta.json["last_modified"]?.stringValue != nil)
            #expect(meta.json["etag"]?.stringValue?.isEmpty == false)
            #expect(meta.json["metadata"]?["uploader_id"]?.stringValue == "alice")
            #expect(meta.json["metadata"]?["filename"]?.stringValue == "voice note ü.wav")
            #expect(meta.json["metadata"]?["sha256"]?.stringValue == mediaSHA256(voice))

            // A retried upload_complete (e.g. after a timeout) answers the same.
            let again = try await stack.complete("alice", conversation: conversation, mediaID: mediaID,
                                                 hash: mediaSHA256(voice), size: voice.count)
            #expect(again.status == 200)
            #expect(again.json["duration_ms"]?.intValue == 1500)
        }
    }

    /// Not a benchmark (debug build, shared machine): the order of magnitude of what an audio
    /// send pays since messaging asks media instead of reading media's table.
    @Test("the audio path's hop to media: every answer right, and its cost printed")
    func attachmentHopCost() async throws {
        try await MediaStack.run { stack in
            let conversation = try await stack.conversation(owner: "alice", members: [])
            let voice = MediaSamples.wav(milliseconds: 500)
            let (mediaID, done) = try await stack.upload(voice, as: "alice", conversation: conversation,
                                                         filename: "hop.wav", type: "audio/wav")
            try #require(done.status == 200)
            let expected = MediaAttachmentInfo(durationMs: 500, contentType: "audio/wav", size: Int64(voice.count))
            let command = MediaAttachment(tenantID: stack.tenant, conversationID: conversation, mediaID: mediaID)
            func percentiles(_ samples: [Duration]) -> String {
                let sorted = samples.sorted()
                func ms(_ q: Double) -> String {
                    let d = sorted[min(sorted.count - 1, Int(Double(sorted.count) * q))]
                    return String(format: "%.2f", Double(d.components.attoseconds) / 1e15 + Double(d.components.seconds) * 1000)
                }
                return "p50 \(ms(0.5)) ms, p99 \(ms(0.99)) ms"
            }
            for _ in 0..<50 { _ = try await stack.gateway.bus.request(command) }  // warm-up
            var hop: [Duration] = []
            var direct: [Duration] = []
            for _ in 0..<500 {
                let start = ContinuousClock.now
                let info = try await stack.gateway.bus.request(command)
                hop.append(ContinuousClock.now - start)
                #expect(info == expected)
                let t = ContinuousClock.now
                let row = try await stack.db.query(
                    "SELECT duration_ms, content_type, size FROM media WHERE media_id = $1 AND conversation_id = $2 AND tenant_id = $3 AND status = 'ready'",
                    [mediaID, conversation, stack.tenant]).first
                direct.append(ContinuousClock.now - t)
                #expect(row?.optional("size", as: Int64.self) == Int64(voice.count))
            }
            print("media.attachment over the bus (500 sequential): \(percentiles(hop)); the query messaging used to run itself: \(percentiles(direct))")
        }
    }

    @Test("a .webm recording is accepted (the original refused it) and its duration is read")
    func webmRecording() async throws {
        try await MediaStack.run { stack in
            let conversation = try await stack.conversation(owner: "alice", members: [])
            let recording = MediaSamples.webm(blocks: 50, stepMs: 20)
            let (mediaID, done) = try await stack.upload(recording, as: "alice", conversation: conversation,
                                                         filename: "rec.webm", type: "audio/webm;codecs=opus")
            #expect(done.status == 200, "\(done.json.jsonString())")
            #expect(done.json["duration_ms"]?.intValue == 1000)
            let link = try await stack.call(.get, "/api/aiim/media/\(mediaID)/download?conversation_id=\(conversation)", as: "alice")
            let fetched = try await SystemCurlClient.get(try #require(link.json["download_url"]?.stringValue))
            #expect(fetched.body == recording)
            #expect(fetched.headers["content-type"] == "audio/webm;codecs=opus")
        }
    }

    @Test("bad input: each case gets its documented error code and leaves no object behind")
    func badInput() async throws {
        try await MediaStack.run(["MEDIA_MAX_FILE_SIZE": "100000"]) { stack in
            let conversation = try await stack.conversation(owner: "alice", members: ["bob"])
            let other = try await stack.conversation(owner: "alice", members: [])
            let voice = MediaSamples.wav(milliseconds: 200)

            func code(_ r: (status: Int, json: JSONValue)) -> String { r.json["error"]?["code"]?.stringValue ?? "-" }
            func token(_ filename: String, _ type: String, _ size: Int) async throws -> (status: Int, json: JSONValue) {
                try await stack.uploadToken("alice", conversation: conversation, filename: filename, type: type, size: size)
            }

            // Wrong type, or an extension that contradicts it.
            var r = try await token("page.html", "text/html", 100)
            #expect(r.status == 415 && code(r) == "unsupported_media_type")
            r = try await token("a.exe", "audio/mpeg", 100)
            #expect(r.status == 415 && code(r) == "unsupported_media_type")
            r = try await token("a.wav", "audio/mpeg", 100)
            #expect(r.status == 415 && code(r) == "unsupported_media_type")
            // Aliases and extensions the original refused are fine.
            r = try await token("a.wav", "audio/x-wav", 100)
            #expect(r.status == 200)
            r = try await token("a.webm", "audio/webm", 100)
            #expect(r.status == 200)

            // Oversize (MEDIA_MAX_FILE_SIZE is 100000 here), empty, malformed.
            r = try await token("a.wav", "audio/wav", 100_001)
            #expect(r.status == 413 && code(r) == "payload_too_large")
            r = try await token("a.wav", "audio/wav", 0)
            #expect(r.status == 400 && code(r) == "validation_failed")
            r = try await stack.call(.post, "/api/aiim/media/upload_token", as: "alice", rawBody: #"{"conversation_id":"\#(conversation)","filename":"a.wav","content_type":"audio/wav","file_size":"12"}"#)
            #expect(r.status == 400 && code(r) == "validation_failed")
            #expect(r.json["error"]?["message"]?.stringValue?.contains("file_size") == true)
            r = try await stack.call(.post, "/api/aiim/media/upload_token", as: "alice", rawBody: "{not json")
            #expect(r.status == 400)

            // Path tricks in filenames are refused, not rewritten.
            for name in ["../../etc/passwd", "a/b.wav", "..\\x.wav", "..", "evil\u{202E}vaw.exe", "x\u{0}.wav", "C:x.wav"] {
                r = try await token(name, "audio/wav", 100)
                #expect(r.status == 400 && code(r) == "validation_failed", "\(name)")
            }
            r = try await stack.uploadToken("alice", conversation: "../other", filename: "a.wav", type: "audio/wav", size: 100)
            #expect(r.status == 400 && code(r) == "validation_failed")

            // Not a member; no token at all.
            r = try await stack.uploadToken("mallory", conversation: conversation, filename: "a.wav", type: "audio/wav", size: 100)
            #expect(r.status == 403 && code(r) == "forbidden")
            r = try await stack.call(.post, "/api/aiim/media/upload_token", as: nil, body: .object([:]))
            #expect(r.status == 401)

            // Mismatched hash: refused and the object is deleted.
            let t1 = try await token("a.wav", "audio/wav", voice.count)
            let id1 = try #require(t1.json["media_id"]?.stringValue)
            let f1 = try MediaTempFile(voice)
            defer { f1.remove() }
            #expect(try await SystemCurlClient.put(file: f1.url, to: t1.json["upload_url"]!.stringValue!, contentType: "audio/wav") == 200)
            #expect(try await stack.objectExists(conversation: conversation, mediaID: id1))
            r = try await stack.complete("alice", conversation: conversation, mediaID: id1, hash: String(repeating: "0", count: 64),
                                         size: voice.count)
            #expect(r.status == 400 && code(r) == "validation_failed")
            #expect(try await !stack.objectExists(conversation: conversation, mediaID: id1), "a rejected upload leaves no object")
            // A malformed hash is refused before anything happens.
            r = try await stack.complete("alice", conversation: conversation, mediaID: id1, hash: "abc", size: voice.count)
            #expect(r.status == 400 && code(r) == "validation_failed")

            // The storage refuses a body of another type or length than the token binds.
            let t2 = try await token("b.wav", "audio/wav", voice.count)
            let url2 = try #require(t2.json["upload_url"]?.stringValue)
            #expect(try await SystemCurlClient.put(file: f1.url, to: url2, contentType: "text/html") == 403)
            let longer = try MediaTempFile(voice + [0])
            defer { longer.remove() }
            #expect(try await SystemCurlClient.put(file: longer.url, to: url2, contentType: "audio/wav") == 403)

            // Upload never made.
            let id2 = try #require(t2.json["media_id"]?.stringValue)
            r = try await stack.complete("alice", conversation: conversation, mediaID: id2, hash: mediaSHA256(voice), size: voice.count)
            #expect(r.status == 404 && code(r) == "not_found")
            #expect(r.json["error"]?["message"]?.stringValue?.contains("upload") == true)

            // Declared as audio, but the bytes are not (the client reports their true hash): sniffed and refused.
            let fake = Array(String(repeating: "not a wave file ", count: 20).utf8)
            let t3 = try await token("c.wav", "audio/wav", fake.count)
            let id3 = try #require(t3.json["media_id"]?.stringValue)
            let f3 = try MediaTempFile(fake)
            defer { f3.remove() }
            #expect(try await SystemCurlClient.put(file: f3.url, to: t3.json["upload_url"]!.stringValue!, contentType: "audio/wav") == 200)
            r = try await stack.complete("alice", conversation: conversation, mediaID: id3, hash: mediaSHA256(fake), size: fake.count)
            #expect(r.status == 415 && code(r) == "unsupported_media_type")
            #expect(try await !stack.objectExists(conversation: conversation, mediaID: id3))

            // Only the uploader completes.
            let t4 = try await token("d.wav", "audio/wav", voice.count)
            let id4 = try #require(t4.json["media_id"]?.stringValue)
            r = try await stack.complete("bob", conversation: conversation, mediaID: id4, hash: mediaSHA256(voice), size: voice.count)
            #expect(r.status == 403 && code(r) == "forbidden")

            // Another conversation's media id: not found there, even for a member of both.
            let (id5, done5) = try await stack.upload(voice, as: "alice", conversation: conversation, filename: "e.wav", type: "audio/wav")
            #expect(done5.status == 200)
            for path in ["/api/aiim/media/\(id5)/download?conversation_id=\(other)",
                         "/api/aiim/media/\(id5)/metadata?conversation_id=\(other)"] {
                r = try await stack.call(.get, path, as: "alice")
                #expect(r.status == 404 && code(r) == "not_found", "\(path)")
            }
            r = try await stack.call(.delete, "/api/aiim/media/\(id5)?conversation_id=\(other)", as: "alice")
            #expect(r.status == 404 && code(r) == "not_found")
            r = try await stack.complete("alice", conversation: other, mediaID: id5, hash: mediaSHA256(voice), size: voice.count)
            #expect(r.status == 404 && code(r) == "not_found")
            // A non-member of the conversation is refused before anything is looked up.
            r = try await stack.call(.get, "/api/aiim/media/\(id5)/download?conversation_id=\(conversation)", as: "mallory")
            #expect(r.status == 403 && code(r) == "forbidden")
            // Another tenant with the same user name and conversation id sees nothing.
            let foreign = try await stack.gateway.auth.mint(user: "alice", tenant: uniqueName("tenant"), ttl: .seconds(60))
            let status = try await stack.client.execute(
                uri: "/api/aiim/media/\(id5)/download?conversation_id=\(conversation)", method: .get,
                headers: [.authorization: "Bearer \(foreign)"]) { Int($0.status.code) }
            #expect(status == 403)
            // Missing or malformed identifiers.
            r = try await stack.call(.get, "/api/aiim/media/\(id5)/download", as: "alice")
            #expect(r.status == 400 && code(r) == "validation_failed")
            r = try await stack.call(.get, "/api/aiim/media/not-a-media/download?conversation_id=\(conversation)", as: "alice")
            #expect(r.status == 400 && code(r) == "validation_failed")
            r = try await stack.call(.get, "/api/aiim/media/media_\(String(repeating: "a", count: 32))/metadata?conversation_id=\(conversation)", as: "alice")
            #expect(r.status == 404 && code(r) == "not_found")
        }
    }

    @Test("delete: only the uploader or an owner; 404 when it does not exist; the object goes with it")
    func deletePermissions() async throws {
        try await MediaStack.run { stack in
            let conversation = try await stack.conversation(owner: "alice", members: ["bob", "carol"])
            let voice = MediaSamples.wav(milliseconds: 300)
            let (byBob, _) = try await stack.upload(voice, as: "bob", conversation: conversation, filename: "b.wav", type: "audio/wav")
            let (byCarol, _) = try await stack.upload(voice, as: "carol", conversation: conversation, filename: "c.wav", type: "audio/wav")
            func delete(_ id: String, as user: String) async throws -> (status: Int, json: JSONValue) {
                try await stack.call(.delete, "/api/aiim/media/\(id)?conversation_id=\(conversation)", as: user)
            }
            var r = try await delete(byBob, as: "carol")
            #expect(r.status == 403 && r.json["error"]?["code"]?.stringValue == "forbidden")
            #expect(try await stack.objectExists(conversation: conversation, mediaID: byBob))
            let bobKey = try #require(await stack.objectKey(byBob))
            r = try await delete(byBob, as: "bob")
            #expect(r.status == 200)
            #expect(r.json["status"]?.stringValue == "deleted" && r.json["media_id"]?.stringValue == byBob)
            #expect(try await !stack.objectExists(conversation: conversation, mediaID: byBob))
            #expect(try await stack.primary.storage.headObject(bobKey) == nil, "the served object is gone")
            r = try await delete(byBob, as: "bob")
            #expect(r.status == 404 && r.json["error"]?["code"]?.stringValue == "not_found")
            r = try await stack.call(.get, "/api/aiim/media/\(byBob)/download?conversation_id=\(conversation)", as: "bob")
            #expect(r.status == 404)
            r = try await delete(byCarol, as: "alice")  // the owner
            #expect(r.status == 200)
            #expect(try await !stack.objectExists(conversation: conversation, mediaID: byCarol))

            // Cancelling a pending upload: a late PUT through the still-valid URL is swept later.
            let token = try await stack.uploadToken("bob", conversation: conversation, filename: "p.wav", type: "audio/wav",
                                                    size: voice.count)
            let pending = try #require(token.json["media_id"]?.stringValue)
            r = try await delete(pending, as: "bob")
            #expect(r.status == 200)
            r = try await stack.complete("bob", conversation: conversation, mediaID: pending, hash: mediaSHA256(voice), size: voice.count)
            #expect(r.status == 404)
        }
    }

    @Test("a PUT to the upload URL after verification never changes what is served")
    func verifiedContentIsPinned() async throws {
        try await MediaStack.run { stack in
            let conversation = try await stack.conversation(owner: "alice", members: ["bob"])
            let voice = MediaSamples.wav(milliseconds: 300)
            let token = try await stack.uploadToken("alice", conversation: conversation, filename: "v.wav", type: "audio/wav",
                                                    size: voice.count)
            let mediaID = try #require(token.json["media_id"]?.stringValue)
            let uploadURL = try #require(token.json["upload_url"]?.stringValue)
            let original = try MediaTempFile(voice)
            defer { original.remove() }
            #expect(try await SystemCurlClient.put(file: original.url, to: uploadURL, contentType: "audio/wav") == 200)
            let done = try await stack.complete("alice", conversation: conversation, mediaID: mediaID, hash: mediaSHA256(voice),
                                                size: voice.count)
            #expect(done.status == 200, "\(done.json.jsonString())")

            // Same length, same type, other bytes, through the URL that is still valid.
            var other = voice
            for i in 100..<other.count { other[i] = 0x55 }
            let replacement = try MediaTempFile(other)
            defer { replacement.remove() }
            #expect(try await SystemCurlClient.put(file: replacement.url, to: uploadURL, contentType: "audio/wav") == 200)

            let link = try await stack.call(.get, "/api/aiim/media/\(mediaID)/download?conversation_id=\(conversation)", as: "bob")
            #expect(link.status == 200)
            let fetched = try await SystemCurlClient.get(try #require(link.json["download_url"]?.stringValue))
            #expect(fetched.status == 200)
            #expect(fetched.body == voice, "the verified bytes are served, not the later upload")
            let meta = try await stack.call(.get, "/api/aiim/media/\(mediaID)/metadata?conversation_id=\(conversation)", as: "bob")
            #expect(meta.json["metadata"]?["sha256"]?.stringValue == mediaSHA256(voice))
        }
    }

    @Test("a PUT through the still-valid URL after a delete is swept: no orphan object")
    func reuploadAfterDeleteIsSwept() async throws {
        try await MediaStack.run(["MEDIA_URL_EXPIRE_SECONDS": "3", "MEDIA_UPLOAD_GRACE_SECONDS": "0",
                                  "MEDIA_CLEANUP_INTERVAL_SECONDS": "3600"]) { stack in
            let conversation = try await stack.conversation(owner: "alice", members: [])
            let voice = MediaSamples.wav(milliseconds: 100)
            let token = try await stack.uploadToken("alice", conversation: conversation, filename: "r.wav", type: "audio/wav",
                                                    size: voice.count)
            let mediaID = try #require(token.json["media_id"]?.stringValue)
            let uploadURL = try #require(token.json["upload_url"]?.stringValue)
            let file = try MediaTempFile(voice)
            defer { file.remove() }
            #expect(try await SystemCurlClient.put(file: file.url, to: uploadURL, contentType: "audio/wav") == 200)
            let done = try await stack.complete("alice", conversation: conversation, mediaID: mediaID, hash: mediaSHA256(voice),
                                                size: voice.count)
            #expect(done.status == 200, "\(done.json.jsonString())")
            let served = try #require(await stack.objectKey(mediaID))
            let deleted = try await stack.call(.delete, "/api/aiim/media/\(mediaID)?conversation_id=\(conversation)", as: "alice")
            #expect(deleted.status == 200)

            // The URL is still valid: the same bytes land at the upload key again.
            let uploadKey = "conversations/\(conversation)/media/\(mediaID)"
            #expect(try await SystemCurlClient.put(file: file.url, to: uploadURL, contentType: "audio/wav") == 200)
            #expect(try await stack.primary.storage.headObject(uploadKey) != nil)
            try await Task.sleep(for: .seconds(4))  // past the URL's expiry (grace 0)
            _ = try await stack.primary.sweepExpiredUploads()
            #expect(try await stack.primary.storage.headObject(uploadKey) == nil, "the late upload was swept")
            #expect(try await stack.primary.storage.headObject(served) == nil)
            let left = try await stack.db.query("SELECT media_id FROM media WHERE conversation_id = $1", [conversation])
            #expect(left.rows.isEmpty, "no row is left behind either")
        }
    }

    @Test("expired tokens are refused; uploads never completed are swept with their object, once, by several replicas")
    func expiryAndSweep() async throws {
        try await MediaStack.run(["MEDIA_URL_EXPIRE_SECONDS": "2", "MEDIA_UPLOAD_GRACE_SECONDS": "0",
                                  "MEDIA_CLEANUP_INTERVAL_SECONDS": "3600", "MEDIA_CLEANUP_BATCH": "2"], replicas: 2) { stack in
            let conversation = try await stack.conversation(owner: "alice", members: [])
            let voice = MediaSamples.wav(milliseconds: 100)
            let file = try MediaTempFile(voice)
            defer { file.remove() }
            var uploaded: [String] = []
            for i in 0..<5 {
                let t = try await stack.uploadToken("alice", conversation: conversation, filename: "\(i).wav", type: "audio/wav",
                                                    size: voice.count)
                let id = try #require(t.json["media_id"]?.stringValue)
                #expect(try await SystemCurlClient.put(file: file.url, to: t.json["upload_url"]!.stringValue!, contentType: "audio/wav") == 200)
                uploaded.append(id)
            }
            let late = try await stack.uploadToken("alice", conversation: conversation, filename: "late.wav", type: "audio/wav",
                                                   size: voice.count)
            try await Task.sleep(for: .seconds(3))

            // The URL expired: storage refuses the PUT; completing refuses the token and deletes the object.
            #expect(try await SystemCurlClient.put(file: file.url, to: late.json["upload_url"]!.stringValue!, contentType: "audio/wav") == 403)
            let r = try await stack.complete("alice", conversation: conversation, mediaID: uploaded[0], hash: mediaSHA256(voice),
                                             size: voice.count)
            #expect(r.status == 409 && r.json["error"]?["code"]?.stringValue == "invalid_state", "\(r.json.jsonString())")
            #expect(try await !stack.objectExists(conversation: conversation, mediaID: uploaded[0]))

            // Both replicas sweep at once: every row and object goes, each exactly once.
            async let a = stack.media[0].sweepExpiredUploads()
            async let b = stack.media[1].sweepExpiredUploads()
            let removed = try await a + b
            #expect(removed >= 6)
            for id in uploaded {
                #expect(try await stack.objectKey(id) == nil, "row of \(id) swept")
                #expect(try await !stack.objectExists(conversation: conversation, mediaID: id), "object of \(id) swept")
            }
            #expect(try await stack.objectKey(late.json["media_id"]!.stringValue!) == nil)
        }
    }

    @Test("storage down: the service starts, /ready says why, media calls answer storage_unavailable, messaging still works")
    func storageDown() async throws {
        let deadPort = freePort()
        let httpPort = freePort()
        try await MediaStack.run(["MINIO_ENDPOINT": "127.0.0.1:\(deadPort)", "HTTP_PORT": String(httpPort)],
                                 messaging: true, waitForStorage: false) { stack in
            let conversation = try await stack.conversation(owner: "alice", members: [])
            let down = try await eventually(timeout: .seconds(10)) { stack.primary.health.current == .down }
            #expect(down)
            let ready = try await SystemCurlClient.get("http://127.0.0.1:\(httpPort)/ready")
            #expect(ready.status == 503)
            let body = try JSONDecoder().decode(JSONValue.self, from: Data(ready.body))
            #expect(body["reasons"]?["storage"]?.stringValue?.isEmpty == false, "\(String(decoding: ready.body, as: UTF8.self))")
            #expect(body["reasons"]?["database"] == nil)

            let start = ContinuousClock.now
            let r = try await stack.uploadToken("alice", conversation: conversation, filename: "a.wav", type: "audio/wav", size: 100)
            #expect(r.status == 503 && r.json["error"]?["code"]?.stringValue == "storage_unavailable")
            #expect(ContinuousClock.now - start < .seconds(3), "fails fast")
            #expect(try await stack.db.query("SELECT 1 FROM media WHERE conversation_id = $1", [conversation]).rows.isEmpty)

            // The rest of AIIM keeps working: a text message goes through.
            let sent = try await stack.call(.post, "/api/aiim/messages", as: "alice", body: .object([
                "conversation_id": .string(conversation), "type": .string("text"), "content": .string("storage is down"),
            ]))
            #expect(sent.status == 200, "\(sent.json.jsonString())")
        }
    }

    @Test("measurements: upload_complete of 5 MB and 50 MB (throughput, peak RSS growth) and presign latency")
    func measurements() async throws {
        try await MediaStack.run { stack in
            let conversation = try await stack.conversation(owner: "alice", members: [])
            var growth: [Int: Int] = [:]
            for megabytes in [5, 50] {
                let size = megabytes * 1_048_576
                let (file, hash) = try MediaSamples.largeWAV(bytes: size)
                defer { file.remove() }
                let token = try await stack.uploadToken("alice", conversation: conversation, filename: "big.wav", type: "audio/wav",
                                                        size: size)
                try #require(token.status == 200, "\(token.json.jsonString())")
                let mediaID = try #require(token.json["media_id"]?.stringValue)
                #expect(try await SystemCurlClient.put(file: file.url, to: token.json["upload_url"]!.stringValue!, contentType: "audio/wav") == 200)
                PeakRSS.resetPeak()
                let before = PeakRSS.peakBytes()
                let start = ContinuousClock.now
                let done = try await stack.complete("alice", conversation: conversation, mediaID: mediaID, hash: hash, size: size)
                let elapsed = ContinuousClock.now - start
                let grew = PeakRSS.peakBytes() - before
                growth[megabytes] = grew
                #expect(done.status == 200, "\(done.json.jsonString())")
                #expect(done.json["duration_ms"]?.intValue == (size - 44) * 1000 / 16_000)
                let seconds = Double(elapsed.components.attoseconds) / 1e18 + Double(elapsed.components.seconds)
                print("[media] upload_complete \(megabytes) MB: \(String(format: "%.2f", seconds)) s, "
                      + "\(String(format: "%.1f", Double(megabytes) / seconds)) MB/s, peak RSS growth \(grew / 1024) KiB")
                _ = try await stack.call(.delete, "/api/aiim/media/\(mediaID)?conversation_id=\(conversation)", as: "alice")
            }
            // Holding the object would raise the peak by its size; streaming keeps it flat.
            #expect((growth[50] ?? .max) < 24 << 20, "peak RSS grew by \(growth[50] ?? -1) bytes for 50 MB")

            // Presign latency: the signature alone, and upload_token end to end (router → bus → media → PostgreSQL).
            let presigner = stack.primary.storage.presigner
            let rounds = 2000
            let t0 = ContinuousClock.now
            for i in 0..<rounds {
                _ = try presigner.presignedURL(method: .put, key: "conversations/c/media/m\(i)", expires: .seconds(3600),
                                               signedHeaders: ["content-type": "audio/wav", "content-length": "1000"])
            }
            let perPresign = (ContinuousClock.now - t0) / rounds
            var latencies: [Duration] = []
            for _ in 0..<200 {
                let s = ContinuousClock.now
                let r = try await stack.uploadToken("alice", conversation: conversation, filename: "x.wav", type: "audio/wav", size: 1000)
                latencies.append(ContinuousClock.now - s)
                #expect(r.status == 200)
            }
            latencies.sort()
            print("[media] presign (SigV4 only): \(perPresign) per URL; upload_token end to end over \(latencies.count) calls: "
                  + "p50 \(latencies[latencies.count / 2]), p99 \(latencies[latencies.count * 99 / 100]), max \(latencies.last!)")
        }
    }
}

// MARK: Format parsing, sniffing and validation (no servers)

@Suite("Media formats, sniffing and input rules")
struct MediaFormatTests {
    /// Runs bytes through the upload inspector in chunks of `chunk` bytes.
    static func inspect(_ bytes: [UInt8], chunk: Int = 4096) throws -> UploadInspection {
        var inspector = UploadInspector(limit: Int64(bytes.count))
        var i = 0
        while i < bytes.count {
            let end = min(i + chunk, bytes.count)
            try bytes[i..<end].withUnsafeBytes { try inspector.consume($0) }
            i = end
        }
        return inspector.finish()
    }

    static let samples: [(name: String, bytes: [UInt8], format: SniffedFormat, durationMs: Int?)] = [
        ("wav", MediaSamples.wav(milliseconds: 1500), .wav, 1500),
        ("wav with LIST chunk, streamed size 0", MediaSamples.wav(milliseconds: 750, listChunk: true, dataSizeZero: true), .wav, 750),
        ("mp3 CBR", MediaSamples.mp3(frames: 100), .mp3, 2612),
        ("mp3 with ID3 tag and trailing ID3v1", MediaSamples.mp3(frames: 100, id3: true, trailer: true), .mp3, 2612),
        ("mp3 with Xing frame count", MediaSamples.mp3(frames: 3, xingFrames: 100), .mp3, 2612),
        ("adts aac", MediaSamples.adts(frames: 100), .aac, 2321),
        ("ogg opus", MediaSamples.oggOpus(seconds: 2), .ogg, 2000),
        ("m4a", MediaSamples.m4a(milliseconds: 3000), .mp4, 3000),
        ("webm (MediaRecorder, no Duration)", MediaSamples.webm(blocks: 50, stepMs: 20), .webm, 1000),
        ("webm with Duration", MediaSamples.webm(blocks: 5, stepMs: 20, declaredMs: 1234), .webm, 1234),
        ("flac", MediaSamples.flac(seconds: 2), .flac, 2000),
        ("png", [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A] + [UInt8](repeating: 0, count: 100), .png, nil),
        ("jpeg", [0xFF, 0xD8, 0xFF, 0xE0] + [UInt8](repeating: 0, count: 100), .jpeg, nil),
    ]

    @Test("each format is sniffed and its duration read, whatever the chunking", arguments: [1, 7, 4096])
    func formats(chunk: Int) throws {
        for sample in Self.samples {
            let result = try Self.inspect(sample.bytes, chunk: chunk)
            #expect(result.format == sample.format, "\(sample.name)")
            #expect(result.durationMs == sample.durationMs, "\(sample.name) with \(chunk)-byte chunks")
            #expect(result.size == Int64(sample.bytes.count))
            #expect(result.sha256 == mediaSHA256(sample.bytes))
        }
    }

    @Test("text and truncated files have no format or duration; the inspector stops past its limit")
    func garbage() throws {
        let text = Array("hello, this is not audio at all, just some text that goes on".utf8)
        let r = try Self.inspect(text)
        #expect(r.format == nil && r.durationMs == nil)
        let truncated = Array(MediaSamples.wav(milliseconds: 1000).prefix(30))
        #expect(try Self.inspect(truncated).durationMs == nil)
        var inspector = UploadInspector(limit: 10)
        #expect(throws: UploadTooLarge.self) {
            try [UInt8](repeating: 0, count: 11).withUnsafeBytes { try inspector.consume($0) }
        }
    }

    @Test("declared type, extension and content must agree")
    func typeRules() {
        #expect(MediaTypes.canonical("Audio/X-WAV") == "audio/wav")
        #expect(MediaTypes.canonical("audio/webm;codecs=opus") == "audio/webm")
        #expect(MediaTypes.extensionFits("a.wav", canonicalType: "audio/wav"))
        #expect(MediaTypes.extensionFits("a.WEBM", canonicalType: "audio/webm"))
        #expect(MediaTypes.extensionFits("recording", canonicalType: "audio/ogg"))
        #expect(!MediaTypes.extensionFits("a.wav", canonicalType: "audio/mpeg"))
        #expect(!MediaTypes.extensionFits("a.png", canonicalType: "audio/mpeg"))
        #expect(!MediaTypes.extensionFits("a.exe", canonicalType: "audio/mpeg"))
        #expect(MediaTypes.extensionFits("a.caf", canonicalType: "audio/x-caf"))
        #expect(!MediaTypes.extensionFits("a.wav", canonicalType: "audio/x-caf"))
        #expect(MediaTypes.extensionFits("a.exe", canonicalType: "application/octet-stream"))
        #expect(MediaTypes.contentFits(.wav, canonicalType: "audio/wav"))
        #expect(MediaTypes.contentFits(.mp4, canonicalType: "audio/aac"))
        #expect(!MediaTypes.contentFits(.png, canonicalType: "audio/wav"))
        #expect(!MediaTypes.contentFits(nil, canonicalType: "audio/mpeg"))
        #expect(MediaTypes.contentFits(nil, canonicalType: "text/plain"))
    }

    @Test("filenames with path tricks are refused; ordinary ones pass unchanged")
    func filenames() throws {
        for bad in ["", "../../etc/passwd", "a/b.wav", "..\\x.wav", "..", ".", "x\u{0}.wav", "x\n.wav", "evil\u{202E}vaw.exe",
                    "C:x.wav", "a.wav ", " a.wav", "...", String(repeating: "a", count: 256)] {
            #expect(throws: AIIMError.self, "\(bad.debugDescription)") { try MediaValidation.filename(bad) }
        }
        for good in ["voice note.wav", "语音消息.webm", "a..b.mp3", "recording", "it's (1).m4a"] {
            #expect(try MediaValidation.filename(good) == good)
        }
        #expect(throws: AIIMError.self) { try MediaValidation.conversationID("../x") }
        #expect(throws: AIIMError.self) { try MediaValidation.contentType("audio/wav\r\nX-Injected: 1") }
        #expect(throws: AIIMError.self) { try MediaValidation.contentType("audio") }
        #expect(try MediaValidation.contentType(" audio/webm;codecs=opus ") == "audio/webm;codecs=opus")
        #expect(try MediaValidation.fileHash(String(repeating: "AB", count: 32)) == String(repeating: "ab", count: 32))
        #expect(throws: AIIMError.self) { try MediaValidation.mediaID("media_XYZ") }
        #expect(MediaIDs.make().count == 38)
    }

    @Test("Content-Disposition carries the exact UTF-8 name and a safe ASCII fallback")
    func contentDisposition() {
        #expect(MediaService.contentDisposition("voice \"1\" ü.wav")
            == "attachment; filename=\"voice _1_ _.wav\"; filename*=UTF-8''voice%20%221%22%20%C3%BC.wav")
    }
}

// MARK: Test data and helpers

func mediaSHA256(_ bytes: [UInt8]) -> String {
    SHA256.hash(data: bytes).map { String(format: "%02x", $0) }.joined()
}

/// A file in the temporary directory, removed by `remove()`.
struct MediaTempFile: Sendable {
    let url: URL
    init(_ bytes: [UInt8]) throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("aiim-media-\(UUID().uuidString)")
        try Data(bytes).write(to: url)
    }
    init(url: URL) { self.url = url }
    func remove() { try? FileManager.default.removeItem(at: url) }
}

/// The system's curl: an S3 client nobody here wrote.
enum SystemCurlClient {
    /// `curl --upload-file`; returns the HTTP status.
    static func put(file: URL, to url: String, contentType: String) async throws -> Int {
        try await run(["--upload-file", file.path, "-H", "Content-Type: \(contentType)", "-o", "/dev/null", url]).status
    }

    /// A GET; returns status, lower-cased headers and body.
    static func get(_ url: String) async throws -> (status: Int, headers: [String: String], body: [UInt8]) {
        let body = MediaTempFile(url: FileManager.default.temporaryDirectory.appendingPathComponent("aiim-get-\(UUID().uuidString)"))
        let headers = MediaTempFile(url: FileManager.default.temporaryDirectory.appendingPathComponent("aiim-hdr-\(UUID().uuidString)"))
        defer { body.remove(); headers.remove() }
        let status = try await run(["-o", body.url.path, "-D", headers.url.path, url]).status
        var fields: [String: String] = [:]
        let text = (try? String(contentsOf: headers.url, encoding: .utf8)) ?? ""
        for line in text.split(whereSeparator: { $0 == "\r\n" || $0 == "\n" }) {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        return (status, fields, Array((try? Data(contentsOf: body.url)) ?? Data()))
    }

    /// Runs curl without blocking a cooperative thread; returns the `%{http_code}` it printed.
    static func run(_ arguments: [String]) async throws -> (status: Int, output: String) {
        let out = MediaTempFile(url: FileManager.default.temporaryDirectory.appendingPathComponent("aiim-curl-\(UUID().uuidString)"))
        defer { out.remove() }
        _ = FileManager.default.createFile(atPath: out.url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: out.url)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        process.arguments = ["--silent", "--show-error", "--max-time", "120", "--write-out", "%{http_code}"] + arguments
        process.standardOutput = handle
        try await withCheckedThrowingContinuation { (done: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in done.resume() }
            do { try process.run() } catch { done.resume(throwing: error) }
        }
        try handle.close()
        let output = (try? String(contentsOf: out.url, encoding: .utf8)) ?? ""
        return (Int(output.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1, output)
    }
}

/// Peak resident set size of this process (`VmHWM`).
enum PeakRSS {
    /// Lowers the peak to the current size (Linux `clear_refs` 5), so a later peak measures only what followed.
    static func resetPeak() {
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

    static func peakBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return (line.split(separator: " ").compactMap { Int($0) }.first ?? 0) * 1024
    }
}

/// Small, valid media files built in memory.
enum MediaSamples {
    static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF)] }
    static func le32(_ v: Int) -> [UInt8] { le16(v & 0xFFFF) + le16(v >> 16 & 0xFFFF) }
    static func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }

    /// 8 kHz mono 16-bit PCM: a 440 Hz tone.
    static func wavHeader(dataBytes: Int, sampleRate: Int = 8000, listChunk: Bool = false, dataSizeZero: Bool = false) -> [UInt8] {
        let list: [UInt8] = listChunk ? Array("LIST".utf8) + le32(10) + Array("INFOISFT\u{0}\u{0}".utf8) : []
        return Array("RIFF".utf8) + le32(36 + list.count + dataBytes) + Array("WAVE".utf8)
            + Array("fmt ".utf8) + le32(16) + le16(1) + le16(1) + le32(sampleRate) + le32(sampleRate * 2) + le16(2) + le16(16)
            + list + Array("data".utf8) + le32(dataSizeZero ? 0 : dataBytes)
    }

    static func wav(milliseconds: Int, listChunk: Bool = false, dataSizeZero: Bool = false) -> [UInt8] {
        let count = 8000 * milliseconds / 1000
        var pcm: [UInt8] = []
        pcm.reserveCapacity(count * 2)
        for i in 0..<count {
            let v = Int(sin(Double(i) * 2 * .pi * 440 / 8000) * 12_000)
            pcm += le16(v & 0xFFFF)
        }
        return wavHeader(dataBytes: pcm.count, listChunk: listChunk, dataSizeZero: dataSizeZero) + pcm
    }

    /// A WAV of exactly `bytes` bytes (16 kB/s), written to disk in 1 MiB blocks; returns it and its SHA-256.
    static func largeWAV(bytes: Int) throws -> (MediaTempFile, String) {
        let file = MediaTempFile(url: FileManager.default.temporaryDirectory.appendingPathComponent("aiim-big-\(UUID().uuidString).wav"))
        _ = FileManager.default.createFile(atPath: file.url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: file.url)
        var hasher = SHA256()
        let header = wavHeader(dataBytes: bytes - 44)
        try handle.write(contentsOf: header)
        hasher.update(data: header)
        var block = [UInt8](repeating: 0, count: 1 << 20)
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<block.count {
            seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17
            block[i] = UInt8(truncatingIfNeeded: seed)
        }
        var written = header.count
        var round: UInt8 = 0
        while written < bytes {
            let n = min(block.count, bytes - written)
            block[0] = round  // no two blocks alike
            round &+= 1
            try handle.write(contentsOf: block[0..<n])
            hasher.update(data: block[0..<n])
            written += n
        }
        try handle.close()
        return (file, hasher.finalize().map { String(format: "%02x", $0) }.joined())
    }

    /// MPEG-1 Layer III, 128 kb/s, 44.1 kHz: 417-byte frames of 1152 samples.
    static func mp3(frames: Int, id3: Bool = false, trailer: Bool = false, xingFrames: Int? = nil) -> [UInt8] {
        let header: [UInt8] = [0xFF, 0xFB, 0x90, 0x64]
        var frame = header + [UInt8](repeating: 0, count: 413)
        var out: [UInt8] = id3 ? Array("ID3".utf8) + [4, 0, 0, 0, 0, 0, 100] + [UInt8](repeating: 0, count: 100) : []
        if let xingFrames {
            var xing = frame
            let offset = 4 + 32
            xing.replaceSubrange(offset..<(offset + 12), with: Array("Xing".utf8) + be32(1) + be32(xingFrames))
            out += xing
        }
        for i in 0..<frames {
            frame[4] = UInt8(i & 0xFF)
            out += frame
        }
        if trailer { out += Array("TAG".utf8) + [UInt8](repeating: 0x20, count: 125) }
        return out
    }

    /// ADTS AAC-LC, 44.1 kHz stereo: 200-byte frames of 1024 samples.
    static func adts(frames: Int) -> [UInt8] {
        let length = 200
        let header: [UInt8] = [0xFF, 0xF1, 0x50, 0x80 | UInt8(length >> 11 & 3), UInt8(length >> 3 & 0xFF),
                               UInt8((length & 7) << 5 | 0x1F), 0xFC]
        return (0..<frames).flatMap { _ in header + [UInt8](repeating: 0x11, count: length - 7) }
    }

    static func oggPage(type: UInt8, granule: UInt64, sequence: Int, body: [UInt8]) -> [UInt8] {
        var lacing: [UInt8] = Array(repeating: 255, count: body.count / 255)
        lacing.append(UInt8(body.count % 255))
        var page = Array("OggS".utf8) + [0, type]
        page += (0..<8).map { UInt8(granule >> (8 * UInt64($0)) & 0xFF) }
        page += le32(0x1234) + le32(sequence) + le32(0) + [UInt8(lacing.count)] + lacing
        return page + body
    }

    /// Opus in Ogg with a 312-sample pre-skip.
    static func oggOpus(seconds: Int) -> [UInt8] {
        let head = Array("OpusHead".utf8) + [1, 1] + le16(312) + le32(48_000) + le16(0) + [0]
        let tags = Array("OpusTags".utf8) + le32(0) + le32(0)
        var out = oggPage(type: 2, granule: 0, sequence: 0, body: head) + oggPage(type: 0, granule: 0, sequence: 1, body: tags)
        for i in 1...4 {
            let granule = UInt64(312 + 48_000 * seconds * i / 4)
            out += oggPage(type: i == 4 ? 4 : 0, granule: granule, sequence: i + 1, body: [UInt8](repeating: 0xAB, count: 300))
        }
        return out
    }

    /// ftyp, mdat, then moov/mvhd (as recorders that write the index last do).
    static func m4a(milliseconds: Int) -> [UInt8] {
        let ftyp = be32(20) + Array("ftypM4A ".utf8) + be32(0) + Array("M4A ".utf8)
        let mdat = be32(8 + 1000) + Array("mdat".utf8) + [UInt8](repeating: 0x55, count: 1000)
        var mvhd = [UInt8](repeating: 0, count: 100)
        mvhd.replaceSubrange(12..<20, with: be32(44_100) + be32(44_100 * milliseconds / 1000))
        let mvhdBox = be32(8 + mvhd.count) + Array("mvhd".utf8) + mvhd
        let moov = be32(8 + mvhdBox.count) + Array("moov".utf8) + mvhdBox
        return ftyp + mdat + moov
    }

    static func ebml(_ id: [UInt8], _ payload: [UInt8]) -> [UInt8] {
        id + [0x01] + (0..<7).map { UInt8(payload.count >> (8 * (6 - $0)) & 0xFF) } + payload
    }

    /// WebM as MediaRecorder writes it: unknown-size Segment and Clusters, SimpleBlocks every
    /// `stepMs`, no Duration unless `declaredMs`.
    static func webm(blocks: Int, stepMs: Int, declaredMs: Int? = nil) -> [UInt8] {
        let unknown: [UInt8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]
        let header = ebml([0x1A, 0x45, 0xDF, 0xA3], [0x42, 0x82, 0x84] + Array("webm".utf8))
        var info: [UInt8] = [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]
        if let declaredMs {
            let bits = Double(declaredMs).bitPattern
            info += [0x44, 0x89, 0x88] + (0..<8).map { UInt8(bits >> (8 * (7 - UInt64($0))) & 0xFF) }
        }
        var out = header + [0x18, 0x53, 0x80, 0x67] + unknown + ebml([0x15, 0x49, 0xA9, 0x66], info)
        let perCluster = max(1, blocks / 2)
        var i = 0
        while i < blocks {
            let clusterTime = i * stepMs
            out += [0x1F, 0x43, 0xB6, 0x75] + unknown + [0xE7, 0x82] + [UInt8(clusterTime >> 8), UInt8(clusterTime & 0xFF)]
            for j in 0..<min(perCluster, blocks - i) {
                let relative = j * stepMs
                let block: [UInt8] = [0x81, UInt8(relative >> 8), UInt8(relative & 0xFF), 0x80] + [UInt8](repeating: 0xFC, count: 40)
                out += [0xA3, 0x80 | UInt8(block.count)] + block
            }
            i += perCluster
        }
        return out
    }

    /// `fLaC` + STREAMINFO (44.1 kHz stereo 16-bit).
    static func flac(seconds: Int) -> [UInt8] {
        let total = 44_100 * seconds
        var info = [UInt8](repeating: 0, count: 34)
        info[10] = 0x0A; info[11] = 0xC4; info[12] = 0x42; info[13] = 0xF0 | UInt8(total >> 32 & 0x0F)
        info.replaceSubrange(14..<18, with: be32(total & 0xFFFF_FFFF))
        return Array("fLaC".utf8) + [0x80, 0x00, 0x00, 0x22] + info + [UInt8](repeating: 0, count: 100)
    }
}
