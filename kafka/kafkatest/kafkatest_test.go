package kafkatest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestEnvRoundTrip(t *testing.T) {
	env := New(t)
	topic := env.Topic(3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var recs []*kgo.Record
	for i := range 6 {
		recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(i % 3), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := env.Client.Produce(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	got, err := env.Client.Read(ctx, topic, 6)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 6 {
		t.Fatalf("Read returned %d records, want 6", len(got))
	}
	ends, err := env.Client.EndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		if ends[p] != 2 {
			t.Errorf("end offset of partition %d = %d, want 2 (ends %v)", p, ends[p], ends)
		}
	}
	committed, err := env.Client.CommittedOffsets(ctx, env.Group(), topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(committed) != 0 {
		t.Errorf("a group that never committed has offsets %v", committed)
	}
}

func TestNamesAreUnique(t *testing.T) {
	env := &Env{t: t}
	a, b := env.Name("topic"), env.Name("topic")
	if a == b || !strings.HasPrefix(a, "creek-topic-TestNamesAreUnique-") {
		t.Fatalf("Name gave %q and %q; want distinct names starting with creek-topic-TestNamesAreUnique-", a, b)
	}
}

// fatalTB records Fatalf and ends the goroutine the way testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestBrokersRequireRealFailsWithoutBrokers(t *testing.T) {
	t.Setenv(EnvBrokers, "")
	t.Setenv(EnvRequireReal, "1")
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Brokers(tb)
	}()
	<-done
	if !strings.Contains(tb.msg, EnvBrokers) {
		t.Fatalf("Brokers with %s=1 and no brokers: failure %q, want one naming %s", EnvRequireReal, tb.msg, EnvBrokers)
	}
}

func TestBrokersUsesRealWhenSet(t *testing.T) {
	t.Setenv(EnvBrokers, " 10.0.0.1:9092, 10.0.0.2:9092 ")
	got := Brokers(t)
	if len(got) != 2 || got[0] != "10.0.0.1:9092" || got[1] != "10.0.0.2:9092" {
		t.Fatalf("Brokers = %q, want the two addresses of %s", got, EnvBrokers)
	}
}
