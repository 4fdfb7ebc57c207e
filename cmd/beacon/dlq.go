package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/beaconmq/beacon/mqtt"
)

const dlqUsage = `Usage: beacon dlq list|replay|purge [flags]

Lists, replays or purges dead letters through a running broker's admin API
(docs/deadletters.md).

  list     print the dead letters the filters select (a page of --limit)
  replay   send them to their original destination: republished on the
           original topic (source "broker") or handed to the bridge of that
           name; one that fails again goes back to the dead-letter topic
  purge    delete them (without a filter only with --all)

Flags:
`

// dlqCommand runs "beacon dlq ...".
func dlqCommand(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	action := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		action, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("beacon dlq "+action, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, dlqUsage)
		fs.PrintDefaults()
	}
	addr := fs.String("http-addr", "http://127.0.0.1:8080", "the broker's HTTP listener (serve's --http), as a URL or host:port")
	token := fs.String("token", "", "admin API bearer token (default: $BEACON_ADMIN_TOKEN)")
	source := fs.String("source", "", `only dead letters of this source ("broker" or a bridge name)`)
	topic := fs.String("topic", "", "only dead letters whose original topic matches this filter (wildcards allowed)")
	reason := fs.String("reason", "", "only dead letters with this reason (expired, queue-full, too-large, nack, sink-failed, retention)")
	since := fs.String("since", "", "only dead letters dead-lettered at or after this time (RFC 3339, or a duration such as 2h meaning that long ago)")
	until := fs.String("until", "", "only dead letters dead-lettered before this time (RFC 3339, or a duration ago)")
	after := fs.Uint64("after", 0, "only dead letters with a log sequence number above this (list: the next page)")
	limit := fs.Int("limit", 0, "at most this many (list: default 100, at most 10000; replay, purge: default all)")
	asJSON := fs.Bool("json", false, "print the API's JSON answer instead of a table")
	all := fs.Bool("all", false, "purge: allow purging without a filter, that is everything")
	timeout := fs.Duration("timeout", time.Minute, "how long to wait for the broker")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	switch action {
	case "list", "replay", "purge":
	case "":
		fmt.Fprintf(stderr, "beacon dlq: missing action list, replay or purge\n\n")
		fs.Usage()
		return exitUsage
	default:
		fmt.Fprintf(stderr, "beacon dlq: unknown action %q\n\n", action)
		fs.Usage()
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "beacon dlq %s: unexpected argument %q\n", action, fs.Arg(0))
		return exitUsage
	}
	q := url.Values{}
	for k, v := range map[string]string{"source": *source, "topic": *topic, "reason": *reason} {
		if v != "" {
			q.Set(k, v)
		}
	}
	now := time.Now()
	for k, v := range map[string]string{"since": *since, "until": *until} {
		if v == "" {
			continue
		}
		t, err := parseWhen(v, now)
		if err != nil {
			fmt.Fprintf(stderr, "beacon dlq %s: --%s: %v\n", action, k, err)
			return exitUsage
		}
		q.Set(k, t.UTC().Format(time.RFC3339))
	}
	if *after > 0 {
		q.Set("after", strconv.FormatUint(*after, 10))
	}
	if *limit < 0 {
		fmt.Fprintf(stderr, "beacon dlq %s: --limit %d is negative\n", action, *limit)
		return exitUsage
	}
	if *limit > 0 {
		q.Set("limit", strconv.Itoa(*limit))
	}
	if action == "purge" && len(q) == 0 && !*all {
		fmt.Fprintln(stderr, "beacon dlq purge: no filter selects every dead letter; give a filter, or --all to purge them all")
		return exitUsage
	}
	if *token == "" {
		*token = os.Getenv("BEACON_ADMIN_TOKEN")
	}
	base := strings.TrimRight(*addr, "/")
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	method, path := http.MethodGet, "/api/v1/dlq"
	if action != "list" {
		method, path = http.MethodPost, "/api/v1/dlq/"+action
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	body, err := dlqRequest(ctx, method, base+path, q, *token)
	if err != nil {
		fmt.Fprintf(stderr, "beacon dlq %s: %v\n", action, err)
		return exitFailure
	}
	if *asJSON {
		_, _ = stdout.Write(body)
	}
	switch action {
	case "list":
		var l mqtt.DLQList
		if err := json.Unmarshal(body, &l); err != nil {
			fmt.Fprintf(stderr, "beacon dlq list: reading the answer: %v\n", err)
			return exitFailure
		}
		if !*asJSON {
			printDLQTable(stdout, l)
		}
	case "replay":
		var r mqtt.DLQReplayResult
		if err := json.Unmarshal(body, &r); err != nil {
			fmt.Fprintf(stderr, "beacon dlq replay: reading the answer: %v\n", err)
			return exitFailure
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "replayed %d, failed %d, skipped %d\n", r.Replayed, r.Failed, r.Skipped)
			for _, e := range r.Errors {
				fmt.Fprintf(stdout, "  %s\n", e)
			}
		}
		if r.Failed > 0 {
			return exitFailure
		}
	case "purge":
		var r mqtt.DLQPurgeResult
		if err := json.Unmarshal(body, &r); err != nil {
			fmt.Fprintf(stderr, "beacon dlq purge: reading the answer: %v\n", err)
			return exitFailure
		}
		if !*asJSON {
			fmt.Fprintf(stdout, "purged %d\n", r.Purged)
		}
	}
	return exitOK
}

// parseWhen reads an RFC 3339 time, or a duration meaning that long
// before now.
func parseWhen(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a duration (90m)", v)
}

// dlqRequest calls the admin API and returns the body of a 200 answer;
// any other answer is an error with the API's message.
func dlqRequest(ctx context.Context, method, u string, q url.Values, token string) ([]byte, error) {
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s: %s", resp.Status, e.Error)
		}
		return nil, fmt.Errorf("%s %s: %s", method, u, resp.Status)
	}
	return body, nil
}

// printDLQTable prints a listing as a table, one dead letter a line.
func printDLQTable(w io.Writer, l mqtt.DLQList) {
	if len(l.Items) == 0 {
		fmt.Fprintln(w, "no dead letters")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tDEAD-LETTERED\tSOURCE\tREASON\tATTEMPTS\tTOPIC\tSIZE\tLAST ERROR")
	for _, e := range l.Items {
		topic := e.OriginalTopic
		if e.Missing {
			topic += " (log entry gone)"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", e.Seq, e.DeadLetteredAt.Local().Format(time.DateTime), e.Source, e.Reason,
			e.Attempts, topic, e.PayloadSize, oneLine(e.LastError, 60))
	}
	_ = tw.Flush()
	if l.NextAfter != 0 {
		fmt.Fprintf(w, "more dead letters follow: --after %d\n", l.NextAfter)
	}
}

// oneLine shortens s to n runes on one line for a table cell.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
