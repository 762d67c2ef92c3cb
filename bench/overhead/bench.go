package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
)

// bench runs the contenders against one prepared topic.
type bench struct {
	cfg     config
	brokers []string
	topic   string
	admin   *kafkatest.Client
	log     io.Writer
}

// rounds runs every contender cfg.rounds times. Each round starts with the next
// contender, so that none always runs first (cold broker caches) or last.
func (b *bench) rounds(ctx context.Context) ([]contenderResult, error) {
	end, err := b.admin.EndOffsets(ctx, b.topic)
	if err != nil {
		return nil, err
	}
	results := make([]contenderResult, len(b.cfg.contenders))
	for i, name := range b.cfg.contenders {
		results[i].Name = name
	}
	for round := range b.cfg.rounds {
		for k := range results {
			i := (round + k) % len(results)
			c, _ := contenderByName(results[i].Name)
			r, err := b.runOnce(ctx, c, round, end)
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(b.log, "round %d %-11s %10.0f messages/s from assignment (%.3f s; join %.3f s; first to last %.0f messages/s; wall %.3f s; %.2f s to stop; load %.2f)\n",
				round+1, c.name, r.MessagesPerSecond, r.Seconds, r.JoinSeconds, r.FirstToLastMessagesPerSecond, r.WallSeconds, r.StopSeconds, r.Load1)
			results[i].Runs = append(results[i].Runs, r)
		}
	}
	return results, nil
}

// runOnce consumes the whole topic once with c and a fresh group, then checks
// that the group committed the end of every partition.
func (b *bench) runOnce(ctx context.Context, c contender, round int, end map[int32]int64) (runResult, error) {
	// Garbage left by the previous run must not be collected on this one's time.
	runtime.GC()
	group := uniqueName("creek-bench-" + c.name)
	count := newCounter(b.cfg.messages)
	stopProfile, err := b.startProfile(c.name, round)
	if err != nil {
		return runResult{}, err
	}
	runCtx, cancel := context.WithTimeout(ctx, b.cfg.runTimeout)
	err = c.run(runCtx, runEnv{brokers: b.brokers, topic: b.topic, group: group, sarama: baseSarama, count: count})
	stopped := time.Since(count.base)
	cancel()
	stopProfile()
	if n := count.n.Load(); n < count.target {
		return runResult{}, fmt.Errorf("%s, round %d: consumed %d of %d messages before it ended (run error: %v, context: %v)",
			c.name, round+1, n, count.target, err, runCtx.Err())
	}
	if err != nil {
		return runResult{}, fmt.Errorf("%s, round %d: %w", c.name, round+1, err)
	}
	committed, err := b.admin.CommittedOffsets(ctx, group, b.topic)
	if err != nil {
		return runResult{}, err
	}
	join, ok := count.joined()
	if !ok {
		return runResult{}, fmt.Errorf("%s, round %d: consumed every message without noting its assignment", c.name, round+1)
	}
	consumed, span := count.consumed(), count.span()
	load1, _, _ := loadAverage()
	return runResult{
		Round:                        round + 1,
		MessagesPerSecond:            float64(count.target) / consumed.Seconds(),
		Seconds:                      consumed.Seconds(),
		JoinSeconds:                  join.Seconds(),
		FirstToLastMessagesPerSecond: float64(count.target) / span.Seconds(),
		WallSeconds:                  count.wall().Seconds(),
		Load1:                        load1,
		StopSeconds:                  (stopped - count.wall()).Seconds(),
		Duplicates:                   count.n.Load() - count.target,
		Committed:                    maps.Equal(committed, end),
	}, nil
}

// startProfile starts a CPU profile of one run if -cpuprofile is set.
func (b *bench) startProfile(name string, round int) (stop func(), err error) {
	if b.cfg.cpuProfile == "" {
		return func() {}, nil
	}
	path := fmt.Sprintf("%s-%s-%d.prof", b.cfg.cpuProfile, name, round+1)
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(b.log, "overhead: cpu profile %s: %v\n", path, err)
		}
	}, nil
}
