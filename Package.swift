// swift-tools-version:6.2
// AIIM: instant messaging for people and AI agents. One package, four services.

import PackageDescription

/// One settings list for every Swift target (as hummingbird does).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "aiim",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "aiim-gateway", targets: ["aiim-gateway"]),
        .executable(name: "aiim-messaging", targets: ["aiim-messaging"]),
        .executable(name: "aiim-media", targets: ["aiim-media"]),
        .executable(name: "aiim-calls", targets: ["aiim-calls"]),
        .executable(name: "aiim-bench", targets: ["aiim-bench"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", exact: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", exact: "2.8.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", exact: "5.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", exact: "4.5.2"),
        .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", exact: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio.git", exact: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", exact: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", exact: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", exact: "2.13.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", exact: "0.2.0"),
        .package(url: "https://github.com/swift-otel/swift-w3c-trace-context.git", exact: "1.0.0"),
        .package(url: "https://github.com/apple/swift-http-types.git", exact: "1.8.0"),
    ],
    targets: [
        // MARK: C libraries (system packages, wrapped by the Swift modules below)
        .systemLibrary(
            name: "CHiredis", path: "Shared/CHiredis", pkgConfig: "hiredis",
            providers: [.apt(["libhiredis-dev"])]
        ),
        .systemLibrary(
            name: "CLibpq", path: "Shared/CLibpq", pkgConfig: "libpq",
            providers: [.apt(["libpq-dev"])]
        ),
        .systemLibrary(
            name: "CCurl", path: "Services/Media/CCurl", pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        /// Typed wrappers for libcurl's variadic `curl_easy_setopt`/`curl_easy_getinfo`.
        .target(name: "CCurlShim", dependencies: ["CCurl"], path: "Services/Media/Sources/CCurlShim"),

        // MARK: Shared
        /// JSON without Foundation's coders: `JSONValue`, a strict RFC 8259 reader/writer,
        /// `Codable` over `JSONValue` (`JSONCoding`), wire timestamps.
        .target(name: "AIIMJSON", path: "Shared/Sources/AIIMJSON", swiftSettings: swiftSettings),
        /// The wire protocol every service shares: envelopes, stream names, bus commands and
        /// their replies, delivery events, WebSocket frames, error codes, trace context.
        .target(
            name: "AIIMProtocol",
            dependencies: ["AIIMJSON",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "W3CTraceContext", package: "swift-w3c-trace-context")],
            path: "Shared/Sources/AIIMProtocol", swiftSettings: swiftSettings
        ),
        /// Typed settings from the environment (`Environment`, `ConfigurationError`).
        .target(name: "AIIMConfiguration", path: "Shared/Sources/AIIMConfiguration", swiftSettings: swiftSettings),
        /// What every executable runs: JSON logs with trace ids, metrics, health routes,
        /// readiness, the common configuration and process lifecycle.
        .target(
            name: "AIIMServiceKit",
            dependencies: ["AIIMConfiguration", "AIIMJSON", "AIIMProtocol",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "NIOPosix", package: "swift-nio"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                           .product(name: "UnixSignals", package: "swift-service-lifecycle")],
            path: "Shared/Sources/AIIMServiceKit", swiftSettings: swiftSettings
        ),
        /// Redis with hiredis as the protocol codec over NIO sockets: pipelined connections,
        /// streams, consumer service, request/reply bus.
        .target(
            name: "AIIMRedis",
            dependencies: [
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMProtocol",
                "CHiredis",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "NIOTLS", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Shared/Sources/AIIMRedis", swiftSettings: swiftSettings
        ),
        /// PostgreSQL over libpq: pool, typed rows, transactions, the migrator (each service ships
        /// its own migrations as resources of its library target).
        .target(
            name: "AIIMPostgres",
            dependencies: [
                "AIIMConfiguration",
                "AIIMJSON",
                "CLibpq",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Shared/Sources/AIIMPostgres", swiftSettings: swiftSettings
        ),
        /// What every backend (messaging, media, calls) runs on top of the service kit: the
        /// command router and consumer, PostgreSQL and Redis pools, migrations, one entry point.
        .target(
            name: "AIIMBackendKit",
            dependencies: [
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMPostgres",
                "AIIMProtocol",
                "AIIMRedis",
                "AIIMServiceKit",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            path: "Shared/Sources/AIIMBackendKit", swiftSettings: swiftSettings
        ),

        // MARK: Services
        .target(
            name: "GatewayCore",
            dependencies: [
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMProtocol",
                "AIIMRedis",
                "AIIMServiceKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Gateway/Sources/GatewayCore",
            resources: [.copy("Web")],  // the browser client served at / (HTTP/WebClient.swift)
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "aiim-gateway", dependencies: ["AIIMProtocol", "AIIMServiceKit", "GatewayCore"],
            path: "Services/Gateway/Sources/aiim-gateway", swiftSettings: swiftSettings
        ),
        .target(
            name: "MessagingCore",
            dependencies: [
                "AIIMBackendKit",
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMPostgres",
                "AIIMProtocol",
                "AIIMRedis",
                "AIIMServiceKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Messaging/Sources/MessagingCore",
            resources: [.copy("Migrations")],  // this service's own tables (Migrator's `requires`)
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "aiim-messaging", dependencies: ["AIIMBackendKit", "AIIMServiceKit", "MessagingCore"],
            path: "Services/Messaging/Sources/aiim-messaging", swiftSettings: swiftSettings
        ),
        /// S3 over libcurl with AWS Signature V4 (MinIO, SeaweedFS, Alibaba OSS).
        .target(
            name: "AIIMS3",
            dependencies: ["CCurlShim",
                           .product(name: "Crypto", package: "swift-crypto"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOPosix", package: "swift-nio")],
            path: "Services/Media/Sources/S3", swiftSettings: swiftSettings
        ),
        .target(
            name: "MediaCore",
            dependencies: [
                "AIIMBackendKit",
                "AIIMConfiguration",
                "AIIMPostgres",
                "AIIMProtocol",
                "AIIMRedis",
                "AIIMS3",
                "AIIMServiceKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Media/Sources/MediaCore",
            resources: [.copy("Migrations")],  // this service's own tables (Migrator's `requires`)
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "aiim-media", dependencies: ["AIIMBackendKit", "AIIMServiceKit", "MediaCore"],
            path: "Services/Media/Sources/aiim-media", swiftSettings: swiftSettings
        ),
        .target(
            name: "CallsCore",
            dependencies: [
                "AIIMBackendKit",
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMPostgres",
                "AIIMProtocol",
                "AIIMRedis",
                "AIIMServiceKit",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Services/Calls/Sources/CallsCore",
            resources: [.copy("Migrations")],  // this service's own tables (Migrator's `requires`)
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "aiim-calls", dependencies: ["AIIMBackendKit", "AIIMServiceKit", "CallsCore"],
            path: "Services/Calls/Sources/aiim-calls", swiftSettings: swiftSettings
        ),

        // MARK: Benchmarks
        .executableTarget(
            name: "aiim-bench",
            dependencies: [
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMProtocol",
                "AIIMRedis",
                "GatewayCore",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
            ],
            path: "Benchmarks/Sources/aiim-bench", swiftSettings: swiftSettings
        ),

        // MARK: Tests
        .testTarget(
            name: "SharedTests", dependencies: [
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMProtocol",
                "AIIMServiceKit",
            ],
            path: "Tests/SharedTests", swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "MediaTests", dependencies: [
                "AIIMS3",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Tests/MediaTests", resources: [.copy("Vectors")], swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "CallsTests",
            dependencies: [
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMProtocol",
                "AIIMServiceKit",
                "CallsCore",
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/CallsTests", swiftSettings: swiftSettings
        ),
        /// The backend kit without servers: command routing, migration ownership.
        .testTarget(
            name: "BackendKitTests", dependencies: [
                "AIIMBackendKit",
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMPostgres",
                "AIIMProtocol",
                "CallsCore",
                "MediaCore",
                "MessagingCore",
            ],
            path: "Tests/BackendKitTests", swiftSettings: swiftSettings
        ),
        /// Needs the servers that `deploy/local/test` starts (Redis, PostgreSQL, S3, coturn).
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "AIIMBackendKit",
                "AIIMConfiguration",
                "AIIMJSON",
                "AIIMPostgres",
                "AIIMProtocol",
                "AIIMRedis",
                "AIIMS3",
                "AIIMServiceKit",
                "CallsCore",
                "GatewayCore",
                "MediaCore",
                "MessagingCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "HummingbirdWSClient", package: "hummingbird-websocket"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            path: "Tests/IntegrationTests", swiftSettings: swiftSettings
        ),
    ]
)
