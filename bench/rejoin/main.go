// Command rejoin measures how long a consumer group's partitions stall when its
// member is killed with SIGKILL and restarted at once, with and without static
// membership (InstanceID), on both backends, against a real broker.
//
//	scripts/kafka-start && source scripts/.run/kafka.env
//	go run ./bench/rejoin -brokers "$CREEK_KAFKA_BROKERS" -rounds 3
//
// Each run starts a member in a child process, waits until it consumes from every
// partition, kills it, starts it again with the same settings and times the stall:
// from the kill to the moment the restarted member has consumed from every
// partition again. A producer writes to every partition meanwhile. A dynamic member
// comes back as a new member, and the group waits for the dead one's session to
// expire before it rebalances; a static one takes its partitions back as soon as
// it has joined.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/creekstream/creek/kafka/kafkatest"
)

func main() {
	var (
		brokers    = flag.String("brokers", os.Getenv(kafkatest.EnvBrokers), "comma-separated brokers")
		rounds     = flag.Int("rounds", 3, "interleaved rounds of every backend and mode")
		backends   = flag.String("backends", "sarama,franz", "backends to measure")
		partitions = flag.Int("partitions", 4, "partitions of the topic")
		session    = flag.Duration("session", 10*time.Second, "group session timeout of the members")
		child      = flag.Bool("child", false, "run as the member (internal)")
		backend    = flag.String("backend", "", "the child's backend (internal)")
		group      = flag.String("group", "", "the child's group (internal)")
		instance   = flag.String("instance", "", "the child's instance id (internal)")
		topic      = flag.String("topic", "", "the child's topic (internal)")
	)
	flag.Parse()
	if *brokers == "" {
		log.Fatalf("rejoin: no brokers; pass -brokers or set %s", kafkatest.EnvBrokers)
	}
	addrs := strings.Split(*brokers, ",")
	if *child {
		if err := runMember(addrs, *backend, *group, *instance, *topic, *session); err != nil {
			log.Fatalf("rejoin member: %v", err)
		}
		return
	}
	if err := run(addrs, strings.Split(*backends, ","), *rounds, int32(*partitions), *session); err != nil {
		log.Fatalf("rejoin: %v", err)
	}
}

// adminTimeout bounds each admin call on the broker.
const adminTimeout = 30 * time.Second

func run(brokers, backends []string, rounds int, partitions int32, session time.Duration) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	admin, err := kafkatest.NewClient(brokers)
	if err != nil {
		return err
	}
	defer admin.Close()
	topic := "creek-rejoin-" + suffix()
	setup, cancelSetup := context.WithTimeout(ctx, adminTimeout)
	defer cancelSetup()
	if err := admin.CreateTopic(setup, topic, partitions); err != nil {
		return err
	}
	defer func() {
		cleanup, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := admin.DeleteTopic(cleanup, topic); err != nil {
			log.Printf("rejoin: %v", err)
		}
	}()
	stopProducer, err := produce(ctx, brokers, topic, partitions)
	if err != nil {
		return err
	}
	defer stopProducer()

	type key struct{ backend, mode string }
	stalls := map[key][]time.Duration{}
	var order []key
	for _, b := range backends {
		for _, mode := range []string{"dynamic", "static"} {
			order = append(order, key{b, mode})
		}
	}
	for round := range rounds {
		for k := range order {
			c := order[(round+k)%len(order)]
			stall, err := measure(brokers, topic, c.backend, c.mode == "static", partitions, session)
			if err != nil {
				return fmt.Errorf("%s %s: %w", c.backend, c.mode, err)
			}
			fmt.Printf("round %d  %-6s %-7s stall %6.2f s\n", round+1, c.backend, c.mode, stall.Seconds())
			stalls[c] = append(stalls[c], stall)
		}
	}
	fmt.Printf("\nstall after kill -9 and an immediate restart, session timeout %s, %d partitions, %d rounds\n", session, partitions, rounds)
	fmt.Printf("%-8s %-8s %8s %18s\n", "backend", "mode", "median", "range")
	for _, c := range order {
		s := slices.Clone(stalls[c])
		slices.Sort(s)
		fmt.Printf("%-8s %-8s %7.2fs %8.2fs - %.2fs\n", c.backend, c.mode, s[len(s)/2].Seconds(), s[0].Seconds(), s[len(s)-1].Seconds())
	}
	return nil
}

// measure runs one member, kills it once it consumes everywhere, restarts it and
// returns the time from the kill until the restarted member consumed everywhere.
func measure(brokers []string, topic, backend string, static bool, partitions int32, session time.Duration) (time.Duration, error) {
	group := "creek-rejoin-" + backend + "-" + suffix()
	instance := ""
	if static {
		instance = "member-a"
	}
	first, err := startMember(brokers, topic, backend, group, instance, session)
	if err != nil {
		return 0, err
	}
	if err := first.awaitAll(partitions, 2*session+time.Minute); err != nil {
		first.kill()
		return 0, fmt.Errorf("first member: %w", err)
	}
	killed := time.Now()
	first.kill()
	second, err := startMember(brokers, topic, backend, group, instance, session)
	if err != nil {
		return 0, err
	}
	defer second.stop()
	if err := second.awaitAll(partitions, 2*session+time.Minute); err != nil {
		return 0, fmt.Errorf("restarted member: %w", err)
	}
	return second.allAt.Sub(killed), nil
}

// member is a child process running one group member. It prints "consumed <p>" the
// first time it handles a message of partition p.
type member struct {
	cmd   *exec.Cmd
	lines chan string
	allAt time.Time
	wg    sync.WaitGroup
}

func startMember(brokers []string, topic, backend, group, instance string, session time.Duration) (*member, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-child", "-brokers", strings.Join(brokers, ","), "-backend", backend,
		"-group", group, "-instance", instance, "-topic", topic, "-session", session.String())
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	m := &member{cmd: cmd, lines: make(chan string, 64)}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		defer close(m.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m.lines <- sc.Text()
		}
	}()
	return m, nil
}

// awaitAll waits until the member has consumed from every partition.
func (m *member) awaitAll(partitions int32, timeout time.Duration) error {
	seen := map[string]bool{}
	deadline := time.After(timeout)
	for len(seen) < int(partitions) {
		select {
		case line, ok := <-m.lines:
			if !ok {
				return fmt.Errorf("the member exited after consuming from %d of %d partitions", len(seen), partitions)
			}
			if p, ok := strings.CutPrefix(line, "consumed "); ok {
				seen[p] = true
			}
		case <-deadline:
			return fmt.Errorf("the member consumed from %d of %d partitions within %s", len(seen), partitions, timeout)
		}
	}
	m.allAt = time.Now()
	go func() {
		for range m.lines {
		}
	}()
	return nil
}

func (m *member) kill() {
	_ = m.cmd.Process.Kill()
	_ = m.cmd.Wait()
	m.wg.Wait()
}

func (m *member) stop() {
	_ = m.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		_ = m.cmd.Process.Kill()
		<-done
	}
	m.wg.Wait()
}

// produce writes a record to every partition every 5 ms until the returned
// function is called.
func produce(ctx context.Context, brokers []string, topic string, partitions int32) (func(), error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			for p := range partitions {
				cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: p, Value: []byte("x")}, nil)
			}
		}
	}()
	return func() {
		cancel()
		<-done
		cl.Close()
	}, nil
}

func suffix() string {
	b := make([]byte, 4)
	_, _ = io.ReadFull(rand.Reader, b)
	return hex.EncodeToString(b)
}
