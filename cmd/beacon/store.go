package main

import (
	"fmt"
	"log/slog"

	"github.com/beaconmq/beacon/storage"
)

// defaultDiskReserve is the badger store's own default reserve (6 ×
// MemTableSize + 32 MiB): room for the memtables it flushes and a margin,
// because badger writes through memory-mapped files, where a full disk is
// a SIGBUS, not an error (docs/storage.md).
const defaultDiskReserve = 80 << 20

// openStore opens the storage backend kind ("memory" or "badger") keeping
// its files under dir. It is the one place the binary chooses a storage
// implementation; a new backend is a new case here and a new value accepted
// by the storage setting in config.go. diskReserve is the free space the
// badger store keeps (0 = none).
//
// The caller closes the store after the server has shut down.
func openStore(kind, dir, durability string, diskReserve int64, logger *slog.Logger) (storage.Store, error) {
	switch kind {
	case "memory":
		logger.Warn("storage memory: sessions, queued and retained messages are lost when the process exits")
		return storage.NewMemory(), nil
	case "badger":
		opts := storage.DefaultBadgerOptions(dir)
		opts.Durability = durability
		opts.MinFreeBytes = diskReserve
		if diskReserve == 0 {
			opts.MinFreeBytes = -1 // storage: negative = no reserve
		}
		opts.Logger = logger
		return storage.OpenBadger(opts)
	}
	return nil, fmt.Errorf("unknown storage %q: use memory or badger", kind)
}
