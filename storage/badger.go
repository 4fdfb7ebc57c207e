package storage

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Durability modes of the badger store (see docs/storage.md for what each
// can lose on kill -9 and on power loss).
const (
	// DurabilitySync: a write returns only after an fsync that covers it.
	// Concurrent writers are group-committed: one fsync per group.
	DurabilitySync = "sync"
	// DurabilityBatch: a write returns once it is in the OS page cache; a
	// background ticker fsyncs every BatchInterval.
	DurabilityBatch = "batch"
	// DurabilityNone: never fsync explicitly; the OS writes back when it
	// likes.
	DurabilityNone = "none"
)

// BadgerOptions configures OpenBadger.
type BadgerOptions struct {
	// Dir is the data directory; created if missing.
	Dir string
	// Durability is DurabilitySync, DurabilityBatch or DurabilityNone.
	Durability string
	// BatchInterval is the fsync period of DurabilityBatch.
	BatchInterval time.Duration
	// GCInterval is how often badger's value-log GC runs at the latest; it
	// also runs each time another ValueLogFileSize of log values went to
	// the value log (maintain.go).
	GCInterval time.Duration
	// GCDiscardRatio is the share of garbage a value-log file must hold
	// before GC rewrites it (badger's discardRatio).
	GCDiscardRatio float64
	// ValueThreshold: values at least this large go to badger's value log
	// instead of its LSM tree.
	ValueThreshold int64
	// ValueLogFileSize is the size at which badger starts a new value-log
	// file. Only whole files are given back by value-log GC, and never the
	// one being written, so it bounds the garbage kept on disk.
	ValueLogFileSize int64
	// MemTableSize and BlockCacheSize bound badger's memory use.
	MemTableSize   int64
	BlockCacheSize int64
	// BaseTableSize is the size of the tables badger's compactions write
	// at the base level (doubling per level below it). A compaction keeps
	// up to about a dozen table builders of twice this size in memory at
	// once, so it bounds the memory of compactions (docs/storage.md).
	BaseTableSize int64
	// CompactInterval and CompactAfterDeletes schedule the compaction that
	// gives back disk space after large deletions (maintain.go): it runs
	// once CompactAfterDeletes entries were deleted since the last one and
	// the store was quiet for a whole CompactInterval.
	CompactInterval     time.Duration
	CompactAfterDeletes int
	// MinFreeBytes is the free space the data dir's filesystem must keep:
	// below it, writes that add data fail with ErrFull (maintain.go).
	// 0 = the default, 6 × MemTableSize + 32 MiB; negative = no reserve.
	MinFreeBytes int64
	// TrimInterval is how often the resident pages of badger's table files
	// are given back to the kernel (trim_linux.go); negative = never.
	TrimInterval time.Duration
	// MaxGroup caps how many write requests one group commit takes.
	MaxGroup int
	// Logger receives the store's and badger's own logs; nil discards them.
	Logger *slog.Logger

	// explicitSync makes sync mode call db.Sync once per group instead of
	// letting badger msync its write-ahead log inside every commit
	// (SyncWrites). Measured slower (docs/performance.md); kept to compare.
	explicitSync bool
	// groupHook, if set, runs in the committer after it takes the first
	// request of a group and before it gathers the rest (tests).
	groupHook func()
}

// DefaultBadgerOptions returns the options `beacon serve` uses for dir.
func DefaultBadgerOptions(dir string) BadgerOptions {
	return BadgerOptions{
		Dir:              dir,
		Durability:       DurabilitySync,
		BatchInterval:    10 * time.Millisecond,
		GCInterval:       5 * time.Minute,
		GCDiscardRatio:   0.5,
		ValueThreshold:   512,
		MemTableSize:     4 << 20,
		ValueLogFileSize: 64 << 20,
		BlockCacheSize:   8 << 20,
		BaseTableSize:    512 << 10,
		MaxGroup:         4096,

		CompactInterval:     10 * time.Second,
		CompactAfterDeletes: 100_000,
		TrimInterval:        time.Second,
	}
}

// Validate fills unset fields with their defaults and reports settings a
// user has to fix.
func (o *BadgerOptions) Validate() error {
	d := DefaultBadgerOptions(o.Dir)
	if o.Dir == "" {
		return errors.New("storage: badger data dir is empty; set a directory")
	}
	switch o.Durability {
	case "":
		o.Durability = d.Durability
	case DurabilitySync, DurabilityBatch, DurabilityNone:
	default:
		return fmt.Errorf("storage: durability %q is not one of sync, batch, none", o.Durability)
	}
	if o.BatchInterval < 0 || o.GCInterval < 0 || o.ValueThreshold < 0 || o.MemTableSize < 0 || o.BlockCacheSize < 0 || o.MaxGroup < 0 ||
		o.BaseTableSize < 0 || o.CompactInterval < 0 || o.CompactAfterDeletes < 0 {
		return errors.New("storage: badger options must not be negative")
	}
	if o.BatchInterval == 0 {
		o.BatchInterval = d.BatchInterval
	}
	if o.GCInterval == 0 {
		o.GCInterval = d.GCInterval
	}
	if o.GCDiscardRatio == 0 {
		o.GCDiscardRatio = d.GCDiscardRatio
	}
	if o.GCDiscardRatio <= 0 || o.GCDiscardRatio >= 1 {
		return fmt.Errorf("storage: GC discard ratio %v must be between 0 and 1", o.GCDiscardRatio)
	}
	if o.ValueThreshold == 0 {
		o.ValueThreshold = d.ValueThreshold
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = d.ValueLogFileSize
	}
	if o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 2<<30 {
		return fmt.Errorf("storage: value log file size %d is outside [1 MiB, 2 GiB)", o.ValueLogFileSize)
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = d.MemTableSize
	}
	if o.MemTableSize < 1<<20 {
		return fmt.Errorf("storage: memtable size %d is below 1 MiB", o.MemTableSize)
	}
	if o.BlockCacheSize == 0 {
		o.BlockCacheSize = d.BlockCacheSize
	}
	if o.MaxGroup == 0 {
		o.MaxGroup = d.MaxGroup
	}
	if o.BaseTableSize == 0 {
		o.BaseTableSize = d.BaseTableSize
	}
	if o.BaseTableSize < 64<<10 {
		return fmt.Errorf("storage: base table size %d is below 64 KiB", o.BaseTableSize)
	}
	if o.CompactInterval == 0 {
		o.CompactInterval = d.CompactInterval
	}
	if o.CompactAfterDeletes == 0 {
		o.CompactAfterDeletes = d.CompactAfterDeletes
	}
	if o.TrimInterval == 0 {
		o.TrimInterval = d.TrimInterval
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = defaultMinFree(o.MemTableSize)
	}
	return nil
}

// Badger is the default Store, on github.com/dgraph-io/badger/v4. Reads go
// straight to badger; every write is a request to one committer goroutine
// (commit.go), which owns the sequence counter and group-commits whatever
// requests are waiting into one transaction and one fsync.
//
// Locking: mu (RWMutex) guards closed and the life of db: readers and
// request senders hold it shared while they touch db or the request
// channel; Close holds it exclusively to flip closed. countMu guards counts
// and is taken after mu, never before. No lock is held while a caller's
// callback runs.
type Badger struct {
	opts BadgerOptions
	db   *badger.DB
	log  *slog.Logger

	mu     sync.RWMutex
	closed bool

	reqs chan *writeReq
	stop chan struct{}
	wg   sync.WaitGroup

	head    atomic.Uint64 // last committed sequence number
	dirty   atomic.Bool   // batch mode: written since the last fsync
	syncErr atomic.Pointer[error]
	groups  atomic.Uint64 // group commits done
	commits atomic.Uint64 // badger transactions committed by groups
	syncs   atomic.Uint64 // explicit fsyncs done

	countMu sync.Mutex
	counts  map[string]int // pending entries per client, kept by the committer

	// Maintenance (maintain.go).
	written     atomic.Uint64 // entries written (set or deleted) by commits
	vlogWritten atomic.Uint64 // bytes of log values that went to the value log
	gcRunning   atomic.Bool   // a value-log GC goroutine runs (maintain.go)
	vlogGCs     atomic.Uint64 // value-log GC passes
	deleted     atomic.Uint64 // entries deleted by commits
	compactedAt atomic.Uint64 // deleted at the start of the last compaction
	compactions atomic.Uint64
	fullRefused atomic.Uint64
	compactMu   sync.Mutex // one Compact at a time

	// Owned by the committer goroutine.
	rev           uint64    // last session revision handed out
	did           uint64    // last delayed message id handed out (delayed_badger.go)
	bytesWritten  int64     // estimated bytes committed
	bytesAt       int64     // bytesWritten at the last free-space reading
	freeAt        time.Time // time of the last free-space reading
	free          int64     // the last reading; -1: unknown (not enforced)
	full          bool      // the disk was below the reserve at the last check
	freeErrLogged bool
}

var _ Store = (*Badger)(nil)

// OpenBadger opens (or creates) the store in opts.Dir. A directory that is
// locked by another process, unreadable, not a Beacon data dir, or corrupt
// is an error naming the directory: the broker must never start silently
// with empty state on top of data it could not read.
func OpenBadger(opts BadgerOptions) (*Badger, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.New(slog.DiscardHandler)
	}
	lg = lg.With("component", "storage", "dir", opts.Dir)
	if err := checkDataDir(opts.Dir); err != nil {
		return nil, err
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithLogger(badgerLogger{lg}).
		WithSyncWrites(opts.Durability == DurabilitySync && !opts.explicitSync).
		WithDetectConflicts(false). // one committer goroutine is the only writer
		WithValueThreshold(opts.ValueThreshold).
		WithValueLogFileSize(opts.ValueLogFileSize).
		WithMemTableSize(opts.MemTableSize).
		WithNumMemtables(2).
		WithBlockCacheSize(opts.BlockCacheSize).
		WithIndexCacheSize(4 << 20).
		WithBaseTableSize(opts.BaseTableSize).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		WithNumCompactors(2). // the minimum badger allows, but for none
		WithMetricsEnabled(false)
	// Every level's tables are BaseTableSize (badger doubles them per level
	// by default). A compaction keeps up to 8 finished builders, each with
	// its blocks and their compressed copies, in memory at once: with
	// doubling, the deeper levels' 2–4 MiB tables made that 80 of 140 MiB
	// of live heap while a 1M backlog drained (docs/performance.md).
	bo.TableSizeMultiplier = 1
	db, err := openBadgerDB(bo)
	if err != nil {
		return nil, classifyOpenError(opts.Dir, err)
	}
	b := &Badger{
		opts:   opts,
		db:     db,
		log:    lg,
		reqs:   make(chan *writeReq, opts.MaxGroup),
		stop:   make(chan struct{}),
		counts: make(map[string]int),
	}
	if err := b.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage: data dir %q: %w", opts.Dir, err)
	}
	b.wg.Add(2)
	go b.commitLoop()
	go b.maintainLoop()
	if opts.Durability == DurabilityBatch {
		b.wg.Add(1)
		go b.syncLoop()
	}
	lg.Info("storage opened", "durability", opts.Durability, "head", b.head.Load(), "sessions_with_pending", len(b.counts))
	return b, nil
}

// openBadgerDB turns a panic inside badger's recovery code into an error.
func openBadgerDB(bo badger.Options) (db *badger.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("badger panicked while opening: %v", r)
		}
	}()
	return badger.Open(bo)
}

// checkDataDir creates dir if missing and refuses a path that is not a
// directory, cannot be read, or holds files without a badger MANIFEST.
func checkDataDir(dir string) error {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("storage: cannot create data dir %q: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("storage: cannot stat data dir %q: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("storage: data dir %q is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("storage: data dir %q is not readable: %w", dir, err)
	}
	if len(entries) == 0 {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, "MANIFEST")); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("storage: data dir %q holds %d files but no badger MANIFEST: it is not a Beacon data dir, or its MANIFEST was lost; refusing to start with empty state", dir, len(entries))
		}
		return fmt.Errorf("storage: data dir %q: cannot read MANIFEST: %w", dir, err)
	}
	return nil
}

func classifyOpenError(dir string, err error) error {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "Cannot acquire directory lock"):
		return fmt.Errorf("storage: data dir %q is locked by another process (is another beacon running on it?): %w", dir, err)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("storage: data dir %q is not accessible: %w", dir, err)
	case isNoSpace(err):
		return fmt.Errorf("storage: data dir %q: %w: %w", dir, ErrFull, err)
	}
	return fmt.Errorf("storage: cannot open data dir %q (corrupt or unreadable; see docs/storage.md, recovery): %w", dir, err)
}

// load checks the format marker and loads the counters the committer owns:
// head sequence, session revision and pending counts.
func (b *Badger) load() error {
	var head, rev uint64
	err := b.db.Update(func(txn *badger.Txn) error {
		it, err := txn.Get(keyFormat)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			if any, err := hasAnyKey(txn); err != nil || any {
				if err == nil {
					err = errors.New("it holds data but no Beacon format marker; refusing to use it")
				}
				return err
			}
			return txn.Set(keyFormat, []byte(formatMarker))
		case err != nil:
			return err
		}
		v, err := it.ValueCopy(nil)
		if err != nil {
			return err
		}
		if string(v) != formatMarker {
			return fmt.Errorf("unsupported storage format %q (this build reads %q)", v, formatMarker)
		}
		if head, err = readU64(txn, keyHead); err != nil {
			return fmt.Errorf("reading head: %w", err)
		}
		if rev, err = readU64(txn, keyRev); err != nil {
			return fmt.Errorf("reading revision: %w", err)
		}
		if b.did, err = readU64(txn, keyDelayedID); err != nil {
			return fmt.Errorf("reading delayed id: %w", err)
		}
		// The head marker is written in the same transaction as the log
		// entries; the last m/ key covers a store written before it existed.
		opt := badger.DefaultIteratorOptions
		opt.Reverse, opt.PrefetchValues, opt.Prefix = true, false, prefixMsg
		iter := txn.NewIterator(opt)
		defer iter.Close()
		iter.Seek(append(slices.Clone(prefixMsg), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff))
		if iter.ValidForPrefix(prefixMsg) {
			if k := iter.Item().Key(); len(k) == len(prefixMsg)+8 {
				head = max(head, seqFromMsgKey(k))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	b.head.Store(head)
	b.rev = rev
	return b.db.View(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.PrefetchValues, opt.Prefix = false, prefixPending
		iter := txn.NewIterator(opt)
		defer iter.Close()
		for iter.Rewind(); iter.Valid(); iter.Next() {
			id, rest, ok := clientFromKey(iter.Item().Key())
			if !ok || len(rest) != 8 {
				return fmt.Errorf("%w: malformed pending key %q", errCorruptValue, iter.Item().Key())
			}
			b.counts[id]++
		}
		return nil
	})
}

func hasAnyKey(txn *badger.Txn) (bool, error) {
	opt := badger.DefaultIteratorOptions
	opt.PrefetchValues = false
	it := txn.NewIterator(opt)
	defer it.Close()
	it.Rewind()
	return it.Valid(), nil
}

func readU64(txn *badger.Txn, key []byte) (uint64, error) {
	it, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var v uint64
	err = it.Value(func(val []byte) error {
		if len(val) != 8 {
			return fmt.Errorf("%w: %q holds %d bytes, want 8", errCorruptValue, key, len(val))
		}
		v = binary.BigEndian.Uint64(val)
		return nil
	})
	return v, err
}

// Close stops accepting requests, lets the committer finish the ones
// already queued, joins every goroutine, fsyncs and closes badger. Closing
// twice is harmless.
func (b *Badger) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	close(b.stop)
	b.wg.Wait()
	err := b.db.Sync()
	if cerr := b.db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return wrapWriteError(fmt.Errorf("storage: closing data dir %q: %w", b.opts.Dir, err))
	}
	b.log.Info("storage closed", "head", b.head.Load())
	return nil
}

// view runs fn in a read transaction unless the store is closed.
func (b *Badger) view(fn func(txn *badger.Txn) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return ErrClosed
	}
	return b.db.View(fn)
}

// Get returns message seq or ErrNotFound.
func (b *Badger) Get(seq uint64) (*Message, error) {
	var m *Message
	err := b.view(func(txn *badger.Txn) error {
		it, err := txn.Get(msgKey(seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) (err error) {
			m, err = decodeMessage(v)
			return err
		})
	})
	return m, err
}

// readChunk calls fn for up to scanChunk items with prefix at or after
// start, each in its own short read transaction, and returns the key to
// resume from (nil at the end). Chunking keeps no transaction open while the
// caller's callback runs, so the callback may write to the store.
func (b *Badger) readChunk(prefix, start []byte, fn func(k, v []byte) error) (next []byte, err error) {
	err = b.view(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		// Values are read in place below (item.Value), so the iterator's
		// prefetching would only copy each one once more.
		opt.Prefix, opt.PrefetchValues = prefix, false
		it := txn.NewIterator(opt)
		defer it.Close()
		n := 0
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			if n == scanChunk {
				next = it.Item().KeyCopy(nil)
				return nil
			}
			item := it.Item()
			if err := item.Value(func(v []byte) error { return fn(item.Key(), v) }); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	return next, err
}

// scanPrefix decodes every item with prefix at or after start, a chunk at a
// time (readChunk), and calls fn with each until fn returns false. Items of
// a chunk are decoded inside its read transaction and handed to fn after it
// closed, so fn may write to the store.
func scanPrefix[T any](b *Badger, prefix, start []byte, decode func(k, v []byte) (T, error), fn func(T) bool) error {
	buf := make([]T, 0, scanChunk)
	for start != nil {
		buf = buf[:0]
		next, err := b.readChunk(prefix, start, func(k, v []byte) error {
			item, err := decode(k, v)
			if err != nil {
				return err
			}
			buf = append(buf, item)
			return nil
		})
		if err != nil {
			return err
		}
		for _, item := range buf {
			if !fn(item) {
				return nil
			}
		}
		start = next
	}
	return nil
}

// Scan calls fn for the messages with Seq >= from, in order.
func (b *Badger) Scan(from uint64, fn func(*Message) bool) error {
	return scanPrefix(b, prefixMsg, msgKey(from), func(k, v []byte) (*Message, error) {
		m, err := decodeMessage(v)
		if err != nil {
			return nil, fmt.Errorf("message %d: %w", seqFromMsgKey(k), err)
		}
		return m, nil
	}, fn)
}

// ScanSeqs calls fn with the sequence numbers >= from, in order, without
// decoding the messages.
func (b *Badger) ScanSeqs(from uint64, fn func(seq uint64) bool) error {
	return scanPrefix(b, prefixMsg, msgKey(from), func(k, _ []byte) (uint64, error) {
		return seqFromMsgKey(k), nil
	}, fn)
}

// Head returns the last committed sequence number; it survives deletion of
// that message and restarts, so sequence numbers are never reused.
func (b *Badger) Head() uint64 { return b.head.Load() }

// LoadSession returns the session record or ErrNotFound.
func (b *Badger) LoadSession(clientID string) (*Session, error) {
	var s *Session
	err := b.view(func(txn *badger.Txn) error {
		it, err := txn.Get(sessionKey(clientID))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) (err error) {
			s, err = decodeSession(v)
			return err
		})
	})
	return s, err
}

// Sessions calls fn for every stored session, in client ID order.
func (b *Badger) Sessions(fn func(*Session) bool) error {
	return scanPrefix(b, prefixSession, slices.Clone(prefixSession), func(k, v []byte) (*Session, error) {
		s, err := decodeSession(v)
		if err != nil {
			return nil, fmt.Errorf("session %q: %w", k[len(prefixSession):], err)
		}
		return s, nil
	}, fn)
}

// ScanPending calls fn for clientID's entries with Seq >= from, in order.
func (b *Badger) ScanPending(clientID string, from uint64, fn func(Pending) bool) error {
	prefix, err := clientPrefix(prefixPending, clientID, 8)
	if err != nil {
		return err
	}
	start := binary.BigEndian.AppendUint64(slices.Clip(prefix), from)
	return scanPrefix(b, prefix, start, func(k, v []byte) (Pending, error) {
		rest := k[len(prefix):]
		if len(rest) != 8 {
			return Pending{}, fmt.Errorf("%w: malformed pending key %q", errCorruptValue, k)
		}
		p, err := decodePending(binary.BigEndian.Uint64(rest), v)
		if err != nil {
			return Pending{}, fmt.Errorf("pending %q/%d: %w", clientID, binary.BigEndian.Uint64(rest), err)
		}
		return p, nil
	}, fn)
}

// CountPending returns how many entries clientID has queued. The count is
// kept in memory by the committer (loaded on open), so it costs no I/O.
func (b *Badger) CountPending(clientID string) (int, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed {
		return 0, ErrClosed
	}
	b.countMu.Lock()
	defer b.countMu.Unlock()
	return b.counts[clientID], nil
}

// Inbound returns clientID's unreleased QoS 2 packet identifiers, ascending.
func (b *Badger) Inbound(clientID string) ([]uint16, error) {
	prefix, err := clientPrefix(prefixInbound, clientID, 2)
	if err != nil {
		return nil, err
	}
	ids := []uint16{}
	err = b.view(func(txn *badger.Txn) error {
		opt := badger.DefaultIteratorOptions
		opt.Prefix, opt.PrefetchValues = prefix, false
		it := txn.NewIterator(opt)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rest := it.Item().Key()[len(prefix):]
			if len(rest) != 2 {
				return fmt.Errorf("%w: malformed inbound key %q", errCorruptValue, it.Item().Key())
			}
			ids = append(ids, binary.BigEndian.Uint16(rest))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// Retained calls fn for every retained message, in topic order.
func (b *Badger) Retained(fn func(*Message) bool) error {
	return scanPrefix(b, prefixRetained, slices.Clone(prefixRetained), func(k, v []byte) (*Message, error) {
		m, err := decodeMessage(v)
		if err != nil {
			return nil, fmt.Errorf("retained %q: %w", k[len(prefixRetained):], err)
		}
		return m, nil
	}, fn)
}

// Cursor returns the stored position of name, 0 when never set.
func (b *Badger) Cursor(name string) (uint64, error) {
	var v uint64
	err := b.view(func(txn *badger.Txn) (err error) {
		v, err = readU64(txn, cursorKey(name))
		return err
	})
	return v, err
}

// syncLoop is the batch mode's fsync ticker. A failed fsync is remembered
// and fails later writes until a sync succeeds again: the store cannot tell
// which acknowledged writes it lost, so it must not acknowledge more.
func (b *Badger) syncLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.BatchInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
		}
		if !b.dirty.Swap(false) {
			continue
		}
		b.syncs.Add(1)
		if err := b.db.Sync(); err != nil {
			b.dirty.Store(true)
			werr := wrapWriteError(fmt.Errorf("periodic fsync: %w", err))
			b.syncErr.Store(&werr)
			b.log.Error("periodic fsync failed; refusing writes until it succeeds", "err", err)
			continue
		}
		b.syncErr.Store(nil)
	}
}

// isNoSpace reports a full disk, also when a library flattened the error to
// text.
func isNoSpace(err error) bool {
	return errIsENOSPC(err) || strings.Contains(err.Error(), "no space left on device")
}

// wrapWriteError marks a full disk with ErrFull so the broker can answer
// with a reason code (5.0: 0x97 Quota exceeded) and keep running.
func wrapWriteError(err error) error {
	if err == nil || errors.Is(err, ErrFull) {
		return err
	}
	if isNoSpace(err) {
		return fmt.Errorf("%w: %w", ErrFull, err)
	}
	return err
}

// badgerLogger routes badger's logs to slog; badger's chatty Info level
// (compactions, flushes) goes to Debug.
type badgerLogger struct{ l *slog.Logger }

func (l badgerLogger) Errorf(f string, a ...any) {
	l.l.Error("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Warningf(f string, a ...any) {
	l.l.Warn("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
}
func (l badgerLogger) Infof(f string, a ...any)  { l.debug(f, a) }
func (l badgerLogger) Debugf(f string, a ...any) { l.debug(f, a) }
func (l badgerLogger) debug(f string, a []any) {
	if l.l.Enabled(context.Background(), slog.LevelDebug) {
		l.l.Debug("badger: " + strings.TrimSpace(fmt.Sprintf(f, a...)))
	}
}
