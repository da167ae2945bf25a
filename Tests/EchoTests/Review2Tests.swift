import Dispatch
import Foundation
import Synchronization
import Testing

@testable import Echo

@Suite struct Review2Tests {
    @Test func aWaitCancelledBeforeItRegistersAndAfterARingLeaksNoID() async {
        let bell = Doorbell()
        let generation = bell.generation
        bell.ring()
        // The task is cancelled before its wait registers, and the bell has rung since `generation`.
        await Task {
            withUnsafeCurrentTask { $0?.cancel() }
            await bell.wait(after: generation)
        }.value
        #expect(bell.outstandingIDs == 0)
    }

    @Test func enqueuesHandedBackAfterCloseFailAsClosedAndAreNotStored() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let store = production.store
        // Timeline: enqueues gather with no flush scheduled (the flag says one runs); a carrying
        // write takes them and waits inside its transaction; the production is closed; the
        // carrying write fails and hands them back.
        store.enqueueGroup.withLock { $0.flushing = true }
        let enqueues = Task {
            await withTaskGroup(of: Result<ActionID, any Error>.self) { group in
                for index in 0..<3 {
                    group.addTask {
                        do {
                            return .success(try await production.enqueue("Greet", Greeting(name: "\(index)")))
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                var results: [Result<ActionID, any Error>] = []
                for await result in group { results.append(result) }
                return results
            }
        }
        try await expectEventually { store.enqueueGroup.withLock { $0.pending.count } == 3 }
        let entered = Gate()
        let release = DispatchSemaphore(value: 0)
        struct Refused: Error {}
        let failing = Task {
            try await store.writeCarryingEnqueues { _ -> Int in
                entered.open()
                release.wait()
                throw Refused()
            }
        }
        try await expectEventually { entered.opened }
        // The carrying write holds the three; no flush is scheduled, so the flag is false again.
        store.enqueueGroup.withLock { $0.flushing = false }
        production.close()
        release.signal()
        await #expect(throws: Refused.self) { try await failing.value }
        let results = await enqueues.value
        #expect(results.count == 3)
        for result in results {
            switch result {
            case .success(let id): Issue.record("enqueue \(id) succeeded after close()")
            case .failure(let error): #expect((error as? ActionError)?.code == .closed)
            }
        }
        #expect(try await production.list().isEmpty)
    }

    @Test func anEffectCannotCommitTheOutcomeTransactionAndDuplicateCarriedEnqueues() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let store = production.store
        let leased = try await production.enqueue("Work", Greeting(name: "w"))
        let claimed = try await store.claim(
            queue: "default", owner: "o", limit: 1, leaseUntil: Clock.milliseconds() + 60_000, defaultMaxAttempts: 3)
        let lease = try #require(claimed.first?.lease)
        #expect(lease.id == leased.rawValue)
        // Two enqueues wait for their group with no flush scheduled, so the outcome commit carries them.
        store.enqueueGroup.withLock { $0.flushing = true }
        let enqueues = Task {
            try await withThrowingTaskGroup(of: ActionID.self) { group in
                for index in 0..<2 {
                    group.addTask { try await production.enqueue("Greet", Greeting(name: "\(index)")) }
                }
                var ids: [ActionID] = []
                for try await id in group { ids.append(id) }
                return ids
            }
        }
        try await expectEventually { store.enqueueGroup.withLock { $0.pending.count } == 2 }
        let effect: TransactionEffect = { transaction in try transaction.execute("COMMIT") }
        let completion = Completion(
            lease: lease,
            resolution: .succeeded(result: [], next: [], effects: [effect], fallback: .dead))
        _ = try? await store.complete([completion])
        // Whatever the outcome commit did, let the enqueues still pending have their own group.
        store.enqueueGroup.withLock { $0.flushing = false }
        try await production.enqueue("Greet", Greeting(name: "last"))
        _ = try await enqueues.value
        let greetings = try await production.list().filter { $0.name == "Greet" }
        #expect(greetings.count == 3)
    }
}
