package mqtt

import (
	"container/heap"
	"sync"
	"time"
)

// scheduler runs delayed work — will delay, session expiry — in one owner
// goroutine. Jobs are never cancelled: each re-checks, when it runs, that
// the state it was scheduled for still holds (a reconnection bumps the
// session entry's generation), which keeps takeover and expiry free of
// timer races.
type scheduler struct {
	mu   sync.Mutex
	jobs jobHeap
	wake chan struct{}
	now  func() time.Time
}

type job struct {
	at time.Time
	fn func()
}

type jobHeap []job

func (h jobHeap) Len() int           { return len(h) }
func (h jobHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h jobHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *jobHeap) Push(x any)        { *h = append(*h, x.(job)) }
func (h *jobHeap) Pop() any {
	old := *h
	j := old[len(old)-1]
	old[len(old)-1] = job{}
	*h = old[:len(old)-1]
	return j
}

func newScheduler() *scheduler {
	return &scheduler{wake: make(chan struct{}, 1), now: time.Now}
}

// at schedules fn to run at t (at once if t has passed).
func (s *scheduler) at(t time.Time, fn func()) {
	s.mu.Lock()
	heap.Push(&s.jobs, job{at: t, fn: fn})
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// run executes due jobs until quit is closed.
func (s *scheduler) run(quit <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var due []job
		s.mu.Lock()
		now := s.now()
		for len(s.jobs) > 0 && !s.jobs[0].at.After(now) {
			due = append(due, heap.Pop(&s.jobs).(job))
		}
		wait := time.Hour
		if len(s.jobs) > 0 {
			wait = s.jobs[0].at.Sub(now)
		}
		s.mu.Unlock()
		for _, j := range due {
			j.fn()
		}
		if len(due) > 0 {
			continue
		}
		timer.Reset(wait)
		select {
		case <-quit:
			return
		case <-s.wake:
		case <-timer.C:
		}
	}
}
