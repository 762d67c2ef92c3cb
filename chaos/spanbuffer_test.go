package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
)

// EnvRedis names the redis-server of scripts/redis-start.
const EnvRedis = "CREEK_REDIS_ADDR"

// spanPartitions is the span topic's partition count: the span buffer's shards.
const spanPartitions = 4

// traceSet is the span stream of the span buffer case and where each span belongs.
type traceSet struct {
	records []*kgo.Record
	// segment maps every span id to the id of the segment it must come out in.
	segment map[string]string
}

// makeTraces builds n traces: a root segment with children and grandchildren, and
// under some children a nested segment of their own. A trace's spans are shuffled,
// so children often come before their parents, and share a partition.
func makeTraces(n int) traceSet {
	rng := rand.New(rand.NewPCG(3, 4))
	ts := traceSet{segment: make(map[string]string)}
	seq := uint64(0)
	id := func() string { seq++; return fmt.Sprintf("%016x", seq*0x9e3779b97f4a7c15) }
	for i := range n {
		trace := fmt.Sprintf("%032x", uint64(i+1)*0x2545f4914f6cdd1d)
		h := fnv.New32a()
		h.Write([]byte(trace))
		part := int32(h.Sum32() % spanPartitions)
		var spans []*kgo.Record
		add := func(span, parent, segment string, isSegment bool) {
			ts.segment[span] = segment
			spans = append(spans, &kgo.Record{Partition: part, Key: []byte(trace), Value: spanJSON(trace, span, parent, isSegment)})
		}
		root := id()
		add(root, "", root, true)
		for range 1 + rng.IntN(4) {
			child := id()
			if rng.IntN(4) == 0 {
				add(child, root, child, true)
				for range 1 + rng.IntN(3) {
					add(id(), child, child, false)
				}
				continue
			}
			add(child, root, root, false)
			for range rng.IntN(3) {
				add(id(), child, root, false)
			}
		}
		rng.Shuffle(len(spans), func(a, b int) { spans[a], spans[b] = spans[b], spans[a] })
		ts.records = append(ts.records, spans...)
	}
	return ts
}

func spanJSON(trace, span, parent string, isSegment bool) []byte {
	m := map[string]any{
		"project_id": 1, "organization_id": 1, "trace_id": trace, "span_id": span,
		"is_segment": isSegment, "start_timestamp": 1700000000.0, "end_timestamp": 1700000000.5,
	}
	if parent != "" {
		m["parent_span_id"] = parent
	}
	b, _ := json.Marshal(m) // plain values always marshal
	return b
}

// segmentReader reads the segment topic from the start on its own goroutine. mu
// guards seen, messages and bad; changed gets a value after every poll that
// brought records.
type segmentReader struct {
	cl      *kgo.Client
	cancel  context.CancelFunc
	done    chan struct{}
	changed chan struct{}

	mu       sync.Mutex
	seen     map[string][]string // span id -> the segment ids it came out under
	messages int
	bad      int
}

func startSegmentReader(t *testing.T, brokers []string, topic string) *segmentReader {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatalf("chaos: segment reader: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &segmentReader{cl: cl, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{}, 1), seen: make(map[string][]string)}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			fs := cl.PollFetches(ctx)
			if fs.NumRecords() == 0 {
				continue
			}
			r.mu.Lock()
			fs.EachRecord(func(rec *kgo.Record) {
				var msg struct {
					Spans []struct {
						SpanID     string `json:"span_id"`
						Attributes map[string]struct {
							Value string `json:"value"`
						} `json:"attributes"`
					} `json:"spans"`
				}
				if err := json.Unmarshal(rec.Value, &msg); err != nil {
					r.bad++
					return
				}
				r.messages++
				for _, s := range msg.Spans {
					r.seen[s.SpanID] = append(r.seen[s.SpanID], s.Attributes["sentry.segment.id"].Value)
				}
			})
			r.mu.Unlock()
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}
	}()
	t.Cleanup(func() { r.cancel(); <-r.done; cl.Close() })
	return r
}

func (r *segmentReader) count() (messages, spans int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.messages, len(r.seen)
}

// spanAccounting is the span buffer case's result.
type spanAccounting struct {
	in, out, lost, duplicates, misplaced, bad int
	example                                   string // one misplaced span, for the failure message
}

func (r *segmentReader) account(ts traceSet) spanAccounting {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := spanAccounting{in: len(ts.segment), bad: r.bad}
	for span, want := range ts.segment {
		got := r.seen[span]
		if len(got) == 0 {
			a.lost++
			continue
		}
		a.out++
		a.duplicates += len(got) - 1
		for _, g := range got {
			if g != want {
				a.misplaced++
				if a.example == "" {
					a.example = fmt.Sprintf("span %s belongs to segment %s but came out under %v", span, want, got)
				}
				break
			}
		}
	}
	return a
}

// spanbufferKill9 kill -9s span buffer processes right after a flush came out, so
// that the next one is under way, restarts them, and checks every span comes out
// in its own segment.
func (s *suite) spanbufferKill9(t *testing.T) {
	redisAddr := os.Getenv(EnvRedis)
	if redisAddr == "" {
		if requireReal() {
			t.Fatalf("chaos: %s is not set; start Redis with scripts/redis-start", EnvRedis)
		}
		t.Skipf("chaos: needs a real Redis; set %s (scripts/redis-start)", EnvRedis)
	}
	env := kafkatest.New(t)
	in, out, group := env.Topic(spanPartitions), env.Topic(1), env.Group()
	f := newFleet(t)
	args := []string{"-brokers", strings.Join(s.brokers, ","), "-redis", redisAddr, "-group", group, "-in", in, "-out-topic", out}
	for i := range 2 {
		f.start(fmt.Sprintf("sb%d", i), s.spanbuf, args...)
	}
	reader := startSegmentReader(t, s.brokers, out)
	ts := makeTraces(s.size.traces)
	for _, r := range ts.records {
		r.Topic = in
	}

	// The producer writes whole traces, about spanRate spans a second.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	produced := make(chan int, len(ts.records))
	prodDone := make(chan error, 1)
	go func() {
		step := max(s.size.spanRate/10, 1)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(ts.records); {
			end := min(i+step, len(ts.records))
			for end < len(ts.records) && string(ts.records[end].Key) == string(ts.records[end-1].Key) {
				end++
			}
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			err := env.Client.Produce(pctx, ts.records[i:end]...)
			pcancel()
			if err != nil {
				prodDone <- err
				return
			}
			produced <- end
			i = end
			select {
			case <-tick.C:
			case <-ctx.Done():
				prodDone <- ctx.Err()
				return
			}
		}
		prodDone <- nil
	}()

	rng := rand.New(rand.NewPCG(5, 6))
	total := len(ts.records)
	kills, next := 0, total/(s.size.spanKills+1)
	lastMessages := 0
	for done := false; !done; {
		select {
		case err := <-prodDone:
			if err != nil {
				t.Fatalf("chaos: producing spans: %v", err)
			}
			done = true
		case n := <-produced:
			if kills >= s.size.spanKills || n < next {
				continue
			}
			// Kill on the next segment message: a flush cycle is under way.
			waitChange(t, reader, lastMessages)
			lastMessages, _ = reader.count()
			f.checkAlive("before a kill")
			running := f.running()
			victim := running[rng.IntN(len(running))]
			f.kill(victim)
			kills++
			next = total * (kills + 1) / (s.size.spanKills + 1)
			t.Logf("chaos: kill -9 %s after %d spans produced, %d segment messages out", victim.name, n, lastMessages)
			f.start(fmt.Sprintf("sb%d", kills+1), s.spanbuf, args...)
		}
	}
	deadline := time.Now().Add(drainFor)
	for {
		f.checkAlive("while the rest was flushed")
		if _, spans := reader.count(); spans >= len(ts.segment) {
			break
		}
		if time.Now().After(deadline) {
			break
		}
		select {
		case <-reader.changed:
		case <-time.After(time.Second):
		}
	}
	f.stopAll(60 * time.Second)
	f.checkAlive("before the end")
	a := reader.account(ts)
	messages, _ := reader.count()
	t.Logf("chaos: spanbuffer-kill9/sarama: in %d / out %d / lost %d / duplicates %d / misplaced %d (segment messages %d, undecodable %d, kills %d)",
		a.in, a.out, a.lost, a.duplicates, a.misplaced, messages, a.bad, kills)
	if a.lost > 0 {
		t.Errorf("chaos: span buffer: %d spans never came out", a.lost)
	}
	if a.misplaced > 0 {
		t.Errorf("chaos: span buffer: %d spans came out in a segment not their own; e.g. %s", a.misplaced, a.example)
	}
	if a.bad > 0 {
		t.Errorf("chaos: span buffer: %d output messages are not segments", a.bad)
	}
}

// waitChange waits until the reader has more than seen segment messages.
func waitChange(t *testing.T, r *segmentReader, seen int) {
	t.Helper()
	deadline := time.After(drainFor)
	for {
		if m, _ := r.count(); m > seen {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			t.Fatalf("chaos: no segment came out within %v", drainFor)
		}
	}
}
