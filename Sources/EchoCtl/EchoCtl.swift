import ArgumentParser
import Echo
import Foundation
import Logging

/// echoctl: inspect and administer an Echo database file, also while Sequencers use it.
@main
struct EchoCtl: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "echoctl",
        abstract: "Inspect and administer an Echo database.",
        subcommands: [
            Stats.self, List.self, Show.self, Retry.self, Cancel.self, Delete.self, Prune.self, Pause.self,
            Resume.self, Limit.self,
        ]
    )
}

struct DatabaseOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The Echo database file.")
    var db: String

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func open() async throws -> Production {
        var logger = Logger(label: "echoctl")
        logger.logLevel = .error
        do {
            return try await Production.open(
                path: db, configuration: Production.Configuration(createIfMissing: false, migratesSchema: false),
                logger: logger)
        } catch let error as ActionError {
            throw Failure("cannot open \(db): \(error)")
        }
    }
}

/// A failure to report without the usage text (exit code 1).
struct Failure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Writes `value` as pretty JSON to standard output.
func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    encoder.dateEncodingStrategy = .iso8601
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// Prints rows as a table with aligned columns.
func printTable(_ header: [String], _ rows: [[String]]) {
    var widths = header.map(\.count)
    for row in rows {
        for (index, cell) in row.enumerated() where index < widths.count {
            widths[index] = max(widths[index], cell.count)
        }
    }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { index, cell in
            cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }
    print(line(header))
    for row in rows { print(line(row)) }
}

let timeFormat: Date.ISO8601FormatStyle = .iso8601

struct Stats: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Counts by queue and state, oldest due action.")
    @OptionGroup var options: DatabaseOptions

    struct Row: Codable {
        var queue: String
        var ready, leased, done, dead, cancelled: Int
        var oldestDue: Date?
        var paused: Bool
        var concurrencyLimit: Int?
    }

    func run() async throws {
        let production = try await options.open()
        let rows = try await production.stats().map { stats in
            Row(
                queue: stats.queue, ready: stats.counts[.ready] ?? 0, leased: stats.counts[.leased] ?? 0,
                done: stats.counts[.done] ?? 0, dead: stats.counts[.dead] ?? 0,
                cancelled: stats.counts[.cancelled] ?? 0, oldestDue: stats.oldestDue, paused: stats.isPaused,
                concurrencyLimit: stats.concurrencyLimit)
        }
        if options.json { return try printJSON(rows) }
        printTable(
            ["QUEUE", "READY", "LEASED", "DONE", "DEAD", "CANCELLED", "OLDEST DUE", "PAUSED", "LIMIT"],
            rows.map {
                [
                    $0.queue, "\($0.ready)", "\($0.leased)", "\($0.done)", "\($0.dead)", "\($0.cancelled)",
                    $0.oldestDue.map { $0.formatted(timeFormat) } ?? "-", $0.paused ? "yes" : "no",
                    $0.concurrencyLimit.map(String.init) ?? "-",
                ]
            })
    }
}

struct ActionRow: Codable {
    var id: Int64
    var queue: String
    var name: String
    var state: String
    var priority: Int
    var attempt: Int
    var runAt: Date
    var owner: String?
    var lastError: String?

    init(_ record: ActionRecord) {
        id = record.id.rawValue
        queue = record.queue
        name = record.name.name
        state = record.state.description
        priority = record.priority
        attempt = record.attempt
        runAt = record.runAt
        owner = record.owner
        lastError = record.errors.last?.message
    }
}

struct List: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List actions, filtered and paged.")
    @OptionGroup var options: DatabaseOptions
    @Option(help: "Only this queue.") var queue: String?
    @Option(help: "Only this state: ready, leased, done, dead or cancelled.") var state: String?
    @Option(help: "Only actions with this name.") var name: String?
    @Option(help: "Only ids greater than this (the last id of the previous page).") var after: Int64?
    @Option(help: "At most this many.") var limit = 50

    func run() async throws {
        var stateFilter: ActionState?
        if let state {
            guard let parsed = ActionState(name: state) else {
                throw ValidationError("unknown state \(state); use ready, leased, done, dead or cancelled")
            }
            stateFilter = parsed
        }
        let production = try await options.open()
        let records = try await production.list(
            state: stateFilter, queue: queue, name: name.map { Signature($0) }, after: after.map { ActionID($0) },
            limit: limit)
        let rows = records.map(ActionRow.init)
        if options.json { return try printJSON(rows) }
        printTable(
            ["ID", "QUEUE", "NAME", "STATE", "PRIO", "ATTEMPT", "RUN AT", "LAST ERROR"],
            rows.map {
                [
                    "\($0.id)", $0.queue, $0.name, $0.state, "\($0.priority)", "\($0.attempt)",
                    $0.runAt.formatted(timeFormat), String(($0.lastError ?? "").prefix(60)),
                ]
            })
    }
}

struct Show: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "One action: row, metadata, Karma, error history.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The action's id.") var id: Int64

    struct Detail: Codable {
        var action: ActionRow
        var payload: String
        var metadata: Vector
        var idempotencyKey: String?
        var createdAt: Date
        var startedAt: Date?
        var finishedAt: Date?
        var errors: [AttemptError]
        var karma: KarmaDetail?
    }

    struct KarmaDetail: Codable {
        var outcome: String
        var attempts: Int
        var result: String?
        var finishedAt: Date
    }

    func run() async throws {
        let production = try await options.open()
        guard let record = try await production.action(ActionID(id)) else {
            throw Failure("no action \(id) in \(options.db)")
        }
        let karma = try await production.karma(ActionID(id))
        let detail = Detail(
            action: ActionRow(record), payload: String(decoding: record.payload, as: UTF8.self),
            metadata: record.metadata, idempotencyKey: record.idempotencyKey, createdAt: record.createdAt,
            startedAt: record.startedAt, finishedAt: record.finishedAt, errors: record.errors,
            karma: karma.map {
                KarmaDetail(
                    outcome: $0.outcome.description, attempts: $0.attempts,
                    result: $0.result.map { String(decoding: $0, as: UTF8.self) }, finishedAt: $0.finishedAt)
            })
        if options.json { return try printJSON(detail) }
        print("action \(record.id)  \(record.name)  queue \(record.queue)  state \(record.state)")
        print("attempt \(record.attempt) of \(record.maxAttempts == 0 ? "plan default" : "\(record.maxAttempts)")")
        print("priority \(record.priority)  run at \(record.runAt.formatted(timeFormat))")
        print("created \(record.createdAt.formatted(timeFormat))")
        if let owner = record.owner { print("leased by \(owner)") }
        if let key = record.idempotencyKey { print("idempotency key \(key)") }
        print("payload \(detail.payload)")
        if !record.metadata.isEmpty {
            print("metadata \(String(decoding: try JSONEncoder().encode(record.metadata), as: UTF8.self))")
        }
        for error in record.errors {
            print("error (attempt \(error.attempt)): \(error.message)")
        }
        if let karma = detail.karma {
            print("karma: \(karma.outcome) after \(karma.attempts) attempt(s), result \(karma.result ?? "-")")
        }
    }
}

/// An action id, or `--dead` for every dead letter (of `--queue`): what `retry` and `delete` act on.
struct DeadLetterSelection: ParsableArguments {
    @Argument(help: "The action's id.") var id: Int64?
    @Flag(help: "Every dead letter instead of one action.") var dead = false
    @Option(help: "With --dead: only this queue.") var queue: String?

    func validate() throws {
        if (id == nil) == !dead { throw ValidationError("give an id or --dead") }
    }

    /// Runs `one` for an id (failing with `refusal` when it returns false), else `all`; prints the count.
    func apply(
        _ options: DatabaseOptions, verb: String, refusal: String,
        one: (Production, ActionID) async throws -> Bool, all: (Production, String?) async throws -> Int
    ) async throws {
        let production = try await options.open()
        let count: Int
        if let id {
            guard try await one(production, ActionID(id)) else { throw Failure("action \(id) \(refusal)") }
            count = 1
        } else {
            count = try await all(production, queue)
        }
        if options.json { return try printJSON([verb: count]) }
        print("\(verb) \(count) action(s)")
    }
}

struct Retry: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Retry a dead or cancelled action, or every dead letter.")
    @OptionGroup var options: DatabaseOptions
    @OptionGroup var selection: DeadLetterSelection

    func run() async throws {
        try await selection.apply(
            options, verb: "retried", refusal: "is not dead or cancelled",
            one: { try await $0.retry($1) }, all: { try await $0.retryDeadLetters(queue: $1) })
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Revoke an action's license.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The action's id.") var id: Int64

    func run() async throws {
        let production = try await options.open()
        guard try await production.revoke(ActionID(id)) else {
            throw Failure("action \(id) is not ready or leased")
        }
        if options.json { return try printJSON(["cancelled": id]) }
        print("revoked action \(id)")
    }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Delete an action, or every dead letter.")
    @OptionGroup var options: DatabaseOptions
    @OptionGroup var selection: DeadLetterSelection

    func run() async throws {
        try await selection.apply(
            options, verb: "deleted", refusal: "does not exist or is leased",
            one: { try await $0.delete($1) }, all: { try await $0.deleteDeadLetters(queue: $1) })
    }
}

struct Prune: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Delete done and cancelled actions (and their Karma): older than an age, or all but the newest N.")
    @OptionGroup var options: DatabaseOptions
    @Option(help: "An age such as 30s, 15m, 12h or 7d.") var olderThan: String?
    @Option(help: "Keep only this many of the newest finished actions.") var keep: Int?

    func validate() throws {
        if olderThan == nil && keep == nil { throw ValidationError("give --older-than or --keep") }
        if let keep, keep < 0 { throw ValidationError("--keep must not be negative") }
    }

    func run() async throws {
        var age: Duration?
        if let olderThan {
            guard let parsed = parseAge(olderThan) else {
                throw ValidationError("cannot read \(olderThan) as an age; use e.g. 30s, 15m, 12h or 7d")
            }
            age = parsed
        }
        let production = try await options.open()
        var count = 0
        if let age { count += try await production.prune(olderThan: age) }
        if let keep { count += try await production.prune(keepingNewest: keep) }
        if options.json { return try printJSON(["pruned": count]) }
        print("pruned \(count) action(s)")
    }
}

/// Parses `90s`, `15m`, `12h`, `7d` (or plain seconds).
func parseAge(_ text: String) -> Duration? {
    let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
    guard let last = text.last else { return nil }
    if let unit = units[last], let value = Int64(text.dropLast()), value >= 0 {
        return .seconds(value * unit)
    }
    if let value = Int64(text), value >= 0 { return .seconds(value) }
    return nil
}

struct Pause: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Pause a queue in every process.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The queue.") var queue: String

    func run() async throws {
        let production = try await options.open()
        try await production.pause(queue: queue)
        if options.json { return try printJSON(["paused": queue]) }
        print("paused \(queue)")
    }
}

struct Resume: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Resume a paused queue.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The queue.") var queue: String

    func run() async throws {
        let production = try await options.open()
        try await production.resume(queue: queue)
        if options.json { return try printJSON(["resumed": queue]) }
        print("resumed \(queue)")
    }
}

struct Limit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Set (or with `none`, remove) a queue's concurrency limit across all processes.")
    @OptionGroup var options: DatabaseOptions
    @Argument(help: "The queue.") var queue: String
    @Argument(help: "The limit, or none.") var limit: String

    func run() async throws {
        let value: Int?
        if limit == "none" {
            value = nil
        } else if let parsed = Int(limit), parsed >= 1 {
            value = parsed
        } else {
            throw ValidationError("the limit must be a number of at least 1, or none")
        }
        let production = try await options.open()
        try await production.setConcurrencyLimit(value, queue: queue)
        if options.json { return try printJSON(["queue": queue, "limit": limit]) }
        print("queue \(queue) limit \(limit)")
    }
}
