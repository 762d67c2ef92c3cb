package state

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/lovoo/goka/storage"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ErrNotOwned is what Table.Get returns for a key whose partition this member does
// not hold, or whose store is still restoring: another member (or this one, soon)
// has its value. A service answering reads routes the request there, or asks again.
var ErrNotOwned = errors.New("state: the key's partition is not assigned to this member, or its store is restoring")

// Table reads the current values of a state from outside the pipeline, for an
// HTTP handler, say. Give it to the state in Config.Table; it then sees the store
// of every partition the member holds and has restored. A read returns the last
// value the changelog has acknowledged, not one still in flight.
//
// It is safe for concurrent use: mu guards stores, which the processor's loop
// changes as partitions come and go; goka's stores take reads beside their writer.
type Table[V any] struct {
	partition func(key string) int32
	mu        sync.RWMutex
	stores    map[int32]tableStore[V]
}

type tableStore[V any] struct {
	st    storage.Storage
	codec Codec[V]
}

// NewTable returns a Table that finds a key's partition with partition, which must
// be the one the input's producers use (KafkaPartitioner for Kafka's default).
func NewTable[V any](partition func(key string) int32) *Table[V] {
	if partition == nil {
		panic("state: NewTable: partition function is nil; pass state.KafkaPartitioner(n) for keys partitioned as Kafka does")
	}
	return &Table[V]{partition: partition, stores: map[int32]tableStore[V]{}}
}

// KafkaPartitioner returns the partition of a key among partitions as Kafka's
// default partitioner picks it (murmur2), which franz-go, sarama's hash partitioner
// with the Java hash, and the Java client use for keyed records.
func KafkaPartitioner(partitions int32) func(key string) int32 {
	tp := kgo.StickyKeyPartitioner(nil).ForTopic("")
	return func(key string) int32 {
		return int32(tp.Partition(&kgo.Record{Key: []byte(key)}, int(partitions)))
	}
}

// Get returns the value of key, and whether it has one. For a key of a partition
// this member does not hold, or holds but is restoring, it returns an error wrapping
// ErrNotOwned.
func (t *Table[V]) Get(ctx context.Context, key string) (V, bool, error) {
	var v V
	if err := ctx.Err(); err != nil {
		return v, false, err
	}
	p := t.partition(key)
	t.mu.RLock()
	defer t.mu.RUnlock()
	ts, ok := t.stores[p]
	if !ok {
		return v, false, fmt.Errorf("state: get %q of partition %d: %w", key, p, ErrNotOwned)
	}
	b, err := ts.st.Get(key)
	if err != nil || b == nil {
		return v, false, err
	}
	if v, err = ts.codec.Decode(b); err != nil {
		return v, false, fmt.Errorf("state: get %q: %w", key, err)
	}
	return v, true, nil
}

func (t *Table[V]) add(p int32, st storage.Storage, codec Codec[V]) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stores[p] = tableStore[V]{st, codec}
}

// remove forgets p's store if it is st; once it returns, no read uses st.
func (t *Table[V]) remove(p int32, st storage.Storage) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stores[p].st == st {
		delete(t.stores, p)
	}
}
