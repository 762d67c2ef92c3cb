package chaos

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// eosOutPartitions is the output topic's partition count in the exactly-once case.
const eosOutPartitions = 4

// eosSentinel is the value the read-back stops at.
const eosSentinel = "sentinel"

// eos copies ids from an input to an output topic through chaos-eos processes:
// the first member is killed with SIGKILL kills times mid-stream and restarted
// under the same transactional id, a second member joins after the first kill
// and leaves (SIGTERM) after the second. A read_committed reader of the output
// must then see every id exactly once with transactions; without, the same run
// must show duplicates, or the check could not fail. assignor is the group's.
func (s *suite) exactlyOnce(t *testing.T, transactional bool, assignor string) {
	c := s.newProcessorCase(t, "franz", assignor)
	out := c.env.Topic(eosOutPartitions)
	// The size CI affords, halved: every id is read back at the end.
	ids := max(s.size.ids/2, 1000)
	args := []string{"-brokers", strings.Join(s.brokers, ","), "-in", c.topic, "-out", out, "-group", c.group, "-assignor", assignor}
	start := func(slot string) *proc {
		a := args
		if transactional {
			// A restart keeps its slot's id, which fences what the killed
			// process left open.
			a = append(a, "-txn-id", c.group+"-"+slot)
		}
		return c.fleet.start(slot, s.eosBin, a...)
	}
	first := start("a")
	pr := startProducer(c.env.Client, c.topic, partitions, ids, s.size.rate)
	var second *proc
	for k := 1; k <= s.size.kills; k++ {
		pr.waitProduced(t, int64(ids*k/(s.size.kills+1)), drainFor)
		c.fleet.checkAlive("before a kill")
		if !c.awaitOutput(t, out, first) {
			t.Fatalf("chaos: %s wrote nothing for 30 s; nothing to kill mid-stream", first.name)
		}
		c.fleet.kill(first)
		t.Logf("chaos: kill -9 %s at %d ids produced", first.name, pr.produced.Load())
		first = start("a")
		switch k {
		case 1:
			second = start("b")
		case 2:
			c.fleet.term(second)
			c.fleet.await(second, 60*time.Second)
			c.fleet.checkGraceful([]*proc{second})
		}
	}
	pr.wait(t, drainFor)
	ends := endOffsets(t, c.env.Client, c.topic)
	deadline := time.Now().Add(drainFor)
	for {
		c.fleet.checkAlive("while the rest was being copied")
		committed := committedNow(t, c.env.Client, c.group, c.topic, 30*time.Second)
		done := true
		for p, e := range ends {
			done = done && committed[p] == e
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("chaos: after %v the group committed %v of end offsets %v", drainFor, committed, ends)
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.fleet.stopAll(60 * time.Second)
	c.fleet.checkAlive("before the end")

	count, err := readCommittedIDs(s.brokers, out)
	if err != nil {
		t.Fatalf("chaos: reading the output back: %v", err)
	}
	lost, dup, stray := 0, 0, 0
	for i := range ids {
		switch n := count[i]; {
		case n == 0:
			lost++
		case n > 1:
			dup += n - 1
		}
	}
	for id := range count {
		if id < 0 || id >= ids {
			stray++
		}
	}
	label := map[bool]string{true: "transactions", false: "at least once"}[transactional] + "/" + assignor
	t.Logf("chaos: exactly-once/%s: in %d / out %d distinct / lost %d / duplicates %d / unknown %d (%d kills, a member joined and left)",
		label, ids, len(count)-stray, lost, dup, stray, s.size.kills)
	if lost > 0 || stray > 0 {
		t.Errorf("chaos: exactly-once/%s: %d ids lost, %d unknown values", label, lost, stray)
	}
	switch {
	case transactional && dup > 0:
		t.Errorf("chaos: exactly-once/%s: %d duplicates seen by a read_committed reader; want none", label, dup)
	case !transactional && dup == 0:
		t.Errorf("chaos: exactly-once/%s: no duplicates after %d kills; the exactly-once check could not fail", label, s.size.kills)
	}
}

// awaitOutput waits until the output topic grows while p runs, so that p is
// killed with work under way; it reports false after 30 s without growth.
func (c *processorCase) awaitOutput(t *testing.T, topic string, p *proc) bool {
	t.Helper()
	before := sum(endOffsets(t, c.env.Client, topic))
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if p.exited() {
			return false
		}
		if sum(endOffsets(t, c.env.Client, topic)) > before {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func sum(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// readCommittedIDs writes a sentinel to every partition of topic, reads it with
// read_committed isolation up to them and counts each id ("id-<n>") it saw.
func readCommittedIDs(brokers []string, topic string) (map[int]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	w, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	defer w.Close()
	for p := range int32(eosOutPartitions) {
		if err := w.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte(eosSentinel)}).FirstErr(); err != nil {
			return nil, fmt.Errorf("write sentinel: %w", err)
		}
	}
	r, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	count := make(map[int]int)
	seen := 0
	for seen < eosOutPartitions {
		fs := r.PollFetches(ctx)
		if ctx.Err() != nil {
			return count, fmt.Errorf("%d of %d sentinels after %d ids: %w", seen, eosOutPartitions, len(count), ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			return count, err
		}
		fs.EachRecord(func(rec *kgo.Record) {
			v := string(rec.Value)
			if v == eosSentinel {
				seen++
				return
			}
			n, err := strconv.Atoi(strings.TrimPrefix(v, "id-"))
			if err != nil || !strings.HasPrefix(v, "id-") {
				n = -1
			}
			count[n]++
		})
	}
	return count, nil
}
