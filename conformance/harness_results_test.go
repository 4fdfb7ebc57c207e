package conformance

// Recording a run of the suite against one broker: `go test -json` output
// in, conformance/results/<broker>.json out (sorted lists of top-level test
// names that passed, failed and were skipped). COVERAGE.md's "Mosquitto vs
// Beacon" section is built from those files. compare.sh drives it.

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"testing"
	"time"
)

var (
	resultsFrom   = flag.String("results-from", "", "go test -json output to turn into a results file")
	resultsOut    = flag.String("results-out", "", "results file to write, e.g. results/mosquitto.json")
	resultsBroker = flag.String("results-broker", "", "broker name and version recorded in the results file")
	resultsTarget = flag.String("results-target", "", "how the broker was reached, recorded in the results file")
)

// TestWriteResults converts -results-from into -results-out. It does
// nothing unless both flags are given.
func TestWriteResults(t *testing.T) {
	if *resultsFrom == "" || *resultsOut == "" {
		t.Skip("recording helper: needs -results-from and -results-out (see compare.sh)")
	}
	r, err := parseTestJSON(*resultsFrom)
	if err != nil {
		t.Fatal(err)
	}
	r.Broker, r.Target = *resultsBroker, *resultsTarget
	r.Date = time.Now().UTC().Format("2006-01-02")
	r.Command = "go test ./conformance -count=1 -json"
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(*resultsOut, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d pass, %d fail, %d skip", *resultsOut, len(r.Pass), len(r.Fail), len(r.Skip))
}

// parseTestJSON reads test2json events and keeps the final outcome of every
// top-level conformance test (TestMQTT311_*, TestMQTT5_*).
func parseTestJSON(path string) (*brokerResults, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	outcome := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var ev struct {
			Action string
			Test   string
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || ev.Test == "" || strings.Contains(ev.Test, "/") {
			continue
		}
		if !strings.HasPrefix(ev.Test, "TestMQTT311_") && !strings.HasPrefix(ev.Test, "TestMQTT5_") {
			continue
		}
		switch ev.Action {
		case "pass", "fail", "skip":
			outcome[ev.Test] = ev.Action
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(outcome) == 0 {
		return nil, fmt.Errorf("%s holds no conformance test results (did the package build?)", path)
	}
	r := &brokerResults{Pass: []string{}, Fail: []string{}, Skip: []string{}}
	for name, o := range outcome {
		switch o {
		case "pass":
			r.Pass = append(r.Pass, name)
		case "fail":
			r.Fail = append(r.Fail, name)
		case "skip":
			r.Skip = append(r.Skip, name)
		}
	}
	sort.Strings(r.Pass)
	sort.Strings(r.Fail)
	sort.Strings(r.Skip)
	return r, nil
}
