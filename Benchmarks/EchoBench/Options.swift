/// The benchmark's command line.
///
///     echo-bench [--quick] [--json PATH] [--workload NAME] [--mode NORMAL|FULL] [--dir PATH]
///                [--concurrency N]
///
/// Hidden: `--only memory` runs the memory workload alone in this process and prints its result
/// as one JSON line on stdout (the parent starts a child this way, so that the peak RSS it reads
/// is that workload's own).
struct Options: Sendable {
    var quick = false
    var jsonPath: String?
    var workloads: [Workload] = Workload.allCases
    var modes: [Mode] = [.normal, .full]
    var directory: String?
    var concurrency: Int?
    var child = false

    static let usage = """
        usage: echo-bench [--quick] [--json PATH] [--workload NAME] [--mode NORMAL|FULL] [--dir PATH]
                          [--concurrency N]
          --quick          CI smoke sizes (the whole run takes well under a minute)
          --json PATH      also write the results as a JSON array to PATH
          --workload NAME  run one workload: \(Workload.allCases.map(\.rawValue).joined(separator: ", "))
          --mode MODE      run one synchronous mode: NORMAL or FULL (default: both)
          --dir PATH       folder for the database files (default: a temporary folder, removed afterwards)
          --concurrency N  the Sequencer's concurrency (default: \(Sizes.defaultConcurrency))
        """

    static func parse(_ arguments: [String]) throws(BenchError) -> Options {
        var options = Options()
        var index = 0
        func value(_ flag: String) throws(BenchError) -> String {
            index += 1
            guard index < arguments.count else { throw BenchError("\(flag) needs a value\n\(usage)") }
            return arguments[index]
        }
        while index < arguments.count {
            let argument = arguments[index]
            switch argument {
            case "--quick":
                options.quick = true
            case "--json":
                options.jsonPath = try value(argument)
            case "--workload", "--only":
                let name = try value(argument)
                guard let workload = Workload(rawValue: name) else {
                    throw BenchError("unknown workload \(name)\n\(usage)")
                }
                options.workloads = [workload]
                if argument == "--only" { options.child = true }
            case "--mode":
                let name = try value(argument)
                guard let mode = Mode(rawValue: name.uppercased()) else {
                    throw BenchError("unknown mode \(name): NORMAL or FULL\n\(usage)")
                }
                options.modes = [mode]
            case "--dir":
                options.directory = try value(argument)
            case "--concurrency":
                let text = try value(argument)
                guard let number = Int(text), number >= 1 else {
                    throw BenchError("--concurrency needs a positive number, not \(text)")
                }
                options.concurrency = number
            case "-h", "--help":
                throw BenchError(usage, exitCode: 0)
            default:
                throw BenchError("unknown argument \(argument)\n\(usage)")
            }
            index += 1
        }
        return options
    }
}

/// One workload of the benchmark.
enum Workload: String, CaseIterable, Sendable {
    case enqueueSingle = "enqueue-single"
    case enqueueConcurrent = "enqueue-concurrent"
    case enqueueBatch = "enqueue-batch"
    case drain
    case endToEnd = "end-to-end"
    case retryStorm = "retry-storm"
    case memory
}

/// The `synchronous` setting a workload runs with.
enum Mode: String, CaseIterable, Sendable {
    case normal = "NORMAL"
    case full = "FULL"
}

/// How many actions each workload moves.
struct Sizes: Sendable {
    static let defaultConcurrency = 1_024

    var single: Int
    var concurrent: Int
    var concurrentTasks = 64
    var batch: Int
    var batchSize = 1_000
    var drain: Int
    var endToEndSeconds: Double
    var retry: Int
    var memory: Int

    static let full = Sizes(
        single: 5_000, concurrent: 50_000, batch: 200_000, drain: 100_000, endToEndSeconds: 10, retry: 10_000,
        memory: 1_000_000)
    static let quick = Sizes(
        single: 300, concurrent: 3_000, batch: 20_000, drain: 5_000, endToEndSeconds: 2, retry: 1_000,
        memory: 20_000)
}

/// A failure that ends the benchmark with a message and an exit code.
struct BenchError: Error, CustomStringConvertible {
    var description: String
    var exitCode: Int32

    init(_ description: String, exitCode: Int32 = 2) {
        self.description = description
        self.exitCode = exitCode
    }
}
