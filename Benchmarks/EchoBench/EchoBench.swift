import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// echo-bench: Echo against a raw-SQLite baseline doing the same row work, in one process and
/// run, so every figure is a ratio that survives a noisy machine. See Benchmarks/README.md.
@main
enum EchoBench {
    static func main() async {
        do {
            let options = try Options.parse(Array(CommandLine.arguments.dropFirst()))
            let code = try await run(options)
            exit(code)
        } catch let error as BenchError {
            Progress.shared.finish()
            FileHandle.standardError.write(Data("\(error.description)\n".utf8))
            exit(error.exitCode)
        } catch {
            Progress.shared.finish()
            FileHandle.standardError.write(Data("echo-bench: \(error)\n".utf8))
            exit(1)
        }
    }

    static func run(_ options: Options) async throws -> Int32 {
        let folder = try Folder.make(options.directory)
        defer { if !options.child { folder.removeIfTemporary() } }
        var runner = Runner(options: options, folder: folder)
        let start = ContinuousClock.now
        for workload in options.workloads {
            for mode in options.modes {
                try await runner.run(workload, mode: mode)
            }
        }
        Progress.shared.finish()

        if options.child {
            // The parent reads this line.
            let data = try JSONEncoder().encode(runner.results.last)
            FileHandle.standardOutput.write(data + Data("\n".utf8))
            return runner.failures.isEmpty ? 0 : 1
        }

        print(Report.table(runner.results))
        print("")
        print(Report.notes(runner.results))
        print("")
        print(
            "SQLite \(sqliteVersion), \(ProcessInfo.processInfo.activeProcessorCount) cores, "
                + "\(options.quick ? "--quick" : "full") sizes, \(Report.format(seconds(since: start), digits: 1)) s")
        if let path = options.jsonPath {
            try Report.json(runner.results).write(to: URL(fileURLWithPath: path))
        }
        if !runner.failures.isEmpty {
            FileHandle.standardError.write(Data(("FAILED:\n" + runner.failures.joined(separator: "\n") + "\n").utf8))
            return 1
        }
        return 0
    }
}
