// swift-tools-version:6.2
import PackageDescription

let package = Package(
    name: "echo",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Echo", targets: ["Echo"]),
        .executable(name: "echo-demo", targets: ["EchoDemo"]),
        .executable(name: "echo-bench", targets: ["EchoBench"]),
        .executable(name: "echoctl", targets: ["EchoCtl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.6.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.1.0"),
    ],
    targets: [
        .systemLibrary(
            name: "EchoSQLite",
            path: "Sources/EchoSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]
        ),
        // The schema migrations, one file per version, compiled into the library so an installed
        // binary needs no resource bundle next to it.
        .target(name: "EchoMigrations", path: "Migrations"),
        .target(
            name: "Echo",
            dependencies: [
                "EchoSQLite",
                "EchoMigrations",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .executableTarget(
            name: "EchoDemo",
            dependencies: ["Echo", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "EchoCtl",
            dependencies: [
                "Echo",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // A worker process that the crash-recovery tests start and kill -9.
        .executableTarget(
            name: "EchoTestWorker",
            dependencies: ["Echo", "EchoSQLite"],
            path: "Tests/EchoTestWorker"
        ),
        .executableTarget(
            name: "EchoBench",
            dependencies: [
                "Echo",
                "EchoSQLite",
                "EchoMigrations",
                .product(name: "Histogram", package: "hdrhistogram-swift"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Benchmarks/EchoBench"
        ),
        .testTarget(
            name: "EchoTests",
            dependencies: [
                "Echo",
                "EchoSQLite",
                "EchoTestWorker",
                "EchoCtl",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
    ]
)

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
]

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + swiftSettings
}
