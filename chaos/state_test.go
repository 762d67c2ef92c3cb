package chaos

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/state"
)

// stateKeys is how many keys the keyed-state case counts.
const stateKeys = 200

// stateCount is the keyed-state case: chaos-state processes count a keyed stream
// while members are killed with SIGKILL and restarted on their store directories,
// and a member joins and leaves; the counts read back from the changelog must
// equal the input's per key. With reapply the offset check is off, and the case
// instead requires the overcount that replays make, so that it shows what the check
// prevents.
func (s *suite) stateCount(t *testing.T, reapply bool) {
	bin := filepath.Join(t.TempDir(), "chaos-state")
	if b, err := exec.Command("go", "build", "-o", bin, "./cmd/chaos-state").CombinedOutput(); err != nil {
		t.Fatalf("chaos: go build ./cmd/chaos-state: %v\n%s", err, b)
	}
	env := kafkatest.New(t)
	topic, group := env.Topic(partitions), env.Group()
	changelog := env.Name("changelog")
	cl, err := state.NewKafkaChangelog(changelog, kgo.SeedBrokers(s.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := cl.Create(ctx, partitions, 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := env.Client.DeleteTopic(ctx, changelog); err != nil {
			t.Logf("chaos: %v", err)
		}
	})
	f := newFleet(t)
	dirs := t.TempDir()
	start := func(slot string) *proc {
		args := []string{"-brokers", strings.Join(s.brokers, ","), "-topic", topic, "-group", group,
			"-changelog", changelog, "-dir", filepath.Join(dirs, slot)}
		if reapply {
			args = append(args, "-reapply")
		}
		return f.start(slot, bin, args...)
	}
	slots := map[*proc]string{}
	for i := range 3 {
		slot := fmt.Sprintf("m%d", i)
		slots[start(slot)] = slot
	}
	pr := startKeyedProducer(env.Client, topic, partitions, s.size.ids, s.size.rate)
	steps := s.size.kills + 2
	for k := 1; k <= s.size.kills; k++ {
		pr.waitProduced(t, int64(s.size.ids*k/steps), drainFor)
		f.checkAlive("before a kill")
		running := f.running()
		victim := running[k%len(running)]
		f.kill(victim)
		// The successor takes the victim's directory: it restores from the local
		// copy and the changelog's tail.
		slot := slots[victim]
		slots[start(slot)] = slot
		t.Logf("chaos: kill -9 %s at %d produced; restarted on its store directory", victim.name, pr.produced.Load())
	}
	pr.waitProduced(t, int64(s.size.ids*(s.size.kills+1)/steps), drainFor)
	joiner := start("joiner")
	// The joiner stays until a tenth of the ids more have gone in, then leaves.
	pr.waitProduced(t, min(int64(s.size.ids), pr.produced.Load()+int64(s.size.ids/10)), drainFor)
	f.term(joiner)
	f.await(joiner, 60*time.Second)
	f.checkGraceful([]*proc{joiner})
	t.Logf("chaos: a member joined and left at %d produced", pr.produced.Load())

	pr.wait(t, drainFor)
	ends := endOffsets(t, env.Client, topic)
	waitCommitted(t, f, env.Client, group, topic, ends, drainFor)
	f.stopAll(60 * time.Second)
	f.checkAlive("before the end")

	want := keyedInput(t, env.Client, topic, ends)
	got := changelogCounts(t, cl)
	in, exact, over, under := 0, 0, int64(0), int64(0)
	for key, n := range want {
		in += int(n)
		switch d := got[key] - n; {
		case d == 0:
			exact++
		case d > 0:
			over += d
		default:
			under -= d
		}
	}
	label := "state-kill9"
	if reapply {
		label += "/no-offset-check"
	}
	t.Logf("chaos: %s: in %d over %d keys / keys counted exactly %d / overcount %d / undercount %d / %d kills, a join and a leave",
		label, in, len(want), exact, over, under, s.size.kills)
	if len(got) != len(want) {
		t.Errorf("chaos: %s: the changelog has %d keys, the input %d", label, len(got), len(want))
	}
	if under > 0 {
		t.Errorf("chaos: %s: %d counts missing: changes were lost", label, under)
	}
	switch {
	case !reapply && over > 0:
		t.Errorf("chaos: %s: %d messages counted twice; want every count exact", label, over)
	case reapply && over == 0:
		t.Errorf("chaos: %s: no overcount without the offset check; the kills replayed nothing, so the case shows nothing", label)
	}
}

// startKeyedProducer is startProducer's keyed twin: message i is keyed
// "key-<i mod stateKeys>", and a key always goes to the same partition.
func startKeyedProducer(cl *kafkatest.Client, topic string, partitions int32, n, rate int) *producer {
	ctx, cancel := context.WithCancel(context.Background())
	pr := &producer{cancel: cancel, done: make(chan error, 1), resume: make(chan struct{})}
	go func() {
		pr.done <- func() error {
			step := max(rate/10, 1)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < n; {
				end := min(i+step, n)
				recs := make([]*kgo.Record, 0, end-i)
				for id := i; id < end; id++ {
					k := id % stateKeys
					recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(k) % partitions,
						Key: []byte("key-" + strconv.Itoa(k)), Value: []byte("id-" + strconv.Itoa(id))})
				}
				pctx, pcancel := context.WithTimeout(ctx, 10*time.Second)
				err := cl.Produce(pctx, recs...)
				pcancel()
				if err == nil {
					pr.produced.Add(int64(len(recs)))
					i = end
				}
				select {
				case <-tick.C:
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		}()
	}()
	return pr
}

// waitCommitted waits until group has committed ends on every partition, failing
// the test if a member exits on its own or d passes.
func waitCommitted(t *testing.T, f *fleet, cl *kafkatest.Client, group, topic string, ends map[int32]int64, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		f.checkAlive("while draining")
		committed := committedNow(t, cl, group, topic, 30*time.Second)
		behind := 0
		for p, e := range ends {
			behind += int(e - committed[p])
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("chaos: %d messages still uncommitted after %v", behind, d)
		}
		<-tick.C
	}
}

// keyedInput reads the input topic back and counts it by key: a batch the producer
// wrote again after a failure is in it twice, and counted twice.
func keyedInput(t *testing.T, cl *kafkatest.Client, topic string, ends map[int32]int64) map[string]int64 {
	t.Helper()
	total := 0
	for _, e := range ends {
		total += int(e)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	recs, err := cl.Read(ctx, topic, total)
	if err != nil {
		t.Fatalf("chaos: read back %s: %v", topic, err)
	}
	want := map[string]int64{}
	for _, r := range recs {
		want[string(r.Key)]++
	}
	return want
}

// changelogCounts reads every partition of the changelog and returns each key's
// last count.
func changelogCounts(t *testing.T, cl *state.KafkaChangelog) map[string]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got := map[string]int64{}
	for p := range int32(partitions) {
		_, err := cl.Restore(ctx, p, 0, func(r state.Record) error {
			n, err := state.Int64{}.Decode(r.Value)
			got[string(r.Key)] = n
			return err
		})
		if err != nil {
			t.Fatalf("chaos: read changelog partition %d: %v", p, err)
		}
	}
	return got
}
