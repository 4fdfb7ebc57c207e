// Command beacon is the Beacon MQTT broker.
//
//	beacon [serve] [flags]   run the broker (the default command)
//	beacon serve --check     validate the configuration and exit
//	beacon version           print the version
//	beacon help              print this summary
//
// Every serve flag and configuration key is documented in
// docs/configuration.md; metrics, the admin API, logs and signals in
// docs/operations.md. Exit codes: 0 success (including a shutdown on
// SIGINT/SIGTERM), 1 a runtime failure (a port in use, storage that cannot
// be opened), 2 a usage or configuration error.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/beaconmq/beacon/mqtt"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// version is set at build time with -ldflags "-X main.version=v1.2.3";
// otherwise it comes from the module build information, and failing that
// from the broker package (mqtt.Version).
var version = ""

func versionString() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return mqtt.Version
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, stop, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usageText = `Beacon, an MQTT 3.1.1/5.0 broker.

Usage:
  beacon [serve] [flags]   run the broker (default command)
  beacon serve --check --config FILE
                           validate a configuration and exit (0 valid, 2 invalid)
  beacon bench SCENARIO    load-test any MQTT broker ("beacon bench -h")
  beacon dlq ACTION        list, replay or purge dead letters ("beacon dlq -h")
  beacon passwd FILE USER  add, change (or with -D remove) a user of a password file
  beacon version           print the version
  beacon help              print this help

Run "beacon serve -h" for the flags; docs/configuration.md describes each
flag and its configuration file key.
`

// run executes the command line args and returns the exit code. ctx is
// cancelled by SIGINT/SIGTERM; stopSignals restores the default signal
// behaviour, so a second signal during shutdown kills the process.
func run(ctx context.Context, stopSignals func(), args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, stopSignals, args, stderr)
	case "dlq":
		return dlqCommand(ctx, args, stdout, stderr) // dlq.go
	case "bench":
		return bench(ctx, args, stdout, stderr)
	case "passwd":
		return passwd(args, os.Stdin, stdout, stderr) // passwd.go
	case "version":
		fmt.Fprintf(stdout, "beacon %s (%s %s/%s)\n", versionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		return exitOK
	case "help":
		fmt.Fprint(stdout, usageText)
		return exitOK
	default:
		fmt.Fprintf(stderr, "beacon: unknown command %q\n\n%s", cmd, usageText)
		return exitUsage
	}
}
