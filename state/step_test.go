package state_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/lovoo/goka/storage"

	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/state"
	"github.com/creekstream/creek/state/statetest"
	"github.com/creekstream/creek/strategies"
)

type change = state.Change[string, int64]

// recorder is the step after the state step: it keeps what it is given.
type recorder struct {
	strategies.Noop[change]
	got []processor.Message[change]
}

func (r *recorder) Submit(m processor.Message[change]) error {
	r.got = append(r.got, m)
	return nil
}

func (r *recorder) values() []int64 {
	var out []int64
	for _, m := range r.got {
		if !m.Filtered() {
			out = append(out, m.Payload.Value)
		}
	}
	return out
}

var part = processor.Partition{Topic: "in", Index: 0}

func msg(ctx context.Context, key string, offset int64) processor.Message[string] {
	return processor.NewBrokerMessage(key, part, offset, time.Time{}).WithContext(ctx)
}

func identity(s string) string { return s }

func countStep(t *testing.T, cfg state.Config[int64], next processor.Strategy[change]) *state.Step[string, int64] {
	t.Helper()
	if cfg.Name == "" {
		cfg.Name = "counts"
	}
	if cfg.Codec == nil {
		cfg.Codec = state.Int64{}
	}
	if cfg.Storage == nil && cfg.Dir == "" {
		cfg.Storage = storage.MemoryBuilder()
	}
	s, err := state.NewStep(cfg, identity, func(_ context.Context, _ string, _ processor.Message[string], n int64, _ bool) (int64, error) {
		return n + 1, nil
	}, next)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// submit offers m until the step takes it, polling between offers; the step
// rejects while the partition's store restores in the background.
func submit[T any](t *testing.T, s processor.Strategy[T], m processor.Message[T]) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		err := s.Submit(m)
		if err == nil {
			return
		}
		if !errors.Is(err, processor.ErrMessageRejected) {
			t.Fatalf("submit: %v", err)
		}
		if err := s.Poll(); err != nil {
			t.Fatalf("poll: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the step still rejects after 10s; its store did not restore")
		}
		<-tick.C
	}
}

func join(t *testing.T, s processor.Strategy[string]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.Close()
	if err := s.Join(ctx); err != nil {
		t.Fatalf("join: %v", err)
	}
}

func TestAChangeIsPassedOnOnlyOnceTheChangelogHasIt(t *testing.T) {
	cl := statetest.NewChangelog()
	cl.Hold(true)
	next := &recorder{}
	s := countStep(t, state.Config[int64]{Changelog: cl}, next)
	ctx := context.Background()
	submit(t, s, msg(ctx, "a", 0))
	submit(t, s, msg(ctx, "a", 1))
	submit(t, s, processor.NewFiltered[string](processor.CommittableOf(part, 3), time.Time{}))
	submit(t, s, msg(ctx, "b", 3))
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if len(next.got) != 0 {
		t.Fatalf("%d messages passed on before the changelog acknowledged anything", len(next.got))
	}
	if cl.Held() != 3 {
		t.Fatalf("%d changelog writes, want 3", cl.Held())
	}
	cl.Release()
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if len(next.got) != 4 || !next.got[2].Filtered() {
		t.Fatalf("passed on %d messages (%v), want 4 with the filtered one third, in order", len(next.got), next.got)
	}
	if got := next.values(); len(got) != 3 || got[0] != 1 || got[1] != 2 || got[2] != 1 {
		t.Fatalf("counts %v, want [1 2 1]", got)
	}
	join(t, s)
}

func TestAReplayedMessageDoesNotChangeTheState(t *testing.T) {
	cl := statetest.NewChangelog()
	ctx := context.Background()
	first := countStep(t, state.Config[int64]{Changelog: cl}, &recorder{})
	for off := range int64(5) {
		submit(t, first, msg(ctx, "a", off))
	}
	join(t, first)

	// A new member with an empty store restores from the changelog and is handed
	// offsets 3 and 4 again, as after a crash before their commit.
	next := &recorder{}
	second := countStep(t, state.Config[int64]{Changelog: cl}, next)
	for off := int64(3); off < 7; off++ {
		submit(t, second, msg(ctx, "a", off))
	}
	join(t, second)
	var replayed []bool
	for _, m := range next.got {
		replayed = append(replayed, m.Payload.Replayed)
	}
	if got := next.values(); len(got) != 4 || got[0] != 5 || got[1] != 5 || got[2] != 6 || got[3] != 7 {
		t.Fatalf("counts %v, want [5 5 6 7]: the replays keep 5", got)
	}
	if replayed[0] != true || replayed[1] != true || replayed[2] || replayed[3] {
		t.Fatalf("replayed %v, want [true true false false]", replayed)
	}
	if recs := cl.Records(0); len(recs) != 7 || recs[6].Applied != 6 {
		t.Fatalf("changelog has %d records (last %+v), want 7 with the last applied at offset 6", len(recs), recs[len(recs)-1])
	}
}

func TestWithoutTheOffsetCheckAReplayCountsTwice(t *testing.T) {
	cl := statetest.NewChangelog()
	ctx := context.Background()
	first := countStep(t, state.Config[int64]{Changelog: cl}, &recorder{})
	submit(t, first, msg(ctx, "a", 0))
	join(t, first)
	next := &recorder{}
	second := countStep(t, state.Config[int64]{Changelog: cl, ReapplyReplayed: true}, next)
	submit(t, second, msg(ctx, "a", 0))
	join(t, second)
	if got := next.values(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("counts %v, want [2]", got)
	}
}

// gatedChangelog holds every restore until open is closed.
type gatedChangelog struct {
	*statetest.Changelog
	open chan struct{}
}

func (g gatedChangelog) Restore(ctx context.Context, p int32, from int64, apply func(state.Record) error) (int64, error) {
	select {
	case <-g.open:
	case <-ctx.Done():
		return from, ctx.Err()
	}
	return g.Changelog.Restore(ctx, p, from, apply)
}

func TestMessagesAreRejectedWhileTheStoreRestores(t *testing.T) {
	cl := gatedChangelog{statetest.NewChangelog(), make(chan struct{})}
	next := &recorder{}
	s := countStep(t, state.Config[int64]{Changelog: cl}, next)
	m := msg(context.Background(), "a", 0)
	for range 3 {
		if err := s.Submit(m); !errors.Is(err, processor.ErrMessageRejected) {
			t.Fatalf("submit while restoring: %v, want the rejection", err)
		}
		if err := s.Poll(); err != nil {
			t.Fatal(err)
		}
	}
	close(cl.open)
	submit(t, s, m)
	join(t, s)
	if got := next.values(); len(got) != 1 || got[0] != 1 {
		t.Fatalf("counts %v, want [1]", got)
	}
}

// closeCounter counts the stores it built and closed.
type closeCounter struct {
	mu             sync.Mutex
	opened, closed int
}

func (c *closeCounter) builder() storage.Builder {
	return func(string, int32) (storage.Storage, error) {
		c.mu.Lock()
		c.opened++
		c.mu.Unlock()
		return countingStorage{storage.NewMemory(), c}, nil
	}
}

func (c *closeCounter) counts() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.opened, c.closed
}

type countingStorage struct {
	storage.Storage
	c *closeCounter
}

func (s countingStorage) Close() error {
	s.c.mu.Lock()
	s.c.closed++
	s.c.mu.Unlock()
	return s.Storage.Close()
}

func TestARevokedPartitionsStoreIsClosedAndRestoredWhenItComesBack(t *testing.T) {
	cl := statetest.NewChangelog()
	stores := &closeCounter{}
	next := &recorder{}
	s := countStep(t, state.Config[int64]{Changelog: cl, Storage: stores.builder()}, next)
	ctx, revoke := context.WithCancel(context.Background())
	submit(t, s, msg(ctx, "a", 0))
	submit(t, s, msg(ctx, "a", 1))
	// The processor polls until the revoked partition's offsets are committed, then
	// cancels its context.
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	revoke()
	if err := s.Poll(); err != nil {
		t.Fatal(err)
	}
	if opened, closed := stores.counts(); opened != 1 || closed != 1 {
		t.Fatalf("%d stores opened, %d closed after the revocation; want 1 and 1", opened, closed)
	}
	// The partition comes back, with messages of a new context.
	submit(t, s, msg(context.Background(), "a", 2))
	join(t, s)
	if opened, closed := stores.counts(); opened != 2 || closed != 2 {
		t.Fatalf("%d stores opened, %d closed after the join; want 2 and 2", opened, closed)
	}
	if got := next.values(); len(got) != 3 || got[2] != 3 {
		t.Fatalf("counts %v, want 3 last: the store restored what it had", got)
	}
	if r := cl.Restores(); len(r) != 2 {
		t.Fatalf("restores %v, want 2", r)
	}
}

func TestALocalStoreRestoresOnlyTheChangelogsTail(t *testing.T) {
	cl := statetest.NewChangelog()
	dir := t.TempDir()
	ctx := context.Background()
	first := countStep(t, state.Config[int64]{Changelog: cl, Dir: dir}, &recorder{})
	for off := range int64(5) {
		submit(t, first, msg(ctx, "a", off))
	}
	join(t, first)
	next := &recorder{}
	second := countStep(t, state.Config[int64]{Changelog: cl, Dir: dir}, next)
	submit(t, second, msg(ctx, "a", 5))
	join(t, second)
	if r := cl.Restores(); len(r) != 2 || r[1].From != 5 {
		t.Fatalf("restores %v, want the second from changelog offset 5", r)
	}
	if got := next.values(); len(got) != 1 || got[0] != 6 {
		t.Fatalf("counts %v, want [6]", got)
	}
}

func TestAFailedChangelogWriteStopsTheStep(t *testing.T) {
	cl := statetest.NewChangelog()
	next := &recorder{}
	s := countStep(t, state.Config[int64]{Changelog: cl}, next)
	submit(t, s, msg(context.Background(), "a", 0))
	cl.Fail(errors.New("broker gone"))
	if err := s.Submit(msg(context.Background(), "a", 1)); err != nil {
		t.Fatal(err)
	}
	err := s.Poll()
	if err == nil || !strings.Contains(err.Error(), "broker gone") {
		t.Fatalf("poll: %v, want the write's error", err)
	}
	if len(next.got) != 1 {
		t.Fatalf("%d messages passed on, want only the one written", len(next.got))
	}
	s.Terminate()
}

func TestMisconfigurationFailsAtConstruction(t *testing.T) {
	cl := statetest.NewChangelog()
	for _, tc := range []struct {
		name string
		cfg  state.Config[int64]
		want string
	}{
		{"no name", state.Config[int64]{Changelog: cl, Codec: state.Int64{}, Dir: "x"}, "no Name"},
		{"no changelog", state.Config[int64]{Name: "n", Codec: state.Int64{}, Dir: "x"}, "no Changelog"},
		{"no codec", state.Config[int64]{Name: "n", Changelog: cl, Dir: "x"}, "no Codec"},
		{"no storage", state.Config[int64]{Name: "n", Changelog: cl, Codec: state.Int64{}}, "no Dir and no Storage"},
		{"negative in flight", state.Config[int64]{Name: "n", Changelog: cl, Codec: state.Int64{}, Dir: "x", MaxInFlight: -1}, "negative MaxInFlight -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := state.NewStep(tc.cfg, identity, func(context.Context, string, processor.Message[string], int64, bool) (int64, error) { return 0, nil }, &recorder{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewStep: %v, want an error saying %q", err, tc.want)
			}
		})
	}
	// In a pipeline the processor reports it when it validates the factory.
	f := pipeline.Commit(state.Count(pipeline.From[string](), state.Config[int64]{Changelog: cl, Dir: "x"}, identity))
	if err := f.Validate(); err == nil || !strings.Contains(err.Error(), "no Name") {
		t.Fatalf("Validate: %v, want the state's configuration error", err)
	}
}
