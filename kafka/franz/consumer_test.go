package franz_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/kafka/franz"
	"github.com/creekstream/creek/kafka/kafkatest"
	"github.com/creekstream/creek/processor"
)

func TestConsumerConfigErrors(t *testing.T) {
	base := franz.ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, GroupID: "g"}
	cases := []struct {
		name string
		edit func(*franz.ConsumerConfig)
		want string
	}{
		{"no brokers", func(c *franz.ConsumerConfig) { c.Brokers = nil }, "Brokers is empty"},
		{"no group", func(c *franz.ConsumerConfig) { c.GroupID = "" }, "GroupID is empty"},
		{"unknown assignor", func(c *franz.ConsumerConfig) { c.Assignor = "fair" }, `Assignor "fair" is unknown`},
		{"unknown initial offset", func(c *franz.ConsumerConfig) { c.InitialOffset = 7 }, "InitialOffset 7 is unknown"},
		{"negative timeout", func(c *franz.ConsumerConfig) { c.SessionTimeout = -time.Second }, "SessionTimeout is -1s"},
		{"heartbeat too long", func(c *franz.ConsumerConfig) { c.HeartbeatInterval = time.Minute }, "HeartbeatInterval (1m0s) must be shorter than SessionTimeout"},
		{"revoke too long", func(c *franz.ConsumerConfig) { c.RevokeTimeout = 2 * time.Minute }, "RevokeTimeout is 2m0s"},
		{"negative poll records", func(c *franz.ConsumerConfig) { c.MaxPollRecords = -1 }, "MaxPollRecords is -1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base
			tc.edit(&cfg)
			_, err := franz.NewConsumer(cfg)
			if err == nil || !strings.HasPrefix(err.Error(), "franz: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("NewConsumer = %v; want an error starting %q that says %q", err, "franz: ", tc.want)
			}
		})
	}
	c, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: base.Brokers, GroupID: "g", Assignor: "Cooperative-Sticky"})
	if err != nil {
		t.Fatalf("NewConsumer with defaults: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close before Subscribe: %v", err)
	}
	if err := c.Subscribe([]string{"t"}, processor.RebalanceCallbacks{}); !errors.Is(err, kafka.ErrClosed) {
		t.Fatalf("Subscribe after Close = %v, want kafka.ErrClosed", err)
	}
}

func TestSubscribeRejectsATopicThatCannotExist(t *testing.T) {
	c, err := franz.NewConsumer(franz.ConsumerConfig{Brokers: []string{"127.0.0.1:1"}, GroupID: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Subscribe([]string{"no spaces allowed", "fine", ".."}, processor.RebalanceCallbacks{})
	for _, bad := range []string{"no spaces allowed", ".."} {
		// The rules and their wording are package kafka's, for both backends.
		if want := kafka.ValidateTopic(bad).Error(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Subscribe = %v; want an error containing kafka.ValidateTopic's %q", err, want)
		}
	}
	if _, _, err := c.Poll(context.Background(), time.Millisecond); !errors.Is(err, kafka.ErrNotSubscribed) {
		t.Fatalf("Poll before a successful Subscribe = %v, want kafka.ErrNotSubscribed", err)
	}
}

func TestSubscribeRefusesAutoTopicCreation(t *testing.T) {
	c, err := franz.NewConsumer(franz.ConsumerConfig{
		Brokers: []string{"127.0.0.1:1"}, GroupID: "g",
		ClientOptions: []kgo.Opt{kgo.AllowAutoTopicCreation()},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Subscribe([]string{"orders"}, processor.RebalanceCallbacks{})
	if err == nil || !strings.HasPrefix(err.Error(), "franz: ") || !strings.Contains(err.Error(), "AllowAutoTopicCreation") {
		t.Fatalf("Subscribe with kgo.AllowAutoTopicCreation = %v; want a franz: error naming the option", err)
	}
}

// loop polls c on the test's goroutine, recording callbacks, until cond holds.
type loop struct {
	t      *testing.T
	c      *franz.Consumer
	events []string
	msgs   []processor.Message[payload]
}

func subscribe(t *testing.T, c *franz.Consumer, topic string) *loop {
	t.Helper()
	l := &loop{t: t, c: c}
	err := c.Subscribe([]string{topic}, processor.RebalanceCallbacks{
		OnAssign: func(added []processor.Partition) { l.events = append(l.events, fmt.Sprint("assign ", added)) },
		OnRevoke: func(revoked []processor.Partition) { l.events = append(l.events, fmt.Sprint("revoke ", revoked)) },
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return l
}

func (l *loop) until(what string, cond func() bool) {
	l.t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			l.t.Fatalf("timed out after %s waiting for %s; events %v, %d messages", waitFor, what, l.events, len(l.msgs))
		}
		msg, ok, err := l.c.Poll(context.Background(), 20*time.Millisecond)
		if err != nil {
			l.t.Fatalf("Poll while waiting for %s: %v", what, err)
		}
		if ok {
			l.msgs = append(l.msgs, msg)
		}
	}
}

func (l *loop) fromPartition(p int32) []int64 {
	var out []int64
	for _, m := range l.msgs {
		pos, _ := m.Origin()
		if pos.Partition.Index == p {
			out = append(out, pos.Offset)
		}
	}
	return out
}

func TestPauseStopsAPartitionAndResumeDeliversItInOrder(t *testing.T) {
	env := kafkatest.New(t)
	topic, group := env.Topic(2), env.Group()
	l := subscribe(t, newConsumer(t, env, group, ""), topic)
	l.until("the assignment", func() bool { return len(l.c.Assignment()) == 2 })
	p0 := processor.Partition{Topic: topic, Index: 0}
	l.c.Pause([]processor.Partition{p0})
	if got := l.c.Paused(); len(got) != 1 || got[0] != p0 {
		t.Fatalf("Paused() = %v, want [%v]", got, p0)
	}
	env.Fill(topic, 2, 50, plain)
	l.until("partition 1's 50 messages", func() bool { return len(l.fromPartition(1)) == 50 })
	if got := l.fromPartition(0); len(got) != 0 {
		t.Fatalf("paused partition 0 delivered offsets %v", got)
	}
	l.c.Resume([]processor.Partition{p0})
	if got := l.c.Paused(); len(got) != 0 {
		t.Fatalf("Paused() after Resume = %v, want none", got)
	}
	l.until("partition 0's 50 messages after Resume", func() bool { return len(l.fromPartition(0)) >= 50 })
	for i, off := range l.fromPartition(0) {
		if off != int64(i) {
			t.Fatalf("partition 0 delivered %v; want offsets 0..49 in order, once each", l.fromPartition(0))
		}
	}
	for _, m := range l.msgs {
		pos, _ := m.Origin()
		if want := plain(pos.Partition.Index, int(pos.Offset)); string(m.Payload.Value) != want {
			t.Fatalf("message at %v holds %q, want %q", pos, m.Payload.Value, want)
		}
	}
}

func TestRebalanceEventsEagerAndCooperative(t *testing.T) {
	for _, tc := range []struct {
		assignor string
		// revokedFirst is how many partitions A's first revocation names.
		revokedFirst int
	}{
		{franz.AssignorRange, 4},
		{franz.AssignorCooperativeSticky, 2},
	} {
		t.Run(tc.assignor, func(t *testing.T) {
			env := kafkatest.New(t)
			topic, group := env.Topic(4), env.Group()
			a := subscribe(t, newConsumer(t, env, group, tc.assignor), topic)
			a.until("A's assignment", func() bool { return len(a.c.Assignment()) == 4 })
			b := subscribe(t, newConsumer(t, env, group, tc.assignor), topic)
			// Both loops must keep polling for the group to settle.
			deadline := time.Now().Add(waitFor)
			for len(a.c.Assignment()) != 2 || len(b.c.Assignment()) != 2 {
				if time.Now().After(deadline) {
					t.Fatalf("timed out waiting for a 2+2 split; A %v events %v, B %v events %v", a.c.Assignment(), a.events, b.c.Assignment(), b.events)
				}
				_, _, _ = a.c.Poll(context.Background(), 10*time.Millisecond)
				_, _, _ = b.c.Poll(context.Background(), 10*time.Millisecond)
			}
			if len(a.events) < 2 || !strings.HasPrefix(a.events[1], "revoke ") {
				t.Fatalf("A's events %v; want an assignment, then a revocation", a.events)
			}
			if n := strings.Count(a.events[1], topic); n != tc.revokedFirst {
				t.Errorf("A's first revocation %q names %d partitions, want %d", a.events[1], n, tc.revokedFirst)
			}
			if tc.assignor == franz.AssignorCooperativeSticky && len(a.events) != 2 {
				t.Errorf("under cooperative-sticky A's events are %v; want only the first assignment and one revocation of the moving partitions", a.events)
			}
		})
	}
}

func TestCommitFetchAndNotOwned(t *testing.T) {
	env := kafkatest.New(t)
	topic, group := env.Topic(1), env.Group()
	env.Fill(topic, 1, 10, plain)
	c := newConsumer(t, env, group, "")
	if err := c.Commit(context.Background(), map[processor.Partition]int64{{Topic: topic}: 1}); !errors.Is(err, kafka.ErrNotSubscribed) {
		t.Fatalf("Commit before Subscribe = %v, want kafka.ErrNotSubscribed", err)
	}
	l := subscribe(t, c, topic)
	l.until("10 messages", func() bool { return len(l.msgs) == 10 })
	p := processor.Partition{Topic: topic, Index: 0}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c.Commit(ctx, map[processor.Partition]int64{p: 7}); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	committed, err := env.Client.CommittedOffsets(ctx, group, topic)
	if err != nil || committed[0] != 7 {
		t.Fatalf("committed %v (err %v), want partition 0 at exactly 7", committed, err)
	}
	other := processor.Partition{Topic: topic, Index: 5}
	if err := c.Commit(ctx, map[processor.Partition]int64{other: 1}); !errors.Is(err, franz.ErrNotOwned) {
		t.Fatalf("Commit of a partition not owned = %v, want franz.ErrNotOwned", err)
	}

	msg, err := c.Fetch(ctx, processor.Position{Partition: p, Offset: 4})
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if pos, _ := msg.Origin(); pos.Offset != 4 || string(msg.Payload.Value) != "0-4" {
		t.Fatalf("Fetch returned %q at %v, want \"0-4\" at offset 4", msg.Payload.Value, pos)
	}
	if _, err := c.Fetch(ctx, processor.Position{Partition: p, Offset: 100}); !errors.Is(err, kafka.ErrOffsetGone) {
		t.Fatalf("Fetch past the end = %v, want kafka.ErrOffsetGone", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := c.Fetch(short, processor.Position{Partition: p, Offset: 10}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch at the end = %v; want it to wait for the message until the context ends", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Fetch(ctx, processor.Position{Partition: p, Offset: 4}); !errors.Is(err, kafka.ErrClosed) {
		t.Fatalf("Fetch after Close = %v, want kafka.ErrClosed", err)
	}
	if err := c.Commit(ctx, map[processor.Partition]int64{p: 8}); !errors.Is(err, kafka.ErrClosed) {
		t.Fatalf("Commit after Close = %v, want kafka.ErrClosed", err)
	}
}

func TestProducerResolvesDeliveriesInOrder(t *testing.T) {
	env := kafkatest.New(t)
	topic := env.Topic(1)
	p, err := franz.NewProducer(franz.ProducerConfig{Brokers: env.Brokers, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var ds []*processor.Delivery
	for i := range 100 {
		// A context that ends as soon as Produce returns, as the DLQ's does, must
		// not cancel the record.
		ctx, cancel := context.WithCancel(context.Background())
		ds = append(ds, p.Produce(ctx, topic, payload{Key: []byte("k"), Value: fmt.Appendf(nil, "v%d", i), Headers: []processor.Header{{Key: "h", Value: []byte("x")}}}))
		cancel()
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for i, d := range ds {
		pos, err := d.Wait(ctx)
		if err != nil {
			t.Fatalf("delivery %d: %v", i, err)
		}
		if pos.Partition.Topic != topic || pos.Offset != int64(i) {
			t.Fatalf("delivery %d at %v; want %s offset %d", i, pos, topic, i)
		}
	}
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := p.Produce(ctx, topic, payload{Value: []byte("late")}).Wait(ctx); !errors.Is(err, kafka.ErrProducerClosed) {
		t.Fatalf("Produce after Close = %v, want kafka.ErrProducerClosed", err)
	}
	recs, err := env.Client.Read(ctx, topic, 100)
	if err != nil || len(recs) != 100 {
		t.Fatalf("read %d records (err %v), want 100", len(recs), err)
	}
	if r := recs[99]; string(r.Value) != "v99" || string(r.Key) != "k" || len(r.Headers) != 1 || r.Headers[0].Key != "h" {
		t.Fatalf("last record %q key %q headers %v; want v99, k and header h", r.Value, r.Key, r.Headers)
	}
	if _, err := franz.NewProducer(franz.ProducerConfig{}); err == nil || !strings.HasPrefix(err.Error(), "franz: ") {
		t.Fatalf("NewProducer without brokers = %v, want a franz: error", err)
	}
}

func TestConsumerSessionLost(t *testing.T) {
	for _, fault := range []kafkatest.SessionFault{
		kafkatest.HeartbeatError(kerr.IllegalGeneration, 1),
		kafkatest.HeartbeatError(kerr.UnknownMemberID, 1),
	} {
		t.Run(fault.Name, func(t *testing.T) {
			cl, err := kafkatest.Start()
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			env := kafkatest.NewOn(t, cl)
			topic := env.Topic(2)
			env.Fill(topic, 2, 5, plain)
			kafkatest.CheckSessionLost(t, cl, newConsumer(t, env, env.Group(), ""), topic, 2, 5, fault)
		})
	}
}

func TestConsumerFailsWhenTheBrokerRefusesATopic(t *testing.T) {
	const refused = "creek-refused"
	cl, err := kafkatest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	// The in-process broker answers UNKNOWN_TOPIC_OR_PARTITION for any name;
	// a real one with stricter rules answers INVALID_TOPIC_EXCEPTION.
	cl.ControlKey(kmsg.Metadata.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
		cl.KeepControl()
		mreq := req.(*kmsg.MetadataRequest)
		if !slices.ContainsFunc(mreq.Topics, func(rt kmsg.MetadataRequestTopic) bool { return rt.Topic != nil && *rt.Topic == refused }) {
			return nil, nil, false
		}
		resp := mreq.ResponseKind().(*kmsg.MetadataResponse)
		resp.Version = mreq.Version
		for _, rt := range mreq.Topics {
			st := kmsg.NewMetadataResponseTopic()
			st.Topic = rt.Topic
			st.ErrorCode = kerr.InvalidTopicException.Code
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	env := kafkatest.NewOn(t, cl)
	c := newConsumer(t, env, env.Group(), "")
	defer c.Close()
	if err := c.Subscribe([]string{refused}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	ctx := env.Context(waitFor)
	for {
		_, _, err := c.Poll(ctx, 100*time.Millisecond)
		if err == nil {
			continue
		}
		if !errors.Is(err, kerr.InvalidTopicException) || !strings.Contains(err.Error(), refused) || !strings.HasPrefix(err.Error(), "franz: ") {
			t.Fatalf("Poll error = %v, want a franz: error wrapping kerr.InvalidTopicException that names %s", err, refused)
		}
		return
	}
}

// A Close while the group's join hangs gives up on leaving after CloseTimeout,
// logs it and returns no error once the join returns: the broker ends the
// member's session.
func TestCloseDuringAHangingJoinGivesUpOnLeaving(t *testing.T) {
	cl, err := kafkatest.Start()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	release := make(chan struct{})
	var releaseOnce sync.Once
	unblock := func() { releaseOnce.Do(func() { close(release) }) }
	defer unblock()
	joining := make(chan struct{}, 1)
	cl.ControlKey(kmsg.JoinGroup.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		cl.KeepControl()
		select {
		case joining <- struct{}{}:
		default:
		}
		<-release // the broker answers nothing until the leave has been given up
		return nil, nil, false
	})
	env := kafkatest.NewOn(t, cl)
	const warning = "leaving the group did not finish within CloseTimeout"
	warned := make(chan struct{}, 1)
	core, logs := observer.New(zap.WarnLevel)
	c, err := franz.NewConsumer(franz.ConsumerConfig{
		Brokers: env.Brokers, GroupID: env.Group(),
		CloseTimeout: 200 * time.Millisecond,
		Logger: zap.New(core, zap.Hooks(func(e zapcore.Entry) error {
			if strings.HasPrefix(e.Message, warning) {
				warned <- struct{}{}
			}
			return nil
		})),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe([]string{env.Topic(1)}, processor.RebalanceCallbacks{}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	receive(t, joining, "the consumer's JoinGroup")
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	receive(t, warned, "Close giving up on leaving the group")
	// kgo's own Close still waits for the join under way to return.
	unblock()
	if err := receive(t, closed, "Close to return once the join was answered"); err != nil {
		t.Fatalf("Close = %v, want nil: a leave that cannot finish is logged, not failed", err)
	}
	if n := logs.FilterMessageSnippet(warning).Len(); n != 1 {
		t.Fatalf("%d warnings about the unfinished leave, want 1", n)
	}
}
