// A worker and producer process for the crash-recovery tests (Tests/EchoTests/Crash*.swift).
// The tests start it, SIGKILL / SIGSTOP it at random moments, and then check the database.
//
// Modes (first argument), options as `--name value`:
//
//   work            runs a Sequencer on the "default" queue.
//                   --db P --worker NAME --lease-ms N --concurrency N --min-delay-ms N --max-delay-ms N
//                   --ledger-file F   appends "<id> <worker> <attempt>\n" per execution (O_APPEND), before
//                                     the outcome is committed: the at-least-once side effect.
//                   --ledger-table    inserts (action_id, worker, attempt) into test_ledger through
//                                     ActionContext.onSuccess: the exactly-once side effect.
//                   --hang-until F    each execution prints "started <id> <attempt>" and waits until
//                                     file F exists before it returns.
//                   --until-drained   shuts down gracefully once nothing is ready or leased.
//                   --drain-after F   with --until-drained: starts checking only once file F exists.
//                   --max-attempts N  the production's defaultMaxAttempts.
//   produce         enqueues batches: --db P --batch N --batches K --first-tag T; prints
//                   "B <tag> <first id> <last id>" after each batch is acknowledged.
//   produce-single  concurrent single (group-committed) enqueues: --db P --count N --concurrency C
//                   --tag T [--synchronous normal] [--shadow-vfs] [--then-hang]; prints "S <synchronous>"
//                   first, then "A <id> <index>" after each acknowledged enqueue.
//   open            opens the database and enqueues one action: --db P; prints "OK <id>" or
//                   "ERR <code> <message>".
//
// Every line is written with write(2) straight to file descriptor 1, so a line printed is a line
// the test sees, even when the process is killed right after.
//
// Exit codes: 0 success, 1 usage, 2 an Echo error (message on stderr).

import Echo
import Foundation
import Logging
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

struct Job: Codable, Sendable {
    var tag: Int
    var index: Int
}

struct Done: Codable, Sendable {
    var worker: String
    var attempt: Int
}

/// Serialises whole lines onto file descriptor 1.
let outputLock = Mutex(())

func emit(_ line: String) {
    outputLock.withLock { _ in
        writeAll(1, Array((line + "\n").utf8))
    }
}

func writeAll(_ fd: Int32, _ bytes: [UInt8]) {
    bytes.withUnsafeBytes { raw in
        var offset = 0
        while offset < raw.count {
            let written = write(fd, raw.baseAddress! + offset, raw.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += written
        }
    }
}

func fail(_ message: String, code: Int32 = 2) -> Never {
    writeAll(2, Array("EchoTestWorker: \(message)\n".utf8))
    exit(code)
}

struct Arguments {
    var mode: String
    var values: [String: String] = [:]
    var flags: Set<String> = []

    init(_ arguments: [String]) {
        mode = arguments.first ?? ""
        var index = 1
        while index < arguments.count {
            let key = arguments[index]
            guard key.hasPrefix("--") else { fail("unexpected argument \(key)", code: 1) }
            let name = String(key.dropFirst(2))
            if index + 1 < arguments.count, !arguments[index + 1].hasPrefix("--") {
                values[name] = arguments[index + 1]
                index += 2
            } else {
                flags.insert(name)
                index += 1
            }
        }
    }

    func string(_ name: String) -> String? { values[name] }

    func required(_ name: String) -> String {
        guard let value = values[name] else { fail("missing --\(name)", code: 1) }
        return value
    }

    func int(_ name: String, default value: Int) -> Int {
        guard let text = values[name] else { return value }
        guard let number = Int(text) else { fail("--\(name) needs a number, not \(text)", code: 1) }
        return number
    }

    func has(_ flag: String) -> Bool { flags.contains(flag) }
}

let arguments = Arguments(Array(CommandLine.arguments.dropFirst()))
LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .info
    return handler
}
let logger = Logger(label: "echo-test-worker")

func openProduction(_ arguments: Arguments, maxAttempts: Int = 20) async -> Production {
    var configuration = Production.Configuration(defaultMaxAttempts: maxAttempts)
    if arguments.string("synchronous") == "normal" { configuration.synchronous = .normal }
    do {
        return try await Production.open(path: arguments.required("db"), configuration: configuration, logger: logger)
    } catch {
        fail("open failed: \(error)")
    }
}

// MARK: work

/// Appends whole lines to a file opened with O_APPEND: each write(2) lands at the end, even when
/// several processes append to the same file.
final class Ledger: Sendable {
    let fd: Int32

    init(path: String) {
        fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        if fd < 0 { fail("cannot open ledger \(path): errno \(errno)") }
    }

    func append(_ line: String) {
        writeAll(fd, Array((line + "\n").utf8))
    }
}

func work(_ arguments: Arguments) async {
    let worker = arguments.string("worker") ?? "worker-\(getpid())"
    let production = await openProduction(arguments, maxAttempts: arguments.int("max-attempts", default: 1_000))
    let useTable = arguments.has("ledger-table")
    if useTable {
        do {
            try await production.transaction { tx in
                try tx.execute(
                    """
                    CREATE TABLE IF NOT EXISTS test_ledger (
                        seq INTEGER PRIMARY KEY, action_id INTEGER NOT NULL, worker TEXT NOT NULL,
                        attempt INTEGER NOT NULL)
                    """)
            }
        } catch {
            fail("cannot create test_ledger: \(error)")
        }
    }
    let ledger = arguments.string("ledger-file").map { Ledger(path: $0) }
    let minDelay = arguments.int("min-delay-ms", default: 0)
    let maxDelay = max(minDelay, arguments.int("max-delay-ms", default: 0))
    let hangFile = arguments.string("hang-until")

    let plan = Plan().signature("Soak") { (_: Job, context: ActionContext) -> Done in
        if let hangFile {
            emit("started \(context.id.rawValue) \(context.attempt)")
            // Deliberately ignores cancellation and lease loss: this execution must try to complete.
            while !FileManager.default.fileExists(atPath: hangFile) {
                usleep(20_000)
            }
        } else if maxDelay > 0 {
            try? await Task.sleep(for: .milliseconds(Int.random(in: minDelay...maxDelay)))
        }
        ledger?.append("\(context.id.rawValue) \(worker) \(context.attempt)")
        if useTable {
            let id = context.id.rawValue
            let attempt = context.attempt
            context.onSuccess { tx in
                try tx.execute(
                    "INSERT INTO test_ledger (action_id, worker, attempt) VALUES (?1, ?2, ?3)",
                    [.integer(id), .text(worker), .integer(Int64(attempt))])
            }
        }
        return Done(worker: worker, attempt: context.attempt)
    }
    let leaseMilliseconds = arguments.int("lease-ms", default: 30_000)
    let configuration = Sequencer.Configuration(
        concurrency: arguments.int("concurrency", default: 8),
        leaseDuration: .milliseconds(leaseMilliseconds),
        minimumPollInterval: .milliseconds(10),
        maximumPollInterval: .milliseconds(100),
        shutdownGracePeriod: .seconds(30),
        owner: "\(worker)/\(getpid())"
    )
    let sequencer = Sequencer(production: production, plan: plan, configuration: configuration, logger: logger)
    let untilDrained = arguments.has("until-drained")
    do {
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sequencer.run() }
            if untilDrained {
                group.addTask {
                    if let gate = arguments.string("drain-after") {
                        while !FileManager.default.fileExists(atPath: gate) {
                            try await Task.sleep(for: .milliseconds(50))
                        }
                    }
                    var quiet = 0
                    while quiet < 3 {
                        try await Task.sleep(for: .milliseconds(100))
                        let ready = try await production.list(state: .ready, limit: 1)
                        let leased = try await production.list(state: .leased, limit: 1)
                        quiet = ready.isEmpty && leased.isEmpty ? quiet + 1 : 0
                    }
                    sequencer.shutdown()
                }
            }
            try await group.waitForAll()
        }
    } catch {
        fail("worker failed: \(error)")
    }
    emit("drained \(worker)")
}

// MARK: produce

func produceBatches(_ arguments: Arguments) async {
    let production = await openProduction(arguments)
    let size = arguments.int("batch", default: 1_000)
    let count = arguments.int("batches", default: 1_000)
    let firstTag = arguments.int("first-tag", default: 0)
    for tag in firstTag..<(firstTag + count) {
        do {
            let batch = try (0..<size).map { index in
                try NewAction(
                    "Soak", Job(tag: tag, index: index),
                    options: ActionOptions(metadata: ["batch": .number(Double(tag))]))
            }
            let ids = try await production.enqueue(batch)
            emit("B \(tag) \(ids.first?.rawValue ?? 0) \(ids.last?.rawValue ?? 0)")
        } catch {
            fail("batch \(tag) failed: \(error)")
        }
    }
    emit("produced")
}

func produceSingles(_ arguments: Arguments) async {
    if arguments.has("shadow-vfs") { ShadowVFS.install() }
    let production = await openProduction(arguments)
    let count = arguments.int("count", default: 1_000)
    let concurrency = max(1, arguments.int("concurrency", default: 16))
    let tag = arguments.int("tag", default: 0)
    do {
        // The writer connection's own setting: Production.transaction runs on it.
        let rows = try await production.transaction { tx in try tx.query("PRAGMA synchronous") }
        if case .integer(let value)? = rows.first?.first { emit("S \(value)") }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for lane in 0..<concurrency {
                group.addTask {
                    var index = lane
                    while index < count {
                        let id = try await production.enqueue("Soak", Job(tag: tag, index: index))
                        emit("A \(id.rawValue) \(index)")
                        index += concurrency
                    }
                }
            }
            try await group.waitForAll()
        }
    } catch {
        fail("enqueue failed: \(error)")
    }
    emit("produced")
    if arguments.has("then-hang") {
        while true { sleep(60) }
    }
}

// MARK: open

func openAndEnqueue(_ arguments: Arguments) async {
    do {
        let production = try await Production.open(path: arguments.required("db"), logger: logger)
        let id = try await production.enqueue("Soak", Job(tag: 0, index: 0))
        emit("OK \(id.rawValue)")
    } catch let error as ActionError {
        emit("ERR \(error.code) \(error.message)")
    } catch {
        emit("ERR other \(error)")
    }
}

switch arguments.mode {
case "work": await work(arguments)
case "produce": await produceBatches(arguments)
case "produce-single": await produceSingles(arguments)
case "open": await openAndEnqueue(arguments)
default: fail("unknown mode \(arguments.mode); see the comment at the top of main.swift", code: 1)
}
exit(0)
