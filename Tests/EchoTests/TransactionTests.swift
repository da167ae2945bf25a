import Echo
import Foundation
import Testing

/// Item 16: the application's writes and Echo's commit together or not at all — in
/// `Production.transaction`, and in the success transaction of an action (`onSuccess`).
@Suite struct TransactionTests {
    private func makeLedger(_ production: Production) async throws {
        try await production.transaction { tx in
            try tx.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY, note TEXT NOT NULL)")
        }
    }

    @Test func anAppWriteAndAnEnqueueCommitTogether() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await makeLedger(production)
        let id = try await production.transaction { tx -> ActionID in
            let changed = try tx.execute("INSERT INTO ledger (id, note) VALUES (?, ?)", [42, "order"])
            #expect(changed == 1)
            return try tx.enqueue("SendReceipt", Number(value: 42))
        }
        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.text("SELECT note FROM ledger WHERE id = 42") == "order")
        let record = try #require(try await production.action(id))
        #expect(record.name == "SendReceipt")
        #expect(record.state == .ready)
        // Reads inside a transaction see its writes.
        let rows = try await production.transaction { tx in
            try tx.query("SELECT id, note FROM ledger WHERE id = ?", [42])
        }
        #expect(rows == [[.integer(42), .text("order")]])
    }

    @Test func aThrowingBodyRollsBackBoth() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await makeLedger(production)
        await #expect(throws: TestFailure.self) {
            try await production.transaction { tx in
                try tx.execute("INSERT INTO ledger (id, note) VALUES (1, 'never')")
                try tx.enqueue("SendReceipt", Number(value: 1))
                try tx.enqueue(
                    "SendReceipt", Number(value: 2), options: ActionOptions(idempotencyKey: "receipt-2"))
                throw TestFailure(text: "changed my mind")
            }
        }
        // A failing statement rolls back what came before it, too.
        await #expect(throws: ActionError.self) {
            try await production.transaction { tx in
                try tx.enqueue("SendReceipt", Number(value: 3))
                try tx.execute("INSERT INTO ledger (id, note) VALUES (1, NULL)")
            }
        }
        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.int("SELECT count(*) FROM ledger") == 0)
        #expect(try raw.int("SELECT count(*) FROM echo_actions") == 0)
        // The idempotency key of the rolled-back action is free again.
        let fresh = try await production.enqueue(
            "SendReceipt", Number(value: 2), options: ActionOptions(idempotencyKey: "receipt-2"))
        #expect(try await production.list().map(\.id) == [fresh])
    }

    @Test func onSuccessEffectsApplyOnlyWithTheSuccess() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await makeLedger(production)
        let plan = Plan().signature("Book") { (input: Number, context: ActionContext) -> Number in
            context.onSuccess { tx in
                try tx.execute(
                    "INSERT INTO ledger (note) VALUES (?)",
                    [.text("booked \(input.value) on attempt \(context.attempt)")])
            }
            // The first two attempts fail after handing over their effect: it must not be applied.
            if context.attempt < 3 { throw TestFailure(text: "attempt \(context.attempt) failed") }
            return input
        }
        let id = try await production.enqueue("Book", Number(value: 9))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 3)
        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.rows("SELECT note FROM ledger").compactMap(\.first) == ["booked 9 on attempt 3"])
    }

    @Test func aFailingEffectFailsTheAttemptAndRollsBackTheSuccess() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await makeLedger(production)
        let plan = Plan()
            .signature("Book") { (input: Number, context: ActionContext) -> Number in
                context.onSuccess { tx in try tx.execute("INSERT INTO ledger (id, note) VALUES (1, 'first effect')") }
                // The second effect violates NOT NULL until the third attempt.
                context.onSuccess { tx in
                    try tx.execute(
                        "INSERT INTO ledger (id, note) VALUES (2, ?)", [context.attempt < 3 ? .null : .text("second")])
                }
                context.enqueueOnSuccess(try NewAction("After", Number(value: context.attempt)))
                return input
            }
            .signature("After") { (input: Number, _: ActionContext) in input }
        let id = try await production.enqueue("Book", Number(value: 1), options: ActionOptions(maxAttempts: 5))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .succeeded)
        #expect(karma.attempts == 3)
        #expect(karma.errors.count == 2)
        #expect(karma.errors.allSatisfy { $0.message.contains("effect") })
        let raw = try SQLiteFile(path: directory.path())
        // Nothing of the failed attempts' successes stayed: one of each effect, one chained action.
        #expect(try raw.rows("SELECT note FROM ledger ORDER BY id").compactMap(\.first) == ["first effect", "second"])
        let chained = try await production.list(name: "After")
        #expect(chained.count == 1)
        #expect(
            try chained.first.map { try JSONDecoder().decode(Number.self, from: Data($0.payload)) } == Number(value: 3))
    }

    @Test func anEffectFailingOnTheLastAttemptIsADeadLetter() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        try await makeLedger(production)
        let plan = Plan().signature("Book") { (input: Number, context: ActionContext) -> Number in
            context.onSuccess { tx in try tx.execute("INSERT INTO ledger (id, note) VALUES (1, NULL)") }
            return input
        }
        let id = try await production.enqueue("Book", Number(value: 1), options: ActionOptions(maxAttempts: 2))
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        let karma = try await withRunning(sequencer) { try await waitForKarma(production, id) }
        #expect(karma.outcome == .deadLettered)
        #expect(karma.attempts == 2)
        #expect(karma.result == nil)
        #expect(karma.errors.count == 2)
        #expect(try SQLiteFile(path: directory.path()).int("SELECT count(*) FROM ledger") == 0)
    }
}
