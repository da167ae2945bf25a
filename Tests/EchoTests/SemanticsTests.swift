import Foundation
import Testing

@testable import Echo

/// Item 8: the origin's semantics — license and revocation, hooks from Life.Span, NextAction
/// chaining in the success transaction, and routing errors that dead-letter without stopping
/// the Sequencer.
@Suite struct SemanticsTests {
    // MARK: License

    @Test func aRevokedReadyActionNeverRuns() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let runs = Tally()
        let plan = Plan().signature("Work") { (input: Number, _: ActionContext) -> Empty in
            runs.add("\(input.value)")
            return Empty()
        }
        let revoked = try await production.enqueue("Work", Number(value: 1))
        let kept = try await production.enqueue("Work", Number(value: 2))
        #expect(try await production.revoke(revoked))
        // Revoking twice, or revoking an unknown id, changes nothing.
        #expect(try await production.revoke(revoked) == false)
        #expect(try await production.revoke(ActionID(12_345)) == false)

        let record = try #require(try await production.action(revoked))
        #expect(record.state == .cancelled)
        #expect(record.isRevoked)
        #expect(record.errors.first?.message.contains("license") == true)
        let cancelled = try #require(try await production.karma(revoked))
        #expect(cancelled.outcome == .cancelled)
        #expect(cancelled.result == nil)

        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) { _ = try await waitForKarma(production, kept) }
        #expect(runs.log == ["2"])
        #expect(try await production.action(revoked)?.state == .cancelled)
        #expect(try await production.action(revoked)?.attempt == 0)
    }

    @Test func aRevokedLeasedActionIsCancelledBeforeItStarts() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let runs = Tally()
        let plan = Plan().signature("Work") { (_: Empty, _: ActionContext) -> Empty in
            runs.add("run")
            return Empty()
        }
        let id = try await production.enqueue("Work", Empty())
        // Another worker leases it briefly and is gone; meanwhile the license is revoked.
        _ = try await production.store.claim(
            queue: "default", owner: "gone", limit: 1, leaseUntil: nowMilliseconds() + 50, defaultMaxAttempts: 20)
        #expect(try await production.revoke(id))
        #expect(try await production.action(id)?.state == .leased)
        #expect(try await production.action(id)?.isRevoked == true)

        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .cancelled)
        #expect(runs.count("run") == 0)
        #expect(try await production.action(id)?.state == .cancelled)
    }

    @Test func aRunningActionSeesItsRevokedLicense() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let started = Gate()
        let plan = Plan().signature("Careful") { (_: Empty, context: ActionContext) -> Empty in
            started.open()
            while true {
                try context.checkLicense()
                try await Task.sleep(for: .milliseconds(10))
            }
        }
        let id = try await production.enqueue("Careful", Empty())
        // A short lease, so the heartbeat (a third of it) brings the news quickly.
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: testConfiguration(leaseDuration: .seconds(1)))
        let karma = try await withRunning(sequencer) {
            try await started.wait()
            #expect(try await production.revoke(id))
            return try await waitForKarma(production, id)
        }
        #expect(karma.outcome == .cancelled)
        #expect(karma.errors.last?.message.contains("license") == true)
        #expect(try await production.action(id)?.state == .cancelled)
    }

    @Test func revokingARunningActionCancelsItsTask() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let started = Gate()
        let ended = Tally()
        let plan = Plan().signature("Oblivious") { (_: Empty, _: ActionContext) -> Empty in
            started.open()
            do {
                try await Task.sleep(for: .seconds(60))
            } catch {
                ended.add("cancelled")
                throw error
            }
            return Empty()
        }
        let id = try await production.enqueue("Oblivious", Empty(), options: ActionOptions(maxAttempts: 5))
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: testConfiguration(leaseDuration: .seconds(1)))
        let karma = try await withRunning(sequencer) {
            try await started.wait()
            #expect(try await production.revoke(id))
            return try await waitForKarma(production, id)
        }
        #expect(karma.outcome == .cancelled)
        #expect(karma.attempts == 1)
        try await expectEventually { ended.count("cancelled") == 1 }
        #expect(try await production.action(id)?.state == .cancelled)
    }

    // MARK: Hooks

    @Test func hooksRunBeforeAndAfterTheFunction() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let log = Tally()
        let span = Span()
            .hook(
                "audit", before: { context in log.add("audit.before \(context.id)") },
                after: { _ in log.add("audit.after") }
            )
            .hook("trace", before: { _ in log.add("trace.before") })
            .hook("unused", before: { _ in log.add("unused") })
        #expect(span.names == ["audit", "trace", "unused"])
        let plan = Plan().signature("Work") { (_: Empty, context: ActionContext) -> Empty in
            log.add("work \(context.life.fate["mode"] ?? "")")
            return Empty()
        }
        let id = try await production.enqueue("Work", Empty(), options: ActionOptions(hooks: ["audit", "trace"]))
        // The hook names are kept in the stored metadata.
        #expect(try await production.action(id)?.metadata["echo.hooks"] == .array(["audit", "trace"]))
        let sequencer = Sequencer(
            production: production, plan: plan, life: Life(span: span, fate: ["mode": "test"]),
            configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .succeeded)
        #expect(log.log == ["audit.before \(id)", "trace.before", "work test", "audit.after"])
    }

    @Test func aHookErrorFailsTheAttempt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let log = Tally()
        let span = Span().hook(
            "gate",
            before: { context in
                if context.attempt == 1 { throw TestFailure(text: "hook says no") }
            })
        let plan = Plan().signature("Work") { (_: Empty, context: ActionContext) -> Empty in
            log.add("work \(context.attempt)")
            return Empty()
        }
        let id = try await production.enqueue("Work", Empty(), options: ActionOptions(hooks: ["gate"]))
        let sequencer = Sequencer(
            production: production, plan: plan, life: Life(span: span), configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        // The first attempt failed in the hook, before the function; the retry ran it.
        #expect(log.log == ["work 2"])
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 2)
        #expect(karma.errors.first?.message.contains("hook says no") == true)
    }

    @Test func anUnknownHookFailsTheAttempt() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let log = Tally()
        let plan = Plan().signature("Work") { (_: Empty, _: ActionContext) -> Empty in
            log.add("work")
            return Empty()
        }
        let id = try await production.enqueue(
            "Work", Empty(), options: ActionOptions(maxAttempts: 1, hooks: ["missing"]))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(log.log.isEmpty)
        #expect(karma.outcome == .deadLettered)
        #expect(karma.errors.first?.message.contains("missing") == true)
    }

    // MARK: NextAction

    @Test func theNextActionIsEnqueuedInTheSuccessTransaction() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let log = Tally()
        let plan = Plan()
            .signature("First") { (input: Number, _: ActionContext) -> Number in
                log.add("first \(input.value)")
                return input
            }
            .signature("Second") { (input: Number, _: ActionContext) -> Number in
                log.add("second \(input.value)")
                return input
            }
            .signature("Third") { (input: Number, _: ActionContext) -> Number in
                log.add("third \(input.value)")
                return input
            }
        let third = try NewAction("Third", Number(value: 3), options: ActionOptions(queue: "default", priority: 4))
        let second = try NewAction("Second", Number(value: 2), next: third)
        let action = try NewAction("First", Number(value: 1), next: second)
        #expect(action.next == second)
        #expect(action.next?.next == third)
        let id = try await production.enqueue(action)
        // Nothing of the chain exists before the first succeeds.
        #expect(try await production.list().count == 1)

        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) {
            try await expectEventually { try await production.list(state: .done).count == 3 }
        }
        #expect(log.log == ["first 1", "second 2", "third 3"])
        let records = try await production.list()
        #expect(records.map(\.name) == ["First", "Second", "Third"])
        #expect(records[2].priority == 4)
        let first = try #require(records.first { $0.id == id })
        // Same transaction: the chained row was created at the instant the first was finished.
        #expect(records[1].createdAt == first.finishedAt)
        #expect(records[2].createdAt == records[1].finishedAt)
    }

    @Test func enqueueOnSuccessOnlyOnSuccess() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan()
            .signature("Parent") { (_: Empty, context: ActionContext) -> Empty in
                context.enqueueOnSuccess(try NewAction("Child", Number(value: context.attempt)))
                if context.attempt < 3 { throw TestFailure(text: "fail \(context.attempt)") }
                return Empty()
            }
            .signature("Child") { (input: Number, _: ActionContext) in input }
        let id = try await production.enqueue("Parent", Empty())
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) {
            _ = try await waitForKarma(production, id)
            try await expectEventually { try await production.list(state: .done, name: "Child").count == 1 }
        }
        let children = try await production.list(name: "Child")
        // The failed attempts handed over children too; only the successful attempt's was stored.
        #expect(children.count == 1)
        let child = try #require(children.first)
        #expect(try JSONDecoder().decode(Number.self, from: Data(child.payload)) == Number(value: 3))
        #expect(child.createdAt == (try await production.action(id))?.finishedAt)
        #expect(try await production.karma(child.id)?.outcome == .succeeded)
    }

    // MARK: Routing

    @Test func anUnknownNameIsDeadLetteredAndTheSequencerKeepsRunning() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Known") { (input: Number, _: ActionContext) in input }
        let unknown = try await production.enqueue("Unknown", Empty(), options: ActionOptions(maxAttempts: 5))
        let undecodable = try await production.enqueue("Known", Greeting(name: "not a number"))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) {
            let dead = try await waitForKarma(production, unknown)
            #expect(dead.outcome == .deadLettered)
            // Retrying cannot help: one attempt only, despite five allowed.
            #expect(dead.attempts == 1)
            #expect(dead.errors.first?.message.contains("routing") == true)
            let badPayload = try await waitForKarma(production, undecodable)
            #expect(badPayload.outcome == .deadLettered)
            #expect(badPayload.attempts == 1)
            #expect(badPayload.errors.first?.message.contains("decoding") == true)

            // Still running: a later action is done.
            let later = try await production.enqueue("Known", Number(value: 5))
            let karma = try await waitForKarma(production, later)
            #expect(try karma.decodeResult(as: Number.self) == Number(value: 5))
        }
        #expect(try await production.deadLetters().map(\.id) == [unknown, undecodable])
    }

    @Test func aCustomSiteRoutesActions() async throws {
        struct Prefixing: Site {
            func execute(_ context: ActionContext, plan: Plan) async throws -> [UInt8] {
                if context.name == "Alias" { return Array(#"{"value":99}"#.utf8) }
                return try await plan.execute(context)
            }
        }
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Known") { (input: Number, _: ActionContext) in input }
        let alias = try await production.enqueue("Alias", Empty())
        let sequencer = Sequencer(
            production: production, plan: plan, site: Prefixing(), configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, alias) }
        #expect(try karma.decodeResult(as: Number.self) == Number(value: 99))
    }
}
