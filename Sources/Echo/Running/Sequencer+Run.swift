import Foundation
import Logging
import ServiceLifecycle
import Synchronization

extension Sequencer {
    /// Runs until ``shutdown()``, the graceful shutdown of its `ServiceGroup`, or cancellation of
    /// the calling task (which skips the grace period: running actions are cancelled at once).
    ///
    /// - Throws: ``ActionError`` with ``ActionError/Code/invalidArgument`` if the Sequencer is
    ///   already running.
    public func run() async throws {
        let alreadyRunning = state.withLock { state in
            // A refused second call must not touch the running one's state (it would undo a shutdown).
            if state.running { return true }
            state.running = true
            state.finished = false
            return false
        }
        if alreadyRunning { throw ActionError(.invalidArgument, "this Sequencer is already running") }
        // A shutdown asked for before run() makes this run return at once; once it has
        // returned, the Sequencer can be run again.
        defer {
            state.withLock { state in
                state.running = false
                state.stopping = false
            }
        }
        logger.info(
            "sequencer started",
            metadata: [
                "owner": "\(configuration.owner)", "queues": "\(configuration.queues)",
                "concurrency": "\(configuration.concurrency)",
            ])
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler {
                await self.runLoops()
            } onCancel: {
                self.shutdown()
            }
        } onGracefulShutdown: {
            self.shutdown()
        }
        logger.info("sequencer stopped", metadata: ["owner": "\(configuration.owner)"])
    }

    private func runLoops() async {
        await withDiscardingTaskGroup { group in
            group.addTask { await self.heartbeatLoop() }
            group.addTask { await self.commitLoop() }
            if let retention = configuration.retention {
                group.addTask { await self.retentionLoop(retention) }
            }
            await claimLoop(group: &group)

            // Drain: running actions get until the grace period's end, then are cancelled.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: configuration.shutdownGracePeriod)
            while true {
                let generation = slotBell.generation
                let active = state.withLock { $0.active }
                if active == 0 { break }
                if Task.isCancelled || clock.now >= deadline {
                    logger.warning(
                        "cancelling actions still running at the end of the grace period",
                        metadata: ["running": "\(active)"])
                    group.cancelAll()
                    break
                }
                await slotBell.wait(after: generation, timeout: min(deadline - clock.now, .milliseconds(100)))
            }
            state.withLock { $0.finished = true }
            outcomeBell.ring()
            slotBell.ring()
            stopBell.ring()
        }
        // Every child has ended; commit what is left.
        let remaining = state.withLock { state in
            let outcomes = state.outcomes
            state.outcomes = []
            return outcomes
        }
        if !remaining.isEmpty { await commit(remaining, final: true) }
    }

    // MARK: Claiming

    private func claimLoop(group: inout DiscardingTaskGroup) async {
        let store = production.store
        var idle = configuration.minimumPollInterval
        let batchThreshold = max(1, configuration.concurrency / 4)
        while !isStopping && !Task.isCancelled {
            var free = configuration.concurrency - state.withLock { $0.active }
            if free < batchThreshold {
                // Let a few more slots free up so that claims come in batches, but never wait
                // long: a slot must not stay idle behind long-running actions.
                let generation = slotBell.generation
                if free <= 0 {
                    // Every finishing action and shutdown() ring the slot bell.
                    await slotBell.wait(after: generation)
                    continue
                }
                await slotBell.wait(after: generation, timeout: .milliseconds(2))
                free = configuration.concurrency - state.withLock { $0.active }
            }
            let generation = store.doorbell.generation
            var claimedAny = false
            // Whether a queue filled every slot asked for, so more may be due right now.
            var mayHaveMore = false
            for queue in configuration.queues {
                let free = configuration.concurrency - state.withLock { $0.active }
                guard free > 0, !isStopping else { break }
                let leaseUntil = Clock.milliseconds() + Clock.milliseconds(configuration.leaseDuration)
                let claimed: [ClaimedAction]
                do {
                    claimed = try await store.claim(
                        queue: queue, owner: configuration.owner, limit: free, leaseUntil: leaseUntil,
                        defaultMaxAttempts: production.configuration.defaultMaxAttempts)
                } catch {
                    logger.error("claim failed", metadata: ["queue": "\(queue)", "error": "\(error)"])
                    try? await Task.sleep(for: configuration.maximumPollInterval)
                    continue
                }
                guard !claimed.isEmpty else { continue }
                claimedAny = true
                if claimed.count >= free { mayHaveMore = true }
                logger.debug(
                    "claimed actions", metadata: ["queue": "\(queue)", "count": "\(claimed.count)"])
                let superseded = state.withLock { state -> [ActionContext] in
                    state.active += claimed.count
                    var superseded: [ActionContext] = []
                    for action in claimed {
                        // This Sequencer re-claimed its own expired lease: the older attempt, if
                        // still running, has lost it and its outcome will be rejected.
                        if let older = state.held[action.lease.id]?.context { superseded.append(older) }
                        state.held[action.lease.id] = Held(lease: action.lease)
                    }
                    return superseded
                }
                for context in superseded { context.markLeaseLost() }
                for action in claimed {
                    group.addTask { await self.perform(action) }
                }
            }
            if claimedAny {
                idle = configuration.minimumPollInterval
                if mayHaveMore { continue }
                // Every queue had fewer due actions than free slots: claiming again at once would
                // find (almost) nothing and cost the writer an empty transaction per round. Wait
                // for the doorbell instead; an enqueue committed since `generation` was read
                // wakes this loop at once.
            }
            // Nothing (more) due: sleep until an in-process enqueue rings, the next scheduled action
            // is due, or the poll interval (for other processes' enqueues) passes.
            var timeout = idle
            idle = min(idle * 2, configuration.maximumPollInterval)
            if let next = await nextDueTime() {
                let until = next - Clock.milliseconds()
                if until > 0 { timeout = min(timeout, .milliseconds(until)) }
                // Due since the claim (another process's enqueue, a retry coming due): claim again.
                // Only after a claim that found work, so a paused queue cannot make this spin.
                if until <= 0 && claimedAny { continue }
            }
            await store.doorbell.wait(after: generation, timeout: timeout)
        }
    }

    private func nextDueTime() async -> Int64? {
        var earliest: Int64?
        for queue in configuration.queues {
            if let due = try? await production.store.nextDueTime(queue: queue) {
                earliest = min(earliest ?? due, due)
            }
        }
        return earliest
    }

    // MARK: Retention

    private func retentionLoop(_ retention: Retention) async {
        while true {
            if state.withLock({ $0.finished }) || Task.isCancelled { return }
            do {
                var pruned = 0
                // A long prune stops between chunks when shutdown begins; the next run goes on.
                let proceed = { !self.isStopping }
                if let age = retention.maximumAge {
                    pruned += try await production.prune(olderThan: age, while: proceed)
                }
                if let count = retention.maximumCount {
                    pruned += try await production.prune(keepingNewest: count, while: proceed)
                }
                if pruned > 0 { logger.debug("pruned finished actions", metadata: ["count": "\(pruned)"]) }
            } catch {
                logger.error("pruning finished actions failed", metadata: ["error": "\(error)"])
            }
            let generation = stopBell.generation
            if state.withLock({ $0.finished }) { return }
            await stopBell.wait(after: generation, timeout: retention.interval)
        }
    }

    // MARK: Heartbeat

    private var heartbeatInterval: Duration {
        configuration.heartbeatInterval ?? configuration.leaseDuration / 3
    }

    private func heartbeatLoop() async {
        while true {
            let generation = stopBell.generation
            if state.withLock({ $0.finished }) || Task.isCancelled { return }
            await stopBell.wait(after: generation, timeout: heartbeatInterval)
            await heartbeat()
            await production.recordQueueDepth()
        }
    }

    private func heartbeat() async {
        let now = Clock.milliseconds()
        let leases = state.withLock { state -> [Lease] in
            state.held.values.map(\.lease)
        }
        guard !leases.isEmpty else { return }
        let report: HeartbeatReport
        do {
            report = try await production.store.heartbeat(
                leases, leaseUntil: now + Clock.milliseconds(configuration.leaseDuration))
        } catch {
            logger.error("heartbeat failed", metadata: ["error": "\(error)"])
            return
        }
        // Only the attempts this beat was for: since the snapshot, an outcome may have been committed
        // and the action claimed again (a newer attempt under the same id, not lost).
        let beaten = Dictionary(leases.map { ($0.id, $0) }, uniquingKeysWith: { first, _ in first })
        func held(_ id: Int64) -> Held? {
            state.withLock { state in
                guard let held = state.held[id], held.lease == beaten[id] else { return nil }
                return held
            }
        }
        for id in report.lost {
            guard let held = held(id) else { continue }
            held.context?.markLeaseLost()
            logger.warning(
                "lease lost while running",
                metadata: [
                    "action": "\(id)", "name": "\(held.context?.name.name ?? "")", "attempt": "\(held.lease.attempt)",
                ])
        }
        for id in report.revoked {
            held(id)?.context?.markRevoked()
        }
    }
}
