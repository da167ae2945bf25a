import Echo
import Foundation
import Logging
import MetricsTestKit
import ServiceLifecycle
import Synchronization
import Testing

/// Captures log entries, to check what Echo logs and at which level.
final class CapturedLogs: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }
    private let entries = Mutex<[Entry]>([])

    func append(_ entry: Entry) { entries.withLock { $0.append(entry) } }
    var all: [Entry] { entries.withLock { $0 } }

    func logger() -> Logger {
        Logger(label: "test") { _ in Handler(logs: self) }
    }

    struct Handler: LogHandler {
        let logs: CapturedLogs
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged: [String: String] = [:]
            for (key, value) in metadata.merging(event.metadata ?? [:], uniquingKeysWith: { _, new in new }) {
                merged[key] = "\(value)"
            }
            logs.append(Entry(level: event.level, message: "\(event.message)", metadata: merged))
        }
    }
}

struct Failing: Error {}

@Suite struct EcosystemTests {
    @Test func serviceGroupGracefulShutdownDrainsTheSequencer() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        // Timeline: the action starts and waits for `release`; graceful shutdown is triggered while
        // it runs; the action is then released and must finish and be committed before run() returns.
        let started = Signal(false)
        let release = Signal(false)
        let plan = Plan().signature("Slow") { (input: Greeting, _: ActionContext) in
            started.set(true)
            while !release.value { try? await Task.sleep(for: .milliseconds(5)) }
            return Reply(text: input.name)
        }
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: Sequencer.Configuration(shutdownGracePeriod: .seconds(30)))
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: [.init(service: sequencer)], logger: Logger(label: "t")))
        let id = try await production.enqueue("Slow", Greeting(name: "drain"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await expectEventually { started.value }
            await group.triggerGracefulShutdown()
            release.set(true)
            try await tasks.waitForAll()
        }
        let karma = try #require(try await production.karma(id))
        #expect(karma.outcome == .succeeded)
        #expect(try await production.action(id)?.state == .done)
    }

    @Test func shutdownBeforeRunLeavesActionsReadyAndUncounted() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Noop") { (_: Greeting, _: ActionContext) in Reply(text: "") }
        let sequencer = Sequencer(production: production, plan: plan)
        // Shut down before running: nothing is claimed, everything stays ready with attempt 0.
        sequencer.shutdown()
        let ids = try await production.enqueue((0..<5).map { try NewAction("Noop", Greeting(name: "\($0)")) })
        try await sequencer.run()
        for id in ids {
            let record = try #require(try await production.action(id))
            #expect(record.state == .ready)
            #expect(record.attempt == 0)
        }
    }

    @Test func metricsCountTheLifeOfActions() async throws {
        let directory = try TemporaryDirectory()
        let metrics = TestMetrics()
        let production = try await Production.open(path: directory.path(), metricsFactory: metrics)
        let plan = Plan()
            .signature("Ok") { (_: Greeting, _: ActionContext) in Reply(text: "ok") }
            .signature("Bad", policy: Plan.Policy(maxAttempts: 2, backoff: Backoff(base: .milliseconds(1), jitter: 0)))
        {
            (_: Greeting, _: ActionContext) -> Reply in throw Failing()
        }
        let ok = try await production.enqueue((0..<3).map { try NewAction("Ok", Greeting(name: "\($0)")) })
        let bad = try await production.enqueue("Bad", Greeting(name: "x"))
        let sequencer = Sequencer(production: production, plan: plan)
        try await withRunning(sequencer) {
            try await expectEventually { try await production.karma(bad) != nil }
            for id in ok { try await expectEventually { try await production.karma(id) != nil } }
        }
        let okDimensions = [("queue", "default"), ("name", "Ok")]
        let badDimensions = [("queue", "default"), ("name", "Bad")]
        #expect(metrics.counterTotal(label: "echo_actions_enqueued_total", dimensions: okDimensions) == 3)
        #expect(metrics.counterTotal(label: "echo_actions_enqueued_total", dimensions: badDimensions) == 1)
        #expect(metrics.counterTotal(label: "echo_actions_started_total", dimensions: okDimensions) == 3)
        #expect(metrics.counterTotal(label: "echo_actions_succeeded_total", dimensions: okDimensions) == 3)
        #expect(metrics.counterTotal(label: "echo_actions_started_total", dimensions: badDimensions) == 2)
        #expect(metrics.counterTotal(label: "echo_actions_failed_total", dimensions: badDimensions) == 2)
        #expect(metrics.counterTotal(label: "echo_actions_retried_total", dimensions: badDimensions) == 1)
        #expect(metrics.counterTotal(label: "echo_actions_dead_lettered_total", dimensions: badDimensions) == 1)
        let runTimer = try metrics.expectTimer("echo_action_run_duration", okDimensions)
        #expect(runTimer.values.count == 3)
        let waitTimer = try metrics.expectTimer("echo_action_wait_duration", okDimensions)
        #expect(waitTimer.values.count == 3)
    }

    @Test func deadLettersAndRetriesAreLoggedWithTheActionsIdentity() async throws {
        let directory = try TemporaryDirectory()
        let logs = CapturedLogs()
        let production = try await Production.open(path: directory.path(), logger: logs.logger())
        let plan = Plan().signature(
            "Bad", policy: Plan.Policy(maxAttempts: 2, backoff: Backoff(base: .milliseconds(1), jitter: 0))
        ) { (_: Greeting, _: ActionContext) -> Reply in throw Failing() }
        let id = try await production.enqueue("Bad", Greeting(name: "x"))
        let sequencer = Sequencer(production: production, plan: plan)
        try await withRunning(sequencer) {
            try await expectEventually { try await production.karma(id) != nil }
        }
        let dead = logs.all.filter { $0.message == "action dead-lettered" }
        #expect(dead.count == 1)
        #expect(dead.first?.level == .warning)
        #expect(dead.first?.metadata["action"] == "\(id)")
        #expect(dead.first?.metadata["name"] == "Bad")
        #expect(dead.first?.metadata["attempt"] == "2")
        let retried = logs.all.filter { $0.message == "action failed; retrying" }
        #expect(retried.count == 1)
        #expect(retried.first?.level == .info)
        #expect(logs.all.contains { $0.message == "sequencer shutting down" })
    }

    @Test func pausedQueueLeasesNothingUntilResumed() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await production.pause(queue: "default")
        let runs = Signal(0)
        let plan = Plan().signature("Count") { (_: Greeting, _: ActionContext) in
            runs.withValue { $0 += 1 }
            return Reply(text: "")
        }
        let id = try await production.enqueue("Count", Greeting(name: "p"))
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: Sequencer.Configuration(
                minimumPollInterval: .milliseconds(5),
                maximumPollInterval: .milliseconds(20)))
        try await withRunning(sequencer) {
            // Several poll intervals pass while paused: the action must still be ready.
            try await Task.sleep(for: .milliseconds(300))
            #expect(try await production.action(id)?.state == .ready)
            #expect(runs.value == 0)
            #expect(try await production.stats().first?.isPaused == true)
            try await production.resume(queue: "default")
            try await expectEventually { try await production.karma(id) != nil }
        }
        #expect(runs.value == 1)
    }

    @Test func concurrencyLimitHoldsAcrossSequencers() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await production.setConcurrencyLimit(2, queue: "default")
        let running = Signal(0)
        let peak = Signal(0)
        let plan = Plan().signature("Hold") { (_: Greeting, _: ActionContext) in
            let now = running.withValue { value -> Int in
                value += 1
                return value
            }
            peak.withValue { $0 = max($0, now) }
            try? await Task.sleep(for: .milliseconds(30))
            running.withValue { $0 -= 1 }
            return Reply(text: "")
        }
        let ids = try await production.enqueue((0..<12).map { try NewAction("Hold", Greeting(name: "\($0)")) })
        let configuration = Sequencer.Configuration(
            concurrency: 8, minimumPollInterval: .milliseconds(5), maximumPollInterval: .milliseconds(20))
        let first = Sequencer(production: production, plan: plan, configuration: configuration)
        let second = Sequencer(production: production, plan: plan, configuration: configuration)
        try await withRunning(first) {
            try await withRunning(second) {
                for id in ids { try await expectEventually { try await production.karma(id) != nil } }
            }
        }
        #expect(peak.value <= 2)
        #expect(peak.value >= 1)
    }
}
