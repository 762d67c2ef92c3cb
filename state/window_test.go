package state_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/lovoo/goka/storage"

	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/state"
	"github.com/creekstream/creek/state/statetest"
)

// wordTime reads a word's event time from N, in seconds.
func wordTime(m processor.Message[word]) time.Time { return time.Unix(int64(m.Payload.N), 0) }

// formatWindows writes a change as "key@t: open [s,e)=n ... closed [s,e)=n ..." or
// "key@t: late", times in seconds.
func formatWindows(c state.Change[word, state.Windowed[int]]) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s@%d:", c.Key, c.Input.N)
	if c.Value.Late {
		b.WriteString(" late")
		return b.String()
	}
	for _, w := range c.Value.Open {
		fmt.Fprintf(&b, " [%d,%d)=%d", w.Start.Unix(), w.End.Unix(), w.Value)
	}
	for _, w := range c.Value.Closed {
		fmt.Fprintf(&b, " closed [%d,%d)=%d", w.Start.Unix(), w.End.Unix(), w.Value)
	}
	return b.String()
}

func countWindows(w state.WindowConfig[word]) func(pipeline.Stage[word, word]) pipeline.Stage[word, state.Change[word, state.Windowed[int]]] {
	return func(st pipeline.Stage[word, word]) pipeline.Stage[word, state.Change[word, state.Windowed[int]]] {
		return state.WindowAggregate(st, state.Config[state.Windowed[int]]{Name: "w", Changelog: statetest.NewChangelog(), Storage: storage.MemoryBuilder()},
			w, wordKey, func() int { return 0 }, func(n int, _ word) (int, error) { return n + 1, nil })
	}
}

func TestWindows(t *testing.T) {
	for _, tc := range []struct {
		name  string
		w     state.WindowConfig[word]
		words []word
		want  []string
	}{
		{
			name:  "tumbling with grace",
			w:     state.WindowConfig[word]{Size: 10 * time.Second, Grace: 5 * time.Second, EventTime: wordTime},
			words: []word{{"a", 0}, {"a", 3}, {"b", 4}, {"a", 12}, {"a", 9}, {"a", 16}, {"a", 8}, {"a", 26}},
			want: []string{
				"a@0: [0,10)=1",
				"a@3: [0,10)=2",
				"b@4: [0,10)=1",
				"a@12: [0,10)=2 [10,20)=1",
				// 9 is within the grace of [0,10), which ends at 15.
				"a@9: [0,10)=3 [10,20)=1",
				"a@16: [10,20)=2 closed [0,10)=3",
				"a@8: late",
				"a@26: [20,30)=1 closed [10,20)=2",
			},
		},
		{
			name:  "hopping",
			w:     state.WindowConfig[word]{Size: 10 * time.Second, Advance: 5 * time.Second, EventTime: wordTime},
			words: []word{{"a", 7}, {"a", 11}, {"a", 21}},
			want: []string{
				"a@7: [0,10)=1 [5,15)=1",
				"a@11: [5,15)=2 [10,20)=1 closed [0,10)=1",
				"a@21: [15,25)=1 [20,30)=1 closed [5,15)=2 closed [10,20)=1",
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runStageFormat(t, countWindows(tc.w), tc.words, formatWindows)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
}

func TestALateMessageCanGoToTheDLQ(t *testing.T) {
	w := state.WindowConfig[word]{Size: 10 * time.Second, EventTime: wordTime, LateInvalid: true}
	f := pipeline.Commit(countWindows(w)(pipeline.From[word]()))
	var commits []processor.Committable
	chain, err := f.Create(func(c processor.Committable, _ bool) error { commits = append(commits, c); return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	part := processor.Partition{Topic: "t", Index: 0}
	m := func(n int, off int64) processor.Message[word] {
		return processor.NewBrokerMessage(word{"a", n}, part, off, time.Time{})
	}
	submit(t, chain, m(25, 0))
	err = chain.Submit(m(3, 1))
	inv, ok := processor.AsInvalid(err)
	if !ok || !errors.Is(err, state.ErrLate) {
		t.Fatalf("submit of a late message: %v, want an invalid message wrapping ErrLate", err)
	}
	if inv.Offset != 1 {
		t.Fatalf("invalid message at offset %d, want 1", inv.Offset)
	}
	chain.Terminate()
}

func TestWindowMisconfiguration(t *testing.T) {
	for _, tc := range []struct {
		w    state.WindowConfig[word]
		want string
	}{
		{state.WindowConfig[word]{}, "window Size is 0s"},
		{state.WindowConfig[word]{Size: time.Second, Advance: 2 * time.Second}, "window Advance is 2s"},
		{state.WindowConfig[word]{Size: time.Second, Grace: -time.Second}, "window Grace is -1s"},
	} {
		err := pipeline.Commit(countWindows(tc.w)(pipeline.From[word]())).Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want an error saying %q", err, tc.want)
		}
	}
}
