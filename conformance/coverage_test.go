package conformance

// COVERAGE.md is generated, never edited by hand: it accounts for every
// normative statement of MQTT 3.1.1 and 5.0 whose party is the server (or
// both sides) from three sources:
//
//   - the statements: ../shared/spec/*.tsv beside the repository
//     (BEACON_SPEC_DIR overrides);
//   - the tests: functions named TestMQTT311_a_b_c_d / TestMQTT5_a_b_c_d in
//     any *_test.go file of the repository;
//   - conformance/accounting*.tsv: statements answered without a test of
//     their own ("Not applicable" with the reason, or "Covered by" another
//     statement ID).
//
// `go test ./conformance -run TestCoverage -update` rewrites COVERAGE.md;
// without -update the test fails when the file is stale, so it cannot drift
// from the tests.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite COVERAGE.md from the spec, the tests and accounting.tsv")

// specVersions lists the statement files and the test-name prefix of each
// protocol version.
var specVersions = []struct {
	Version string // as written in accounting.tsv
	File    string
	Prefix  string
}{
	{"3.1.1", "mqtt-v3.1.1-statements.tsv", "TestMQTT311_"},
	{"5.0", "mqtt-v5.0-statements.tsv", "TestMQTT5_"},
}

// statement is one row of a spec TSV.
type statement struct {
	ID, Section, Party, Level, Summary string
}

// accountEntry is one row of accounting.tsv.
type accountEntry struct {
	ID, Version, Status, Reason string
}

// Statuses a statement can have in COVERAGE.md.
const (
	statusTested      = "Tested"
	statusNA          = "Not applicable"
	statusCovered     = "Covered by"
	statusUnaccounted = "Unaccounted"
)

var testFuncRe = regexp.MustCompile(`(?m)^func (Test(MQTT311|MQTT5)_(\d+)_(\d+)_(\d+)_(\d+))\(`)

func TestCoverage(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	got, err := generateCoverage(root)
	if err != nil {
		t.Fatal(err)
	}
	path := "COVERAGE.md"
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (generate it with: go test ./conformance -run TestCoverage -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("conformance/COVERAGE.md is stale: regenerate it with `go test ./conformance -run TestCoverage -update` and commit it")
	}
}

// specDir finds the statement files: BEACON_SPEC_DIR, or shared/spec beside
// the repository.
func specDir(root string) (string, error) {
	dir := os.Getenv("BEACON_SPEC_DIR")
	if dir == "" {
		dir = filepath.Join(root, "..", "shared", "spec")
	}
	if _, err := os.Stat(filepath.Join(dir, specVersions[0].File)); err != nil {
		return "", fmt.Errorf("spec statements not found in %s (expected shared/spec beside the repository, or set BEACON_SPEC_DIR): %v", dir, err)
	}
	return dir, nil
}

// readStatements reads a spec TSV (header line first).
func readStatements(path string) ([]statement, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []statement
	sc := bufio.NewScanner(f)
	for line := 0; sc.Scan(); line++ {
		if line == 0 || strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 5 {
			return nil, fmt.Errorf("%s:%d: %d columns, want 5", path, line+1, len(cols))
		}
		out = append(out, statement{cols[0], cols[1], cols[2], cols[3], cols[4]})
	}
	return out, sc.Err()
}

// readAccounting reads accounting.tsv: id, version, status, reason; lines
// starting with # are comments.
func readAccounting(path string) (map[string]accountEntry, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	out := map[string]accountEntry{}
	for i, line := range strings.Split(string(b), "\n") {
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, "id\t") {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != 4 {
			return nil, fmt.Errorf("%s:%d: %d columns, want 4 (id, version, status, reason)", path, i+1, len(cols))
		}
		e := accountEntry{cols[0], cols[1], cols[2], cols[3]}
		if e.Status != statusNA && e.Status != statusCovered {
			return nil, fmt.Errorf("%s:%d: status %q, want %q or %q", path, i+1, e.Status, statusNA, statusCovered)
		}
		if e.Reason == "" {
			return nil, fmt.Errorf("%s:%d: %s needs a reason", path, i+1, e.ID)
		}
		key := e.Version + " " + e.ID
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s:%d: %s %s listed twice", path, i+1, e.Version, e.ID)
		}
		out[key] = e
	}
	return out, nil
}

// scanTests maps "version id" to the tests named after it, each as
// "pkgdir.TestName", by reading every *_test.go file under root.
func scanTests(root string) (map[string][]string, error) {
	out := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		for _, m := range testFuncRe.FindAllStringSubmatch(string(b), -1) {
			version := "3.1.1"
			if m[2] == "MQTT5" {
				version = "5.0"
			}
			id := fmt.Sprintf("MQTT-%s.%s.%s-%s", m[3], m[4], m[5], m[6])
			key := version + " " + id
			out[key] = append(out[key], filepath.ToSlash(rel)+"."+m[1])
		}
		return nil
	})
	for _, v := range out {
		sort.Strings(v)
	}
	return out, err
}

// row is one statement's line in COVERAGE.md.
type row struct {
	statement
	Status, Detail string
}

// generateCoverage builds the content of COVERAGE.md.
func generateCoverage(root string) ([]byte, error) {
	dir, err := specDir(root)
	if err != nil {
		return nil, err
	}
	tests, err := scanTests(root)
	if err != nil {
		return nil, err
	}
	// accounting.tsv, plus accounting-*.tsv files kept by other authors of
	// the suite (e.g. accounting-v5.tsv).
	files, _ := filepath.Glob(filepath.Join(root, "conformance", "accounting*.tsv"))
	sort.Strings(files)
	acct := map[string]accountEntry{}
	for _, f := range files {
		part, err := readAccounting(f)
		if err != nil {
			return nil, err
		}
		for k, e := range part {
			if _, dup := acct[k]; dup {
				return nil, fmt.Errorf("%s: %s %s is also listed in another accounting file", f, e.Version, e.ID)
			}
			acct[k] = e
		}
	}
	results := loadResults(filepath.Join(root, "conformance", "results"))

	var b bytes.Buffer
	var problems []string
	rowsByVersion := map[string][]row{}
	known := map[string]bool{}
	for _, sv := range specVersions {
		stmts, err := readStatements(filepath.Join(dir, sv.File))
		if err != nil {
			return nil, err
		}
		for _, s := range stmts {
			key := sv.Version + " " + s.ID
			known[key] = true
			if s.Party == "client" {
				if _, ok := acct[key]; ok {
					problems = append(problems, fmt.Sprintf("accounting.tsv lists %s %s, a client statement", sv.Version, s.ID))
				}
				continue
			}
			r := row{statement: s}
			switch e, ok := acct[key]; {
			case len(tests[key]) > 0:
				r.Status, r.Detail = statusTested, strings.Join(tests[key], ", ")
			case ok:
				r.Status, r.Detail = e.Status, e.Reason
			default:
				r.Status = statusUnaccounted
			}
			rowsByVersion[sv.Version] = append(rowsByVersion[sv.Version], r)
		}
	}
	// Cross-checks: accounting rows must name real statements and "Covered
	// by" must point at a statement that is itself tested.
	for key, e := range acct {
		if !known[key] {
			problems = append(problems, fmt.Sprintf("accounting.tsv lists %s %s, which is not in the spec", e.Version, e.ID))
		}
		if e.Status == statusCovered {
			ref := firstID(e.Reason)
			if ref == "" || len(tests[e.Version+" "+ref]) == 0 {
				problems = append(problems, fmt.Sprintf("accounting.tsv: %s %s is covered by %q, which has no test", e.Version, e.ID, ref))
			}
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, errors.New(strings.Join(problems, "\n"))
	}

	fmt.Fprintf(&b, "# Conformance coverage\n\n")
	fmt.Fprintf(&b, "Generated by `go test ./conformance -run TestCoverage -update` from `../shared/spec/*.tsv`,\n")
	fmt.Fprintf(&b, "the `TestMQTT311_*` / `TestMQTT5_*` functions in the repository's test files and\n")
	fmt.Fprintf(&b, "`conformance/accounting*.tsv`. Do not edit by hand. Only statements whose party is\n")
	fmt.Fprintf(&b, "`server` or `both` are listed; the client's duties are the client's.\n\n")
	fmt.Fprintf(&b, "| version | statements | %s | %s | %s | %s |\n|---|---:|---:|---:|---:|---:|\n", statusTested, statusNA, statusCovered, statusUnaccounted)
	for _, sv := range specVersions {
		n := map[string]int{}
		for _, r := range rowsByVersion[sv.Version] {
			n[r.Status]++
		}
		fmt.Fprintf(&b, "| MQTT %s | %d | %d | %d | %d | %d |\n", sv.Version, len(rowsByVersion[sv.Version]), n[statusTested], n[statusNA], n[statusCovered], n[statusUnaccounted])
	}
	b.WriteString("\n")
	writeComparison(&b, results, filepath.Join(root, "conformance", "results"))

	for _, sv := range specVersions {
		fmt.Fprintf(&b, "\n## MQTT %s\n\n", sv.Version)
		fmt.Fprintf(&b, "Result columns: outcome of the statement's conformance test in the recorded runs (see above); `-` when not run.\n\n")
		fmt.Fprintf(&b, "| ID | party | level | status | test / reason | Beacon | Mosquitto | summary |\n|---|---|---|---|---|---|---|---|\n")
		for _, r := range rowsByVersion[sv.Version] {
			detail := r.Detail
			if r.Status == statusTested {
				detail = "`" + strings.ReplaceAll(detail, ", ", "`, `") + "`"
			}
			beacon, mosq := "", ""
			if r.Status == statusTested {
				name := sv.Prefix + strings.NewReplacer("MQTT-", "", ".", "_", "-", "_").Replace(r.ID)
				beacon, mosq = results.outcome("beacon", name), results.outcome("mosquitto", name)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", r.ID, r.Party, r.Level, r.Status,
				mdCell(detail), beacon, mosq, mdCell(r.Summary))
		}
	}
	if extra := extraTests(tests, known, rowsByVersion); len(extra) > 0 {
		b.WriteString("\n## Tests named after statements not listed above\n\n")
		b.WriteString("Client statements or IDs absent from the spec files; kept, but they count for nothing above.\n\n")
		for _, e := range extra {
			fmt.Fprintf(&b, "- %s\n", e)
		}
	}
	return b.Bytes(), nil
}

// firstID returns the first MQTT-x.y.z-n identifier in s.
func firstID(s string) string {
	return regexp.MustCompile(`MQTT-\d+\.\d+\.\d+-\d+`).FindString(s)
}

// extraTests lists tests named after statements that are not server/both
// statements of the spec.
func extraTests(tests map[string][]string, known map[string]bool, rows map[string][]row) []string {
	listed := map[string]bool{}
	for v, rs := range rows {
		for _, r := range rs {
			listed[v+" "+r.ID] = true
		}
	}
	var out []string
	for key, names := range tests {
		if !listed[key] {
			why := "not in the spec"
			if known[key] {
				why = "client statement"
			}
			out = append(out, fmt.Sprintf("MQTT %s (%s): `%s`", key, why, strings.Join(names, "`, `")))
		}
	}
	sort.Strings(out)
	return out
}

// mdCell escapes text for a Markdown table cell.
func mdCell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// brokerResults is one recorded run of the suite (conformance/results/*.json).
type brokerResults struct {
	Broker  string   `json:"broker"`
	Target  string   `json:"target"`
	Date    string   `json:"date"`
	Command string   `json:"command"`
	Pass    []string `json:"pass"`
	Fail    []string `json:"fail"`
	Skip    []string `json:"skip"`

	outcomes map[string]string
}

// resultSet holds the recorded runs by file name (beacon, mosquitto).
type resultSet map[string]*brokerResults

func loadResults(dir string) resultSet {
	rs := resultSet{}
	for _, name := range []string{"beacon", "mosquitto"} {
		b, err := os.ReadFile(filepath.Join(dir, name+".json"))
		if err != nil {
			continue
		}
		var r brokerResults
		if json.Unmarshal(b, &r) != nil {
			continue
		}
		r.outcomes = map[string]string{}
		for _, n := range r.Pass {
			r.outcomes[n] = "pass"
		}
		for _, n := range r.Fail {
			r.outcomes[n] = "**FAIL**"
		}
		for _, n := range r.Skip {
			r.outcomes[n] = "skip"
		}
		rs[name] = &r
	}
	return rs
}

// outcome is a test's result in one broker's run, "-" when unknown.
func (rs resultSet) outcome(broker, test string) string {
	r := rs[broker]
	if r == nil {
		return "-"
	}
	if o, ok := r.outcomes[test]; ok {
		return o
	}
	return "-"
}

// writeComparison writes the "Mosquitto vs Beacon" section.
// Explanations of the differences come from results/NOTES*.md, written by
// whoever investigated them (NOTES.md for 3.1.1, NOTES-v5.md for 5.0).
func writeComparison(b *bytes.Buffer, rs resultSet, notesDir string) {
	b.WriteString("## Mosquitto vs Beacon\n\n")
	if rs["beacon"] == nil || rs["mosquitto"] == nil {
		b.WriteString("Not recorded yet: run `conformance/compare.sh` (writes `conformance/results/*.json`), then regenerate.\n")
		return
	}
	b.WriteString("Both brokers ran the same suite (`go test ./conformance -json`); `conformance/results/*.json` hold the raw outcome lists.\n\n")
	b.WriteString("| broker | run | pass | fail | skip |\n|---|---|---:|---:|---:|\n")
	for _, name := range []string{"beacon", "mosquitto"} {
		r := rs[name]
		fmt.Fprintf(b, "| %s | %s, %s | %d | %d | %d |\n", r.Broker, r.Target, r.Date, len(r.Pass), len(r.Fail), len(r.Skip))
	}
	names := map[string]bool{}
	for _, r := range rs {
		for n := range r.outcomes {
			names[n] = true
		}
	}
	var diff []string
	for n := range names {
		if a, m := rs.outcome("beacon", n), rs.outcome("mosquitto", n); a != m {
			diff = append(diff, fmt.Sprintf("| `%s` | %s | %s |", n, a, m))
		}
	}
	sort.Strings(diff)
	fmt.Fprintf(b, "\nTests whose outcome differs (%d):\n\n", len(diff))
	if len(diff) == 0 {
		b.WriteString("None.\n")
		return
	}
	b.WriteString("| test | Beacon | Mosquitto |\n|---|---|---|\n")
	for _, d := range diff {
		b.WriteString(d + "\n")
	}
	notes, _ := filepath.Glob(filepath.Join(notesDir, "NOTES*.md"))
	sort.Slice(notes, func(i, j int) bool { // NOTES.md (3.1.1) first, then the others by name
		ni, nj := filepath.Base(notes[i]) == "NOTES.md", filepath.Base(notes[j]) == "NOTES.md"
		if ni != nj {
			return ni
		}
		return notes[i] < notes[j]
	})
	for _, n := range notes {
		if text, err := os.ReadFile(n); err == nil {
			b.WriteString("\n")
			b.Write(text)
		}
	}
}
