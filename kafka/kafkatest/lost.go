package kafkatest

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/creekstream/creek/processor"
)

// SessionFault is a way to end a member's group session without a rebalance.
type SessionFault struct {
	Name string
	// Inject arranges for the next requests of the member to fail on c.
	Inject func(c *Cluster)
}

// HeartbeatError answers the next n Heartbeats with code, as a coordinator does
// that no longer knows the member's generation (kerr.IllegalGeneration) or the
// member (kerr.UnknownMemberID), or that is going away
// (kerr.CoordinatorNotAvailable).
func HeartbeatError(code *kerr.Error, n int) SessionFault {
	return SessionFault{Name: fmt.Sprintf("%d heartbeats %s", n, code.Message), Inject: func(c *Cluster) {
		var left atomic.Int32
		left.Store(int32(n))
		c.ControlKey(kmsg.Heartbeat.Int16(), func(req kmsg.Request) (kmsg.Response, error, bool) {
			if left.Add(-1) > 0 {
				c.KeepControl()
			}
			resp := req.ResponseKind().(*kmsg.HeartbeatResponse)
			resp.ErrorCode = code.Code
			return resp, nil, true
		})
	}}
}

// CheckSessionLost runs consumer, subscribed to topic (partitions partitions of
// perPartition records each, all on c), until it has read everything, injects
// fault, and checks that the consumer calls OnLost, not OnRevoke, for every
// partition; that it never sends an OffsetCommit; and that it rejoins, is
// assigned the partitions again and reads them again from the start, since
// nothing was committed. It closes consumer.
func CheckSessionLost(t *testing.T, c *Cluster, consumer processor.Consumer[processor.KafkaPayload], topic string, partitions int32, perPartition int, fault SessionFault) {
	t.Helper()
	defer consumer.Close()
	var commits atomic.Int32
	c.ControlKey(kmsg.OffsetCommit.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		commits.Add(1)
		return nil, nil, false
	})
	all := make([]processor.Partition, partitions)
	for i := range all {
		all[i] = processor.Partition{Topic: topic, Index: int32(i)}
	}
	// The callbacks run inside Poll, on this goroutine.
	var events []string
	if err := consumer.Subscribe([]string{topic}, processor.RebalanceCallbacks{
		OnAssign: func(ps []processor.Partition) { events = append(events, fmt.Sprint("assign ", ps)) },
		OnRevoke: func(ps []processor.Partition) { events = append(events, fmt.Sprint("revoke ", ps)) },
		OnLost:   func(ps []processor.Partition) { events = append(events, fmt.Sprint("lost ", ps)) },
	}); err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	read := make(map[processor.Partition]int)
	// poll polls until done says so, failing the test at the deadline.
	poll := func(what string, done func() bool) {
		t.Helper()
		for !done() {
			msg, ok, err := consumer.Poll(ctx, 100*time.Millisecond)
			if err != nil {
				t.Fatalf("Poll while waiting for %s: %v (events %q)", what, err, events)
			}
			if !ok {
				continue
			}
			pos, ok := msg.Origin()
			if !ok {
				t.Fatalf("message %s has no broker origin", msg.Committable)
			}
			if want := int64(read[pos.Partition]); pos.Offset != want {
				t.Fatalf("while waiting for %s: got offset %d of %s, want %d", what, pos.Offset, pos.Partition, want)
			}
			read[pos.Partition]++
		}
	}
	readAll := func() bool {
		for _, p := range all {
			if read[p] < perPartition {
				return false
			}
		}
		return true
	}
	assigned := fmt.Sprint("assign ", all)
	poll("every record", func() bool { return readAll() && slices.Contains(events, assigned) })
	if want := []string{assigned}; !slices.Equal(events, want) {
		t.Fatalf("events before the fault %q, want %q", events, want)
	}
	fault.Inject(c)
	lost := fmt.Sprint("lost ", all)
	poll("OnLost", func() bool { return len(events) > 1 })
	if events[1] != lost {
		t.Fatalf("after %s the consumer's first callback was %q, want %q", fault.Name, events[1], lost)
	}
	// Nothing was committed, so the next session reads from the start again.
	clear(read)
	poll("the new assignment and every record again", func() bool { return readAll() && len(events) > 2 })
	if want := []string{assigned, lost, assigned}; !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}
	if n := commits.Load(); n != 0 {
		t.Errorf("the consumer sent %d OffsetCommit requests; it must send none of its own", n)
	}
}
