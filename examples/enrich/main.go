// Command enrich joins a stream of events against a table of user profiles: a
// stream-table join with creek's lookup strategy and a goka View.
//
// By default it needs nothing installed: it starts an in-process Kafka broker, fills
// the table with a goka emitter, produces a stream of events and runs a
// StreamProcessor with the chain
//
//	lookup (View of profiles) -> print -> CommitOffsets
//
// until every event is handled, then prints a summary and exits. Events of users the
// table does not know are dropped, and their offsets committed all the same.
//
//	go run ./examples/enrich
//	go run ./examples/enrich -brokers 127.0.0.1:9092 -events 100
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
	"go.uber.org/zap"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
	"github.com/creekstream/creek/strategies"
	"github.com/creekstream/creek/strategies/lookup"
)

const (
	profileTable = "profiles"
	eventTopic   = "events"
	group        = "enrich"
)

// Profile is a table value: what is known about a user.
type Profile struct {
	Name string `json:"name"`
	Plan string `json:"plan"`
}

// profileCodec is the table's goka codec: profiles are stored as JSON.
type profileCodec struct{}

func (profileCodec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func (profileCodec) Decode(data []byte) (any, error) {
	var p Profile
	err := json.Unmarshal(data, &p)
	return p, err
}

var profiles = map[string]Profile{
	"u1": {Name: "Ada", Plan: "pro"},
	"u2": {Name: "Grace", Plan: "free"},
	"u3": {Name: "Edsger", Plan: "team"},
}

// users are the keys of the events, in turn; u9 is in no profile.
var users = []string{"u1", "u2", "u3", "u9"}

var actions = []string{"login", "search", "view", "purchase", "logout"}

func main() {
	brokers := flag.String("brokers", "", "Kafka bootstrap broker host:port; empty starts an in-process broker")
	events := flag.Int("events", 20, "number of events to produce and enrich")
	timeout := flag.Duration("timeout", 30*time.Second, "give up if the events are not all handled by then")
	flag.Parse()

	logger, err := zap.NewDevelopment(zap.IncreaseLevel(zap.InfoLevel))
	if err != nil {
		fmt.Fprintln(os.Stderr, "enrich:", err)
		os.Exit(1)
	}
	defer func() { _ = logger.Sync() }()
	res, err := run(*brokers, *events, *timeout, os.Stdout, logger)
	if err != nil {
		logger.Error("enrich failed", zap.Error(err))
		os.Exit(1)
	}
	fmt.Printf("summary: %d events, %d enriched, %d dropped (user not in the table), in %s; committed offsets of %s: %v\n",
		*events, res.enriched, res.dropped, res.elapsed.Round(time.Millisecond), eventTopic, res.committed)
}

// result is what a run did.
type result struct {
	enriched, dropped int
	elapsed           time.Duration
	// committed is the group's committed offset of each partition of the stream.
	committed map[int32]int64
}

// counts is what the chain saw. It is written only on the processor's loop
// goroutine and read after Run has returned.
type counts struct {
	enriched, dropped int
	// done is closed when every event has been handled.
	done chan struct{}
	want int
}

func (c *counts) handled() {
	if c.enriched+c.dropped == c.want {
		close(c.done)
	}
}

// run enriches events events, printing each to out, and returns when all are handled.
func run(brokerAddr string, events int, timeout time.Duration, out io.Writer, log *zap.Logger) (result, error) {
	if events < 1 {
		return result{}, fmt.Errorf("-events must be at least 1, got %d", events)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	brokers := []string{brokerAddr}
	if brokerAddr == "" {
		cluster, err := kafkatest.Start()
		if err != nil {
			return result{}, err
		}
		defer cluster.Close()
		brokers = cluster.Addrs()
		log.Info("started in-process broker", zap.Strings("brokers", brokers))
	}

	gokaLog := gokaLogger{log.Named("goka").Sugar()}
	tmc := goka.NewTopicManagerConfig()
	tmc.Table.Replication = 1
	tmc.Stream.Replication = 1
	if err := createTopics(brokers, tmc); err != nil {
		return result{}, err
	}

	if err := fill(brokers, events, gokaLog); err != nil {
		return result{}, err
	}

	// The View runs for as long as the processor and is shared by every chain.
	clients := new(lookup.ViewClients)
	opts := append(clients.Options(saramaConfig(), tmc),
		goka.WithViewStorageBuilder(storage.MemoryBuilder()),
		goka.WithViewLogger(gokaLog))
	view, err := goka.NewView(brokers, profileTable, profileCodec{}, opts...)
	if err != nil {
		return result{}, errors.Join(fmt.Errorf("goka view: %w", err), clients.Close())
	}
	viewCtx, stopView := context.WithCancel(context.Background())
	viewDone := make(chan error, 1)
	go func() { viewDone <- view.Run(viewCtx) }()
	defer func() {
		stopView()
		if err := <-viewDone; err != nil {
			log.Warn("view stopped with an error", zap.Error(err))
		}
		if err := clients.Close(); err != nil {
			log.Warn("close view clients", zap.Error(err))
		}
	}()

	seen := &counts{done: make(chan struct{}), want: events}
	consumer, err := kafka.NewConsumer(kafka.ConsumerConfig{Brokers: brokers, GroupID: group, Logger: log.Named("consumer")})
	if err != nil {
		return result{}, err
	}
	proc, err := processor.New(consumer, factory(view, seen, out, log), processor.Config[processor.KafkaPayload]{
		Topics:       []string{eventTopic},
		CommitPolicy: processor.DefaultCommitPolicy(),
		Logger:       log.Named("processor"),
	})
	if err != nil {
		return result{}, errors.Join(err, consumer.Close())
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	runDone := make(chan error, 1)
	start := time.Now()
	go func() { runDone <- proc.Run(runCtx) }()

	select {
	case <-seen.done:
		stopRun()
	case err := <-runDone:
		return result{}, fmt.Errorf("processor ended before all events were handled: %w", err)
	case <-ctx.Done():
		stopRun()
		<-runDone
		return result{}, fmt.Errorf("only %d of %d events handled within %s", seen.enriched+seen.dropped, events, timeout)
	}
	if err := <-runDone; err != nil {
		return result{}, fmt.Errorf("processor: %w", err)
	}
	elapsed := time.Since(start)

	committed, err := committedOffsets(brokers)
	if err != nil {
		return result{}, err
	}
	return result{enriched: seen.enriched, dropped: seen.dropped, elapsed: elapsed, committed: committed}, nil
}

// factory builds the chain lookup -> print -> CommitOffsets.
func factory(view *goka.View, seen *counts, out io.Writer, log *zap.Logger) processor.Factory[processor.KafkaPayload] {
	return processor.FactoryFunc[processor.KafkaPayload](func(commit processor.CommitFunc, _ []processor.Partition) (processor.Strategy[processor.KafkaPayload], error) {
		commitStep := strategies.NewCommitOffsets[string](commit)
		printStep := strategies.NewRunTask(func(_ context.Context, m processor.Message[string]) (string, error) {
			pos, _ := m.Origin()
			fmt.Fprintf(out, "%s@%d: %s\n", pos.Partition, pos.Offset, m.Payload)
			seen.enriched++
			seen.handled()
			return m.Payload, nil
		}, commitStep)
		return lookup.New(view,
			func(m processor.Message[processor.KafkaPayload]) (string, error) {
				return string(m.Payload.Key), nil
			},
			func(m processor.Message[processor.KafkaPayload], p Profile, found bool) (string, error) {
				if !found {
					seen.dropped++
					seen.handled()
					return "", lookup.ErrDrop
				}
				return fmt.Sprintf("%s (%s plan) %s", p.Name, p.Plan, m.Payload.Value), nil
			},
			printStep,
			strategies.WithLogger(log.Named("lookup"))), nil
	})
}

// saramaConfig returns a new config for one goka client.
func saramaConfig() *sarama.Config {
	cfg := goka.DefaultConfig()
	// The in-process broker rejects protocol versions below 0.11.
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Compression = sarama.CompressionNone
	return cfg
}

// createTopics creates the table as a compacted topic, and the stream.
func createTopics(brokers []string, tmc *goka.TopicManagerConfig) error {
	tm, err := goka.NewTopicManager(brokers, saramaConfig(), tmc)
	if err != nil {
		return fmt.Errorf("goka topic manager: %w", err)
	}
	err = errors.Join(tm.EnsureTableExists(profileTable, 2), tm.EnsureStreamExists(eventTopic, 2))
	if err != nil {
		err = fmt.Errorf("create topics: %w", err)
	}
	return errors.Join(err, tm.Close())
}

// fill writes the profiles to the table and the events to the stream.
func fill(brokers []string, events int, log goka.Logger) error {
	table, err := goka.NewEmitter(brokers, profileTable, profileCodec{},
		goka.WithEmitterProducerBuilder(goka.ProducerBuilderWithConfig(saramaConfig())),
		goka.WithEmitterLogger(log))
	if err != nil {
		return fmt.Errorf("table emitter: %w", err)
	}
	for user, p := range profiles {
		if err := table.EmitSync(user, p); err != nil {
			return errors.Join(fmt.Errorf("emit profile %s: %w", user, err), table.Finish())
		}
	}
	if err := table.Finish(); err != nil {
		return fmt.Errorf("table emitter: %w", err)
	}

	stream, err := goka.NewEmitter(brokers, eventTopic, new(codec.String),
		goka.WithEmitterProducerBuilder(goka.ProducerBuilderWithConfig(saramaConfig())),
		goka.WithEmitterLogger(log))
	if err != nil {
		return fmt.Errorf("event emitter: %w", err)
	}
	for i := range events {
		user := users[i%len(users)]
		if _, err := stream.Emit(user, actions[i%len(actions)]); err != nil {
			return errors.Join(fmt.Errorf("emit event %d: %w", i, err), stream.Finish())
		}
	}
	// Finish waits for every emitted event to be acknowledged.
	if err := stream.Finish(); err != nil {
		return fmt.Errorf("event emitter: %w", err)
	}
	return nil
}

// committedOffsets returns the group's committed offset of every partition of the
// stream.
func committedOffsets(brokers []string) (map[int32]int64, error) {
	admin, err := sarama.NewClusterAdmin(brokers, saramaConfig())
	if err != nil {
		return nil, fmt.Errorf("cluster admin: %w", err)
	}
	defer func() { _ = admin.Close() }()
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{eventTopic: {0, 1}})
	if err != nil {
		return nil, fmt.Errorf("committed offsets of %s: %w", group, err)
	}
	out := make(map[int32]int64)
	for p, b := range resp.Blocks[eventTopic] {
		out[p] = b.Offset
	}
	return out, nil
}

// gokaLogger passes goka's logging to zap at debug level: goka reports routine
// progress through the same calls as problems.
type gokaLogger struct{ *zap.SugaredLogger }

func (l gokaLogger) Print(args ...any)                 { l.Debug(args...) }
func (l gokaLogger) Println(args ...any)               { l.Debugln(args...) }
func (l gokaLogger) Printf(format string, args ...any) { l.Debugf(format, args...) }
