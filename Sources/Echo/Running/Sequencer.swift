import Foundation
public import Logging
public import ServiceLifecycle
import Synchronization

/// Leases due actions from a ``Production`` and runs them through a ``Site`` (by default, the
/// functions of a ``Plan``), up to ``Configuration/concurrency`` at once, committing outcomes in
/// batches.
///
/// Run it in a `ServiceGroup`, whose graceful shutdown (SIGTERM) drains it, or call ``run()``
/// and later ``shutdown()``:
///
/// ```swift
/// let sequencer = Sequencer(production: production, plan: plan)
/// let group = ServiceGroup(services: [sequencer], gracefulShutdownSignals: [.sigterm], logger: logger)
/// try await group.run()
/// ```
///
/// Shutdown stops claiming, lets running actions finish until ``Configuration/shutdownGracePeriod``,
/// then cancels the rest (their attempt fails with the cancellation error), commits every outcome,
/// and hands leased actions that had not started back to the queue at once.
public final class Sequencer: Service, Sendable {
    /// How a Sequencer runs.
    public struct Configuration: Sendable {
        /// The queues it serves, claimed in this order. The default is `["default"]`.
        public var queues: [String]
        /// Actions running at once, which also bounds the memory a Sequencer uses whatever the
        /// queue's depth. The default is 32.
        public var concurrency: Int
        /// How long a claim holds an action before another worker may take it; the heartbeat
        /// extends it while the action runs. The default is 30 seconds.
        public var leaseDuration: Duration
        /// How often held leases are extended. The default, `nil`, is a third of ``leaseDuration``.
        public var heartbeatInterval: Duration?
        /// The first wait when a poll finds nothing to do; each empty poll doubles it up to
        /// ``maximumPollInterval``. Enqueues in this process wake the Sequencer at once; polling
        /// finds those of other processes. The default is 20 ms.
        public var minimumPollInterval: Duration
        /// The longest wait between polls. The default is 500 ms.
        public var maximumPollInterval: Duration
        /// How long shutdown waits for running actions before cancelling them. The default is
        /// 10 seconds.
        public var shutdownGracePeriod: Duration
        /// The backoff between attempts when the Plan signature sets none. The default is
        /// ``Backoff/init(base:factor:cap:jitter:)`` with its defaults.
        public var backoff: Backoff
        /// The per-attempt timeout when neither the action nor its signature sets one. The
        /// default, `nil`, is no timeout.
        public var defaultTimeout: Duration?
        /// The owner name written into leases. The default is unique per Sequencer:
        /// host, process id and a random suffix.
        public var owner: String
        /// How long finished actions are kept; the Sequencer prunes older ones periodically. The
        /// default is ``Retention/init(maximumAge:maximumCount:interval:)`` with its defaults
        /// (7 days); `nil` never prunes (``Production/prune(olderThan:)`` still does).
        public var retention: Retention?

        /// Creates a configuration; every parameter has the default described on its property.
        public init(
            queues: [String] = ["default"],
            concurrency: Int = 32,
            leaseDuration: Duration = .seconds(30),
            heartbeatInterval: Duration? = nil,
            minimumPollInterval: Duration = .milliseconds(20),
            maximumPollInterval: Duration = .milliseconds(500),
            shutdownGracePeriod: Duration = .seconds(10),
            backoff: Backoff = Backoff(),
            defaultTimeout: Duration? = nil,
            owner: String? = nil,
            retention: Retention? = Retention()
        ) {
            self.retention = retention
            self.queues = queues
            self.concurrency = max(1, concurrency)
            self.leaseDuration = leaseDuration
            self.heartbeatInterval = heartbeatInterval
            self.minimumPollInterval = minimumPollInterval
            self.maximumPollInterval = maximumPollInterval
            self.shutdownGracePeriod = shutdownGracePeriod
            self.backoff = backoff
            self.defaultTimeout = defaultTimeout
            self.owner = owner ?? Sequencer.defaultOwner()
        }
    }

    /// The production it serves.
    public let production: Production
    /// The functions it runs.
    public let plan: Plan
    /// What every action can reach.
    public let life: Life
    /// How each action is executed.
    public let site: any Site
    /// Its configuration.
    public let configuration: Configuration
    let logger: Logger
    let metrics: EchoMetrics

    struct Held {
        var lease: Lease
        var context: ActionContext?
    }

    struct RunState {
        var held: [Int64: Held] = [:]
        var outcomes: [Completion] = []
        var active = 0
        var stopping = false
        var finished = false
        var running = false
    }

    let state = Mutex(RunState())
    /// Rung when a running action finishes (a slot frees) or the Sequencer stops.
    let slotBell = Doorbell()
    /// Rung when an outcome is buffered or the Sequencer finishes.
    let outcomeBell = Doorbell()
    /// Rung when the Sequencer has finished draining.
    let stopBell = Doorbell()

    /// Creates a Sequencer.
    ///
    /// - Parameters:
    ///   - production: The queue to serve.
    ///   - plan: The functions, by name.
    ///   - life: Hooks, configuration and shared values for every action.
    ///   - site: Executes each action; the default runs the Plan's function.
    ///   - configuration: Concurrency, leases, polling and shutdown.
    ///   - logger: Where claims, retries, dead letters, lease losses and shutdown are logged.
    public init(
        production: Production,
        plan: Plan,
        life: Life = Life(),
        site: any Site = PlanSite(),
        configuration: Configuration = Configuration(),
        logger: Logger? = nil
    ) {
        self.production = production
        self.plan = plan
        self.life = life
        self.site = site
        self.configuration = configuration
        self.logger = logger ?? production.logger
        self.metrics = production.metrics
    }

    static func defaultOwner() -> String {
        let host = ProcessInfo.processInfo.hostName
        let pid = ProcessInfo.processInfo.processIdentifier
        let suffix = UInt32.random(in: 0...UInt32.max)
        return "\(host)/\(pid)/\(String(suffix, radix: 16))"
    }

    /// Asks a running Sequencer to shut down gracefully; ``run()`` returns when it has.
    public func shutdown() {
        let wasStopping = state.withLock { state in
            let was = state.stopping
            state.stopping = true
            return was
        }
        if !wasStopping {
            logger.info("sequencer shutting down", metadata: ["owner": "\(configuration.owner)"])
        }
        slotBell.ring()
        production.store.doorbell.ring()
    }

    var isStopping: Bool { state.withLock { $0.stopping } }
}
