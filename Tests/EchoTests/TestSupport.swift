import Echo
import Foundation
import Testing

/// A temporary directory for one test's database, removed when the test ends.
struct TemporaryDirectory: ~Copyable {
    let url: URL

    init() throws {
        url = FileManager.default.temporaryDirectory.appendingPathComponent("echo-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    func path(_ name: String = "echo.sqlite") -> String {
        url.appendingPathComponent(name).path
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }
}

/// Polls `condition` every 10 ms until it holds or `timeout` passes; returns whether it held.
/// Used to wait for an outcome that another task commits, never as a timing assertion.
func eventually(
    timeout: Duration = .seconds(20), _ condition: @Sendable () async throws -> Bool
) async rethrows -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return try await condition()
}

/// Runs `sequencer` while `body` runs, then shuts it down gracefully and waits for it to stop.
func withRunning<T: Sendable>(
    _ sequencer: Sequencer, _ body: () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await sequencer.run() }
        do {
            let value = try await body()
            sequencer.shutdown()
            try await group.waitForAll()
            return value
        } catch {
            sequencer.shutdown()
            try? await group.waitForAll()
            throw error
        }
    }
}

struct Greeting: Codable, Sendable, Equatable {
    var name: String
}

struct Reply: Codable, Sendable, Equatable {
    var text: String
}

/// Waits for `condition` with ``eventually`` and records an issue if it never held.
func expectEventually(
    timeout: Duration = .seconds(20), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: @Sendable () async throws -> Bool
) async throws {
    let held = try await eventually(timeout: timeout, condition)
    #expect(held, "the condition did not hold within \(timeout)", sourceLocation: sourceLocation)
}
