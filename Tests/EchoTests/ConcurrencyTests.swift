import Echo
import Foundation
import Synchronization
import Testing

/// Items 9, 10 and 12: slow actions do not hold up others, enqueues wake an idle Sequencer,
/// scheduled actions wait for their run-at, and several Sequencers never run an action twice.
@Suite struct ConcurrencyTests {
    /// Counts actions running at once and remembers the most.
    final class Occupancy: Sendable {
        private let state = Mutex((now: 0, most: 0))
        init() {}
        func enter() {
            state.withLock {
                $0.now += 1; $0.most = max($0.most, $0.now)
            }
        }
        func leave() { state.withLock { $0.now -= 1 } }
        var most: Int { state.withLock { $0.most } }
        var now: Int { state.withLock { $0.now } }
    }

    @Test func aSlowActionDoesNotHoldUpTheOthers() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let gate = Gate()
        let plan = Plan()
            .signature("Slow") { (_: Empty, _: ActionContext) -> Empty in
                try await gate.wait()
                return Empty()
            }
            .signature("Fast") { (input: Number, _: ActionContext) in input }
        // The slow one first, in the same batch as the fast ones.
        let slow = try await production.enqueue("Slow", Empty(), options: ActionOptions(priority: 1))
        let fast = try await production.enqueue((0..<20).map { try NewAction("Fast", Number(value: $0)) })
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration(concurrency: 4))
        try await withRunning(sequencer) {
            // Timeline: Slow blocks on the gate; every Fast one finishes meanwhile on the other slots.
            try await expectEventually { try await production.list(state: .done, limit: 100).count == 20 }
            #expect(try await production.action(slow)?.state == .leased)
            #expect(try await production.karma(slow) == nil)
            gate.open()
            #expect(try await waitForKarma(production, slow).outcome == .succeeded)
        }
        for id in fast { #expect(try await production.karma(id)?.outcome == .succeeded) }
    }

    @Test func concurrencyBoundsTheActionsRunningAtOnce() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let occupancy = Occupancy()
        let gate = Gate()
        let plan = Plan().signature("Hold") { (_: Empty, _: ActionContext) -> Empty in
            occupancy.enter()
            defer { occupancy.leave() }
            try await gate.wait()
            return Empty()
        }
        try await production.enqueue((0..<9).map { _ in try NewAction("Hold", Empty()) })
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration(concurrency: 3))
        try await withRunning(sequencer) {
            try await expectEventually { occupancy.now == 3 }
            // With three held, no fourth is leased.
            #expect(try await production.list(state: .leased).count == 3)
            gate.open()
            try await expectEventually { try await production.list(state: .done).count == 9 }
        }
        #expect(occupancy.most == 3)
    }

    @Test func anEnqueueWakesAnIdleSequencerAtOnce() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Ping") { (input: Number, _: ActionContext) in input }
        // Polls a minute apart: only the in-process doorbell can start the action in time.
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(minimumPollInterval: .seconds(60), maximumPollInterval: .seconds(60)))
        try await withRunning(sequencer) {
            // A first action proves the Sequencer is up; after it, the Sequencer is idle.
            let first = try await production.enqueue("Ping", Number(value: 1))
            _ = try await waitForKarma(production, first, timeout: .seconds(20))
            for value in 2...4 {
                let id = try await production.enqueue("Ping", Number(value: value))
                let woke = try await eventually(timeout: .seconds(20)) { try await production.karma(id) != nil }
                #expect(woke, "the enqueue of \(value) did not wake the Sequencer")
            }
            // Batches and transactions ring the doorbell too.
            let batch = try await production.enqueue([try NewAction("Ping", Number(value: 5))])
            try await expectEventually { try await production.karma(batch[0]) != nil }
            let inTransaction = try await production.transaction { tx in
                try tx.enqueue("Ping", Number(value: 6))
            }
            try await expectEventually { try await production.karma(inTransaction) != nil }
        }
    }

    @Test func actionsEnqueuedOnSuccessWakeAnIdleSequencer() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan()
            .signature("Parent") { (input: Number, context: ActionContext) -> Number in
                if input.value == 1 {
                    context.enqueueOnSuccess(try NewAction("Parent", Number(value: 2)))
                } else {
                    context.onSuccess { tx in try tx.enqueue("Child", Number(value: 3)) }
                }
                return input
            }
            .signature("Child") { (input: Number, _: ActionContext) in input }
        // Polls a minute apart: each link of the chain must wake the Sequencer itself.
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(minimumPollInterval: .seconds(60), maximumPollInterval: .seconds(60)))
        try await withRunning(sequencer) {
            try await production.enqueue("Parent", Number(value: 1))
            try await expectEventually { try await production.list(state: .done, name: "Child").count == 1 }
        }
        #expect(try await production.list(state: .done).count == 3)
    }

    @Test func aRetryWakesAnIdleSequencerAtItsRunAt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Flaky") { (input: Number, context: ActionContext) -> Number in
            if context.attempt == 1 { throw TestFailure(text: "once") }
            return input
        }
        // Polls a minute apart and leases of 30 s: the retry, due 20 ms after the failure, must
        // not wait for either.
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(minimumPollInterval: .seconds(60), maximumPollInterval: .seconds(60)))
        try await withRunning(sequencer) {
            let id = try await production.enqueue("Flaky", Number(value: 1))
            let karma = try await waitForKarma(production, id, timeout: .seconds(15))
            #expect(karma.attempts == 2)
        }
    }

    @Test func aDelayedActionWaitsForItsRunAtAndThenWakesTheSequencer() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let startedAt = Tally()
        let plan = Plan().signature("Later") { (_: Empty, _: ActionContext) -> Empty in
            startedAt.add("\(nowMilliseconds())")
            return Empty()
        }
        let sequencer = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(minimumPollInterval: .seconds(60), maximumPollInterval: .seconds(60)))
        try await withRunning(sequencer) {
            let id = try await production.enqueue("Later", Empty(), options: ActionOptions(delay: .milliseconds(600)))
            let runAt = try #require(try await production.action(id)).runAt.epochMilliseconds
            // The Sequencer sleeps until the run-at, not until its next poll a minute away.
            let karma = try await waitForKarma(production, id, timeout: .seconds(20))
            let started = try #require(startedAt.log.first.flatMap { Int64($0) })
            #expect(started >= runAt)
            #expect(try #require(karma.startedAt).epochMilliseconds >= runAt)
        }
    }

    @Test func severalSequencersOnOneFileRunEachActionOnce() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let producer = try await Production.open(path: path)
        let runs = Tally()
        let plan = Plan().signature("Once") { (input: Number, context: ActionContext) -> Number in
            runs.add("\(input.value)")
            if input.value % 7 == 0 { try await Task.sleep(for: .milliseconds(5)) }
            return input
        }
        let count = 300
        try await producer.enqueue((0..<count).map { try NewAction("Once", Number(value: $0)) })
        // Four Sequencers: two sharing the producer's connections, two with productions of their own.
        var sequencers: [Sequencer] = []
        for index in 0..<4 {
            let production = index < 2 ? producer : try await Production.open(path: path)
            sequencers.append(
                Sequencer(
                    production: production, plan: plan,
                    configuration: testConfiguration(concurrency: 4, owner: "sequencer-\(index)")))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            for sequencer in sequencers { group.addTask { try await sequencer.run() } }
            // More enqueued while they run.
            try await producer.enqueue((count..<count + 100).map { try NewAction("Once", Number(value: $0)) })
            let done = try await eventually(timeout: .seconds(60)) {
                try await producer.list(state: .done, limit: 1_000).count == count + 100
            }
            #expect(done)
            for sequencer in sequencers { sequencer.shutdown() }
            try await group.waitForAll()
        }
        #expect(runs.all.count == count + 100)
        let twice = runs.all.filter { $0.value != 1 }
        #expect(twice.isEmpty, "ran more than once: \(twice)")
        let raw = try SQLiteFile(path: path)
        #expect(try raw.int("SELECT count(*) FROM echo_karma WHERE attempts = 1 AND outcome = 2") == Int64(count + 100))
        // Every lease was given up: no row keeps an owner.
        #expect(try raw.int("SELECT count(*) FROM echo_actions WHERE owner IS NOT NULL OR state != 2") == 0)
    }
}
