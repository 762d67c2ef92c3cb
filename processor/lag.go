package processor

import (
	"strconv"

	"github.com/creekstream/creek/metrics"
)

// watermarker is a Consumer that knows how far its partitions reach, for the lag
// gauges. kafka.Consumer, franz.Consumer and processortest.Consumer implement it.
type watermarker interface {
	// Watermarks calls yield once for every partition whose high watermark the
	// consumer knows (it may include a partition it is releasing: the processor
	// reports only those it has assigned). highWatermark is the latest the
	// consumer has seen, from its fetches or a periodic ListOffsets; committed is
	// the group's committed offset for the partition as the consumer knows it, -1
	// when it knows none. It is called from the processor's loop about once a
	// second and must not wait for the network; yield must not call the consumer.
	Watermarks(yield func(p Partition, highWatermark, committed int64))
}

// lagGauges is the processor's side of the lag gauges.
type lagGauges struct {
	// source is the consumer, if it knows its high watermarks; nil otherwise.
	source watermarker
}

// newLagGauges returns the lag gauges for consumer.
func newLagGauges[T any](consumer Consumer[T]) lagGauges {
	w, _ := consumer.(watermarker)
	return lagGauges{source: w}
}

// recordLag sets consumer.lag and consumer.position_lag for every assigned
// partition the consumer knows the high watermark of. It runs on the loop's
// goroutine with the other gauges, about once a second: it reads the loop's
// committed and submitted offsets, and the consumer answers from memory.
//
// consumer.lag is the high watermark minus the group's committed offset: this
// processor's last commit of the partition, or else the offset the group had
// committed when the partition was assigned, as the consumer knows it. With
// neither (the group never committed the partition) it is not set until the first
// commit. consumer.position_lag is the high watermark minus the loop's position:
// the next offset after the last message submitted to the strategy, or the
// committed offset before the first one; it is not set when neither is known
// either. Both are clamped at 0: a high watermark older than the offsets read from
// it is stale, not a negative lag. A revoked partition is no longer assigned, so
// its gauges are not set again, and forgetLag drops them.
func (p *StreamProcessor[T]) recordLag() {
	if p.lag.source == nil {
		return
	}
	// The submitted offset of the partition in use waits in the hot cache.
	p.flushIn()
	p.lag.source.Watermarks(func(part Partition, high, committed int64) {
		if !p.assigned[part] {
			return
		}
		if own, ok := p.committed[part]; ok && own > committed {
			committed = own
		}
		position := committed
		if sub, ok := p.submitted[part]; ok && sub > position {
			position = sub
		}
		if position < 0 {
			return
		}
		partition := strconv.FormatInt(int64(part.Index), 10)
		if committed >= 0 {
			p.metrics.Gauge("consumer.lag", float64(max(high-committed, 0)),
				metrics.Tag{Key: "topic", Value: part.Topic}, metrics.Tag{Key: "partition", Value: partition})
		}
		p.metrics.Gauge("consumer.position_lag", float64(max(high-position, 0)),
			metrics.Tag{Key: "topic", Value: part.Topic}, metrics.Tag{Key: "partition", Value: partition})
	})
}

// forgetLag drops the lag gauges of partitions this member no longer has, so that a
// backend that keeps series (Prometheus) does not go on showing their last values:
// the partition's new owner reports it.
func (p *StreamProcessor[T]) forgetLag(parts []Partition) {
	if p.lag.source == nil {
		return
	}
	for _, part := range parts {
		partition := strconv.FormatInt(int64(part.Index), 10)
		tags := []metrics.Tag{{Key: "topic", Value: part.Topic}, {Key: "partition", Value: partition}}
		p.metrics.ForgetGauge("consumer.lag", tags...)
		p.metrics.ForgetGauge("consumer.position_lag", tags...)
	}
}
