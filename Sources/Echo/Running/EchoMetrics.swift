import CoreMetrics
import Synchronization

/// The metrics Echo reports through swift-metrics, with `queue` and `name` dimensions.
///
/// Counters: `echo_actions_enqueued_total`, `echo_actions_started_total`,
/// `echo_actions_succeeded_total`, `echo_actions_failed_total`, `echo_actions_retried_total`,
/// `echo_actions_dead_lettered_total`, `echo_actions_cancelled_total`, `echo_leases_lost_total`.
/// Timers: `echo_action_wait_duration` (enqueue to first start, a delay included) and
/// `echo_action_run_duration`.
/// Gauge: `echo_queue_depth` (ready and leased actions, per queue), recorded by each Sequencer at every heartbeat.
/// Metric objects are made once per label and dimensions, then reused.
final class EchoMetrics: Sendable {
    private struct Key: Hashable {
        var label: String
        var queue: String
        var name: String
    }
    private let counters = Mutex<[Key: Counter]>([:])
    private let timers = Mutex<[Key: Timer]>([:])
    private let factory: any MetricsFactory

    init(factory: (any MetricsFactory)?) {
        self.factory = factory ?? MetricsSystem.factory
    }

    private func counter(_ label: String, queue: String, name: String) -> Counter {
        let key = Key(label: label, queue: queue, name: name)
        return counters.withLock { counters in
            if let counter = counters[key] { return counter }
            let counter = Counter(label: label, dimensions: [("queue", queue), ("name", name)], factory: factory)
            counters[key] = counter
            return counter
        }
    }

    private func timer(_ label: String, queue: String, name: String) -> Timer {
        let key = Key(label: label, queue: queue, name: name)
        return timers.withLock { timers in
            if let timer = timers[key] { return timer }
            let timer = Timer(label: label, dimensions: [("queue", queue), ("name", name)], factory: factory)
            timers[key] = timer
            return timer
        }
    }

    func enqueued(queue: String, name: String, count: Int = 1) {
        counter("echo_actions_enqueued_total", queue: queue, name: name).increment(by: count)
    }

    func started(queue: String, name: String, waitedMilliseconds: Int64?) {
        counter("echo_actions_started_total", queue: queue, name: name).increment()
        if let waitedMilliseconds {
            timer("echo_action_wait_duration", queue: queue, name: name)
                .recordNanoseconds(max(0, waitedMilliseconds) * 1_000_000)
        }
    }

    func succeeded(queue: String, name: String, runMilliseconds: Int64) {
        counter("echo_actions_succeeded_total", queue: queue, name: name).increment()
        timer("echo_action_run_duration", queue: queue, name: name)
            .recordNanoseconds(max(0, runMilliseconds) * 1_000_000)
    }

    func failed(queue: String, name: String) {
        counter("echo_actions_failed_total", queue: queue, name: name).increment()
    }

    func retried(queue: String, name: String) {
        counter("echo_actions_retried_total", queue: queue, name: name).increment()
    }

    func deadLettered(queue: String, name: String) {
        counter("echo_actions_dead_lettered_total", queue: queue, name: name).increment()
    }

    func cancelled(queue: String, name: String) {
        counter("echo_actions_cancelled_total", queue: queue, name: name).increment()
    }

    func leaseLost(queue: String, name: String) {
        counter("echo_leases_lost_total", queue: queue, name: name).increment()
    }

    func queueDepth(queue: String, depth: Int) {
        Gauge(label: "echo_queue_depth", dimensions: [("queue", queue)], factory: factory).record(depth)
    }
}
