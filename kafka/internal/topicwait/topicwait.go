// Package topicwait is the log of a consumer waiting for subscribed topics that
// do not exist yet, shared by both Kafka backends so that the wait reads the
// same whichever runs: a Warn naming the missing topics when the wait begins and
// then at most once per interval, a Debug line for each retry in between, and an
// Info line when the wait is over. A Wait belongs to the one goroutine that
// retries.
package topicwait

import (
	"time"

	"go.uber.org/zap"
)

// The messages of the wait's log lines.
const (
	Waiting  = "kafka: waiting for subscribed topics to be created; the consumer does not create them"
	Retrying = "kafka: subscribed topics still missing; retrying"
	Over     = "kafka: the subscribed topics exist now; consuming"
)

// Wait rate-limits the log of one wait. The zero value is a wait not begun.
type Wait struct {
	since, logged time.Time
}

// Missing logs that the topics named in missing were found missing again, at
// Warn if interval has passed since the last Warn (or the wait just began),
// else at Debug.
func (w *Wait) Missing(log *zap.Logger, interval time.Duration, missing []string) {
	now := time.Now()
	if w.since.IsZero() {
		w.since = now
	}
	if !w.logged.IsZero() && now.Sub(w.logged) < interval {
		log.Debug(Retrying, zap.Strings("missing", missing))
		return
	}
	w.logged = now
	log.Warn(Waiting, zap.Strings("missing", missing),
		zap.Duration("waited", now.Sub(w.since).Round(time.Millisecond)),
		zap.Duration("log_interval", interval))
}

// Waiting reports whether the wait has begun.
func (w *Wait) Waiting() bool { return !w.since.IsZero() }

// Over logs the end of a wait that had begun, and makes w a wait not begun.
func (w *Wait) Over(log *zap.Logger) {
	if w.Waiting() {
		log.Info(Over, zap.Duration("waited", time.Since(w.since).Round(time.Millisecond)))
	}
	*w = Wait{}
}
