package kafkatest

import (
	"context"
	"fmt"
	"sync"

	"github.com/creekstream/creek/processor"
)

// MemoryProducer is a producer (a strategies.Producer) that keeps what it is given
// in memory and resolves a delivery only when told to, in any order, so that tests
// decide when, and how, each write completes. It is safe for concurrent use.
type MemoryProducer[T any] struct {
	mu         sync.Mutex
	records    []ProducedRecord[T]
	deliveries []*processor.Delivery
	// next is the offset the next record of each topic gets.
	next map[string]int64
}

// ProducedRecord is one payload given to a MemoryProducer and where it would be
// written: partition 0 of its topic, at the next offset of that topic.
type ProducedRecord[T any] struct {
	Position processor.Position
	Payload  T
}

// NewMemoryProducer returns an empty MemoryProducer.
func NewMemoryProducer[T any]() *MemoryProducer[T] {
	return &MemoryProducer[T]{next: make(map[string]int64)}
}

// Produce records payload and returns its delivery, unresolved. When ctx is already
// done nothing is recorded and the delivery fails with ctx's error.
func (p *MemoryProducer[T]) Produce(ctx context.Context, topic string, payload T) *processor.Delivery {
	d := processor.NewDelivery()
	if err := ctx.Err(); err != nil {
		d.Resolve(processor.Position{}, err)
		return d
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	pos := processor.Position{Partition: processor.Partition{Topic: topic}, Offset: p.next[topic]}
	p.next[topic]++
	p.records = append(p.records, ProducedRecord[T]{Position: pos, Payload: payload})
	p.deliveries = append(p.deliveries, d)
	return d
}

// Produced returns what was produced so far, in order.
func (p *MemoryProducer[T]) Produced() []ProducedRecord[T] {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]ProducedRecord[T](nil), p.records...)
}

// Ack resolves the delivery of the i-th record produced (from 0) as written.
func (p *MemoryProducer[T]) Ack(i int) { p.resolve(i, nil) }

// Fail resolves the delivery of the i-th record produced (from 0) with err.
func (p *MemoryProducer[T]) Fail(i int, err error) { p.resolve(i, err) }

// AckAll resolves every delivery not yet resolved as written.
func (p *MemoryProducer[T]) AckAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, d := range p.deliveries {
		d.Resolve(p.records[i].Position, nil)
	}
}

func (p *MemoryProducer[T]) resolve(i int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if i < 0 || i >= len(p.deliveries) {
		panic(fmt.Sprintf("kafkatest: MemoryProducer: no record %d; %d were produced", i, len(p.deliveries)))
	}
	var pos processor.Position
	if err == nil {
		pos = p.records[i].Position
	}
	p.deliveries[i].Resolve(pos, err)
}
