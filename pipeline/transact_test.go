package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/creekstream/creek/pipeline"
	"github.com/creekstream/creek/processor"
)

// txnLog records, in order, what a transactional sink does: the records it
// writes, each with the offsets it is written for, and the offsets it stages.
type txnLog struct {
	events []string
	fail   error
}

func (l *txnLog) Produce(_ context.Context, topic string, p processor.KafkaPayload, from processor.Committable) error {
	if l.fail != nil {
		return l.fail
	}
	l.events = append(l.events, fmt.Sprintf("produce %s %s for %s", topic, p.Value, from))
	return nil
}

func (l *txnLog) stage(c processor.Committable, force bool) error {
	if c.Len() > 0 || force {
		l.events = append(l.events, fmt.Sprintf("stage %s force=%v", c, force))
	}
	return nil
}

func kafkaMsg(v string, offset int64) processor.Message[processor.KafkaPayload] {
	return processor.NewBrokerMessage(processor.KafkaPayload{Value: []byte(v)}, p0, offset, time.Unix(1, 0))
}

// TestTransactWritesEveryOutputBeforeItsOffsetsAreStaged checks the sink's one
// promise: a record is written, for its input's offsets, in the same Submit that
// stages them and before it does, so a commit between Submits finds the
// transaction holding exactly the outputs of what it commits. FlatMap outputs
// that carry no offsets wait for the one that does; filtered messages only stage.
func TestTransactWritesEveryOutputBeforeItsOffsetsAreStaged(t *testing.T) {
	log := &txnLog{}
	split := pipeline.FlatMap(pipeline.FromKafka(), func(_ context.Context, p processor.KafkaPayload) ([]processor.KafkaPayload, error) {
		var out []processor.KafkaPayload
		for _, w := range strings.Fields(string(p.Value)) {
			out = append(out, processor.KafkaPayload{Value: []byte(w)})
		}
		return out, nil
	})
	kept := pipeline.Filter(split, func(_ context.Context, p processor.KafkaPayload) bool { return string(p.Value) != "drop" })
	f := pipeline.Transact(kept, log, "out")
	if err := f.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := f.Create(log.stage, []processor.Partition{p0})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range []string{"a b c", "drop", "d"} {
		if err := s.Submit(kafkaMsg(v, int64(i))); err != nil {
			t.Fatalf("Submit %q: %v", v, err)
		}
		if err := s.Poll(); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if err := s.Join(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"produce out a for {t/0:1}", "produce out b for {t/0:1}", "produce out c for {t/0:1}", "stage {t/0:1} force=false",
		// Filter holds the dropped message's offset; the next one covers it.
		"produce out d for {t/0:3}", "stage {t/0:3} force=false",
		"stage {} force=true",
	}
	if !slices.Equal(log.events, want) {
		t.Fatalf("events:\n  %s\nwant:\n  %s", strings.Join(log.events, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestTransactRefusesAMissingProducerOrTopic(t *testing.T) {
	for _, tc := range []struct {
		name  string
		prod  pipeline.TxnProducer
		topic string
		want  string
	}{
		{"no producer", nil, "out", "producer is nil"},
		{"no topic", &txnLog{}, "", "topic is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pipeline.Transact(pipeline.FromKafka(), tc.prod, tc.topic).Validate()
			if err == nil || !strings.Contains(err.Error(), "step 1 (Transact)") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v; want step 1 (Transact) to say %q", err, tc.want)
			}
		})
	}
}

func TestTransactStopsOnARefusedWrite(t *testing.T) {
	refused := errors.New("refused")
	log := &txnLog{fail: refused}
	s, err := pipeline.Transact(pipeline.FromKafka(), log, "out").Create(log.stage, []processor.Partition{p0})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Terminate()
	if err := s.Submit(kafkaMsg("a", 0)); !errors.Is(err, refused) {
		t.Fatalf("Submit = %v; want the producer's error", err)
	}
	if len(log.events) != 0 {
		t.Fatalf("a refused write staged offsets: %v", log.events)
	}
}
