package session

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The window keeps send order whatever order deliveries complete in,
// across compactions and resets, compared with a plain slice.
func TestFlightListMatchesSlice(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var f flightList
	var ref []*Delivery
	for step := range 200_000 {
		switch {
		case step%50_000 == 49_999:
			f.Reset()
			ref = ref[:0]
		case len(ref) < 3000 && r.IntN(2) == 0:
			d := &Delivery{}
			f.Push(d)
			ref = append(ref, d)
		case len(ref) > 0:
			i := 0 // mostly in order, as acknowledgements arrive
			if r.IntN(4) == 0 {
				i = r.IntN(len(ref))
			}
			if !f.Remove(ref[i]) {
				t.Fatalf("step %d: Remove of a live delivery reported false", step)
			}
			if f.Remove(ref[i]) {
				t.Fatalf("step %d: second Remove of the same delivery reported true", step)
			}
			ref = slices.Delete(ref, i, i+1)
		}
		if f.Len() != len(ref) {
			t.Fatalf("step %d: Len %d, want %d", step, f.Len(), len(ref))
		}
		if step%997 == 0 {
			if got := f.All(); !slices.Equal(got, ref) {
				t.Fatalf("step %d: All differs from the reference (%d vs %d entries)", step, len(got), len(ref))
			}
		}
	}
	if f.Remove(&Delivery{}) {
		t.Fatal("Remove of a delivery never pushed reported true")
	}
}

// BenchmarkFlightInOrder is the steady state of a large window: one
// delivery sent, the oldest acknowledged.
func BenchmarkFlightInOrder(b *testing.B) {
	var f flightList
	ds := make([]*Delivery, 65535)
	for i := range ds {
		ds[i] = &Delivery{}
		f.Push(ds[i])
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		d := ds[i%len(ds)]
		f.Remove(d)
		f.Push(d)
	}
}
