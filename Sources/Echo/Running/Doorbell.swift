import Synchronization

/// Wakes idle Sequencers of this process when an enqueue commits, so they claim at once instead
/// of at their next poll.
final class Doorbell: Sendable {
    private struct State {
        var generation: UInt64 = 0
        var waiters: [UInt64: CheckedContinuation<Void, Never>] = [:]
        var cancelled: Set<UInt64> = []
        /// Ids handed out whose continuation is not registered yet.
        var unregistered: Set<UInt64> = []
        var nextID: UInt64 = 0
    }
    private let state = Mutex(State())

    /// The number of rings so far; pass it to ``wait(after:timeout:)``.
    var generation: UInt64 { state.withLock { $0.generation } }

    /// Ids recorded as cancelled or not yet registered: zero whenever no wait is in progress.
    var outstandingIDs: Int { state.withLock { $0.cancelled.count + $0.unregistered.count } }

    func ring() {
        let waiters = state.withLock { state in
            state.generation &+= 1
            let waiters = state.waiters
            state.waiters = [:]
            return waiters
        }
        for waiter in waiters.values { waiter.resume() }
    }

    /// Returns after a ring later than `generation`, after `timeout`, or on cancellation.
    func wait(after generation: UInt64, timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { try? await Task.sleep(for: timeout) }
            group.addTask { await self.waitForRing(after: generation) }
            await group.next()
            group.cancelAll()
        }
    }

    /// Returns after a ring later than `generation`, or on cancellation. Cheaper than a wait with a
    /// timeout (no timer, no task group): use it where a ring is certain to come.
    func wait(after generation: UInt64) async {
        await waitForRing(after: generation)
    }

    private func waitForRing(after generation: UInt64) async {
        let id = state.withLock { state in
            state.nextID &+= 1
            state.unregistered.insert(state.nextID)
            return state.nextID
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow = state.withLock { state in
                    state.unregistered.remove(id)
                    // Always take the id out of `cancelled`: a cancellation recorded before a ring
                    // would otherwise stay there for ever.
                    let wasCancelled = state.cancelled.remove(id) != nil
                    if state.generation != generation || wasCancelled { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                // Not registered yet: registration will see the cancellation. Already resumed by a
                // ring: nothing to do (recording it would leak the id).
                if state.unregistered.contains(id) { state.cancelled.insert(id) }
                return nil
            }
            waiter?.resume()
        }
    }
}
