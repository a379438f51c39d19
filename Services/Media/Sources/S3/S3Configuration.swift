/// Where and how to reach one bucket of an S3-compatible store (MinIO, SeaweedFS, Alibaba OSS, AWS).
///
/// `description` never shows `secretKey` or `sessionToken`.
public struct S3Configuration: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// How the bucket appears in URLs.
    public enum AddressingStyle: String, Sendable, Hashable {
        /// `http://host:port/bucket/key`: MinIO and SeaweedFS.
        case path
        /// `https://bucket.host/key`: Alibaba OSS (which refuses path style) and AWS.
        case virtualHosted = "virtual"
    }

    /// Retries with exponential backoff and jitter, for 5xx (and 429 throttling) answers, timeouts
    /// and connection failures; never for other 4xx.
    public struct RetryPolicy: Sendable, Hashable {
        /// Attempts in total, including the first (1 disables retries).
        public var maxAttempts: Int
        /// Upper bound of the wait before the first retry; doubles for each later one.
        public var initialBackoff: Duration
        /// Cap on any single wait.
        public var maxBackoff: Duration

        public init(maxAttempts: Int = 3, initialBackoff: Duration = .milliseconds(100), maxBackoff: Duration = .seconds(2)) {
            self.maxAttempts = max(1, maxAttempts)
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
        }
    }

    /// `MINIO_ENDPOINT`: `host` or `host:port`, without scheme (`localhost:9000`,
    /// `oss-cn-hangzhou.aliyuncs.com`). IPv6 literals go in brackets: `[::1]:9000`.
    public var endpoint: String
    /// `MINIO_SECURE`: `true` for https, `false` for http.
    public var secure: Bool
    /// `MINIO_REGION`: signing region. MinIO and SeaweedFS default to `us-east-1`; OSS uses its
    /// region id (e.g. `cn-hangzhou`).
    public var region: String
    /// `MINIO_ACCESS_KEY`: access key id.
    public var accessKey: String
    /// `MINIO_SECRET_KEY`: secret key. Never logged.
    public var secretKey: String
    /// `MINIO_SESSION_TOKEN` (optional): session token of temporary credentials. Never logged.
    public var sessionToken: String?
    /// `MINIO_BUCKET_NAME`: the bucket every operation of the client works on.
    public var bucket: String
    /// `MINIO_ADDRESSING`: `path` (default) or `virtual`.
    public var addressingStyle: AddressingStyle
    /// Bound on establishing a connection (TCP + TLS), per attempt.
    public var connectTimeout: Duration
    /// Bound on a whole request without a streamed object body (HEAD, DELETE, create bucket), per attempt.
    public var requestTimeout: Duration
    /// Bound on a whole object upload or download, per attempt.
    public var transferTimeout: Duration
    /// A transfer slower than `lowSpeedBytesPerSecond` for `lowSpeedWindow` is aborted as a timeout.
    public var lowSpeedBytesPerSecond: Int
    /// See `lowSpeedBytesPerSecond`.
    public var lowSpeedWindow: Duration
    /// Retries for 5xx answers and connection failures.
    public var retry: RetryPolicy

    public init(
        endpoint: String,
        secure: Bool,
        region: String = "us-east-1",
        accessKey: String,
        secretKey: String,
        bucket: String,
        addressingStyle: AddressingStyle = .path,
        sessionToken: String? = nil,
        connectTimeout: Duration = .seconds(5),
        requestTimeout: Duration = .seconds(30),
        transferTimeout: Duration = .seconds(600),
        lowSpeedBytesPerSecond: Int = 1024,
        lowSpeedWindow: Duration = .seconds(30),
        retry: RetryPolicy = RetryPolicy()
    ) {
        self.endpoint = endpoint
        self.secure = secure
        self.region = region
        self.accessKey = accessKey
        self.secretKey = secretKey
        self.bucket = bucket
        self.addressingStyle = addressingStyle
        self.sessionToken = sessionToken
        self.connectTimeout = connectTimeout
        self.requestTimeout = requestTimeout
        self.transferTimeout = transferTimeout
        self.lowSpeedBytesPerSecond = lowSpeedBytesPerSecond
        self.lowSpeedWindow = lowSpeedWindow
        self.retry = retry
    }

    /// Reads the `MINIO_*` variables documented on each property. `MINIO_ENDPOINT`,
    /// `MINIO_ACCESS_KEY`, `MINIO_SECRET_KEY` and `MINIO_BUCKET_NAME` are required; there is no
    /// default secret.
    /// - Throws: `S3Error` with code `.invalidRequest` naming the missing or malformed variable.
    public init(environment: [String: String]) throws {
        func required(_ name: String) throws -> String {
            guard let value = environment[name], !value.isEmpty else {
                throw S3Error(.invalidRequest, detail: "\(name) is not set")
            }
            return value
        }
        var endpoint = try required("MINIO_ENDPOINT")
        var secure = false
        switch environment["MINIO_SECURE"]?.lowercased() {
        case nil, "", "false", "0", "no": secure = false
        case "true", "1", "yes": secure = true
        case let other?: throw S3Error(.invalidRequest, detail: "MINIO_SECURE must be true or false, not \(other)")
        }
        // Tolerate a scheme in the endpoint; it then decides `secure`.
        if endpoint.hasPrefix("https://") {
            endpoint.removeFirst("https://".count)
            secure = true
        } else if endpoint.hasPrefix("http://") {
            endpoint.removeFirst("http://".count)
            secure = false
        }
        while endpoint.hasSuffix("/") { endpoint.removeLast() }
        let style: AddressingStyle
        switch environment["MINIO_ADDRESSING"]?.lowercased() {
        case nil, "", "path": style = .path
        case "virtual", "virtual-hosted", "virtualhosted": style = .virtualHosted
        case let other?: throw S3Error(.invalidRequest, detail: "MINIO_ADDRESSING must be path or virtual, not \(other)")
        }
        let token = environment["MINIO_SESSION_TOKEN"]
        self.init(
            endpoint: endpoint,
            secure: secure,
            region: environment["MINIO_REGION"].flatMap { $0.isEmpty ? nil : $0 } ?? "us-east-1",
            accessKey: try required("MINIO_ACCESS_KEY"),
            secretKey: try required("MINIO_SECRET_KEY"),
            bucket: try required("MINIO_BUCKET_NAME"),
            addressingStyle: style,
            sessionToken: token?.isEmpty == true ? nil : token
        )
    }

    public var description: String {
        "S3Configuration(endpoint: \(self.endpoint), secure: \(self.secure), region: \(self.region), "
            + "bucket: \(self.bucket), addressingStyle: \(self.addressingStyle.rawValue), "
            + "accessKey: \(self.accessKey), secretKey: <redacted>, "
            + "sessionToken: \(self.sessionToken == nil ? "nil" : "<redacted>"))"
    }

    public var debugDescription: String { self.description }

    /// `dump()` shows the redacted description too.
    public var customMirror: Mirror { Mirror(self, children: ["redacted": self.description]) }
}

extension S3Configuration {
    var credentials: SigV4Credentials {
        SigV4Credentials(accessKeyID: self.accessKey, secretAccessKey: self.secretKey, sessionToken: self.sessionToken)
    }

    var scheme: String { self.secure ? "https" : "http" }

    /// The `Host` value for the endpoint: the port is dropped when it is the scheme's default,
    /// as HTTP clients (curl included) do, so the signed host equals the sent one.
    var endpointHost: String {
        let defaultPort = self.secure ? "443" : "80"
        if let closing = self.endpoint.lastIndex(of: "]") {  // [v6]:port
            let rest = self.endpoint[self.endpoint.index(after: closing)...]
            return rest == ":\(defaultPort)" ? String(self.endpoint[...closing]) : self.endpoint
        }
        if self.endpoint.hasSuffix(":\(defaultPort)") {
            return String(self.endpoint.dropLast(defaultPort.count + 1))
        }
        return self.endpoint
    }

    /// Host and decoded path for the bucket (`key == nil`) or for one object.
    func location(key: String?) -> (host: String, path: String) {
        switch self.addressingStyle {
        case .path:
            if let key { return (self.endpointHost, "/\(self.bucket)/\(key)") }
            return (self.endpointHost, "/\(self.bucket)")
        case .virtualHosted:
            return ("\(self.bucket).\(self.endpointHost)", "/" + (key ?? ""))
        }
    }
}

extension Duration {
    /// Whole milliseconds, for libcurl's `*_MS` options (at least 1 so 0 never means "no limit").
    var curlMilliseconds: Int {
        let (seconds, attoseconds) = self.components
        return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
    }
}
