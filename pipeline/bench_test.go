package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
)

// BenchmarkMap compares a pipeline's Map, with its payload-level function, to the
// RunTask it is built of, both ending in CommitOffsets: the difference is what the
// pipeline costs per message.
func BenchmarkMap(b *testing.B) {
	noCommit := func(processor.Committable, bool) error { return nil }
	identity := func(_ context.Context, s string) (string, error) { return s, nil }
	chains := []struct {
		name  string
		build func() processor.Strategy[string]
	}{
		{"pipeline.Map", func() processor.Strategy[string] {
			s, err := pipeline.Commit(pipeline.Map(pipeline.From[string](), identity)).Create(noCommit, nil)
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"strategies.RunTask", func() processor.Strategy[string] {
			fn := func(_ context.Context, m processor.Message[string]) (string, error) { return m.Payload, nil }
			return strategies.NewRunTask(fn, strategies.NewCommitOffsets[string](noCommit))
		}},
	}
	for _, c := range chains {
		b.Run(c.name, func(b *testing.B) {
			s := c.build()
			msg := processor.NewBrokerMessage("v", p0, 0, time.Time{})
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Submit(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
