import Synchronization

/// Runs `body` in its own task and returns its result, or throws when `timeout` passes or the
/// calling task is cancelled — whichever comes first — without waiting for `body` to notice.
///
/// A function that never returns and ignores cancellation cannot hold up a timeout or a shutdown:
/// its task is cancelled and left behind, and its late result is ignored.
func runDetached(
    timeout: Duration?,
    timeoutError: @escaping @Sendable () -> any Error,
    abort: AbortHandle? = nil,
    _ body: @escaping @Sendable () async throws -> [UInt8]
) async throws -> [UInt8] {
    let box = ResumeBox()
    return try await withTaskCancellationHandler {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<[UInt8], any Error>) in
            box.install(continuation)
            abort?.install { error in box.resume(with: .failure(error)) }
            let work = Task {
                let result = await Result(catching: { try await body() })
                box.resume(with: result)
            }
            box.attach(work: work)
            if let timeout {
                let timer = Task {
                    try? await Task.sleep(for: timeout)
                    if !Task.isCancelled { box.resume(with: .failure(timeoutError())) }
                }
                box.attach(timer: timer)
            }
        }
    } onCancel: {
        box.resume(with: .failure(CancellationError()))
    }
}

/// Lets another task end a ``runDetached(timeout:timeoutError:abort:_:)`` call early with an
/// error, such as a license revoked while the action runs.
///
/// Sendable through its Mutex: both fields are read and written under the lock.
final class AbortHandle: Sendable {
    private struct State {
        var error: (any Error)?
        var action: (@Sendable (any Error) -> Void)?
    }
    private let state = Mutex(State())

    init() {}

    /// Ends the run with `error`, now if it has started, else as soon as it starts.
    func abort(with error: any Error) {
        let action = state.withLock { state in
            if state.error == nil { state.error = error }
            return state.action
        }
        action?(error)
    }

    fileprivate func install(_ action: @escaping @Sendable (any Error) -> Void) {
        let early = state.withLock { state in
            state.action = action
            return state.error
        }
        if let early { action(early) }
    }
}

/// Resumes a continuation once, then cancels the tasks that raced for it.
///
/// Sendable through its Mutex: every field is read and written under the lock.
private final class ResumeBox: Sendable {
    private struct State {
        var continuation: CheckedContinuation<[UInt8], any Error>?
        var pending: Result<[UInt8], any Error>?
        var finished = false
        var work: Task<Void, Never>?
        var timer: Task<Void, Never>?
    }
    private let state = Mutex(State())

    func install(_ continuation: CheckedContinuation<[UInt8], any Error>) {
        let early = state.withLock { state -> Result<[UInt8], any Error>? in
            if let pending = state.pending {
                state.pending = nil
                return pending
            }
            state.continuation = continuation
            return nil
        }
        if let early { continuation.resume(with: early) }
    }

    func attach(work: Task<Void, Never>) {
        let cancel = state.withLock { state in
            state.work = work
            return state.finished
        }
        if cancel { work.cancel() }
    }

    func attach(timer: Task<Void, Never>) {
        let cancel = state.withLock { state in
            state.timer = timer
            return state.finished
        }
        if cancel { timer.cancel() }
    }

    func resume(with result: Result<[UInt8], any Error>) {
        let (continuation, work, timer) = state.withLock { state in
            if state.finished {
                return (nil, nil, nil)
                    as (CheckedContinuation<[UInt8], any Error>?, Task<Void, Never>?, Task<Void, Never>?)
            }
            state.finished = true
            let continuation = state.continuation
            state.continuation = nil
            if continuation == nil { state.pending = result }
            return (continuation, state.work, state.timer)
        }
        continuation?.resume(with: result)
        work?.cancel()
        timer?.cancel()
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}
