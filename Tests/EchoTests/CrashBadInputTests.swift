import Echo
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

extension CrashTests {
    /// Whether this process can write `path` despite its mode (root ignores chmod).
    private func canWrite(_ path: String) -> Bool {
        let fd = open(path, O_WRONLY)
        if fd >= 0 { close(fd) }
        return fd >= 0
    }

    /// Runs `EchoTestWorker open --db <database>` as the unprivileged user `nobody` (setpriv),
    /// where file modes bind, and returns its line ("OK <id>" or "ERR <code> <message>").
    private func openAsNobody(_ database: String, in directory: String) async throws -> String? {
        let child = try Child.worker(
            ["open", "--db", database], in: directory, name: "open-nobody",
            prefix: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"])
        _ = await child.wait(timeout: .seconds(30))
        #expect(!child.errorOutput.contains("setpriv:"), "cannot drop root: \(child.errorOutput)")
        return child.lines().first
    }

    /// Runs `EchoTestWorker open --db <database>` as root with `folder` bind-mounted read-only in
    /// a private mount namespace. Returns `nil` when this machine cannot make such a mount.
    private func openOnReadOnlyMount(_ database: String, folder: String, in directory: String) async throws
        -> String?
    {
        let worker = try WorkerBinary.require()
        let child = try Child.spawn(
            [
                "unshare", "-m", "sh", "-c",
                "mount --bind \"$0\" \"$0\" && mount -o remount,ro,bind \"$0\" \"$0\" || exit 97; exec \"$1\" open --db \"$2\"",
                folder, worker, database,
            ], in: directory, name: "open-ro-mount")
        let status = await child.wait(timeout: .seconds(30))
        if let status, status & 0x7f == 0, (status >> 8) & 0xff == 97 { return nil }
        return child.lines().first
    }

    /// A read-only database file is refused at open with `.readOnly`, and left as it was.
    /// As root, chmod does not stop writes, so the open is checked as `nobody` and on a read-only
    /// mount instead of in this process.
    @Test func readOnlyDatabaseFileIsRefusedAtOpen() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        _ = try await seed(database, count: 1)
        chmod(directory.url.path, 0o777)
        chmod(database, 0o444)
        if canWrite(database) {
            // Root: chmod 444 binds other users only.
            let line = try await openAsNobody(database, in: directory.url.path)
            #expect(line?.hasPrefix("ERR readOnly ") == true, "as nobody: \(line ?? "no output")")
            #expect(line?.contains(database) == true)
            print("[crash bad input] chmod 444 file, opened as nobody: \(line ?? "")")
            let sidecars = directory.url.appendingPathComponent("sidecar")
            try FileManager.default.createDirectory(at: sidecars, withIntermediateDirectories: true)
            let mounted = sidecars.appendingPathComponent("echo.sqlite").path
            chmod(database, 0o644)
            try FileManager.default.copyItem(atPath: database, toPath: mounted)
            if let line = try await openOnReadOnlyMount(mounted, folder: sidecars.path, in: directory.url.path) {
                #expect(line.hasPrefix("ERR readOnly "), "on a read-only mount: \(line)")
                #expect(line.contains(mounted), "the error names the file: \(line)")
                print("[crash bad input] read-only bind mount, opened as root: \(line)")
            } else {
                print("[crash bad input] no private read-only mount possible here; checked as nobody only")
            }
        } else {
            await #expect {
                _ = try await Production.open(path: database)
            } throws: { error in
                (error as? ActionError)?.code == .readOnly
            }
        }
        chmod(database, 0o644)
        let db = try CrashDatabase(path: database)
        #expect(try db.int("SELECT count(*) FROM echo_actions") == 1)
        #expect(try db.integrityCheck() == "ok")
    }

    /// A database in a directory that cannot be written (no room for a new file, or for the WAL
    /// beside an existing one) is refused at open with `.readOnly`.
    @Test func readOnlyDirectoryIsRefusedAtOpen() async throws {
        let directory = try TemporaryDirectory()
        let folder = directory.url.appendingPathComponent("locked").path
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let existing = folder + "/existing.sqlite"
        _ = try await seed(existing, count: 1)
        chmod(existing, 0o666)
        chmod(directory.url.path, 0o755)
        chmod(folder, 0o555)
        defer { chmod(folder, 0o755) }
        let fresh = folder + "/new.sqlite"
        if access(folder, W_OK) == 0 {
            // Root: check as nobody.
            for path in [fresh, existing] {
                let line = try await openAsNobody(path, in: directory.url.path)
                #expect(line?.hasPrefix("ERR readOnly ") == true, "\(path) as nobody: \(line ?? "no output")")
                #expect(line?.contains(path) == true, "the error names the file: \(line ?? "")")
                print("[crash bad input] read-only directory, opened as nobody: \(line ?? "")")
            }
        } else {
            for path in [fresh, existing] {
                await #expect {
                    _ = try await Production.open(path: path)
                } throws: { error in
                    (error as? ActionError)?.code == .readOnly
                }
            }
        }
        #expect(!FileManager.default.fileExists(atPath: fresh))
    }

    /// A full disk (a page cap): enqueue throws `.full`, nothing of the failed write is stored, the
    /// file passes integrity_check, and it takes enqueues again when reopened with a larger cap.
    @Test func fullDiskFailsEnqueueWithFullAndTheDatabaseStaysUsable() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        let filler = String(repeating: "x", count: 2_000)
        var acknowledged: [ActionID] = []
        do {
            let production = try await Production.open(
                path: database, configuration: Production.Configuration(maximumPageCount: 48))
            var failure: ActionError?
            for index in 0..<10_000 {
                do {
                    acknowledged.append(
                        try await production.enqueue("Soak", ["index": "\(index)", "filler": filler]))
                } catch let error as ActionError {
                    failure = error
                    break
                }
            }
            #expect(failure?.code == .full, "\(String(describing: failure))")
            #expect(!acknowledged.isEmpty)
            // A batch fails whole.
            let batch = try (0..<20).map { try NewAction("Soak", ["filler": filler, "batch": "\($0)"]) }
            await #expect {
                try await production.enqueue(batch)
            } throws: { error in
                (error as? ActionError)?.code == .full
            }
            // Concurrent group-committed enqueues each fail with .full or succeed; none hangs.
            let results = await withTaskGroup(of: Bool.self) { group in
                for index in 0..<16 {
                    group.addTask {
                        do {
                            _ = try await production.enqueue("Soak", ["filler": filler, "g": "\(index)"])
                            return true
                        } catch {
                            return (error as? ActionError)?.code == .full ? false : true
                        }
                    }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(results.count == 16)
            #expect(try await production.list(limit: 100_000).count >= acknowledged.count)
            production.close()
        }
        do {
            let db = try CrashDatabase(path: database)
            #expect(try db.integrityCheck() == "ok")
            #expect(try db.int("SELECT count(*) FROM echo_actions WHERE payload LIKE '%\"batch\"%'") == 0)
        }
        let production = try await Production.open(path: database)
        let more = try await production.enqueue(
            try (0..<50).map { try NewAction("Soak", ["filler": filler, "after": "\($0)"]) })
        #expect(more.count == 50)
        for id in acknowledged {
            #expect(try await production.action(id) != nil)
        }
        let db = try CrashDatabase(path: database)
        #expect(try db.integrityCheck() == "ok")
    }

    /// Names, queues, keys and metadata with quotes, NULs and SQL fragments are stored and matched
    /// literally: nothing is cut at a NUL, nothing is executed.
    @Test func hostileNamesAndKeysAreStoredAndMatchedLiterally() async throws {
        let directory = try TemporaryDirectory()
        let database = directory.path()
        let production = try await Production.open(path: database)
        let key = "'; DROP TABLE echo_actions; --\u{0}x"
        let name = Signature("Run\"'); DELETE FROM echo_karma; --\u{0}tail")
        let queue = "q'\"\u{0}--; DROP TABLE echo_karma"
        let options = ActionOptions(
            queue: queue, idempotencyKey: key, metadata: [key: .string(key), "plain": .string("\u{0}")])
        let id = try await production.enqueue(name, CrashJob(tag: 7, index: 7), options: options)
        #expect(try await production.enqueue(name, CrashJob(tag: 8, index: 8), options: options) == id)
        // The part before the NUL, or another tail, is a different key.
        let prefixKey = try await production.enqueue(
            name, CrashJob(tag: 9, index: 9),
            options: ActionOptions(queue: queue, idempotencyKey: "'; DROP TABLE echo_actions; --"))
        let otherTail = try await production.enqueue(
            name, CrashJob(tag: 10, index: 10),
            options: ActionOptions(queue: queue, idempotencyKey: "'; DROP TABLE echo_actions; --\u{0}y"))
        #expect(Set([id, prefixKey, otherTail]).count == 3)

        let record = try #require(try await production.action(id))
        #expect(record.name == name)
        #expect(record.queue == queue)
        #expect(record.idempotencyKey == key)
        #expect(record.metadata[key] == .string(key))
        #expect(record.metadata["plain"] == .string("\u{0}"))
        #expect(try await production.list(queue: queue).map(\.id) == [id, prefixKey, otherTail])
        #expect(try await production.list(queue: "q'\"").isEmpty)
        #expect(try await production.list(name: name).count == 3)
        #expect(try await production.list(name: Signature("Run\"'); DELETE FROM echo_karma; --")).isEmpty)

        let plan = Plan().signature(name) { (input: CrashJob, _) in CrashDone(worker: "literal", attempt: input.index) }
        let sequencer = Sequencer(
            production: production, plan: plan, configuration: Sequencer.Configuration(queues: [queue]))
        try await withRunning(sequencer) {
            let finished = try await eventually {
                let first = try await production.karma(id)
                let last = try await production.karma(otherTail)
                return first != nil && last != nil
            }
            #expect(finished)
        }
        let karma = try #require(try await production.karma(id))
        #expect(karma.outcome == .succeeded)
        #expect(karma.name == name)
        #expect(try karma.decodeResult(as: CrashDone.self) == CrashDone(worker: "literal", attempt: 7))
        let db = try CrashDatabase(path: database)
        #expect(try db.tableExists("echo_actions") && db.tableExists("echo_karma"))
        #expect(try db.int("SELECT count(*) FROM echo_karma") == 3)
    }

    /// A payload that does not decode as the function's input is dead-lettered with the decoding
    /// error after one attempt, and the Sequencer keeps running the actions around it.
    @Test func undecodablePayloadIsDeadLetteredWhileTheSequencerKeepsRunning() async throws {
        let directory = try TemporaryDirectory()
        let production = try await Production.open(path: directory.path())
        let plan = Plan().signature("Typed") { (input: CrashJob, _) in CrashDone(worker: "typed", attempt: input.index)
        }
        let before = try await production.enqueue("Typed", CrashJob(tag: 0, index: 1))
        let garbage = try await production.enqueue(NewAction("Typed", payload: [0xFF, 0x00, 0x7B, 0x22]))
        let wrongType = try await production.enqueue(NewAction("Typed", payload: Array(#"{"tag":"x"}"#.utf8)))
        let sequencer = Sequencer(production: production, plan: plan)
        try await withRunning(sequencer) {
            let finished = try await eventually {
                for id in [before, garbage, wrongType] where try await production.karma(id) == nil { return false }
                return true
            }
            #expect(finished)
            // Enqueued after the dead letters: the Sequencer still runs.
            let after = try await production.enqueue("Typed", CrashJob(tag: 0, index: 2))
            #expect(try await eventually { try await production.karma(after)?.outcome == .succeeded })
        }
        #expect(try await production.karma(before)?.outcome == .succeeded)
        for id in [garbage, wrongType] {
            let karma = try #require(try await production.karma(id))
            #expect(karma.outcome == .deadLettered)
            #expect(karma.attempts == 1)
            #expect(karma.errors.last?.message.hasPrefix("decoding") == true, "\(karma.errors)")
            #expect(try await production.action(id)?.state == .dead)
        }
        #expect(try await production.deadLetters().map(\.id) == [garbage, wrongType])
    }
}
