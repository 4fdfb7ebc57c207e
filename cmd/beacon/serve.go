package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/beaconmq/beacon/mqtt"
	"github.com/beaconmq/beacon/storage"
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
	if c.check {
		if err := checkConfig(c); err != nil {
			fmt.Fprintf(stderr, "beacon serve: %v\n", err)
			return exitUsage
		}
		fmt.Fprintln(stderr, "beacon serve: configuration is valid")
		return exitOK
	}
	logger := newLogger(stderr, c)
	// SIGHUP reloads the files the broker was configured with. Asked for
	// before the broker starts, so an early SIGHUP waits here instead of
	// killing the process (its default action).
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	applyMemoryLimit(c, logger)

	store, err := openStore(c.storage, c.dataDir, c.durability, c.diskReserve, logger)
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
	bridges, err := newBridgeManager(c, srv, store, logger) // bridges.go; registers before Start
	if err != nil {
		logger.Error("cannot set up bridges", "err", err)
		return exitFailure
	}
	if err := srv.Start(); err != nil {
		logger.Error("cannot start", "err", err)
		return exitFailure
	}
	bridges.Start()
	// Tests and scripts read the bound addresses from this line.
	logger.Info("beacon started", "version", versionString(), "storage", c.storage,
		"mqtt", srv.MQTTAddr(), "ws", srv.WSAddr(), "tls", srv.TLSAddr(), "wss", srv.WSSAddr(),
		"http", srv.HTTPAddr())

	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			reload(srv, logger)
		}
	}
	stopSignals() // a second signal now terminates at once
	logger.Info("shutting down", "timeout", shutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := bridges.Stop(sctx); err != nil { // first: saves the bridge cursors
		logger.Error("stopping bridges", "err", err)
	}
	if err := srv.Shutdown(sctx); err != nil {
		logger.Error("shutdown incomplete", "err", err)
		return exitFailure
	}
	logger.Info("stopped")
	return exitOK
}

// newLogger returns the logger of serve: text (key=value) or JSON lines on
// stderr, at the configured level.
func newLogger(w io.Writer, c *config) *slog.Logger {
	o := &slog.HandlerOptions{Level: c.logLevel}
	if c.logFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// reload runs srv.Reload on SIGHUP and logs what it did. Connections stay
// up; a file that fails to load leaves the previous version in force.
func reload(srv *mqtt.Server, logger *slog.Logger) {
	start := time.Now()
	if err := srv.Reload(); err != nil {
		logger.Error("reload on SIGHUP failed; the previous configuration stays in force", "err", err)
		return
	}
	logger.Info("reloaded on SIGHUP", "took", time.Since(start).Round(time.Microsecond).String())
}

// checkConfig is --check beyond what loadConfig validated: it builds the
// server on a throw-away memory store, without starting it, so the files
// New reads (password and ACL files) are checked too. Nothing is opened on
// disk and no port is bound; TLS certificates are read only at start.
func checkConfig(c *config) error {
	opts := c.opts
	st := storage.NewMemory()
	defer st.Close()
	opts.Store = st
	opts.Logger = nil
	_, err := mqtt.New(opts)
	return err
}
