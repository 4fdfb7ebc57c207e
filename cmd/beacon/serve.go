package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/beaconmq/beacon/mqtt"
)

// shutdownTimeout bounds a graceful shutdown after SIGINT/SIGTERM.
const shutdownTimeout = 5 * time.Second

// serve runs the broker until ctx is cancelled (SIGINT/SIGTERM), then shuts
// it down within shutdownTimeout: listeners stop accepting, 5.0 clients get
// DISCONNECT 0x8B, queued writes are flushed, and the store is closed.
func serve(ctx context.Context, stopSignals func(), args []string, stderr io.Writer) int {
	c, err := loadConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "beacon serve: %v\n", err)
		return exitUsage
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: c.logLevel}))
	applyMemoryLimit(c, logger)

	store, err := openStore(c.storage, c.dataDir, c.durability, logger)
	if err != nil {
		logger.Error("cannot open storage", "storage", c.storage, "err", err)
		return exitFailure
	}
	defer func() {
		if err := store.Close(); err != nil {
			logger.Error("closing storage", "err", err)
		}
	}()

	mqtt.Version = versionString() // reported in $SYS/broker/version
	opts := c.opts
	opts.Store = store
	opts.Logger = logger
	srv, err := mqtt.New(opts)
	if err != nil {
		// loadConfig validated the options already; this is a safety net.
		fmt.Fprintf(stderr, "beacon serve: %v\n", err)
		return exitUsage
	}
	if err := srv.Start(); err != nil {
		logger.Error("cannot start", "err", err)
		return exitFailure
	}
	// Tests and scripts read the bound addresses from this line.
	logger.Info("beacon started", "version", versionString(), "storage", c.storage,
		"mqtt", srv.MQTTAddr(), "ws", srv.WSAddr(), "http", srv.HTTPAddr())

	<-ctx.Done()
	stopSignals() // a second signal now terminates at once
	logger.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("shutdown incomplete", "err", err)
		return exitFailure
	}
	logger.Info("stopped")
	return exitOK
}
