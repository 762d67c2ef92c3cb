package franz

// DLQProducer holds no state of its own beyond what NewDLQProducer sets; Produce
// may be called from any goroutine, as Producer.Produce may.

import (
	"context"
	"strconv"

	"github.com/creekstream/creek/kafka"
	"github.com/creekstream/creek/processor"
)

// DLQProducer sends invalid messages to a dead-letter topic: the original key,
// value and headers, plus package kafka's headers (kafka.HeaderOriginalTopic,
// HeaderOriginalPartition, HeaderOriginalOffset, HeaderReason) saying where the
// message was read and why it was rejected.
type DLQProducer struct {
	p     *Producer
	topic string
}

var _ processor.DLQProducer[processor.KafkaPayload] = (*DLQProducer)(nil)

// NewDLQProducer returns a DLQProducer writing to topic through p. p stays owned
// by the caller, who closes it.
func NewDLQProducer(p *Producer, topic string) *DLQProducer {
	return &DLQProducer{p: p, topic: topic}
}

// Produce writes msg's payload to the dead-letter topic with the origin headers
// of inv.
func (d *DLQProducer) Produce(ctx context.Context, msg processor.Message[processor.KafkaPayload], inv *processor.InvalidMessageError) *processor.Delivery {
	in := msg.Payload
	out := processor.KafkaPayload{
		Key:     in.Key,
		Value:   in.Value,
		Headers: make([]processor.Header, 0, len(in.Headers)+4),
	}
	out.Headers = append(out.Headers, in.Headers...)
	out.Headers = append(out.Headers,
		processor.Header{Key: kafka.HeaderOriginalTopic, Value: []byte(inv.Partition.Topic)},
		processor.Header{Key: kafka.HeaderOriginalPartition, Value: strconv.AppendInt(nil, int64(inv.Partition.Index), 10)},
		processor.Header{Key: kafka.HeaderOriginalOffset, Value: strconv.AppendInt(nil, inv.Offset, 10)},
		processor.Header{Key: kafka.HeaderReason, Value: []byte(inv.Reason)},
	)
	return d.p.Produce(ctx, d.topic, out)
}
