import Foundation
import Testing

@testable import Echo

/// Items 3–5: leased claiming, fenced completion and heartbeats, driven through the storage
/// seam directly so that every lease is exact.
@Suite struct ClaimTests {
    private func claim(
        _ production: Production, owner: String, limit: Int = 10, lease: Int64 = 30_000, queue: String = "default"
    ) async throws -> [ClaimedAction] {
        try await production.store.claim(
            queue: queue, owner: owner, limit: limit, leaseUntil: nowMilliseconds() + lease,
            defaultMaxAttempts: production.configuration.defaultMaxAttempts)
    }

    /// Claims as `owner` until something is due (an expired lease), for up to 20 seconds.
    private func claimEventually(_ production: Production, owner: String) async throws -> ClaimedAction? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(20))
        while clock.now < deadline {
            if let claimed = try await claim(production, owner: owner).first { return claimed }
            try await Task.sleep(for: .milliseconds(10))
        }
        Issue.record("nothing became claimable for \(owner)")
        return nil
    }

    @Test func claimLeasesDueActionsAndCountsTheAttempt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let first = try await production.enqueue("Greet", Greeting(name: "a"))
        let second = try await production.enqueue("Greet", Greeting(name: "b"), options: ActionOptions(priority: 7))
        let future = try await production.enqueue(
            "Greet", Greeting(name: "c"), options: ActionOptions(delay: .seconds(60)))
        let before = nowMilliseconds()
        let claimed = try await claim(production, owner: "A", lease: 30_000)
        // The scheduled action is not due; the rest come highest priority first.
        #expect(claimed.map(\.lease.id) == [second.rawValue, first.rawValue])
        #expect(claimed.allSatisfy { $0.lease.owner == "A" && $0.lease.attempt == 1 })
        #expect(try JSONDecoder().decode(Greeting.self, from: Data(claimed[1].payload)) == Greeting(name: "a"))

        let record = try #require(try await production.action(first))
        #expect(record.state == .leased)
        #expect(record.owner == "A")
        #expect(record.attempt == 1)
        #expect(record.runAt.epochMilliseconds >= before + 30_000 - 5)
        #expect(record.startedAt != nil)
        #expect(try await production.action(future)?.state == .ready)

        // Nothing else is due: a second owner gets nothing while the leases hold.
        #expect(try await claim(production, owner: "B").isEmpty)
        // The limit is honoured.
        try await production.enqueue((0..<5).map { try NewAction("Greet", Greeting(name: "\($0)")) })
        #expect(try await claim(production, owner: "B", limit: 3).count == 3)
        #expect(try await claim(production, owner: "B", limit: 3).count == 2)
    }

    @Test func anExpiredLeaseIsClaimableAgainAndTheAttemptCounts() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"), options: ActionOptions(maxAttempts: 5))
        let first = try #require(try await claim(production, owner: "A", lease: 1_500).first)
        #expect(first.lease.attempt == 1)
        let leaseEnd = try #require(try await production.action(id)).runAt.epochMilliseconds
        // While A's lease holds, B gets nothing (unless this machine stalled past its end).
        let refused = try await claim(production, owner: "B")
        #expect(refused.isEmpty || nowMilliseconds() >= leaseEnd)

        // Timeline: A's lease runs out after 1.5 s; B polls until it can claim.
        var second = refused.first
        if second == nil { second = try await claimEventually(production, owner: "B") }
        #expect(second?.lease == Lease(id: id.rawValue, owner: "B", attempt: 2))

        let record = try #require(try await production.action(id))
        #expect(record.state == .leased)
        #expect(record.owner == "B")
        #expect(record.attempt == 2)
        // The lost lease is part of the history.
        #expect(record.errors.map(\.attempt) == [1])
        #expect(record.errors.first?.message.contains("lease expired") == true)
    }

    @Test func anExpiredLeaseOnTheLastAttemptIsADeadLetter() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"), options: ActionOptions(maxAttempts: 1))
        #expect(try await claim(production, owner: "A", lease: 50).count == 1)
        // Once the lease has expired, the next claim dead-letters the action instead of running it again.
        let dead = try await eventually {
            _ = try await claim(production, owner: "B")
            return try await production.action(id)?.state == .dead
        }
        #expect(dead)
        let karma = try #require(try await production.karma(id))
        #expect(karma.outcome == .deadLettered)
        #expect(karma.attempts == 1)
        #expect(karma.errors.last?.message.contains("lease") == true)
    }

    @Test func anExpiredLastAttemptUnderThePlansPolicyIsNotRunAgain() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let runs = Tally()
        // One attempt allowed by the signature's policy (the row itself says nothing).
        let plan = Plan().signature("Once", policy: Plan.Policy(maxAttempts: 1)) { (_: Empty, _: ActionContext) in
            runs.add("run")
            return Empty()
        }
        let id = try await production.enqueue("Once", Empty())
        // A worker leases it and vanishes: that was the one attempt.
        #expect(try await claim(production, owner: "vanished", lease: 50).count == 1)
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(runs.count("run") == 0)
        #expect(karma.outcome == .deadLettered)
        #expect(karma.errors.last?.message.contains("lease") == true)
    }

    @Test func aCompletionWithALostLeaseIsRejected() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"), options: ActionOptions(maxAttempts: 5))
        let stale = try #require(try await claim(production, owner: "A", lease: 50).first).lease
        let newer = try #require(try await claimEventually(production, owner: "B")).lease
        let before = try #require(try await production.action(id))

        // A comes back late with every kind of outcome: each is rejected and writes nothing.
        let resolutions: [Resolution] = [
            .succeeded(result: Array("{}".utf8), next: [try NewAction("Next", Empty())], effects: [], fallback: .dead),
            .retry(runAt: nowMilliseconds(), error: "late failure"),
            .snooze(runAt: nowMilliseconds()),
            .dead(error: "late death"),
            .cancelled(error: "late cancel"),
            .release,
        ]
        let statuses = try await production.store.complete(resolutions.map { Completion(lease: stale, resolution: $0) })
        #expect(statuses == Array(repeating: .leaseLost, count: resolutions.count))
        #expect(try await production.action(id) == before)
        #expect(try await production.karma(id) == nil)
        #expect(try await production.list(name: "Next").isEmpty)
        // A's heartbeat reports the loss and does not extend B's lease.
        let report = try await production.store.heartbeat([stale], leaseUntil: nowMilliseconds() + 60_000)
        #expect(report.lost == [id.rawValue])
        #expect(try await production.action(id) == before)

        // B, the holder, completes.
        let applied = try await production.store.complete([
            Completion(
                lease: newer, resolution: .succeeded(result: Array("{}".utf8), next: [], effects: [], fallback: .dead))
        ])
        #expect(applied == [.applied])
        let karma = try #require(try await production.karma(id))
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 2)
        // Completing twice is also fenced: the row is no longer leased.
        let again = try await production.store.complete([
            Completion(lease: newer, resolution: .dead(error: "twice"))
        ])
        #expect(again == [.leaseLost])
        #expect(try await production.action(id)?.state == .done)
    }

    @Test func heartbeatExtendsHeldLeasesOnly() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"))
        let lease = try #require(try await claim(production, owner: "A", lease: 1_000).first).lease
        let until = nowMilliseconds() + 120_000
        let report = try await production.store.heartbeat([lease], leaseUntil: until)
        #expect(report.lost.isEmpty)
        #expect(report.revoked.isEmpty)
        // The lease runs from the heartbeat's transaction: `until`, plus any wait for the lock.
        let extended = try #require(try await production.action(id)?.runAt.epochMilliseconds)
        #expect(extended >= until && extended < until + 5_000)

        // A wrong attempt or owner is not the holder.
        let forged = [Lease(id: id.rawValue, owner: "A", attempt: 2), Lease(id: id.rawValue, owner: "Z", attempt: 1)]
        let forgedReport = try await production.store.heartbeat(forged, leaseUntil: until + 5_000)
        #expect(forgedReport.lost == [id.rawValue])
        #expect(try await production.action(id)?.runAt.epochMilliseconds == extended)

        // A revoked license is reported to the holder.
        #expect(try await production.revoke(id))
        let revoked = try await production.store.heartbeat([lease], leaseUntil: until)
        #expect(revoked.revoked == [id.rawValue])
    }

    @Test func releaseHandsTheActionBackWithoutCountingTheAttempt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"))
        let lease = try #require(try await claim(production, owner: "A").first).lease
        #expect(try await production.store.complete([Completion(lease: lease, resolution: .release)]) == [.applied])
        let record = try #require(try await production.action(id))
        #expect(record.state == .ready)
        #expect(record.attempt == 0)
        #expect(record.owner == nil)
        #expect(record.runAt.epochMilliseconds <= nowMilliseconds())
        // Due again at once.
        #expect(try await claim(production, owner: "B").first?.lease.attempt == 1)
    }

    /// Item 5 through Sequencers: a 1 s lease, an action running 3 s, a second Sequencer polling
    /// the same file all along. The heartbeat keeps the lease, so the action runs once.
    @Test func heartbeatKeepsALongActionFromBeingClaimedAgain() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let runs = Tally()
        let plan = Plan().signature("Long") { (_: Empty, context: ActionContext) in
            runs.add("start \(context.attempt)")
            try await Task.sleep(for: .seconds(3))
            return Empty()
        }
        let id = try await production.enqueue("Long", Empty())
        let first = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(leaseDuration: .seconds(1), owner: "first"))
        let second = Sequencer(
            production: production, plan: plan,
            configuration: testConfiguration(leaseDuration: .seconds(1), owner: "second"))
        try await withRunning(first) {
            try await expectEventually { runs.count("start 1") == 1 }
            let initialLease = try #require(try await production.action(id)).runAt.epochMilliseconds
            try await withRunning(second) {
                let karma = try await waitForKarma(production, id)
                #expect(karma.outcome == .succeeded)
                #expect(karma.attempts == 1)
                #expect(karma.errors.isEmpty)
            }
            // The lease was extended past its first expiry while the action ran.
            let raw = try SQLiteFile(path: directory.path())
            #expect(try raw.int("SELECT finished_at FROM echo_actions WHERE id = \(id)")! > initialLease)
        }
        #expect(runs.log == ["start 1"])
        #expect(try await production.action(id)?.attempt == 1)
    }
}
