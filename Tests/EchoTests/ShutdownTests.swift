import Echo
import Foundation
import Logging
import ServiceLifecycle
import Synchronization
import Testing

/// Item 11: graceful shutdown stops claiming, lets running actions finish, flushes outcomes and
/// hands unstarted leases back at once.
@Suite struct ShutdownTests {
    @Test func runningActionsFinishAndTheirOutcomesAreFlushed() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let started = Gate()
        let release = Gate()
        let events = Tally()
        let plan = Plan()
            .signature("Slow") { (input: Number, _: ActionContext) -> Number in
                started.open()
                try await release.wait()
                events.add("action finished")
                return input
            }
            .signature("Other") { (_: Empty, _: ActionContext) -> Empty in
                events.add("other ran")
                return Empty()
            }
        let id = try await production.enqueue("Slow", Number(value: 7))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await sequencer.run()
                events.add("run returned")
            }
            // Timeline: the action starts; shutdown is asked while it runs; an action enqueued
            // then is not claimed; the action finishes; only then does run() return.
            try await started.wait()
            sequencer.shutdown()
            let late = try await production.enqueue("Other", Empty())
            #expect(events.log.isEmpty)
            #expect(try await production.action(id)?.state == .leased)
            release.open()
            try await group.waitForAll()
            #expect(try await production.action(late)?.state == .ready)
            #expect(try await production.action(late)?.attempt == 0)
        }
        #expect(events.log == ["action finished", "run returned"])
        // The outcome was committed before run() returned.
        let karma = try #require(try await production.karma(id))
        #expect(karma.outcome == .succeeded)
        #expect(try karma.decodeResult(as: Number.self) == Number(value: 7))
        #expect(try await production.action(id)?.state == .done)
    }

    @Test func nothingIsLeftLeasedAfterShutdown() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Step") { (input: Number, _: ActionContext) -> Number in
            try await Task.sleep(for: .milliseconds(20))
            return input
        }
        let count = 60
        try await production.enqueue((0..<count).map { try NewAction("Step", Number(value: $0)) })
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration(concurrency: 6))
        try await withRunning(sequencer) {
            try await expectEventually { try await production.list(state: .done, limit: 1_000).count >= 6 }
        }
        // Every action is done, or back to ready with no attempt counted: none waits for a lease to expire.
        let all = try await production.list(limit: 1_000)
        #expect(all.count == count)
        #expect(all.allSatisfy { $0.state == .done || $0.state == .ready })
        for record in all where record.state == .ready {
            #expect(record.attempt == 0)
            #expect(record.owner == nil)
            #expect(record.errors.isEmpty)
            #expect(record.runAt.epochMilliseconds <= nowMilliseconds())
        }
        for record in all where record.state == .done {
            #expect(try await production.karma(record.id)?.attempts == 1)
        }
        #expect(all.contains { $0.state == .ready }, "shutdown should stop well before 60 actions are done")
    }

    @Test func actionsPastTheGracePeriodAreCancelledAndRetried() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let started = Gate()
        let release = Gate()
        let plan = Plan().signature("Stubborn") { (_: Empty, _: ActionContext) -> Empty in
            started.open()
            // Ignores cancellation: shutdown must not wait for it past the grace period.
            try await release.wait(ignoringCancellation: true)
            return Empty()
        }
        let id = try await production.enqueue("Stubborn", Empty())
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(shutdownGracePeriod: .milliseconds(200)))
        try await withRunning(sequencer) { try await started.wait() }
        defer { release.open() }
        let record = try #require(try await production.action(id))
        #expect(record.state == .ready)
        #expect(record.attempt == 1)
        #expect(record.owner == nil)
        #expect(record.errors.count == 1)
        #expect(record.errors.first?.message.contains("cancel") == true)
        #expect(try await production.karma(id) == nil)
    }

    @Test func cancellingRunCancelsRunningActionsAndRecordsTheAttempt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let started = Gate()
        let never = Gate()
        let plan = Plan().signature("Waits") { (_: Empty, _: ActionContext) -> Empty in
            started.open()
            try await never.wait()
            return Empty()
        }
        let id = try await production.enqueue("Waits", Empty())
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: testConfiguration(shutdownGracePeriod: .seconds(60)))
        let run = Task { try await sequencer.run() }
        try await started.wait()
        run.cancel()
        try await run.value
        let record = try #require(try await production.action(id))
        #expect(record.state == .ready)
        #expect(record.attempt == 1)
        #expect(record.errors.first?.message.contains("cancel") == true)
    }

    @Test func aServiceGroupShutsTheSequencerDownGracefully() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let started = Gate()
        let release = Gate()
        let plan = Plan().signature("Slow") { (_: Empty, _: ActionContext) -> Empty in
            started.open()
            try await release.wait()
            return Empty()
        }
        let id = try await production.enqueue("Slow", Empty())
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let group = ServiceGroup(services: [sequencer], logger: Logger(label: "echo-tests"))
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await started.wait()
            await group.triggerGracefulShutdown()
            #expect(try await production.action(id)?.state == .leased)
            release.open()
            try await tasks.waitForAll()
        }
        #expect(try await production.karma(id)?.outcome == .succeeded)
    }

    @Test func aSequencerRunsOnlyOnceAtATime() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Ping") { (input: Number, _: ActionContext) in input }
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) {
            // Once an action has run, the first run() is certainly under way: a second is refused.
            let id = try await production.enqueue("Ping", Number(value: 1))
            _ = try await waitForKarma(production, id)
            await #expect {
                try await sequencer.run()
            } throws: { ($0 as? ActionError)?.code == .invalidArgument }
        }
        // After it stopped, it can run again.
        try await withRunning(sequencer) {
            let id = try await production.enqueue("Ping", Number(value: 2))
            #expect(try await waitForKarma(production, id).outcome == .succeeded)
        }
    }

    @Test func aRefusedSecondRunDoesNotUndoAShutdown() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let started = Gate()
        let release = Gate()
        let plan = Plan().signature("Slow") { (_: Empty, _: ActionContext) -> Empty in
            started.open()
            try await release.wait()
            return Empty()
        }
        let id = try await production.enqueue("Slow", Empty())
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let returned = Gate()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                try await sequencer.run()
                returned.open()
            }
            try await started.wait()
            sequencer.shutdown()
            // A second run() while the first drains is refused, and must leave the shutdown in force.
            await #expect {
                try await sequencer.run()
            } throws: { ($0 as? ActionError)?.code == .invalidArgument }
            release.open()
            let stopped = await eventually(timeout: .seconds(10)) { returned.opened }
            #expect(stopped, "the first run() kept running after shutdown")
            if !stopped { sequencer.shutdown() }
            try await group.waitForAll()
        }
        #expect(try await production.karma(id)?.outcome == .succeeded)
    }
}
