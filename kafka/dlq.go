package kafka

// DLQProducer holds no state of its own beyond what NewDLQProducer sets; Produce
// may be called from any goroutine, as Producer.Produce may.

import (
	"context"
	"strconv"

	"github.com/creekstream/creek/processor"
)

// Headers the DLQ producer adds to every dead-lettered message.
const (
	HeaderOriginalTopic     = "original_topic"
	HeaderOriginalPartition = "original_partition"
	HeaderOriginalOffset    = "original_offset"
	HeaderReason            = "reason"
)

// Writer writes one payload to a topic asynchronously and returns its delivery.
// Producer and franz.Producer are Writers.
type Writer interface {
	Produce(ctx context.Context, topic string, payload processor.KafkaPayload) *processor.Delivery
}

// DLQProducer sends invalid messages to a dead-letter topic: the original key,
// value and headers, plus headers saying where the message was read and why it
// was rejected. It works with either backend's producer.
type DLQProducer struct {
	p     Writer
	topic string
}

var _ processor.DLQProducer[processor.KafkaPayload] = (*DLQProducer)(nil)

// NewDLQProducer returns a DLQProducer writing to topic through p, a Producer or
// a franz.Producer. p stays owned by the caller, who closes it.
func NewDLQProducer(p Writer, topic string) *DLQProducer {
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
		processor.Header{Key: HeaderOriginalTopic, Value: []byte(inv.Partition.Topic)},
		processor.Header{Key: HeaderOriginalPartition, Value: strconv.AppendInt(nil, int64(inv.Partition.Index), 10)},
		processor.Header{Key: HeaderOriginalOffset, Value: strconv.AppendInt(nil, inv.Offset, 10)},
		processor.Header{Key: HeaderReason, Value: []byte(inv.Reason)},
	)
	return d.p.Produce(ctx, d.topic, out)
}
