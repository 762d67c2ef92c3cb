package segments

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/creekstream/creek/metrics"
)

// safeMetrics records the span buffer's metrics. A backend that panics loses that
// one figure, never the goroutine: a metrics failure for one shard must not stop the
// flushing of the others, nor the consumer's loop.
type safeMetrics struct {
	m   metrics.Metrics
	log *zap.Logger
}

func (s safeMetrics) count(name string, v int64, tags ...metrics.Tag) {
	defer s.recover(name)
	s.m.Increment(name, v, tags...)
}

func (s safeMetrics) gauge(name string, v float64, tags ...metrics.Tag) {
	defer s.recover(name)
	s.m.Gauge(name, v, tags...)
}

func (s safeMetrics) timing(name string, d time.Duration, tags ...metrics.Tag) {
	defer s.recover(name)
	s.m.Timing(name, d, tags...)
}

func (s safeMetrics) recover(name string) {
	if r := recover(); r != nil {
		s.log.Error("recording a metric failed; dropping it", zap.String("metric", name), zap.Any("panic", r))
	}
}

func workerTag(i int) metrics.Tag   { return metrics.Tag{Key: "worker", Value: fmt.Sprint(i)} }
func shardTag(s int32) metrics.Tag  { return metrics.Tag{Key: "shard", Value: fmt.Sprint(s)} }
func causeTag(c string) metrics.Tag { return metrics.Tag{Key: "cause", Value: c} }
