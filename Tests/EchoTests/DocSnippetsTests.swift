// Guards the documentation's Swift snippets: README.md's "Running it in a service" and every
// snippet of the Getting Started article, adapted minimally into functions so that they compile
// against the current API, and tests that check the snippets here still match the docs and that
// the objects they build have the defaults the docs describe.

import Foundation
import Logging
import ServiceLifecycle
import Testing
// `.sigterm` is declared in UnixSignals; this package enables MemberImportVisibility, so it must
// be imported here (a client without that feature needs only `import ServiceLifecycle`).
import UnixSignals

@testable import Echo

// MARK: README.md, "Running it in a service"

/// The README's service snippet. Placeholders: `logger`, `plan` and the two input types.
enum ServiceSnippet {
    struct ReportInput: Codable, Sendable {}
    struct Ping: Codable, Sendable {}

    /// Verbatim from the README. Compiled, never called: it runs until SIGTERM.
    // swift-format-ignore
    static func run(logger: Logger, plan: Plan) async throws {
        let production = try await Production.open(path: "/var/lib/app/actions.sqlite", logger: logger)
        let sequencer = Sequencer(production: production, plan: plan, logger: logger)
        let scheduler = try Scheduler(production: production, schedules: [
            Schedule("nightly-report", cadence: .cron(try CronExpression("30 2 * * *")),
                     action: try NewAction("Report", ReportInput())),
            Schedule("heartbeat", cadence: try .every(.seconds(60)), action: try NewAction("Ping", Ping())),
        ])
        let group = ServiceGroup(services: [sequencer, scheduler], gracefulShutdownSignals: [.sigterm], logger: logger)
        try await group.run()   // SIGTERM: stop claiming, drain within the grace period, release unstarted leases
    }

    /// The same objects on another path, for the tests to inspect and run.
    static func build(path: String, logger: Logger, plan: Plan) async throws -> (
        Production, Sequencer, Scheduler, ServiceGroup
    ) {
        let production = try await Production.open(path: path, logger: logger)
        let sequencer = Sequencer(production: production, plan: plan, logger: logger)
        let scheduler = try Scheduler(
            production: production,
            schedules: [
                Schedule(
                    "nightly-report", cadence: .cron(try CronExpression("30 2 * * *")),
                    action: try NewAction("Report", ReportInput())),
                Schedule("heartbeat", cadence: try .every(.seconds(60)), action: try NewAction("Ping", Ping())),
            ])
        let group = ServiceGroup(
            services: [sequencer, scheduler], gracefulShutdownSignals: [.sigterm], logger: logger)
        return (production, sequencer, scheduler, group)
    }
}

// MARK: Getting Started article

/// The Getting Started article's snippets, one function each. Adaptations: each snippet is the
/// body of a function whose parameters supply what earlier snippets defined (`production`,
/// `plan`, `id`, `logger`), and values a later step needs are returned.
enum GettingStartedSnippets {
    // "Describe the work: a Plan" (the types).
    struct ReadInput: Codable, Sendable { var path: String }
    struct ReadOutput: Codable, Sendable { var length: Int }

    /// "Open a production". Compiled, never called: it would create `actions.sqlite` here.
    static func open() async throws -> Production {
        let production = try await Production.open(path: "actions.sqlite")
        return production
    }

    /// "Describe the work: a Plan".
    static func describe() -> Plan {
        let plan = Plan()
            .signature("Read", policy: Plan.Policy(maxAttempts: 5, timeout: .seconds(30))) {
                (input: ReadInput, context: ActionContext) in
                ReadOutput(length: input.path.count)
            }
        return plan
    }

    /// "Enqueue".
    static func enqueue(_ production: Production) async throws -> ActionID {
        let id = try await production.enqueue("Read", ReadInput(path: "a.txt"))
        try await production.enqueue([
            try NewAction("Read", ReadInput(path: "b.txt"), options: ActionOptions(priority: 10)),
            try NewAction("Read", ReadInput(path: "c.txt"), options: ActionOptions(delay: .seconds(60))),
        ])
        return id
    }

    /// "Run". Compiled, never called: it runs until SIGTERM.
    static func run(_ production: Production, _ plan: Plan, logger: Logger) async throws {
        let sequencer = Sequencer(production: production, plan: plan)
        let group = ServiceGroup(services: [sequencer], gracefulShutdownSignals: [.sigterm], logger: logger)
        try await group.run()
    }

    /// "Inspect". Needs at least one dead letter.
    // swift-format-ignore
    static func inspect(_ production: Production, _ id: ActionID) async throws -> (KarmaRecord?, [ActionRecord]) {
        let karma = try await production.karma(id)          // outcome, result, attempts, errors, times
        let dead = try await production.deadLetters()
        try await production.retry(dead[0].id)
        return (karma, dead)
    }
}

// MARK: Tests

@Suite struct DocSnippetsTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The ```swift blocks of `markdown` after `heading` (up to the next heading of that level).
    static func swiftBlocks(in markdown: String, after heading: String) throws -> [String] {
        let section = try #require(markdown.range(of: heading + "\n"))
        let level = heading.prefix { $0 == "#" }
        let end = markdown.range(of: "\n\(level) ", range: section.upperBound..<markdown.endIndex)?.lowerBound
        var text = markdown[section.upperBound..<(end ?? markdown.endIndex)]
        var blocks: [String] = []
        while let start = text.range(of: "```swift\n") {
            let close = try #require(text.range(of: "```", range: start.upperBound..<text.endIndex))
            blocks.append(String(text[start.upperBound..<close.lowerBound]))
            text = text[close.upperBound...]
        }
        return blocks
    }

    /// Every line of every block appears in this file (indentation aside; imports are this file's).
    static func expectInThisFile(_ blocks: [String]) throws {
        let source = try String(contentsOf: URL(fileURLWithPath: #filePath), encoding: .utf8)
        let lines = Set(source.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) })
        for block in blocks {
            for line in block.split(separator: "\n") {
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                if trimmed.isEmpty || trimmed.hasPrefix("import ") { continue }
                #expect(lines.contains(trimmed), "not in DocSnippetsTests.swift: \(trimmed)")
            }
        }
    }

    @Test func theSnippetsHereMatchTheDocs() throws {
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        let service = try Self.swiftBlocks(in: readme, after: "## Running it in a service")
        #expect(service.count == 1)
        try Self.expectInThisFile(service)

        let article = try String(
            contentsOf: Self.root.appendingPathComponent("Sources/Echo/Echo.docc/GettingStarted.md"), encoding: .utf8)
        let gettingStarted = try Self.swiftBlocks(in: article, after: "# Getting started")
        #expect(gettingStarted.count == 5)
        try Self.expectInThisFile(gettingStarted)
    }

    @Test func theServiceSnippetBuildsWhatTheReadmeDescribes() async throws {
        let directory = try TemporaryDirectory()
        let logger = Logger(label: "doc-snippets")
        let (production, sequencer, scheduler, group) = try await ServiceSnippet.build(
            path: directory.path(), logger: logger, plan: GettingStartedSnippets.describe())

        // Durability modes: FULL is the default; busy timeout 30 s; 20 attempts.
        #expect(production.configuration.synchronous == .full)
        #expect(production.configuration.busyTimeout == .seconds(30))
        #expect(production.configuration.defaultMaxAttempts == 20)

        // Sequencer defaults: polling 20–500 ms, 30 s leases, 32 at once, 10 s grace, retention.
        let configuration = sequencer.configuration
        #expect(configuration.queues == ["default"])
        #expect(configuration.concurrency == 32)
        #expect(configuration.leaseDuration == .seconds(30))
        #expect(configuration.heartbeatInterval == nil)
        #expect(configuration.minimumPollInterval == .milliseconds(20))
        #expect(configuration.maximumPollInterval == .milliseconds(500))
        #expect(configuration.shutdownGracePeriod == .seconds(10))
        #expect(configuration.defaultTimeout == nil)
        #expect(configuration.backoff == Backoff(base: .seconds(1), factor: 2, cap: .seconds(3_600), jitter: 0.1))
        #expect(configuration.retention == Retention(maximumAge: .seconds(7 * 86_400), interval: .seconds(300)))
        #expect(configuration.retention?.maximumCount == nil)
        #expect(Production.pruneChunk == 5_000)

        // The schedules: names, catch-up default, and the tick's idempotency key.
        #expect(scheduler.schedules.map(\.name) == ["nightly-report", "heartbeat"])
        #expect(scheduler.schedules.allSatisfy { $0.catchUp == .latest })
        let tick = scheduler.schedules[1].action(forTick: 60_000)
        #expect(tick.options.idempotencyKey == "echo.schedule/heartbeat/60000")

        // The group runs and shuts down gracefully.
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(100))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
    }

    @Test func theGettingStartedSnippetsRun() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = GettingStartedSnippets.describe()
        #expect(plan.signatures == ["Read"])

        let id = try await GettingStartedSnippets.enqueue(production)
        let unknown = try await production.enqueue("Unknown", GettingStartedSnippets.ReadInput(path: "d.txt"))
        let pending = try await production.list()
        #expect(pending.count == 4)
        #expect(pending.contains { $0.priority == 10 })

        // Run until the due actions have finished (the delayed one is not due for a minute).
        let sequencer = Sequencer(production: production, plan: plan)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await sequencer.run() }
            while try await production.karma(id) == nil { try await Task.sleep(for: .milliseconds(10)) }
            while try await production.karma(unknown) == nil { try await Task.sleep(for: .milliseconds(10)) }
            sequencer.shutdown()
            try await tasks.waitForAll()
        }

        let (karma, dead) = try await GettingStartedSnippets.inspect(production, id)
        #expect(karma?.outcome == .succeeded)
        #expect(try karma?.decodeResult(as: GettingStartedSnippets.ReadOutput.self).length == "a.txt".count)
        #expect(dead.map(\.id) == [unknown])
        #expect(try await production.action(unknown)?.state == .ready)
    }
}
