package main

import (
	"fmt"
	"log/slog"

	"github.com/beaconmq/beacon/storage"
)

// openStore opens the storage backend kind ("memory" or "badger") keeping
// its files under dir. It is the one place the binary chooses a storage
// implementation; a new backend is a new case here and a new value accepted
// by the storage setting in config.go.
//
// The caller closes the store after the server has shut down.
func openStore(kind, dir, durability string, logger *slog.Logger) (storage.Store, error) {
	switch kind {
	case "memory":
		logger.Warn("storage memory: sessions, queued and retained messages are lost when the process exits")
		return storage.NewMemory(), nil
	case "badger":
		opts := storage.DefaultBadgerOptions(dir)
		opts.Durability = durability
		opts.Logger = logger
		return storage.OpenBadger(opts)
	}
	return nil, fmt.Errorf("unknown storage %q: use memory or badger", kind)
}
