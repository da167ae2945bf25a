import Echo
import Foundation
import Histogram
import Logging
import Synchronization

/// Runs the workloads and collects their rows.
struct Runner {
    let options: Options
    let sizes: Sizes
    let folder: Folder
    let logger: Logger
    var results: [BenchResult] = []
    /// Problems that make the run fail (exit nonzero) once the table is printed.
    var failures: [String] = []
    /// The baseline's single-commit rate per mode, measured once per run.
    private var singleCommit: [Mode: Double] = [:]
    /// Echo's drain throughput per mode, which paces the end-to-end producers.
    private var drainRate: [Mode: Double] = [:]

    init(options: Options, folder: Folder) {
        self.options = options
        self.sizes = options.quick ? .quick : .full
        self.folder = folder
        var logger = Logger(label: "echo-bench")
        // Echo logs every retry at info; the retry storm would print thousands of lines.
        logger.logLevel = .error
        self.logger = logger
    }

    var concurrency: Int { options.concurrency ?? Sizes.defaultConcurrency }

    /// The Sequencer settings of every workload that runs one, tuned for throughput: many slots
    /// so that claims and outcome commits come in large batches, and short polls (an idle
    /// Sequencer is woken by the in-process doorbell anyway).
    func sequencerConfiguration(backoff: Backoff = Backoff()) -> Sequencer.Configuration {
        Sequencer.Configuration(
            concurrency: concurrency,
            minimumPollInterval: .milliseconds(1),
            maximumPollInterval: .milliseconds(50),
            backoff: backoff)
    }

    var sequencerNotes: String {
        "Sequencer concurrency \(concurrency), poll 1–50 ms"
    }

    func open(_ name: String, mode: Mode) async throws -> Production {
        let synchronous: Production.Configuration.Synchronous = mode == .full ? .full : .normal
        return try await Production.open(
            path: folder.database(name), configuration: Production.Configuration(synchronous: synchronous),
            logger: logger)
    }

    func openBaseline(_ name: String, mode: Mode) throws -> RawDatabase {
        try RawDatabase(path: folder.database(name), mode: mode)
    }

    func remove(_ production: Production) {
        production.close()
        folder.remove(production.path)
    }

    func remove(_ database: RawDatabase) {
        folder.remove(database.path)
    }

    mutating func run(_ workload: Workload, mode: Mode) async throws {
        let label = "\(workload.rawValue) \(mode.rawValue)"
        Progress.shared.begin(label)
        let result: BenchResult
        switch workload {
        case .enqueueSingle: result = try await enqueueSingle(mode: mode, label: label)
        case .enqueueConcurrent: result = try await enqueueConcurrent(mode: mode, label: label)
        case .enqueueBatch: result = try await enqueueBatch(mode: mode, label: label)
        case .drain: result = try await drain(mode: mode, label: label)
        case .endToEnd: result = try await endToEnd(mode: mode, label: label)
        case .retryStorm: result = try await retryStorm(mode: mode, label: label)
        case .memory:
            result = options.child ? try await memory(mode: mode, label: label) : try memoryInChild(mode: mode)
        }
        results.append(result)
        if options.child { return }
        Progress.shared.note(
            "\(label): Echo \(Report.format(result.echoPerSecond, digits: 0))/s, baseline "
                + "\(Report.format(result.baselinePerSecond, digits: 0))/s, ratio \(Report.format(result.ratio, digits: 2))"
        )
    }

    // MARK: Enqueue

    /// The baseline's rate of single-row transactions, measured once per mode and shared by the
    /// enqueue-single and enqueue-concurrent rows.
    private mutating func singleCommitRate(mode: Mode, label: String) throws -> Double {
        if let rate = singleCommit[mode] { return rate }
        let database = try openBaseline("baseline-single-\(mode.rawValue)", mode: mode)
        defer { remove(database) }
        let elapsed = try Baseline.insert(
            database, count: sizes.single, perTransaction: 1, progress: "\(label) baseline")
        let rate = Double(sizes.single) / elapsed
        singleCommit[mode] = rate
        return rate
    }

    private mutating func enqueueSingle(mode: Mode, label: String) async throws -> BenchResult {
        let count = sizes.single
        let production = try await open("echo-single-\(mode.rawValue)", mode: mode)
        defer { remove(production) }
        let start = ContinuousClock.now
        for index in 0..<count {
            try await production.enqueue(NewAction("Noop", payload: payload(index)))
            if index % 100 == 0 { Progress.shared.update("\(label) Echo", done: index, total: count) }
        }
        let elapsed = seconds(since: start)
        let baseline = try singleCommitRate(mode: mode, label: label)
        return BenchResult(
            workload: .enqueueSingle, mode: mode, actions: count, echoPerSecond: Double(count) / elapsed,
            baselinePerSecond: baseline,
            notes: "\(count) awaited enqueues from one task; baseline one INSERT per transaction")
    }

    private mutating func enqueueConcurrent(mode: Mode, label: String) async throws -> BenchResult {
        let count = sizes.concurrent
        let tasks = sizes.concurrentTasks
        let production = try await open("echo-concurrent-\(mode.rawValue)", mode: mode)
        defer { remove(production) }
        let counter = Counter()
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for task in 0..<tasks {
                group.addTask {
                    var index = task
                    while index < count {
                        try await production.enqueue(NewAction("Noop", payload: payload(index)))
                        counter.increment()
                        index += tasks
                    }
                }
            }
            group.addTask { await counter.wait(for: count, progress: "\(label) Echo") }
            try await group.waitForAll()
        }
        let elapsed = seconds(since: start)
        let baseline = try singleCommitRate(mode: mode, label: label)
        return BenchResult(
            workload: .enqueueConcurrent, mode: mode, actions: count, echoPerSecond: Double(count) / elapsed,
            baselinePerSecond: baseline,
            notes: "\(count) awaited enqueues from \(tasks) tasks (group commit); "
                + "baseline one INSERT per transaction (\(sizes.single) rows)")
    }

    private func enqueueBatch(mode: Mode, label: String) async throws -> BenchResult {
        let count = sizes.batch
        let batchSize = sizes.batchSize
        let production = try await open("echo-batch-\(mode.rawValue)", mode: mode)
        defer { remove(production) }
        // Build the batches before the clock starts: the row work is measured, not the caller's.
        let batches = stride(from: 0, to: count, by: batchSize).map { first in
            (first..<min(first + batchSize, count)).map { NewAction("Noop", payload: payload($0)) }
        }
        let start = ContinuousClock.now
        var done = 0
        for batch in batches {
            try await production.enqueue(batch)
            done += batch.count
            Progress.shared.update("\(label) Echo", done: done, total: count)
        }
        let elapsed = seconds(since: start)
        let database = try openBaseline("baseline-batch-\(mode.rawValue)", mode: mode)
        defer { remove(database) }
        let baselineElapsed = try Baseline.insert(
            database, count: count, perTransaction: batchSize, progress: "\(label) baseline")
        return BenchResult(
            workload: .enqueueBatch, mode: mode, actions: count, echoPerSecond: Double(count) / elapsed,
            baselinePerSecond: Double(count) / baselineElapsed,
            notes: "\(count) enqueues in batches of \(batchSize); baseline \(batchSize) INSERTs per transaction")
    }

    // MARK: Running actions

    /// Stores `count` no-op actions in batches of 1,000, untimed, and returns their ids.
    func prefill(_ production: Production, count: Int, name: Signature = "Noop", label: String) async throws
        -> [ActionID]
    {
        var ids: [ActionID] = []
        ids.reserveCapacity(count)
        var first = 0
        while first < count {
            let batch = (first..<min(first + 1_000, count)).map { NewAction(name, payload: payload($0)) }
            ids += try await production.enqueue(batch)
            first += batch.count
            Progress.shared.update("\(label) prefill", done: first, total: count)
        }
        return ids
    }

    /// Runs `sequencer` until `counter` reaches `target`, then shuts it down gracefully (which
    /// commits the last outcomes); returns the seconds from start to the end of the shutdown.
    func runSequencer(_ sequencer: Sequencer, until counter: Counter, reaches target: Int, label: String)
        async throws -> Double
    {
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sequencer.run() }
            await counter.wait(for: target, progress: label)
            sequencer.shutdown()
            try await group.waitForAll()
        }
        return seconds(since: start)
    }

    /// Checks that `count` actions are done and none is left ready, leased or dead.
    mutating func expectAllDone(_ production: Production, count: Int, label: String) async throws {
        let stats = try await production.stats().first { $0.queue == "default" }
        let done = stats?.counts[.done] ?? 0
        let other = (stats?.counts ?? [:]).filter { $0.key != .done }.values.reduce(0, +)
        if done != count || other != 0 {
            failures.append("\(label): expected \(count) done actions, found \(done) done and \(other) others")
        }
    }

    private mutating func drain(mode: Mode, label: String) async throws -> BenchResult {
        let count = sizes.drain
        let rate = try await echoDrainRate(mode: mode, count: count, label: label)
        drainRate[mode] = rate
        let baseline = try await baselineDrainRate(mode: mode, count: count, label: label)
        return BenchResult(
            workload: .drain, mode: mode, actions: count, echoPerSecond: rate, baselinePerSecond: baseline,
            notes: "\(count) pre-filled no-op actions (claim, run, commit outcome and Karma); \(sequencerNotes); "
                + "baseline claims 100 per UPDATE … RETURNING transaction, marks them done with Karma in one "
                + "transaction per 100")
    }

    /// Echo's throughput draining `count` pre-filled no-op actions.
    private mutating func echoDrainRate(mode: Mode, count: Int, label: String) async throws -> Double {
        let production = try await open("echo-drain-\(mode.rawValue)", mode: mode)
        defer { remove(production) }
        _ = try await prefill(production, count: count, label: label)
        let counter = Counter()
        let plan = Plan().signature("Noop") { (_: ActionContext) in
            counter.increment()
            return []
        }
        let sequencer = Sequencer(production: production, plan: plan, configuration: sequencerConfiguration())
        let elapsed = try await runSequencer(sequencer, until: counter, reaches: count, label: "\(label) Echo")
        try await expectAllDone(production, count: count, label: label)
        return Double(count) / elapsed
    }

    private func baselineDrainRate(mode: Mode, count: Int, label: String) async throws -> Double {
        let database = try openBaseline("baseline-drain-\(mode.rawValue)", mode: mode)
        defer { remove(database) }
        _ = try Baseline.insert(database, count: count, perTransaction: 1_000, progress: "\(label) baseline prefill")
        let elapsed = try await Baseline.process(database, count: count, progress: "\(label) baseline")
        return Double(count) / elapsed
    }

    // MARK: End to end

    /// The payload of an end-to-end action: the wall time of its enqueue call.
    struct Stamp: Codable, Sendable {
        /// Nanoseconds since 1970.
        var t: Int64
    }

    /// Enqueue-to-start latencies in microseconds.
    final class Latencies: Sendable {
        /// Seconds from the start until the last producer finished.
        let enqueuedBy = Mutex(0.0)
        let histogram = Mutex(
            Histogram<UInt64>(highestTrackableValue: 600_000_000, numberOfSignificantValueDigits: .three))

        func record(nanoseconds: Int64) {
            let micros = UInt64(max(0, nanoseconds / 1_000))
            _ = histogram.withLock { $0.record(micros) }
        }

        func milliseconds(atPercentile percentile: Double) -> Double {
            Double(histogram.withLock { $0.valueAtPercentile(percentile) }) / 1_000
        }
    }

    private mutating func endToEnd(mode: Mode, label: String) async throws -> BenchResult {
        // ECHO_BENCH_RATE, for experiments: a fixed offered rate (actions/s).
        var fixedRate: Double?
        if let text = ProcessInfo.processInfo.environment["ECHO_BENCH_RATE"] {
            guard let rate = Double(text), rate.isFinite, rate >= 1, rate <= 10_000_000 else {
                throw BenchError("ECHO_BENCH_RATE must be a number of actions per second from 1 to 10,000,000")
            }
            fixedRate = rate
        }
        let offered: Double
        if let fixedRate {
            offered = fixedRate
        } else if let measured = drainRate[mode] {
            offered = measured / 2
        } else {
            Progress.shared.begin("\(label): measuring the drain rate to pace producers")
            let drain = try await echoDrainRate(mode: mode, count: sizes.drain, label: "\(label) calibration")
            drainRate[mode] = drain
            offered = drain / 2
        }
        let total = max(1, Int(offered * sizes.endToEndSeconds))
        let producers = 512
        let production = try await open("echo-e2e-\(mode.rawValue)", mode: mode)
        defer { remove(production) }
        let counter = Counter()
        let latencies = Latencies()
        let plan = Plan().signature("Stamp") { (stamp: Stamp, _: ActionContext) -> Int in
            latencies.record(nanoseconds: wallNanoseconds() - stamp.t)
            counter.increment()
            return 0
        }
        let sequencer = Sequencer(production: production, plan: plan, configuration: sequencerConfiguration())
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sequencer.run() }
            for producer in 0..<producers {
                group.addTask {
                    // Producer p enqueues actions p, p + producers, …, each at its scheduled time
                    // (or at once when behind), so the offered load stays at `offered` per second.
                    var index = producer
                    while index < total {
                        let target = start + .seconds(Double(index) / offered)
                        if target > .now { try await Task.sleep(until: target, clock: .continuous) }
                        try await production.enqueue("Stamp", Stamp(t: wallNanoseconds()))
                        index += producers
                    }
                    let now = seconds(since: start)
                    latencies.enqueuedBy.withLock { $0 = max($0, now) }
                }
            }
            await counter.wait(for: total, progress: "\(label) Echo")
            sequencer.shutdown()
            try await group.waitForAll()
        }
        let elapsed = seconds(since: start)
        let enqueued = latencies.enqueuedBy.withLock { $0 }
        try await expectAllDone(production, count: total, label: label)
        var result = BenchResult(
            workload: .endToEnd, mode: mode, actions: total, echoPerSecond: Double(total) / elapsed,
            baselinePerSecond: offered,
            notes: "\(producers) producers offering \(Report.format(offered, digits: 0))/s ("
                + (fixedRate == nil ? "half of Echo's drain rate" : "set by ECHO_BENCH_RATE")
                + ") for \(Report.format(sizes.endToEndSeconds, digits: 0)) s (all enqueued after "
                + "\(Report.format(enqueued, digits: 1)) s, all started after \(Report.format(elapsed, digits: 1)) s); baseline column = offered "
                + "rate, ratio = achieved/offered; latency from the enqueue call to the function's start; "
                + sequencerNotes)
        result.p50Milliseconds = latencies.milliseconds(atPercentile: 50)
        result.p99Milliseconds = latencies.milliseconds(atPercentile: 99)
        result.p999Milliseconds = latencies.milliseconds(atPercentile: 99.9)
        return result
    }

    // MARK: Retry storm

    private struct Failure: Error {}

    private mutating func retryStorm(mode: Mode, label: String) async throws -> BenchResult {
        let count = sizes.retry
        let production = try await open("echo-retry-\(mode.rawValue)", mode: mode)
        defer { remove(production) }
        let ids = try await prefill(production, count: count, name: "Flaky", label: label)
        let counter = Counter()
        let backoff = Backoff(base: .milliseconds(1), factor: 2, jitter: 0)
        let plan = Plan().signature("Flaky", policy: Plan.Policy(maxAttempts: 5, backoff: backoff)) {
            (context: ActionContext) in
            if context.attempt < 3 { throw Failure() }
            counter.increment()
            return []
        }
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: sequencerConfiguration(backoff: backoff))
        let elapsed = try await runSequencer(sequencer, until: counter, reaches: count, label: "\(label) Echo")

        // Every action must have succeeded on its third attempt.
        var wrong = 0
        var example = ""
        for (index, id) in ids.enumerated() {
            let record = try await production.karma(id)
            if record?.attempts != 3 || record?.outcome != .succeeded {
                wrong += 1
                if example.isEmpty {
                    example = "action \(id): \(record.map { "\($0.outcome), \($0.attempts) attempts" } ?? "no Karma")"
                }
            }
            if index % 1_000 == 0 { Progress.shared.update("\(label) checking Karma", done: index, total: count) }
        }
        if wrong > 0 {
            failures.append("\(label): \(wrong) of \(count) Karma records without attempts == 3 (e.g. \(example))")
        }

        let database = try openBaseline("baseline-retry-\(mode.rawValue)", mode: mode)
        defer { remove(database) }
        _ = try Baseline.insert(database, count: count, perTransaction: 1_000, progress: "\(label) baseline prefill")
        let baselineElapsed = try await Baseline.process(
            database, count: count, succeedOnAttempt: 3, progress: "\(label) baseline")
        return BenchResult(
            workload: .retryStorm, mode: mode, actions: count, echoPerSecond: Double(count) / elapsed,
            baselinePerSecond: Double(count) / baselineElapsed,
            notes: "\(count) actions failing twice then succeeding (backoff 1 ms ×2, jitter 0), "
                + "\(wrong == 0 ? "all" : "NOT all") Karma attempts == 3; \(sequencerNotes); baseline as drain, "
                + "with failed rows set back to ready with their error recorded")
    }

    // MARK: Memory

    /// Runs the memory workload in a child process of this executable, so that the peak RSS it
    /// reports is not raised by the workloads before it.
    private func memoryInChild(mode: Mode) throws -> BenchResult {
        let executable =
            (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
            ?? CommandLine.arguments[0]
        var arguments = ["--only", Workload.memory.rawValue, "--mode", mode.rawValue, "--dir", folder.path]
        if options.quick { arguments.append("--quick") }
        if let concurrency = options.concurrency { arguments += ["--concurrency", String(concurrency)] }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw BenchError("the memory workload's child process exited with \(process.terminationStatus)")
        }
        let lines = String(decoding: data, as: UTF8.self).split(separator: "\n")
        guard let last = lines.last,
            let result = try? JSONDecoder().decode(BenchResult.self, from: Data(last.utf8))
        else {
            throw BenchError("the memory workload's child process printed no result")
        }
        return result
    }

    /// Enqueues `sizes.memory` actions in batches, drains them, and reports the peak RSS.
    private mutating func memory(mode: Mode, label: String) async throws -> BenchResult {
        let count = sizes.memory
        let production = try await open("echo-memory-\(mode.rawValue)", mode: mode)
        let startRSS = peakRSSMiB() ?? 0
        let enqueueStart = ContinuousClock.now
        var first = 0
        while first < count {
            let batch = (first..<min(first + 1_000, count)).map { NewAction("Noop", payload: payload($0)) }
            try await production.enqueue(batch)
            first += batch.count
            Progress.shared.update("\(label) Echo enqueue", done: first, total: count)
        }
        let enqueueRate = Double(count) / seconds(since: enqueueStart)
        let queuedRSS = peakRSSMiB() ?? 0
        let counter = Counter()
        let plan = Plan().signature("Noop") { (_: ActionContext) in
            counter.increment()
            return []
        }
        let sequencer = Sequencer(production: production, plan: plan, configuration: sequencerConfiguration())
        let elapsed = try await runSequencer(sequencer, until: counter, reaches: count, label: "\(label) Echo drain")
        try await expectAllDone(production, count: count, label: label)
        let peak = peakRSSMiB()
        remove(production)
        if !failures.isEmpty { throw BenchError(failures.joined(separator: "\n")) }

        let baseline = try await baselineDrainRate(mode: mode, count: count, label: label)
        var result = BenchResult(
            workload: .memory, mode: mode, actions: count, echoPerSecond: Double(count) / elapsed,
            baselinePerSecond: baseline,
            notes: "\(count) actions enqueued in batches of 1,000 (\(Report.format(enqueueRate, digits: 0))/s), "
                + "then drained; Echo column = drain rate; peak RSS (VmHWM, own process) "
                + "\(Report.format(startRSS, digits: 1)) MiB after open, \(Report.format(queuedRSS, digits: 1)) MiB "
                + "with all queued, \(Report.format(peak ?? 0, digits: 1)) MiB after the drain; \(sequencerNotes)")
        result.peakRSSMiB = peak
        return result
    }
}
