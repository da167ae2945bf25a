import Echo
import Foundation
import Testing

/// Item 2: concurrent single enqueues share transactions; each caller resumes after its own row
/// is committed, and a row that fails fails only its caller.
@Suite struct GroupCommitTests {
    @Test func manyConcurrentEnqueuesAreAllStoredWithDistinctIDs() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let count = 500
        let results = try await withThrowingTaskGroup(of: (Int, ActionID).self) { group in
            for index in 0..<count {
                group.addTask {
                    let id = try await production.enqueue("Count", Number(value: index))
                    // Committed when enqueue returns: a separate connection sees it.
                    let stored = try await production.action(id)
                    #expect(stored != nil)
                    return (index, id)
                }
            }
            return try await group.reduce(into: [(Int, ActionID)]()) { $0.append($1) }
        }
        #expect(results.count == count)
        #expect(Set(results.map(\.1)).count == count)

        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.int("SELECT count(*) FROM echo_actions") == Int64(count))
        // Each id holds its caller's payload.
        let rows = try raw.rows("SELECT id, CAST(payload AS TEXT) FROM echo_actions")
        var payloadByID: [Int64: Number] = [:]
        for row in rows {
            payloadByID[Int64(row[0]!)!] = try JSONDecoder().decode(Number.self, from: Data(row[1]!.utf8))
        }
        for (index, id) in results {
            #expect(payloadByID[id.rawValue] == Number(value: index))
        }
    }

    @Test func anInvalidRowFailsOnlyItsCaller() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        // Every fifth caller asks for 0 attempts, which is refused; the rest share transactions
        // with them and must be stored all the same.
        let outcomes = await withTaskGroup(of: (Int, Result<ActionID, any Error>).self) { group in
            for index in 0..<200 {
                group.addTask {
                    let options = ActionOptions(maxAttempts: index % 5 == 0 ? 0 : 3)
                    let result = await Result(asyncCatching: {
                        try await production.enqueue("Count", Number(value: index), options: options)
                    })
                    return (index, result)
                }
            }
            return await group.reduce(into: [(Int, Result<ActionID, any Error>)]()) { $0.append($1) }
        }
        var stored: [ActionID] = []
        for (index, result) in outcomes {
            switch result {
            case .success(let id):
                #expect(index % 5 != 0, "caller \(index) should have failed")
                stored.append(id)
            case .failure(let error):
                #expect(index % 5 == 0, "caller \(index) failed: \(error)")
                #expect((error as? ActionError)?.code == .invalidArgument)
            }
        }
        #expect(stored.count == 160)
        #expect(Set(stored).count == 160)
        let raw = try SQLiteFile(path: directory.path())
        #expect(try raw.int("SELECT count(*) FROM echo_actions") == 160)
        #expect(try raw.int("SELECT count(*) FROM echo_actions WHERE max_attempts != 3") == 0)
    }

    @Test func groupedEnqueuesWakeARunningSequencer() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let ran = Tally()
        let plan = Plan().signature("Count") { (input: Number, _) in
            ran.add("\(input.value)")
            return input
        }
        let sequencer = Sequencer(production: production, plan: plan, configuration: testConfiguration())
        try await withRunning(sequencer) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in 0..<100 {
                    group.addTask { try await production.enqueue("Count", Number(value: index)) }
                }
                try await group.waitForAll()
            }
            try await expectEventually { try await production.list(state: .done, limit: 1_000).count == 100 }
        }
        #expect(ran.all.count == 100)
        #expect(ran.all.values.allSatisfy { $0 == 1 })
    }
}

extension Result where Failure == any Error {
    init(asyncCatching body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}
