import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Wall-clock time in milliseconds since 1970 (the unit of Echo's time columns).
func wallMilliseconds() -> Int64 {
    wallNanoseconds() / 1_000_000
}

/// Wall-clock time in nanoseconds since 1970.
func wallNanoseconds() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
}

func seconds(since start: ContinuousClock.Instant) -> Double {
    let (whole, attoseconds) = (ContinuousClock.now - start).components
    return Double(whole) + Double(attoseconds) / 1e18
}

/// The payload of action `index`, the same bytes for Echo and the baseline: a small JSON object.
func payload(_ index: Int) -> [UInt8] {
    Array("{\"i\":\(index)}".utf8)
}

/// A counter shared by the actions' functions and the task that waits for them.
final class Counter: Sendable {
    private let count = Atomic<Int>(0)

    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }

    /// Returns once the count reaches `target`, reporting progress as it goes.
    func wait(for target: Int, progress: String) async {
        var ticks = 0
        while value < target {
            try? await Task.sleep(for: .milliseconds(1))
            ticks += 1
            if ticks % 100 == 0 { Progress.shared.update(progress, done: value, total: target) }
        }
        Progress.shared.update(progress, done: value, total: target)
    }
}

/// The progress line on stderr: rewritten in place on a terminal, a line every few seconds
/// otherwise (CI logs).
final class Progress: Sendable {
    static let shared = Progress()

    private struct State {
        var label = ""
        var lastPrinted = ContinuousClock.now - .seconds(60)
        var lastLabel = ""
    }
    private let state = Mutex(State())
    private let isTerminal = isatty(STDERR_FILENO) != 0

    /// Announces a phase.
    func begin(_ label: String) {
        update(label, done: nil, total: nil, force: true)
    }

    func update(_ label: String, done: Int?, total: Int?, force: Bool = false) {
        let line: String? = state.withLock { state in
            let now = ContinuousClock.now
            let interval: Duration = isTerminal ? .milliseconds(200) : .seconds(5)
            guard force || label != state.lastLabel || now - state.lastPrinted >= interval else { return nil }
            state.lastPrinted = now
            state.lastLabel = label
            if let done, let total { return "\(label): \(done)/\(total)" }
            return label
        }
        guard let line else { return }
        let text = isTerminal ? "\r\u{1B}[2K\(line)" : "\(line)\n"
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// Ends the in-place line on a terminal.
    func finish() {
        if isTerminal { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
    }

    /// A message that stays, on its own line.
    func note(_ message: String) {
        let text = isTerminal ? "\r\u{1B}[2K\(message)\n" : "\(message)\n"
        FileHandle.standardError.write(Data(text.utf8))
    }
}

/// The folder holding the database files of a run.
struct Folder: Sendable {
    let path: String
    let isTemporary: Bool

    static func make(_ requested: String?) throws -> Folder {
        if let requested {
            try FileManager.default.createDirectory(atPath: requested, withIntermediateDirectories: true)
            return Folder(path: requested, isTemporary: false)
        }
        let path = NSTemporaryDirectory() + "/echo-bench-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return Folder(path: path, isTemporary: true)
    }

    /// A fresh database path: any file left at it from an earlier run is removed first.
    func database(_ name: String) -> String {
        let file = "\(path)/\(name).sqlite"
        remove(file)
        return file
    }

    /// Removes a database with its WAL and shared-memory files.
    func remove(_ file: String) {
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: file + suffix) }
    }

    func removeIfTemporary() {
        if isTemporary { try? FileManager.default.removeItem(atPath: path) }
    }
}

/// The process's peak resident set size in MiB (`VmHWM`), if /proc tells it.
func peakRSSMiB() -> Double? {
    procStatus("VmHWM:")
}

/// The process's current resident set size in MiB (`VmRSS`).
func currentRSSMiB() -> Double? {
    procStatus("VmRSS:")
}

private func procStatus(_ key: String) -> Double? {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix(key) {
        let fields = line.split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 2, let kib = Double(fields[1]) else { return nil }
        return kib / 1_024
    }
    return nil
}
