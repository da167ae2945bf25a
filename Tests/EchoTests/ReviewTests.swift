import Foundation
import Synchronization
import Testing

@testable import Echo

/// Regression tests from an adversarial review of the durable path: each covers a bug that lost,
/// duplicated or wedged actions without a crash.
@Suite struct ReviewTests {
    /// Runs `sequencer` in an unstructured task; `stopped` opens when `run()` returns. A test can
    /// then wait for the stop with `eventually` instead of hanging when the Sequencer never stops.
    private func start(_ sequencer: Sequencer) -> (task: Task<Void, any Error>, stopped: Gate) {
        let stopped = Gate()
        let task = Task {
            defer { stopped.open() }
            try await sequencer.run()
        }
        return (task, stopped)
    }

    /// A chained action that cannot be stored (an empty queue name) must not make the outcome
    /// commit fail for ever: that wedged the Sequencer (no other outcome committed) and made its
    /// shutdown hang. The attempt fails like one whose effect threw.
    @Test func aChainedActionThatCannotBeStoredDoesNotWedgeTheSequencer() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan()
            .signature("Chain") { (_: Empty, context: ActionContext) -> Empty in
                context.enqueueOnSuccess(
                    NewAction("Never", payload: Array("{}".utf8), options: ActionOptions(queue: "")))
                return Empty()
            }
            .signature("Ping") { (input: Number, _: ActionContext) in input }
        let bad = try await production.enqueue("Chain", Empty(), options: ActionOptions(maxAttempts: 1))
        // The same through a `next:` chain stored at enqueue.
        let stored = try await production.enqueue(
            try NewAction(
                "Ping", Number(value: 1), options: ActionOptions(maxAttempts: 1),
                next: NewAction("Never", payload: Array("{}".utf8), options: ActionOptions(maxAttempts: 0))))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let (task, stopped) = start(sequencer)
        defer { task.cancel() }
        let good = try await production.enqueue("Ping", Number(value: 2))
        let goodKarma = try await waitForKarma(production, good, timeout: .seconds(10))
        #expect(goodKarma.outcome == .succeeded)
        let badKarma = try await waitForKarma(production, bad, timeout: .seconds(10))
        #expect(badKarma.outcome == .deadLettered)
        #expect(badKarma.errors.last?.message.contains("queue name") == true)
        let storedKarma = try await waitForKarma(production, stored, timeout: .seconds(10))
        #expect(storedKarma.outcome == .deadLettered)
        #expect(try await production.list(name: "Never").isEmpty)
        sequencer.shutdown()
        try await expectEventually(timeout: .seconds(10)) { stopped.opened }
    }

    /// A Sequencer can claim an action again whose lease it lost while it still held the old
    /// attempt (a stall past the lease). The old attempt's late outcome must not drop the held
    /// entry of the new attempt: without it, the new lease is never extended by the heartbeat
    /// (it expires mid-run and the action runs twice at once) nor reached by a revocation.
    @Test func aStaleAttemptDoesNotDropTheNewerLeaseOfTheSameAction() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"), options: ActionOptions(maxAttempts: 5))
        let sequencer = Sequencer(
            production: production, plan: Plan(), configuration: testConfiguration(owner: "S"))
        // Attempt 1 is leased with a lease that has already run out; the same owner claims attempt 2.
        let old = try #require(
            try await production.store.claim(
                queue: "default", owner: "S", limit: 1, leaseUntil: nowMilliseconds() - 1_000, defaultMaxAttempts: 20
            ).first)
        let newer = try #require(
            try await production.store.claim(
                queue: "default", owner: "S", limit: 1, leaseUntil: nowMilliseconds() + 60_000, defaultMaxAttempts: 20
            ).first)
        #expect(newer.lease.attempt == 2)
        let context = ActionContext(claimed: newer, maxAttempts: 5, life: Life(), karma: production.ledger)
        sequencer.state.withLock { state in
            state.held[id.rawValue] = Sequencer.Held(lease: newer.lease, context: context)
            state.active = 2
        }

        // The old attempt finishes (its function is not in the Plan: a routing failure)...
        await sequencer.perform(old)
        #expect(sequencer.state.withLock { $0.held[id.rawValue]?.context } === context)
        // ... and its outcome is committed and rejected.
        let batch = sequencer.state.withLock { state in
            let outcomes = state.outcomes
            state.outcomes = []
            return outcomes
        }
        #expect(batch.count == 1)
        await sequencer.commit(batch, final: false)
        #expect(try await production.action(id)?.attempt == 2)
        #expect(try await production.action(id)?.state == .leased)
        // The new attempt is still held, so the heartbeat keeps extending its lease.
        #expect(sequencer.state.withLock { $0.held[id.rawValue]?.lease } == newer.lease)
        #expect(sequencer.state.withLock { $0.held[id.rawValue]?.context } === context)
    }

    /// The lease's end was computed before the claim waited for the write lock: a claim that waited
    /// longer than the lease duration (another process writing, a busy writer queue) leased actions
    /// whose lease had already expired, so another Sequencer could claim and run them at once.
    @Test func aClaimThatWaitedForTheWriteLockStillGetsItsFullLease() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let production = try await Production.open(path: path)
        let id = try await production.enqueue("Greet", Greeting(name: "a"))
        let other = try SQLiteFile(path: path)
        try other.execute("BEGIN IMMEDIATE")
        let lease: Int64 = 300
        let claim = Task {
            try await production.store.claim(
                queue: "default", owner: "A", limit: 1, leaseUntil: nowMilliseconds() + lease, defaultMaxAttempts: 20)
        }
        // Hold the write lock for longer than the lease (setup only; nothing asserts on timing).
        try await Task.sleep(for: .milliseconds(2 * lease))
        let released = nowMilliseconds()
        try other.execute("COMMIT")
        let claimed = try await claim.value
        #expect(claimed.map(\.lease.id) == [id.rawValue])
        let record = try #require(try await production.action(id))
        // The lease runs from when the claim committed, so it had not expired when the claim returned.
        #expect(record.runAt.epochMilliseconds > released)
    }

    /// A row without its own limit takes the Plan signature's `maxAttempts` before the
    /// production's default. A lost lease must not dead-letter it at the (lower) default.
    @Test func anExpiredLeaseHonoursAPolicyAboveTheProductionsDefault() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(
            path: directory.path(), configuration: Production.Configuration(defaultMaxAttempts: 1))
        let runs = Tally()
        let plan = Plan().signature("Flaky", policy: Plan.Policy(maxAttempts: 3)) { (_: Empty, _: ActionContext) in
            runs.add("run")
            return Empty()
        }
        let id = try await production.enqueue("Flaky", Empty())
        // A worker leases it and vanishes: one of its three attempts.
        _ = try await production.store.claim(
            queue: "default", owner: "vanished", limit: 1, leaseUntil: nowMilliseconds() - 1_000,
            defaultMaxAttempts: production.configuration.defaultMaxAttempts)
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 2)
        #expect(runs.count("run") == 1)
    }

    /// `retryDeadLetters` must put dead letters back like `retry(_:)` does: an action revoked
    /// while it ran and then dead-lettered was retried still revoked, so it was cancelled at its
    /// next claim without running.
    @Test func retryingDeadLettersClearsTheRevokedFlag() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"), options: ActionOptions(maxAttempts: 1))
        let lease = try #require(
            try await production.store.claim(
                queue: "default", owner: "A", limit: 1, leaseUntil: nowMilliseconds() + 60_000, defaultMaxAttempts: 20
            ).first
        ).lease
        #expect(try await production.revoke(id))
        _ = try await production.store.complete([Completion(lease: lease, resolution: .dead(error: "boom"))])
        #expect(try await production.action(id)?.state == .dead)

        #expect(try await production.retryDeadLetters() == 1)
        let record = try #require(try await production.action(id))
        #expect(record.state == .ready)
        #expect(!record.isRevoked)
        let claimed = try await production.store.claim(
            queue: "default", owner: "B", limit: 1, leaseUntil: nowMilliseconds() + 60_000, defaultMaxAttempts: 20)
        #expect(claimed.map(\.isRevoked) == [false])
    }

    /// Shutdown gives up on outcomes that cannot be committed after a few tries (their leases
    /// expire and the actions run again). The commit loop kept retrying for ever instead, so a
    /// graceful shutdown hung for as long as another process held the write lock.
    @Test func shutdownDoesNotHangWhileOutcomesCannotBeCommitted() async throws {
        let directory = try TemporaryDirectory()
        let path = directory.path()
        let production = try await Production.open(
            path: path, configuration: Production.Configuration(busyTimeout: .milliseconds(100)))
        let started = Gate()
        let release = Gate()
        let plan = Plan().signature("Slow") { (_: Empty, _: ActionContext) -> Empty in
            started.open()
            try await release.wait()
            return Empty()
        }
        let id = try await production.enqueue("Slow", Empty())
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let (task, stopped) = start(sequencer)
        defer { task.cancel() }
        try await started.wait()
        let other = try SQLiteFile(path: path)
        try other.execute("BEGIN IMMEDIATE")
        release.open()
        sequencer.shutdown()
        try await expectEventually(timeout: .seconds(15)) { stopped.opened }
        try other.execute("COMMIT")
        // The outcome was given up: the action is still leased and runs again once its lease expires.
        #expect(try await production.action(id)?.state == .leased)
    }
}
