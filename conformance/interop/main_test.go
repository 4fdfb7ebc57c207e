package interop

import (
	"flag"
	"os"
	"testing"
)

// interopParallel is how many matrix cells run at once unless -parallel is
// given. Cells spend their time waiting on other processes and sockets, not
// on the CPU, so the default (GOMAXPROCS, often 2) would leave the run
// mostly idle.
const interopParallel = "8"

func TestMain(m *testing.M) {
	flag.Parse()
	explicit := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "test.parallel" {
			explicit = true
		}
	})
	if !explicit {
		if err := flag.Set("test.parallel", interopParallel); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
