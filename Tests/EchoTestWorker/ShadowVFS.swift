// A simulated power loss for the crash tests: an SQLite VFS over the default one that keeps,
// beside the database file and its WAL, a copy ("<file>.synced") holding only the bytes an
// fsync has confirmed. Writes and truncations are applied to the real file at once (so the
// process works as usual) and to the copy only when SQLite syncs that file. After a kill -9, the
// `.synced` copies are what a disk that lost every unsynced write would hold: the pessimistic
// model of a power cut.
//
// Registered as the default VFS, so the connections `Production.open` makes use it unchanged.

internal import EchoSQLite
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

enum ShadowVFS {
    enum Operation {
        case write(offset: Int64, bytes: [UInt8])
        case truncate(size: Int64)
    }

    struct Shadow {
        var fd: Int32
        var pending: [Operation] = []
    }

    struct State {
        /// Shadow copies by the real file's path.
        var shadows: [String: Shadow] = [:]
        /// The path of each open handle, by the id stored in its `sqlite3_file`.
        var handles: [Int: String] = [:]
        var nextHandle = 1
    }

    static let state = Mutex(State())

    /// Our `sqlite3_file`: the base struct (pMethods), our handle id, then the real VFS's file.
    static let handleOffset = 8
    static let innerOffset = 16

    // `nonisolated(unsafe)`: written once by `install()` before any connection is opened, then
    // only read (SQLite keeps pointers to them for the life of the process).
    nonisolated(unsafe) static var real: UnsafeMutablePointer<sqlite3_vfs>?
    nonisolated(unsafe) static var methods: UnsafeMutablePointer<sqlite3_io_methods>?
    nonisolated(unsafe) static var vfs: UnsafeMutablePointer<sqlite3_vfs>?

    static func inner(_ file: UnsafeMutablePointer<sqlite3_file>?) -> UnsafeMutablePointer<sqlite3_file> {
        (UnsafeMutableRawPointer(file!) + innerOffset).assumingMemoryBound(to: sqlite3_file.self)
    }

    static func handle(_ file: UnsafeMutablePointer<sqlite3_file>?) -> Int {
        (UnsafeMutableRawPointer(file!) + handleOffset).load(as: Int.self)
    }

    static func innerMethods(_ file: UnsafeMutablePointer<sqlite3_file>?) -> sqlite3_io_methods {
        inner(file).pointee.pMethods.pointee
    }

    static func install() {
        guard let base = sqlite3_vfs_find(nil) else { fatalError("no default SQLite VFS") }
        real = base
        let io = UnsafeMutablePointer<sqlite3_io_methods>.allocate(capacity: 1)
        io.initialize(to: sqlite3_io_methods())
        io.pointee.iVersion = 3
        io.pointee.xClose = { file in
            let rc = ShadowVFS.innerMethods(file).xClose(ShadowVFS.inner(file))
            let id = ShadowVFS.handle(file)
            ShadowVFS.state.withLock { _ = $0.handles.removeValue(forKey: id) }
            return rc
        }
        io.pointee.xRead = { file, buffer, amount, offset in
            ShadowVFS.innerMethods(file).xRead(ShadowVFS.inner(file), buffer, amount, offset)
        }
        io.pointee.xWrite = { file, buffer, amount, offset in
            let rc = ShadowVFS.innerMethods(file).xWrite(ShadowVFS.inner(file), buffer, amount, offset)
            if rc == SQLITE_OK {
                let bytes = Array(UnsafeRawBufferPointer(start: buffer, count: Int(amount)))
                ShadowVFS.record(file, .write(offset: offset, bytes: bytes))
            }
            return rc
        }
        io.pointee.xTruncate = { file, size in
            let rc = ShadowVFS.innerMethods(file).xTruncate(ShadowVFS.inner(file), size)
            if rc == SQLITE_OK { ShadowVFS.record(file, .truncate(size: size)) }
            return rc
        }
        io.pointee.xSync = { file, flags in
            let rc = ShadowVFS.innerMethods(file).xSync(ShadowVFS.inner(file), flags)
            if rc == SQLITE_OK { ShadowVFS.applyPending(file) }
            return rc
        }
        io.pointee.xFileSize = { file, size in ShadowVFS.innerMethods(file).xFileSize(ShadowVFS.inner(file), size) }
        io.pointee.xLock = { file, level in ShadowVFS.innerMethods(file).xLock(ShadowVFS.inner(file), level) }
        io.pointee.xUnlock = { file, level in ShadowVFS.innerMethods(file).xUnlock(ShadowVFS.inner(file), level) }
        io.pointee.xCheckReservedLock = { file, out in
            ShadowVFS.innerMethods(file).xCheckReservedLock(ShadowVFS.inner(file), out)
        }
        io.pointee.xFileControl = { file, op, argument in
            ShadowVFS.innerMethods(file).xFileControl(ShadowVFS.inner(file), op, argument)
        }
        io.pointee.xSectorSize = { file in ShadowVFS.innerMethods(file).xSectorSize(ShadowVFS.inner(file)) }
        io.pointee.xDeviceCharacteristics = { file in
            ShadowVFS.innerMethods(file).xDeviceCharacteristics(ShadowVFS.inner(file))
        }
        io.pointee.xShmMap = { file, page, size, extend, pointer in
            ShadowVFS.innerMethods(file).xShmMap(ShadowVFS.inner(file), page, size, extend, pointer)
        }
        io.pointee.xShmLock = { file, offset, count, flags in
            ShadowVFS.innerMethods(file).xShmLock(ShadowVFS.inner(file), offset, count, flags)
        }
        io.pointee.xShmBarrier = { file in ShadowVFS.innerMethods(file).xShmBarrier(ShadowVFS.inner(file)) }
        io.pointee.xShmUnmap = { file, delete in ShadowVFS.innerMethods(file).xShmUnmap(ShadowVFS.inner(file), delete) }
        io.pointee.xFetch = { file, offset, amount, pointer in
            let methods = ShadowVFS.innerMethods(file)
            guard methods.iVersion >= 3, let fetch = methods.xFetch else {
                pointer?.pointee = nil
                return SQLITE_OK
            }
            return fetch(ShadowVFS.inner(file), offset, amount, pointer)
        }
        io.pointee.xUnfetch = { file, offset, pointer in
            let methods = ShadowVFS.innerMethods(file)
            guard methods.iVersion >= 3, let unfetch = methods.xUnfetch else { return SQLITE_OK }
            return unfetch(ShadowVFS.inner(file), offset, pointer)
        }
        methods = io

        let shadow = UnsafeMutablePointer<sqlite3_vfs>.allocate(capacity: 1)
        shadow.initialize(to: base.pointee)
        shadow.pointee.szOsFile = base.pointee.szOsFile + Int32(innerOffset)
        shadow.pointee.zName = UnsafePointer(strdup("echo-shadow"))
        shadow.pointee.pNext = nil
        shadow.pointee.xOpen = { _, name, file, flags, outFlags in
            guard let real = ShadowVFS.real else { return SQLITE_ERROR }
            let rc = real.pointee.xOpen(real, name, ShadowVFS.inner(file), flags, outFlags)
            guard rc == SQLITE_OK else {
                file!.pointee.pMethods = nil
                return rc
            }
            var id = 0
            if let name, flags & (SQLITE_OPEN_MAIN_DB | SQLITE_OPEN_WAL) != 0 {
                id = ShadowVFS.track(path: String(cString: name))
            }
            (UnsafeMutableRawPointer(file!) + ShadowVFS.handleOffset).storeBytes(of: id, as: Int.self)
            file!.pointee.pMethods = UnsafePointer(ShadowVFS.methods)
            return SQLITE_OK
        }
        shadow.pointee.xDelete = { _, name, syncDirectory in
            guard let real = ShadowVFS.real else { return SQLITE_ERROR }
            let rc = real.pointee.xDelete(real, name, syncDirectory)
            if rc == SQLITE_OK, let name {
                let path = String(cString: name)
                ShadowVFS.state.withLock { state in
                    if let shadow = state.shadows.removeValue(forKey: path) { close(shadow.fd) }
                }
                unlink(path + ".synced")
            }
            return rc
        }
        vfs = shadow
        let rc = sqlite3_vfs_register(shadow, 1)
        if rc != SQLITE_OK { fatalError("sqlite3_vfs_register failed: \(rc)") }
    }

    /// Starts tracking `path`; the first handle copies what the file holds now (taken as synced).
    static func track(path: String) -> Int {
        state.withLock { state in
            if state.shadows[path] == nil {
                let fd = open(path + ".synced", O_RDWR | O_CREAT | O_TRUNC, 0o644)
                if fd < 0 { fatalError("cannot create \(path).synced") }
                let source = open(path, O_RDONLY)
                if source >= 0 {
                    var buffer = [UInt8](repeating: 0, count: 65_536)
                    var offset: Int64 = 0
                    while true {
                        let count = buffer.withUnsafeMutableBytes { read(source, $0.baseAddress, $0.count) }
                        if count <= 0 { break }
                        _ = buffer.withUnsafeBytes { pwrite(fd, $0.baseAddress, count, off_t(offset)) }
                        offset += Int64(count)
                    }
                    close(source)
                }
                state.shadows[path] = Shadow(fd: fd)
            }
            let id = state.nextHandle
            state.nextHandle += 1
            state.handles[id] = path
            return id
        }
    }

    static func record(_ file: UnsafeMutablePointer<sqlite3_file>?, _ operation: Operation) {
        let id = handle(file)
        guard id != 0 else { return }
        state.withLock { state in
            guard let path = state.handles[id] else { return }
            state.shadows[path]?.pending.append(operation)
        }
    }

    /// A sync of the file makes every write to it so far durable, whichever handle made it.
    static func applyPending(_ file: UnsafeMutablePointer<sqlite3_file>?) {
        let id = handle(file)
        guard id != 0 else { return }
        state.withLock { state in
            guard let path = state.handles[id], let shadow = state.shadows[path] else { return }
            for operation in shadow.pending {
                switch operation {
                case .write(let offset, let bytes):
                    _ = bytes.withUnsafeBytes { pwrite(shadow.fd, $0.baseAddress, $0.count, off_t(offset)) }
                case .truncate(let size):
                    _ = ftruncate(shadow.fd, off_t(size))
                }
            }
            state.shadows[path]?.pending = []
        }
    }
}
