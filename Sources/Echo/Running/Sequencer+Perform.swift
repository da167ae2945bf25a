import Foundation
import Logging
import Synchronization

extension Sequencer {
    /// Runs one leased action and buffers its outcome for the next commit.
    func perform(_ claimed: ClaimedAction) async {
        let resolution = await resolve(claimed)
        let completion = Completion(
            lease: claimed.lease, resolution: resolution, queue: claimed.queue, name: claimed.name.name)
        state.withLock { state in
            state.outcomes.append(completion)
            state.active -= 1
            // Held entries are keyed by action id: after a lost lease this Sequencer may hold a
            // newer attempt of the same action, which this one must leave alone.
            if state.held[claimed.lease.id]?.lease == claimed.lease { state.held[claimed.lease.id]?.context = nil }
        }
        outcomeBell.ring()
        slotBell.ring()
    }

    private func resolve(_ claimed: ClaimedAction) async -> Resolution {
        let policy = plan.policy(for: claimed.name)
        let maxAttempts = claimed.maxAttempts ?? policy.maxAttempts ?? production.configuration.defaultMaxAttempts
        let backoff = policy.backoff ?? configuration.backoff
        // Built only when a message is logged: swift-log takes metadata as an autoclosure, and most
        // attempts log nothing.
        func metadata() -> Logger.Metadata {
            ["action": "\(claimed.lease.id)", "name": "\(claimed.name)", "attempt": "\(claimed.lease.attempt)"]
        }
        if claimed.isRevoked {
            logger.info("action cancelled: its license was revoked", metadata: metadata())
            metrics.cancelled(queue: claimed.queue, name: claimed.name.name)
            return .cancelled(error: "license: the license was revoked before the action ran")
        }
        if claimed.lease.attempt > maxAttempts {
            // The last allowed attempt's lease expired (its worker died). The claim dead-letters
            // such an action itself only when the row sets the limit; a limit from the Plan's
            // policy or the production's default is known here.
            metrics.deadLettered(queue: claimed.queue, name: claimed.name.name)
            logger.warning("action dead-lettered: the lease of its last attempt expired", metadata: metadata())
            return .dead(error: "the lease of the last attempt expired")
        }
        if isStopping {
            // Shutting down: hand an unstarted action back at once rather than at lease expiry.
            return .release
        }
        let context = ActionContext(
            claimed: claimed, maxAttempts: maxAttempts, life: life, karma: production.ledger)
        state.withLock { state in
            if state.held[claimed.lease.id]?.lease == claimed.lease { state.held[claimed.lease.id]?.context = context }
        }
        let started = Clock.milliseconds()
        metrics.started(
            queue: claimed.queue, name: claimed.name.name,
            waitedMilliseconds: claimed.lease.attempt == 1 ? started - claimed.createdAt : nil)

        let timeoutMilliseconds =
            claimed.timeoutMilliseconds
            ?? (policy.timeout ?? configuration.defaultTimeout).map {
                Clock.milliseconds($0)
            }
        let hookNames =
            claimed.metadata[SQLiteStore.hooksKey].flatMap { value -> [String]? in
                guard case .array(let items) = value else { return nil }
                return items.compactMap(\.stringValue)
            } ?? []
        let span = life.span
        let site = self.site
        let plan = self.plan
        do {
            let output = try await runDetached(
                timeout: timeoutMilliseconds.map { .milliseconds($0) },
                timeoutError: {
                    ActionError(.timeout, "the attempt ran past its timeout of \(timeoutMilliseconds ?? 0) ms")
                },
                abort: context.abortHandle
            ) {
                for name in hookNames {
                    guard let hook = span.hooks[name] else {
                        throw ActionError(.execution, "hook \(name) is not in the Life's Span")
                    }
                    try await hook.before?(context)
                }
                let output = try await site.execute(context, plan: plan)
                for name in hookNames { try await span.hooks[name]?.after?(context) }
                return output
            }
            let finished = Clock.milliseconds()
            metrics.succeeded(queue: claimed.queue, name: claimed.name.name, runMilliseconds: finished - started)
            let handover = context.takeHandover()
            var next = handover.next
            if let payload = claimed.nextPayload {
                do {
                    next.insert(try JSONDecoder().decode(NewAction.self, from: Data(payload)), at: 0)
                } catch {
                    logger.error(
                        "the stored next action does not decode; it is dropped from the chain",
                        metadata: metadata().merging(["error": "\(error)"]) { a, _ in a })
                }
            }
            // The fallback is recorded only if an effect throws or a chained action cannot be
            // stored; without either it is never read.
            let fallback: Resolution.Fallback =
                claimed.lease.attempt >= maxAttempts || (handover.effects.isEmpty && next.isEmpty)
                ? .dead
                : .retry(runAt: finished + Clock.milliseconds(backoff.delay(afterAttempt: claimed.lease.attempt)))
            return .succeeded(result: output, next: next, effects: handover.effects, fallback: fallback)
        } catch let snooze as Snooze {
            logger.debug("action snoozed", metadata: metadata())
            return .snooze(runAt: Clock.milliseconds() + max(0, Clock.milliseconds(snooze.delay)))
        } catch {
            return failure(
                error, claimed: claimed, maxAttempts: maxAttempts, backoff: backoff, metadata: metadata())
        }
    }

    private func failure(
        _ error: any Error, claimed: ClaimedAction, maxAttempts: Int, backoff: Backoff, metadata: Logger.Metadata
    ) -> Resolution {
        let message: String
        var final = claimed.lease.attempt >= maxAttempts
        if let error = error as? ActionError {
            message = error.description
            switch error.code {
            case .routing, .decoding:
                // Retrying cannot help: the Plan has no such function, or the payload will never decode.
                final = true
            case .license:
                metrics.cancelled(queue: claimed.queue, name: claimed.name.name)
                logger.info("action cancelled: its license was revoked", metadata: metadata)
                return .cancelled(error: message)
            default:
                break
            }
        } else if error is CancellationError {
            message = ActionError(.cancellation, "the attempt was cancelled").description
        } else {
            message = ActionError(.execution, String(describing: error)).description
        }
        metrics.failed(queue: claimed.queue, name: claimed.name.name)
        var details = metadata
        details["error"] = "\(message)"
        if final {
            metrics.deadLettered(queue: claimed.queue, name: claimed.name.name)
            logger.warning("action dead-lettered", metadata: details)
            return .dead(error: message)
        }
        let delay = backoff.delay(afterAttempt: claimed.lease.attempt)
        details["retryIn"] = "\(delay)"
        metrics.retried(queue: claimed.queue, name: claimed.name.name)
        logger.info("action failed; retrying", metadata: details)
        return .retry(runAt: Clock.milliseconds() + Clock.milliseconds(delay), error: message)
    }

    // MARK: Committing

    func commitLoop() async {
        while true {
            let generation = outcomeBell.generation
            let (batch, finished) = state.withLock { state in
                let outcomes = state.outcomes
                state.outcomes = []
                return (outcomes, state.finished)
            }
            if batch.isEmpty {
                if finished || Task.isCancelled { return }
                // Every buffered outcome and the end of the drain ring the outcome bell.
                await outcomeBell.wait(after: generation)
                continue
            }
            // A batch handed back for the final commit ends the loop: taking it again here would spin.
            if !(await commit(batch, final: false)) { return }
        }
    }

    /// Commits a batch of outcomes, retrying while storage fails (a full disk, a long lock), so
    /// that no outcome is dropped; the heartbeat keeps their leases meanwhile. A final commit at
    /// shutdown gives up after a few tries: the leases then expire and the actions run again.
    ///
    /// - Returns: `false` when a non-final commit handed its batch back for the final commit
    ///   (the Sequencer was cancelled, or has finished draining).
    @discardableResult
    func commit(_ batch: [Completion], final: Bool) async -> Bool {
        var pause = Duration.milliseconds(50)
        var tries = 0
        while true {
            tries += 1
            do {
                let statuses = try await production.store.complete(batch)
                state.withLock { state in
                    for completion in batch where state.held[completion.lease.id]?.lease == completion.lease {
                        state.held[completion.lease.id] = nil
                    }
                }
                for (completion, status) in zip(batch, statuses) {
                    report(completion, status)
                }
                return true
            } catch {
                logger.error(
                    "committing outcomes failed; retrying",
                    metadata: ["count": "\(batch.count)", "error": "\(error)", "try": "\(tries)"])
                if !final && (Task.isCancelled || state.withLock({ $0.finished })) {
                    // Hand the batch to the final commit after the task group ends, which gives
                    // up after a few tries: retrying here for ever would hang the shutdown.
                    state.withLock { $0.outcomes.insert(contentsOf: batch, at: 0) }
                    return false
                }
                if Sequencer.isPermanent(error) {
                    // Retrying the same batch would fail the same way and stop every outcome behind
                    // it: commit the completions one by one, recording what cannot be stored.
                    return await commitSeparately(batch, after: error, final: final)
                }
                if final && tries >= 5 {
                    logger.error(
                        "giving up on outcomes at shutdown; their leases will expire and the actions run again",
                        metadata: ["count": "\(batch.count)"])
                    return true
                }
                try? await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(5))
            }
        }
    }

    /// Whether a failed commit would fail again however often it is retried: the data, not the
    /// storage's state, is at fault (a value over SQLite's limits, a constraint).
    static func isPermanent(_ error: any Error) -> Bool {
        guard let error = error as? ActionError else { return false }
        switch error.code {
        case .invalidArgument, .encoding: return true
        case .storage:
            guard let code = error.sqliteCode.map({ $0 & 0xff }) else { return false }
            // SQLITE_ERROR, SQLITE_TOOBIG, SQLITE_CONSTRAINT, SQLITE_MISMATCH, SQLITE_RANGE.
            return [1, 18, 19, 20, 25].contains(code)
        default: return false
        }
    }

    /// Commits each completion of a batch that failed permanently on its own. One that still fails
    /// permanently is recorded as a dead letter carrying the storage error; if even that cannot be
    /// stored, it is dropped from this Sequencer (its lease expires and the action runs again).
    private func commitSeparately(_ batch: [Completion], after error: any Error, final: Bool) async -> Bool {
        if batch.count > 1 {
            var handedBack = false
            for completion in batch where !(await commit([completion], final: final)) { handedBack = true }
            return !handedBack
        }
        guard let completion = batch.first else { return true }
        let marker = "the outcome could not be stored"
        if case .dead(let message) = completion.resolution, message.hasPrefix(marker) {
            logger.error(
                "dropping an outcome that cannot be stored; the lease will expire and the action run again",
                metadata: ["action": "\(completion.lease.id)", "error": "\(error)"])
            state.withLock { state in
                if state.held[completion.lease.id]?.lease == completion.lease {
                    state.held[completion.lease.id] = nil
                }
            }
            return true
        }
        logger.error(
            "an outcome cannot be stored; dead-lettering the action",
            metadata: ["action": "\(completion.lease.id)", "name": "\(completion.name)", "error": "\(error)"])
        var replacement = completion
        replacement.resolution = .dead(error: "\(marker): \(error)")
        return await commit([replacement], final: final)
    }

    private func report(_ completion: Completion, _ status: CompletionStatus) {
        switch status {
        case .applied:
            break
        case .leaseLost:
            metrics.leaseLost(queue: completion.queue, name: completion.name)
            logger.warning(
                "outcome rejected: the lease was lost to another worker",
                metadata: [
                    "action": "\(completion.lease.id)", "name": "\(completion.name)",
                    "attempt": "\(completion.lease.attempt)",
                ])
        case .effectFailed(let message):
            logger.warning(
                "an effect failed; the attempt is recorded as failed",
                metadata: ["action": "\(completion.lease.id)", "error": "\(message)"])
        }
    }
}
