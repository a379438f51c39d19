import AIIMJSON
import AIIMProtocol
import AIIMServiceKit
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// The browser client (`Web/`, shipped as this library's SwiftPM resources): `GET /` answers
/// `index.html` to browsers (JSON service info to everyone else), `GET /web/<file>` its modules
/// and style sheet. The files are read once at start-up; only those names are served, so no
/// path a client sends ever reaches the file system.
struct WebClient: Sendable {
    struct Asset: Sendable {
        var body: ByteBuffer
        var contentType: String
        var etag: String
    }

    let assets: [String: Asset]

    /// The files of `Web/` (none when the bundle is missing: `/` then answers JSON only).
    init(directory: URL? = WebClient.bundledDirectory()) {
        var assets: [String: Asset] = [:]
        let names = directory.flatMap { try? FileManager.default.contentsOfDirectory(atPath: $0.path) } ?? []
        for name in names {
            guard let type = Self.contentTypes[(name as NSString).pathExtension],
                  let directory, let data = FileManager.default.contents(atPath: directory.appendingPathComponent(name).path)
            else { continue }
            let digest = SHA256.hash(data: data).prefix(12).map { String(format: "%02x", $0) }.joined()
            assets[name] = Asset(body: ByteBuffer(bytes: data), contentType: type, etag: "\"\(digest)\"")
        }
        self.assets = assets
    }

    /// `Web/` inside `aiim_GatewayCore.resources` next to the executable, where the build, the
    /// Dockerfile and the install scripts put it. Looked up by hand rather than through
    /// `Bundle.module`, which stops the process when the bundle is missing: a gateway copied
    /// without it still serves the API.
    static func bundledDirectory() -> URL? {
        let bases = [Bundle.main.bundleURL, Bundle.main.executableURL?.deletingLastPathComponent()].compactMap { $0 }
        for base in bases {
            let web = base.appendingPathComponent("aiim_GatewayCore.resources").appendingPathComponent("Web")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: web.path, isDirectory: &isDirectory), isDirectory.boolValue { return web }
        }
        return nil
    }

    static let contentTypes = [
        "html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8",
        "css": "text/css; charset=utf-8", "svg": "image/svg+xml", "ico": "image/x-icon",
    ]

    /// Scripts and styles from this origin only; the API and the WebSocket on this origin;
    /// uploads, downloads and voice playback on the presigned storage URLs (another origin).
    static let contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        + "media-src 'self' blob: http: https:; connect-src 'self' ws: wss: http: https:; "
        + "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

    /// Whether a request for `/` comes from a browser navigating to it.
    static func wantsHTML(_ request: Request) -> Bool {
        request.headers[.accept]?.contains("text/html") == true
    }

    /// The file, or 404 `not_found`. `no-cache` with an `ETag`: the browser revalidates every
    /// load (names are not fingerprinted) and gets 304 while the file is unchanged.
    func response(_ name: String, request: Request) throws -> Response {
        guard let asset = assets[name] else { throw AIIMError(.notFound, "no such file") }
        var headers: HTTPFields = [.contentType: asset.contentType, .cacheControl: "no-cache", .eTag: asset.etag]
        if asset.contentType.hasPrefix("text/html") {
            headers[HTTPField.Name("Content-Security-Policy")!] = Self.contentSecurityPolicy
        }
        if request.headers[.ifNoneMatch] == asset.etag {
            return Response(status: .notModified, headers: headers)
        }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: asset.body))
    }

    func add(to router: Router<AIIMRequestContext>) {
        router.get("/web/:file") { request, context in
            try response(context.parameters.require("file"), request: request)
        }
        router.head("/web/:file") { request, context in
            var head = try response(context.parameters.require("file"), request: request)
            head.body = .init()
            return head
        }
    }
}

/// `POST /api/aiim/dev/login {user}` → a user token of the default tenant, without a password.
/// Registered only with `DEV_LOGIN=true` (off by default; the production templates set false):
/// otherwise the route does not exist (404).
struct DevLogin: Sendable {
    let auth: Authenticator
    let tenant: String

    struct Body: Decodable { var user: String }

    /// Letters, digits and `._-`, 1–64 characters: what a person types as a name.
    static func isValidUser(_ user: String) -> Bool {
        (1...64).contains(user.utf8.count)
            && user.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7a) || $0 == 0x2e || $0 == 0x5f || $0 == 0x2d }
    }

    func add(to group: RouterGroup<AIIMRequestContext>) {
        group.post("dev/login") { request, context in
            let body = try await request.decode(as: Body.self, context: context)
            guard Self.isValidUser(body.user) else {
                throw AIIMError.validation("user must be 1-64 letters, digits, '.', '_' or '-'")
            }
            let ttl = 86_400
            let token = try await auth.mint(user: body.user, tenant: tenant, ttl: .seconds(ttl))
            return ObservabilityRoutes.jsonResponse(.ok, .object([
                "token": .string(token), "user_id": .string(body.user), "tenant_id": .string(tenant),
                "expires_in": .number(Double(ttl)),
            ]))
        }
    }
}
