package chaos

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/kafka/kafkatest"
)

// partitions is the input topic's partition count in the processor cases.
const partitions = 8

// drainFor bounds the wait for the consumers to process what is left once the
// producer is done.
const drainFor = 3 * time.Minute

var backends = []string{"sarama", "franz"}

func TestChaos(t *testing.T) {
	s := newSuite(t)
	t.Run("kill9", func(t *testing.T) {
		for _, b := range backends {
			t.Run(b, func(t *testing.T) { s.kill9(t, b) })
		}
	})
	t.Run("churn", func(t *testing.T) {
		for _, assignor := range []string{"range", "cooperative-sticky"} {
			t.Run(assignor, func(t *testing.T) {
				for _, b := range backends {
					t.Run(b, func(t *testing.T) { s.churn(t, b, assignor) })
				}
			})
		}
	})
	t.Run("broker-outage", func(t *testing.T) {
		for _, b := range backends {
			t.Run(b, func(t *testing.T) { s.outage(t, b) })
		}
	})
	t.Run("state-kill9", func(t *testing.T) {
		t.Run("offset-check", func(t *testing.T) { s.stateCount(t, false) })
		t.Run("no-offset-check", func(t *testing.T) { s.stateCount(t, true) })
	})
	t.Run("exactly-once", func(t *testing.T) {
		t.Run("transactions", func(t *testing.T) { s.exactlyOnce(t, true, "range") })
		t.Run("transactions-cooperative-sticky", func(t *testing.T) { s.exactlyOnce(t, true, "cooperative-sticky") })
		t.Run("at-least-once", func(t *testing.T) { s.exactlyOnce(t, false, "range") })
	})
	t.Run("spanbuffer-kill9", s.spanbufferKill9)
	t.Run("spanbuffer-shared-redis", s.spanbufferShared)
	t.Run("spanbuffer-redis-loss", s.spanbufferRedisLoss)
}

// processorCase is the setup every processor case shares: a topic, a group, the
// fleet of consumer processes, what they recorded and the group's commits.
type processorCase struct {
	s       *suite
	env     *kafkatest.Env
	topic   string
	group   string
	args    []string
	fleet   *fleet
	tally   *tally
	commits *commitLog
}

func (s *suite) newProcessorCase(t *testing.T, backend, assignor string) *processorCase {
	env := kafkatest.New(t)
	c := &processorCase{s: s, env: env, topic: env.Topic(partitions), group: env.Group(), fleet: newFleet(t), tally: newTally()}
	c.args = []string{"-backend", backend, "-brokers", strings.Join(s.brokers, ","), "-topic", c.topic, "-group", c.group, "-assignor", assignor, "-out", outFile}
	c.commits = startCommitLog(env.Client, c.group, c.topic)
	t.Cleanup(func() { c.commits.stop() })
	return c
}

func (c *processorCase) start(name string) *proc {
	return c.fleet.start(name, c.s.consumer, c.args...)
}

// finish waits for everything produced to be processed, stops the consumers
// cleanly, checks they committed to the end and returns the accounting.
func (c *processorCase) finish(t *testing.T, pr *producer, allowed int) accounting {
	t.Helper()
	pr.wait(t, drainFor)
	ends := endOffsets(t, c.env.Client, c.topic)
	c.tally.waitProcessed(t, c.fleet, ends, drainFor)
	c.fleet.stopAll(60 * time.Second)
	c.fleet.checkAlive("before the end")
	c.tally.update(t, c.fleet)
	committed := committedNow(t, c.env.Client, c.group, c.topic, 30*time.Second)
	for p, e := range ends {
		if committed[p] != e {
			t.Errorf("chaos: partition %d: committed %d after a clean shutdown, end offset %d", p, committed[p], e)
		}
	}
	a := account(t, c.env.Client, c.topic, ends, c.tally.lines, c.commits.stop())
	a.allowed = allowed
	return a
}

// kill9 kill -9s a member several times while ids flow, restarting it each time,
// and checks nothing is lost and only what was in flight is processed twice.
func (s *suite) kill9(t *testing.T, backend string) {
	c := s.newProcessorCase(t, backend, "range")
	const members = 3
	for i := range members {
		c.start(fmt.Sprintf("m%d", i))
	}
	pr := startProducer(c.env.Client, c.topic, partitions, s.size.ids, s.size.rate)
	allowed := 0
	for k := 1; k <= s.size.kills; k++ {
		pr.waitProduced(t, int64(s.size.ids*k/(s.size.kills+1)), drainFor)
		c.fleet.checkAlive("before a kill")
		victim := c.busiest(t)
		c.fleet.kill(victim)
		// What the victim processed at or past the committed offsets, once it is
		// dead, is what its successor will process again.
		c.tally.update(t, c.fleet)
		committed := committedNow(t, c.env.Client, c.group, c.topic, 30*time.Second)
		idx := indexOf(c.fleet, victim)
		n := inFlight(c.tally.lines, idx, committed)
		allowed += n
		t.Logf("chaos: kill -9 %s at %d produced: %d in flight since its last commit", victim.name, pr.produced.Load(), n)
		c.start(fmt.Sprintf("m%d", k))
	}
	c.finish(t, pr, allowed).check(t, "kill9/"+backend)
}

// churn has members join and leave (SIGTERM) while ids flow: a graceful leave
// commits, so nothing may be lost or processed twice.
func (s *suite) churn(t *testing.T, backend, assignor string) {
	c := s.newProcessorCase(t, backend, assignor)
	c.start("m0")
	c.start("m1")
	pr := startProducer(c.env.Client, c.topic, partitions, s.size.ids, s.size.rate)
	rng := rand.New(rand.NewPCG(7, uint64(len(assignor))))
	var left []*proc
	joins, leaves := 0, 0
	tick := time.NewTicker(s.size.churnEvery)
	defer tick.Stop()
	for produced := false; !produced; {
		select {
		case err := <-pr.done:
			if err != nil {
				t.Fatalf("chaos: producer: %v", err)
			}
			pr.done <- nil // for finish
			produced = true
			continue
		case <-tick.C:
		}
		c.fleet.checkAlive("during churn")
		c.fleet.checkGraceful(left)
		running := c.fleet.running()
		if len(running) <= 1 || (len(running) < 5 && rng.IntN(2) == 0) {
			joins++
			c.start(fmt.Sprintf("j%d", joins))
			continue
		}
		leaves++
		p := running[rng.IntN(len(running))]
		c.fleet.term(p)
		left = append(left, p)
	}
	for _, p := range left {
		c.fleet.await(p, 60*time.Second)
	}
	c.fleet.checkGraceful(left)
	t.Logf("chaos: churn %s/%s: %d joins, %d graceful leaves while %d ids were produced", assignor, backend, joins, leaves, s.size.ids)
	c.finish(t, pr, 0).check(t, "churn/"+assignor+"/"+backend)
}

// outage stops the broker mid-stream and starts it again on the same data and
// port: every consumer must stay alive through it and lose nothing.
func (s *suite) outage(t *testing.T, backend string) {
	s.requireOwnBroker(t)
	c := s.newProcessorCase(t, backend, "range")
	for i := range 3 {
		c.start(fmt.Sprintf("m%d", i))
	}
	pr := startProducer(c.env.Client, c.topic, partitions, s.size.ids, s.size.rate)
	pr.waitProduced(t, int64(s.size.ids/3), drainFor)
	pr.hold()
	c.fleet.checkAlive("before the outage")
	// Anything processed at or past what is committed now may be processed again
	// if the members lose their partitions in the outage.
	before := committedNow(t, c.env.Client, c.group, c.topic, 30*time.Second)
	start := time.Now()
	s.script(t, "kafka-stop")
	down := time.Now()
	t.Logf("chaos: broker stopped in %v; down for %v", down.Sub(start).Round(time.Millisecond), s.size.outage)
	// The outage is the time the broker is down; the members are watched through it.
	deadline := time.NewTimer(s.size.outage)
	watch := time.NewTicker(200 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case <-deadline.C:
			waiting = false
		case <-watch.C:
			c.fleet.checkAlive("while the broker was down")
		}
	}
	watch.Stop()
	cmd := s.scriptCmd("kafka-start")
	cmd.Env = append(os.Environ(), "CREEK_KAFKA_KEEP_DATA=1")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chaos: scripts/kafka-start with CREEK_KAFKA_KEEP_DATA=1: %v\n%s", err, b)
	}
	up := time.Now()
	c.fleet.checkAlive("while the broker was down or starting")
	t.Logf("chaos: broker unreachable for %v (stop %v, down %v, start %v)",
		up.Sub(start).Round(time.Millisecond), down.Sub(start).Round(time.Millisecond), s.size.outage, up.Sub(down.Add(s.size.outage)).Round(time.Millisecond))
	pr.release()
	c.tally.update(t, c.fleet)
	allowed := 0
	for _, l := range c.tally.lines {
		if l.offset >= before[l.partition] {
			allowed++
		}
	}
	c.finish(t, pr, allowed).check(t, "broker-outage/"+backend)
	for _, p := range c.fleet.all() {
		n, first := grepLog(p.stderr, "lost")
		t.Logf("chaos: %s logged %d warnings or errors naming lost partitions; first: %s", p.name, n, first)
	}
}

// grepLog counts the WARN and ERROR lines of file that contain word, ignoring
// case, and returns the first.
func grepLog(file, word string) (int, string) {
	b, _ := os.ReadFile(file)
	n, first := 0, ""
	for _, l := range strings.Split(string(b), "\n") {
		if (strings.Contains(l, "\tWARN\t") || strings.Contains(l, "\tERROR\t")) && strings.Contains(strings.ToLower(l), word) {
			if n == 0 {
				first = l
			}
			n++
		}
	}
	return n, first
}

// requireOwnBroker skips (fails with CREEK_REQUIRE_REAL=1) unless the broker under
// test is the one scripts/kafka-start runs in this checkout, which the outage
// stops and starts.
func (s *suite) requireOwnBroker(t *testing.T) {
	t.Helper()
	env, err := os.ReadFile(s.scripts + "/.run/kafka.env")
	want := "export " + kafkatest.EnvBrokers + "=" + strings.Join(s.brokers, ",")
	if err != nil || !strings.Contains(string(env), want+"\n") {
		msg := fmt.Sprintf("chaos: the broker outage needs the broker of this checkout's scripts/kafka-start (scripts/.run/kafka.env saying %q)", want)
		if requireReal() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func (s *suite) scriptCmd(name string, args ...string) *exec.Cmd {
	return exec.Command(s.scripts+"/"+name, args...)
}

func (s *suite) script(t *testing.T, name string, args ...string) {
	t.Helper()
	if b, err := s.scriptCmd(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("chaos: scripts/%s: %v\n%s", name, err, b)
	}
}

// busiest waits until a running process has processed a message within the last
// 300 ms and returns it: a member that holds partitions mid-stream, with work in
// flight, rather than one waiting in a rebalance.
func (c *processorCase) busiest(t *testing.T) *proc {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		c.tally.update(t, c.fleet)
		all := c.fleet.all()
		var best *proc
		var at int64
		for _, l := range c.tally.lines {
			if p := all[l.proc]; !p.exited() && !p.stopped.Load() && l.at > at {
				best, at = p, l.at
			}
		}
		if best != nil && time.Since(time.Unix(0, at)) < 300*time.Millisecond {
			return best
		}
		if time.Now().After(deadline) {
			t.Fatal("chaos: no member processed anything for 30 s; nothing to kill mid-stream")
		}
		<-tick.C
	}
}

func indexOf(f *fleet, p *proc) int {
	for i, q := range f.all() {
		if q == p {
			return i
		}
	}
	return -1
}
