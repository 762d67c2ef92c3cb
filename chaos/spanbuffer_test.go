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

// makeTraces builds the traces first to first+n-1: a root segment with children
// and grandchildren, and under some children a nested segment of their own. A
// trace's spans are shuffled, so children often come before their parents, and
// share a partition. Sets of disjoint ranges share no trace or span id.
func makeTraces(first, n int) traceSet {
	rng := rand.New(rand.NewPCG(3, uint64(first)))
	ts := traceSet{segment: make(map[string]string)}
	// A trace has at most 17 spans, so 32 ids per trace keep the ranges apart.
	seq := uint64(first) * 32
	id := func() string { seq++; return fmt.Sprintf("%016x", seq*0x9e3779b97f4a7c15) }
	for i := first; i < first+n; i++ {
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
	// stray counts extra copies in a segment not their own of spans that also came
	// out in their own: what a span read again after its segment was flushed (its
	// batch not yet committed) would form without the store's record of flushed
	// spans, a fragment without the segment's earlier spans.
	stray int
	// foreign counts spans that came out here but belong to another deployment.
	foreign int
	// example and strayExample describe one misplaced span and one stray copy, for
	// the failure messages.
	example, strayExample string
}

func (a spanAccounting) String() string {
	return fmt.Sprintf("in %d / out %d / lost %d / duplicates %d / misplaced %d (stray copies %d, foreign %d, undecodable %d)",
		a.in, a.out, a.lost, a.duplicates, a.misplaced, a.stray, a.foreign, a.bad)
}

// check logs a and fails the test on a lost, misplaced (no copy in its own
// segment), stray (a copy in a segment not its own besides one in its own), foreign
// or undecodable output; duplicates in their own segment are reported, not bounded.
func (a spanAccounting) check(t *testing.T, label string) {
	t.Helper()
	t.Logf("chaos: %s: %s", label, a)
	if a.lost > 0 {
		t.Errorf("chaos: %s: %d spans never came out", label, a.lost)
	}
	if a.misplaced > 0 {
		t.Errorf("chaos: %s: %d spans came out only in a segment not their own; e.g. %s", label, a.misplaced, a.example)
	}
	if a.stray > 0 {
		t.Errorf("chaos: %s: %d extra copies of spans came out in a segment not their own; e.g. %s", label, a.stray, a.strayExample)
	}
	if a.foreign > 0 {
		t.Errorf("chaos: %s: %d spans of another deployment came out here", label, a.foreign)
	}
	if a.bad > 0 {
		t.Errorf("chaos: %s: %d output messages are not segments", label, a.bad)
	}
}

func (r *segmentReader) account(ts traceSet) spanAccounting {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := spanAccounting{in: len(ts.segment), bad: r.bad}
	for span := range r.seen {
		if _, ok := ts.segment[span]; !ok {
			a.foreign++
		}
	}
	for span, want := range ts.segment {
		got := r.seen[span]
		if len(got) == 0 {
			a.lost++
			continue
		}
		a.out++
		a.duplicates += len(got) - 1
		own := 0
		for _, g := range got {
			if g == want {
				own++
			}
		}
		switch {
		case own == 0:
			a.misplaced++
			if a.example == "" {
				a.example = fmt.Sprintf("span %s belongs to segment %s but came out under %v", span, want, got)
			}
		case own < len(got):
			a.stray += len(got) - own
			if a.strayExample == "" {
				a.strayExample = fmt.Sprintf("span %s belongs to segment %s but came out under %v", span, want, got)
			}
		}
	}
	return a
}

// redisAddr returns the real Redis of the span buffer cases, or skips t (fails it
// with CREEK_REQUIRE_REAL=1).
func redisAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv(EnvRedis)
	if addr == "" {
		if requireReal() {
			t.Fatalf("chaos: %s is not set; start Redis with scripts/redis-start", EnvRedis)
		}
		t.Skipf("chaos: needs a real Redis; set %s (scripts/redis-start)", EnvRedis)
	}
	return addr
}

// deployment is one span buffer: its topics, group, process arguments, the trace
// set it is fed and a reader of its segments.
type deployment struct {
	in, out, group string
	args           []string
	ts             traceSet
	reader         *segmentReader
}

func (s *suite) newDeployment(t *testing.T, env *kafkatest.Env, redis string, first, traces int) *deployment {
	d := &deployment{in: env.Topic(spanPartitions), out: env.Topic(1), group: env.Group(), ts: makeTraces(first, traces)}
	d.args = []string{"-brokers", strings.Join(s.brokers, ","), "-redis", redis, "-group", d.group, "-in", d.in, "-out-topic", d.out}
	for _, r := range d.ts.records {
		r.Topic = d.in
	}
	d.reader = startSegmentReader(t, s.brokers, d.out)
	return d
}

// produceSpans writes d's spans, whole traces at a time, about rate a second, on its
// own goroutine. It sends the count written so far on produced after every batch
// (produced must hold them all) and the outcome on the returned channel.
func (d *deployment) produceSpans(ctx context.Context, cl *kafkatest.Client, rate int, produced chan<- int) <-chan error {
	done := make(chan error, 1)
	recs := d.ts.records
	go func() {
		step := max(rate/10, 1)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; i < len(recs); {
			end := min(i+step, len(recs))
			for end < len(recs) && string(recs[end].Key) == string(recs[end-1].Key) {
				end++
			}
			pctx, pcancel := context.WithTimeout(ctx, 30*time.Second)
			err := cl.Produce(pctx, recs[i:end]...)
			pcancel()
			if err != nil {
				done <- err
				return
			}
			if produced != nil {
				produced <- end
			}
			i = end
			select {
			case <-tick.C:
			case <-ctx.Done():
				done <- ctx.Err()
				return
			}
		}
		done <- nil
	}()
	return done
}

// waitAllOut waits until every span of d came out, at most limit, while f's
// processes stay alive.
func (d *deployment) waitAllOut(f *fleet, limit time.Duration) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		f.checkAlive("while the rest was flushed")
		if _, spans := d.reader.count(); spans >= len(d.ts.segment) {
			return
		}
		select {
		case <-d.reader.changed:
		case <-time.After(time.Second):
		}
	}
}

// spanbufferKill9 kill -9s span buffer processes right after a flush came out, so
// that the next one is under way, restarts them, and checks every span comes out
// in its own segment.
func (s *suite) spanbufferKill9(t *testing.T) {
	redis := redisAddr(t)
	env := kafkatest.New(t)
	d := s.newDeployment(t, env, redis, 0, s.size.traces)
	f := newFleet(t)
	for i := range 2 {
		f.start(fmt.Sprintf("sb%d", i), s.spanbuf, d.args...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	produced := make(chan int, len(d.ts.records))
	prodDone := d.produceSpans(ctx, env.Client, s.size.spanRate, produced)

	rng := rand.New(rand.NewPCG(5, 6))
	total := len(d.ts.records)
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
			waitChange(t, d.reader, lastMessages)
			lastMessages, _ = d.reader.count()
			f.checkAlive("before a kill")
			running := f.running()
			victim := running[rng.IntN(len(running))]
			f.kill(victim)
			kills++
			next = total * (kills + 1) / (s.size.spanKills + 1)
			t.Logf("chaos: kill -9 %s after %d spans produced, %d segment messages out", victim.name, n, lastMessages)
			f.start(fmt.Sprintf("sb%d", kills+1), s.spanbuf, d.args...)
		}
	}
	d.waitAllOut(f, drainFor)
	f.stopAll(60 * time.Second)
	f.checkAlive("before the end")
	messages, _ := d.reader.count()
	t.Logf("chaos: spanbuffer-kill9: %d kills, %d segment messages", kills, messages)
	d.reader.account(d.ts).check(t, "spanbuffer-kill9")
}

// spanbufferShared runs two span buffer deployments (groups and topics of their
// own) on one Redis at once: each must put out all of its spans and none of the
// other's.
func (s *suite) spanbufferShared(t *testing.T) {
	redis := redisAddr(t)
	env := kafkatest.New(t)
	ds := []*deployment{
		s.newDeployment(t, env, redis, 0, s.size.traces/2),
		s.newDeployment(t, env, redis, s.size.traces, s.size.traces/2),
	}
	f := newFleet(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var dones []<-chan error
	for i, d := range ds {
		f.start(fmt.Sprintf("dep%d", i), s.spanbuf, d.args...)
		dones = append(dones, d.produceSpans(ctx, env.Client, s.size.spanRate/2, nil))
	}
	for _, done := range dones {
		if err := <-done; err != nil {
			t.Fatalf("chaos: producing spans: %v", err)
		}
	}
	for _, d := range ds {
		d.waitAllOut(f, drainFor)
	}
	f.stopAll(60 * time.Second)
	f.checkAlive("before the end")
	for i, d := range ds {
		d.reader.account(d.ts).check(t, fmt.Sprintf("spanbuffer-shared-redis/deployment%d", i))
	}
}

// spanbufferRedisLoss restarts the redis-server, which has no persistence, while
// spans flow: every span must still come out, in its own segment. The span buffer
// commits a batch's offsets only once its segments are produced, and notices from
// its marker that Redis lost its data, so it reads the lost spans again.
func (s *suite) spanbufferRedisLoss(t *testing.T) {
	redis := redisAddr(t)
	s.requireOwnRedis(t, redis)
	env := kafkatest.New(t)
	d := s.newDeployment(t, env, redis, 0, s.size.traces)
	f := newFleet(t)
	for i := range 2 {
		f.start(fmt.Sprintf("sb%d", i), s.spanbuf, d.args...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	produced := make(chan int, len(d.ts.records))
	prodDone := d.produceSpans(ctx, env.Client, s.size.spanRate, produced)
	restarted := false
	for done := false; !done; {
		select {
		case err := <-prodDone:
			if err != nil {
				t.Fatalf("chaos: producing spans: %v", err)
			}
			done = true
		case n := <-produced:
			if restarted || n < len(d.ts.records)/2 {
				continue
			}
			f.checkAlive("before Redis was restarted")
			start := time.Now()
			s.script(t, "redis-restart")
			restarted = true
			t.Logf("chaos: redis-server restarted empty in %v after %d spans produced", time.Since(start).Round(time.Millisecond), n)
		}
	}
	// Ten segment timeouts after the last span: what has not come out by then
	// never will.
	d.waitAllOut(f, time.Minute)
	f.stopAll(60 * time.Second)
	f.checkAlive("before the end")
	d.reader.account(d.ts).check(t, "spanbuffer-redis-loss")
	for _, p := range f.all() {
		n, first := grepLog(p.stderr, "")
		t.Logf("chaos: %s logged %d warnings or errors; first: %s", p.name, n, first)
	}
}

// requireOwnRedis skips (fails with CREEK_REQUIRE_REAL=1) unless addr is the
// redis-server of this checkout's scripts/redis-start, which the case restarts.
func (s *suite) requireOwnRedis(t *testing.T, addr string) {
	t.Helper()
	env, err := os.ReadFile(s.scripts + "/.run/redis.env")
	if err != nil || !strings.Contains(string(env), "export "+EnvRedis+"="+addr+"\n") {
		msg := fmt.Sprintf("chaos: restarting Redis needs the redis-server of this checkout's scripts/redis-start at %s", addr)
		if requireReal() {
			t.Fatal(msg)
		}
		t.Skip(msg)
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
