package inflight

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/creekstream/creek/processor"
)

// pushAll pushes one unfinished entry per name and returns their done channels.
func pushAll(q *Queue[string], names ...string) map[string]chan struct{} {
	done := make(map[string]chan struct{}, len(names))
	for _, n := range names {
		done[n] = make(chan struct{})
		q.Push(n, done[n])
	}
	return done
}

// collect returns a fn for Forward and Finish that records what it is given.
func collect(got *[]string) func(string) error {
	return func(v string) error {
		*got = append(*got, v)
		return nil
	}
}

func TestForwardKeepsOrder(t *testing.T) {
	for _, tc := range []struct {
		name string
		// finish is closed in order, with a Forward after each; want is what has been
		// forwarded after each step.
		finish []string
		want   [][]string
	}{
		{"in order", []string{"a", "b", "c"}, [][]string{{"a"}, {"a", "b"}, {"a", "b", "c"}}},
		{"reversed", []string{"c", "b", "a"}, [][]string{nil, nil, {"a", "b", "c"}}},
		{"middle first", []string{"b", "a", "c"}, [][]string{nil, {"a", "b"}, {"a", "b", "c"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q Queue[string]
			done := pushAll(&q, "a", "b", "c")
			var got []string
			for i, n := range tc.finish {
				close(done[n])
				if err := q.Forward(collect(&got)); err != nil {
					t.Fatalf("Forward = %v", err)
				}
				if !slices.Equal(got, tc.want[i]) {
					t.Fatalf("after finishing %v: forwarded %q, want %q", tc.finish[:i+1], got, tc.want[i])
				}
			}
			if q.Len() != 0 {
				t.Fatalf("Len = %d after forwarding everything, want 0", q.Len())
			}
		})
	}
}

func TestForwardKeepsFailedEntryAtHead(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name string
		err  error
	}{
		{"rejected", processor.ErrMessageRejected},
		{"failed", errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q Queue[string]
			for _, v := range []string{"a", "b", "c"} {
				q.Push(v, nil)
			}
			var got []string
			fails := 1
			fn := func(v string) error {
				if v == "b" && fails > 0 {
					fails--
					return tc.err
				}
				got = append(got, v)
				return nil
			}
			if err := q.Forward(fn); !errors.Is(err, tc.err) {
				t.Fatalf("Forward = %v, want %v", err, tc.err)
			}
			if q.Len() != 2 || q.At(0) != "b" {
				t.Fatalf("Len = %d, head %q after the failure; want 2, \"b\"", q.Len(), q.At(0))
			}
			if err := q.Forward(fn); err != nil {
				t.Fatalf("second Forward = %v", err)
			}
			if want := []string{"a", "b", "c"}; !slices.Equal(got, want) {
				t.Fatalf("forwarded %q, want %q", got, want)
			}
		})
	}
}

func TestQueueReusesItsArray(t *testing.T) {
	var q Queue[int]
	fn := func(int) error { return nil }
	for i := range 64 {
		q.Push(i, nil)
	}
	if err := q.Forward(fn); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		for i := range 64 {
			q.Push(i, nil)
			if i%3 == 0 {
				_ = q.Forward(fn)
			}
		}
		_ = q.Forward(fn)
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per round once the array has grown, want 0", allocs)
	}
}

func TestFinish(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name string
		ctx  context.Context
		// finished are the entries closed before Finish, of a, b, c.
		finished      []string
		fail          string
		want          []string
		wantAbandoned bool
		wantErr       error
		wantLen       int
	}{
		{"all finished", context.Background(), []string{"a", "b", "c"}, "", []string{"a", "b", "c"}, false, nil, 0},
		{"abandons on ctx", cancelled, nil, "", nil, true, nil, 3},
		{"forwards finished ones before abandoning", cancelled, []string{"a", "c"}, "", []string{"a"}, true, nil, 2},
		{"stops at an error", context.Background(), []string{"a", "b", "c"}, "b", []string{"a"}, false, errBoom, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var q Queue[string]
			done := pushAll(&q, "a", "b", "c")
			for _, n := range tc.finished {
				close(done[n])
			}
			var got []string
			fn := func(v string) error {
				if v == tc.fail {
					return errBoom
				}
				got = append(got, v)
				return nil
			}
			abandoned, err := q.Finish(tc.ctx, fn, func() error { return nil })
			if abandoned != tc.wantAbandoned || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Finish = %v, %v; want %v, %v", abandoned, err, tc.wantAbandoned, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("forwarded %q, want %q", got, tc.want)
			}
			if q.Len() != tc.wantLen {
				t.Fatalf("Len = %d, want %d", q.Len(), tc.wantLen)
			}
		})
	}
}

func TestFinishWaitsForTheHead(t *testing.T) {
	var q Queue[string]
	done := pushAll(&q, "a", "b")
	close(done["b"])
	var got []string
	polls := 0
	// The head finishes while Finish waits; no sleep is needed to order that, since
	// Finish cannot return before it.
	go close(done["a"])
	abandoned, err := q.Finish(context.Background(), collect(&got), func() error { polls++; return nil })
	if abandoned || err != nil {
		t.Fatalf("Finish = %v, %v", abandoned, err)
	}
	if want := []string{"a", "b"}; !slices.Equal(got, want) {
		t.Fatalf("forwarded %q, want %q", got, want)
	}
	if polls != 0 {
		t.Fatalf("%d polls without a rejection, want 0", polls)
	}
}

func TestDrain(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name          string
		ctx           context.Context
		rejections    int // before offer succeeds; -1 for never
		pollErr       error
		wantOffers    int
		wantPolls     int
		wantAbandoned bool
		wantErr       error
	}{
		{"taken at once", context.Background(), 0, nil, 1, 0, false, nil},
		{"polls between rejections", context.Background(), 3, nil, 4, 3, false, nil},
		{"abandons on ctx", cancelled, -1, nil, 1, 1, true, nil},
		{"poll error ends it", context.Background(), -1, errBoom, 1, 1, false, errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offers, polls, rejected := 0, 0, 0
			offer := func() error {
				offers++
				if tc.rejections < 0 || offers <= tc.rejections {
					return processor.ErrMessageRejected
				}
				return nil
			}
			poll := func() error {
				polls++
				if polls != rejected {
					t.Errorf("poll %d after %d rejections: poll must follow each rejection", polls, rejected)
				}
				return tc.pollErr
			}
			abandoned, err := Drain(tc.ctx, offer, poll, func() { rejected++ })
			if abandoned != tc.wantAbandoned || !errors.Is(err, tc.wantErr) {
				t.Fatalf("Drain = %v, %v; want %v, %v", abandoned, err, tc.wantAbandoned, tc.wantErr)
			}
			if offers != tc.wantOffers || polls != tc.wantPolls || rejected != tc.wantPolls {
				t.Fatalf("offers, polls, rejections = %d, %d, %d; want %d, %d, %d", offers, polls, rejected, tc.wantOffers, tc.wantPolls, tc.wantPolls)
			}
		})
	}
}

func TestDrainReturnsOfferError(t *testing.T) {
	errBoom := errors.New("boom")
	abandoned, err := Drain(context.Background(), func() error { return errBoom }, func() error {
		t.Fatal("poll after an error that is not a rejection")
		return nil
	}, nil)
	if abandoned || !errors.Is(err, errBoom) {
		t.Fatalf("Drain = %v, %v; want false, %v", abandoned, err, errBoom)
	}
}

func TestWait(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		busy bool
		want bool
	}{
		{"no goroutines", context.Background(), false, true},
		{"goroutine exits", context.Background(), true, true},
		{"gives up on ctx", cancelled, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var wg sync.WaitGroup
			release := make(chan struct{})
			if tc.busy {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-release
				}()
			}
			if tc.want && tc.busy {
				close(release)
			}
			if got := Wait(tc.ctx, &wg); got != tc.want {
				t.Fatalf("Wait = %v, want %v", got, tc.want)
			}
			if !tc.want {
				close(release)
			}
			wg.Wait()
		})
	}
}
