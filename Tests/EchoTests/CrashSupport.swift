import Echo
internal import EchoSQLite
import Foundation
import Synchronization
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The crash tests: real child processes (the `EchoTestWorker` executable), killed with SIGKILL,
/// stopped with SIGSTOP, then the database reopened and checked. They run one at a time: each
/// already runs several processes on a machine with few cores.
@Suite(.serialized) struct CrashTests {}

/// Finds the `EchoTestWorker` executable that SwiftPM builds next to the test bundle.
enum WorkerBinary {
    static let path: String? = locate()

    private static func locate() -> String? {
        let manager = FileManager.default
        if let explicit = ProcessInfo.processInfo.environment["ECHO_TEST_WORKER"],
            manager.isExecutableFile(atPath: explicit)
        {
            return explicit
        }
        var starts: [URL] = []
        if let exe = try? manager.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            starts.append(URL(fileURLWithPath: exe).deletingLastPathComponent())
        }
        starts.append(URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent())
        starts.append(Bundle.main.bundleURL)
        starts.append(Bundle.main.bundleURL.deletingLastPathComponent())
        // `swift test` runs `<scratch>/<triple>/<config>/echoPackageTests.xctest` (a bundle folder on
        // Darwin, an executable on Linux); walk up to the configuration folder, wherever the scratch
        // path is.
        for start in starts {
            var directory = start.standardizedFileURL
            for _ in 0..<5 {
                for candidate in [
                    directory.appendingPathComponent("EchoTestWorker"),
                    directory.appendingPathComponent("debug/EchoTestWorker"),
                    directory.appendingPathComponent("release/EchoTestWorker"),
                ] where manager.isExecutableFile(atPath: candidate.path) {
                    return candidate.path
                }
                directory.deleteLastPathComponent()
            }
        }
        return nil
    }

    static func require() throws -> String {
        try #require(path, "the EchoTestWorker executable was not found next to the test binary")
    }
}

/// A child process started with posix_spawn; stdout and stderr go to files in the test's directory
/// (never pipes, which a killed reader could leave full).
final class Child: Sendable {
    let pid: pid_t
    let name: String
    let stdoutPath: String
    let stderrPath: String
    private let status = Mutex<Int32?>(nil)

    private init(pid: pid_t, name: String, stdoutPath: String, stderrPath: String) {
        self.pid = pid
        self.name = name
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    /// Starts `EchoTestWorker` with `arguments`, optionally behind `prefix` (such as `setpriv …`).
    static func worker(_ arguments: [String], in directory: String, name: String, prefix: [String] = []) throws
        -> Child
    {
        let binary = try WorkerBinary.require()
        return try spawn(prefix + [binary] + arguments, in: directory, name: name)
    }

    static func spawn(_ argv: [String], in directory: String, name: String) throws -> Child {
        let stdoutPath = "\(directory)/\(name).out"
        let stderrPath = "\(directory)/\(name).err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdoutPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let cArguments = argv.map { strdup($0) } + [nil]
        defer { for pointer in cArguments { free(pointer) } }
        var pid: pid_t = 0
        let rc = cArguments.withUnsafeBufferPointer { buffer in
            posix_spawnp(&pid, argv[0], &actions, nil, buffer.baseAddress!, environ)
        }
        guard rc == 0 else { throw ChildError(message: "posix_spawn \(argv[0]) failed: \(rc)") }
        return Child(pid: pid, name: name, stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    func signal(_ signal: Int32) {
        if status.withLock({ $0 }) == nil { kill(pid, signal) }
    }

    /// The wait status once the child has ended (reaping it), `nil` while it runs.
    func poll() -> Int32? {
        status.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            if waitpid(pid, &raw, WNOHANG) == pid { status = raw }
            return status
        }
    }

    /// Waits for the child to end; `nil` if it still runs after `timeout`.
    @discardableResult
    func wait(timeout: Duration = .seconds(60)) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let status = poll() { return status }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return poll()
    }

    /// SIGKILL and reap: the crash, and the clean-up of every test.
    func killNow() async {
        signal(SIGKILL)
        _ = await wait(timeout: .seconds(30))
    }

    /// Waits for a normal exit and returns its code; `nil` on a timeout or a signal.
    func exitCode(timeout: Duration = .seconds(60)) async -> Int32? {
        guard let status = await wait(timeout: timeout) else { return nil }
        return status & 0x7f == 0 ? (status >> 8) & 0xff : nil
    }

    /// Complete lines written so far (a line cut by a kill has no newline and is left out).
    func lines() -> [String] {
        guard let data = FileManager.default.contents(atPath: stdoutPath) else { return [] }
        var text = String(decoding: data, as: UTF8.self)
        if let lastNewline = text.lastIndex(of: "\n") {
            text = String(text[..<lastNewline])
        } else {
            return []
        }
        return text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }

    var errorOutput: String {
        FileManager.default.contents(atPath: stderrPath).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    /// Waits until a stdout line satisfies `match`; returns it, or `nil` on timeout or exit.
    func waitForLine(timeout: Duration = .seconds(30), _ match: (String) -> Bool) async -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let line = lines().first(where: match) { return line }
            if poll() != nil { return lines().first(where: match) }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return nil
    }
}

struct ChildError: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

/// A plain SQLite connection for checking a database after a crash, independent of Echo's code.
final class CrashDatabase {
    let file: SQLiteFile

    /// Opens an existing file (never creates one), waiting up to 30 s for locks that killed or
    /// still-running workers hold.
    init(path: String, readOnly: Bool = false) throws {
        file = try SQLiteFile(path: path, readOnly: readOnly, create: false)
        sqlite3_busy_timeout(file.handle, 30_000)
    }

    /// Every row of `sql`, each column as text (NULL as nil).
    func rows(_ sql: String) throws -> [[String?]] { try file.rows(sql) }

    /// The first column of the first row as an integer; 0 when there is none.
    func int(_ sql: String) throws -> Int64 { try file.int(sql) ?? 0 }

    /// Pairs of integers from a two-column query.
    func pairs(_ sql: String) throws -> [(Int64, Int64)] {
        try rows(sql).map { (Int64($0[0] ?? "0") ?? 0, Int64($0[1] ?? "0") ?? 0) }
    }

    func integrityCheck() throws -> String {
        try rows("PRAGMA integrity_check").compactMap { $0.first ?? nil }.joined(separator: "; ")
    }

    func tableExists(_ name: String) throws -> Bool {
        try int("SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = '\(name)'") > 0
    }
}

/// Parses "A <id> <index>" acknowledgement lines of `produce-single`.
func acknowledgedIDs(_ lines: [String]) -> [Int64] {
    lines.compactMap { line in
        let parts = line.split(separator: " ")
        guard parts.count == 3, parts[0] == "A" else { return nil }
        return Int64(parts[1])
    }
}

/// Ledger-file lines "<id> <worker> <attempt>": executions per action id.
func ledgerCounts(_ path: String) -> [Int64: Int] {
    guard let data = FileManager.default.contents(atPath: path) else { return [:] }
    var counts: [Int64: Int] = [:]
    for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
        guard let id = line.split(separator: " ").first.flatMap({ Int64($0) }) else { continue }
        counts[id, default: 0] += 1
    }
    return counts
}

/// Enqueues `count` "Soak" actions in batches of 1,000 and closes the production.
func seed(_ path: String, count: Int, tag: Int = 0) async throws -> [ActionID] {
    let production = try await Production.open(path: path)
    var ids: [ActionID] = []
    var start = 0
    while start < count {
        let end = min(count, start + 1_000)
        let batch = try (start..<end).map { try NewAction("Soak", CrashJob(tag: tag, index: $0)) }
        ids += try await production.enqueue(batch)
        start = end
    }
    production.close()
    return ids
}

/// The worker's input and output types (the same JSON as in `EchoTestWorker/main.swift`).
struct CrashJob: Codable, Sendable {
    var tag: Int
    var index: Int
}

struct CrashDone: Codable, Sendable, Equatable {
    var worker: String
    var attempt: Int
}

/// Lines of `text` at log level error (swift-log's StreamLogHandler format: "<time> error <label> …").
func errorLogLines(_ text: String) -> [String] {
    text.split(separator: "\n").map(String.init).filter { $0.contains(" error ") || $0.contains(" critical ") }
}
