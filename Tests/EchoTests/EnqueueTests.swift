import Echo
import Foundation
import Testing

/// Item 1: an enqueue is on disk when it returns, with every option stored as given.
@Suite struct EnqueueTests {
    @Test func singleEnqueueIsStoredBeforeItReturns() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let before = nowMilliseconds()
        let id = try await production.enqueue("Greet", Greeting(name: "echo"))
        let after = nowMilliseconds()

        // A second connection sees the committed row at once.
        let raw = try SQLiteFile(path: directory.path())
        let row = try #require(
            try raw.rows(
                """
                SELECT queue, name, CAST(payload AS TEXT), state, attempt, priority, max_attempts, run_at,
                    created_at, owner, idempotency_key, metadata, errors FROM echo_actions WHERE id = \(id.rawValue)
                """
            ).first)
        #expect(row[0] == "default")
        #expect(row[1] == "Greet")
        #expect(try JSONDecoder().decode(Greeting.self, from: Data((row[2] ?? "").utf8)) == Greeting(name: "echo"))
        #expect(row[3] == "0")
        #expect(row[4] == "0")
        #expect(row[5] == "0")
        #expect(row[6] == nil)
        let runAt = try #require(row[7].flatMap { Int64($0) })
        let createdAt = try #require(row[8].flatMap { Int64($0) })
        #expect(runAt == createdAt)
        #expect(createdAt >= before - 1 && createdAt <= after + 1)
        #expect(row[9] == nil)
        #expect(row[10] == nil)
        #expect(row[11] == nil)
        #expect(row[12] == nil)

        let record = try #require(try await production.action(id))
        #expect(record.state == .ready)
        #expect(record.name == "Greet")
        #expect(record.attempt == 0)
        #expect(record.maxAttempts == 0)
        #expect(record.errors.isEmpty)
        #expect(try await production.action(ActionID(id.rawValue + 1000)) == nil)
    }

    @Test func batchEnqueueStoresAllInOrder() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let batch = try (0..<50).map { try NewAction("Count", Number(value: $0)) }
        let ids = try await production.enqueue(batch)
        #expect(ids.count == 50)
        #expect(Set(ids).count == 50)
        #expect(ids == ids.sorted())

        let records = try await production.list(limit: 1_000)
        #expect(records.map(\.id) == ids)
        for (index, record) in records.enumerated() {
            #expect(try JSONDecoder().decode(Number.self, from: Data(record.payload)) == Number(value: index))
        }
        #expect(try await production.enqueue([NewAction]()).isEmpty)
    }

    @Test func batchIsAllOrNothing() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        var batch = try (0..<10).map { try NewAction("Count", Number(value: $0)) }
        batch.append(try NewAction("Count", Number(value: 99), options: ActionOptions(maxAttempts: 0)))
        await #expect {
            try await production.enqueue(batch)
        } throws: { error in
            (error as? ActionError)?.code == .invalidArgument
        }
        let count = try SQLiteFile(path: directory.path()).int("SELECT count(*) FROM echo_actions")
        #expect(count == 0)
    }

    @Test func runAtAndDelaySetTheRunAtColumn() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let when = Date(timeIntervalSince1970: 4_102_444_800.123)  // 2100-01-01, with milliseconds
        let scheduled = try await production.enqueue("Greet", Greeting(name: "a"), options: ActionOptions(runAt: when))
        let delayed = try await production.enqueue(
            "Greet", Greeting(name: "b"), options: ActionOptions(delay: .seconds(90)))
        // runAt wins over delay.
        let both = try await production.enqueue(
            "Greet", Greeting(name: "c"), options: ActionOptions(runAt: when, delay: .seconds(5)))

        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.int("SELECT run_at FROM echo_actions WHERE id = \(scheduled.rawValue)") == 4_102_444_800_123)
        #expect(try raw.int("SELECT run_at - created_at FROM echo_actions WHERE id = \(delayed.rawValue)") == 90_000)
        #expect(try raw.int("SELECT run_at FROM echo_actions WHERE id = \(both.rawValue)") == 4_102_444_800_123)

        let record = try #require(try await production.action(scheduled))
        #expect(record.runAt.epochMilliseconds == when.epochMilliseconds)
        #expect(record.state == .ready)
    }

    @Test func higherPriorityRunsFirst() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let order = Tally()
        let plan = Plan().signature("Mark") { (input: Number, _) in
            order.add("\(input.value)")
            return Empty()
        }
        // Enqueued low first: the priority, not the order of enqueueing, decides.
        for priority in [0, 5, -3, 10, 1] {
            try await production.enqueue("Mark", Number(value: priority), options: ActionOptions(priority: priority))
        }
        #expect(try await production.list().map(\.priority) == [0, 5, -3, 10, 1])
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration(concurrency: 1))
        try await withRunning(sequencer) {
            try await expectEventually { order.log.count == 5 }
        }
        #expect(order.log == ["10", "5", "1", "0", "-3"])
    }

    @Test func queueNameSeparatesActions() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let ran = Tally()
        let plan = Plan().signature("Send") { (input: Greeting, context: ActionContext) in
            ran.add("\(context.queue):\(input.name)")
            return Empty()
        }
        let mail = try await production.enqueue("Send", Greeting(name: "m"), options: ActionOptions(queue: "mail"))
        let other = try await production.enqueue("Send", Greeting(name: "d"))
        #expect(try await production.action(mail)?.queue == "mail")
        #expect(try await production.list(queue: "mail").map(\.id) == [mail])

        // A Sequencer serving only "default" leaves the mail action alone.
        let defaultOnly = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(defaultOnly) {
            _ = try await waitForKarma(production, other)
        }
        #expect(try await production.action(mail)?.state == .ready)
        #expect(ran.log == ["default:d"])

        let mailer = Sequencer(production: production, plan: plan, configuration: testConfiguration(queues: ["mail"]))
        try await withRunning(mailer) {
            let karma = try await waitForKarma(production, mail)
            #expect(karma.queue == "mail")
            #expect(karma.outcome == .succeeded)
        }
        #expect(ran.log == ["default:d", "mail:m"])

        await #expect {
            try await production.enqueue("Send", Greeting(name: "x"), options: ActionOptions(queue: ""))
        } throws: { ($0 as? ActionError)?.code == .invalidArgument }
    }

    @Test func maxAttemptsIsStoredAndValidated() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let id = try await production.enqueue("Greet", Greeting(name: "a"), options: ActionOptions(maxAttempts: 3))
        #expect(try await production.action(id)?.maxAttempts == 3)
        #expect(try SQLiteFile(path: directory.path()).int("SELECT max_attempts FROM echo_actions") == 3)
        for invalid in [0, -1] {
            await #expect {
                try await production.enqueue("Greet", Greeting(name: "b"), options: ActionOptions(maxAttempts: invalid))
            } throws: { ($0 as? ActionError)?.code == .invalidArgument }
        }
        #expect(try await production.list().count == 1)
        await #expect {
            try await Production.open(
                path: directory.path("other.sqlite"), configuration: .init(defaultMaxAttempts: 0))
        } throws: { ($0 as? ActionError)?.code == .invalidArgument }
    }

    @Test func idempotencyKeyReturnsTheFirstID() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let options = ActionOptions(idempotencyKey: "order-42")
        let first = try await production.enqueue("Greet", Greeting(name: "first"), options: options)
        let second = try await production.enqueue("Greet", Greeting(name: "second"), options: options)
        #expect(first == second)
        // In a batch, too, and alongside a new key.
        let batch = try await production.enqueue([
            try NewAction("Greet", Greeting(name: "third"), options: options),
            try NewAction("Greet", Greeting(name: "new"), options: ActionOptions(idempotencyKey: "order-43")),
            try NewAction("Greet", Greeting(name: "dup"), options: ActionOptions(idempotencyKey: "order-43")),
        ])
        #expect(batch[0] == first)
        #expect(batch[1] != first)
        #expect(batch[2] == batch[1])

        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.int("SELECT count(*) FROM echo_actions") == 2)
        let payload = try #require(try raw.text("SELECT CAST(payload AS TEXT) FROM echo_actions WHERE id = \(first)"))
        #expect(try JSONDecoder().decode(Greeting.self, from: Data(payload.utf8)) == Greeting(name: "first"))
        #expect(try await production.action(first)?.idempotencyKey == "order-42")
    }

    @Test func concurrentEnqueuesWithOneKeyStoreOneRow() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let ids = try await withThrowingTaskGroup(of: ActionID.self) { group in
            for index in 0..<50 {
                group.addTask {
                    try await production.enqueue(
                        "Greet", Greeting(name: "\(index)"), options: ActionOptions(idempotencyKey: "same"))
                }
            }
            return try await group.reduce(into: Set<ActionID>()) { $0.insert($1) }
        }
        #expect(ids.count == 1)
        #expect(try SQLiteFile(path: directory.path()).int("SELECT count(*) FROM echo_actions") == 1)
    }

    @Test func metadataIsStoredAndHandedToTheFunction() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let metadata: Vector = ["tenant": "acme", "retries": 3, "urgent": true, "tags": .array(["a", "b"])]
        let id = try await production.enqueue("Look", Empty(), options: ActionOptions(metadata: metadata))
        #expect(try await production.action(id)?.metadata == metadata)
        let stored = try #require(try SQLiteFile(path: directory.path()).text("SELECT metadata FROM echo_actions"))
        #expect(try JSONDecoder().decode(Vector.self, from: Data(stored.utf8)) == metadata)

        let seen = Tally()
        let plan = Plan().signature("Look") { (_: Empty, context: ActionContext) in
            seen.add(context.metadata["tenant"]?.stringValue ?? "none")
            return Empty()
        }
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) { _ = try await waitForKarma(production, id) }
        #expect(seen.log == ["acme"])
    }

    @Test func closedProductionRefusesEnqueues() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        production.close()
        await #expect {
            try await production.enqueue("Greet", Greeting(name: "late"))
        } throws: { ($0 as? ActionError)?.code == .closed }
    }
}
