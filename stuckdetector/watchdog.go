package stuckdetector

import (
	"fmt"
	"sync"
	"time"

	"github.com/creekstream/creek/internal/defaults"
	"github.com/creekstream/creek/internal/stacks"
	"github.com/creekstream/creek/metrics"
	"go.uber.org/zap"
)

// DefaultTimeout is how long a loop may go without a tick before it is reported,
// when Config leaves Timeout unset.
const DefaultTimeout = 60 * time.Second

// Config configures a Watchdog. The zero value is valid.
type Config struct {
	// Timeout is how long the loop may go without a tick before it is reported as
	// stuck, and then how often the report repeats while it stays stuck.
	// Zero means DefaultTimeout.
	Timeout time.Duration
	// HardLimit is how long a stall may last before OnHardLimit runs. Zero turns the
	// hard limit off.
	HardLimit time.Duration
	// OnHardLimit runs once per stall that reaches HardLimit, on the watchdog's
	// goroutine; Stop waits for it. A processor uses it to exit so that an
	// orchestrator restarts the process. The default does nothing.
	OnHardLimit func(stall time.Duration)
	// Logger receives the reports. The default discards them.
	Logger *zap.Logger
	// Metrics receives the consumer.stuck counter. Pass the processor's metrics
	// Buffer. The default discards.
	Metrics metrics.Metrics
}

// Validate reports what is wrong with c, so that a caller can refuse a bad
// configuration at its own construction time.
func (c Config) Validate() error {
	// c is a copy: filling in the default here leaves the caller's Config alone.
	if err := defaults.Durations(defaults.Duration{Name: "stuckdetector: Config.Timeout", Value: &c.Timeout, Default: DefaultTimeout}); err != nil {
		return err
	}
	if c.HardLimit < 0 {
		return fmt.Errorf("stuckdetector: HardLimit is %v; set a positive duration, or 0 to turn it off", c.HardLimit)
	}
	if c.HardLimit != 0 && c.HardLimit < c.Timeout {
		return fmt.Errorf("stuckdetector: HardLimit %v is shorter than Timeout %v, so the hard limit would act before the stall is reported; raise HardLimit or set it to 0", c.HardLimit, c.Timeout)
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.OnHardLimit == nil {
		c.OnHardLimit = func(time.Duration) {}
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Noop{}
	}
	return c
}

// Watchdog watches a Heartbeat from its own goroutine and reports when the loop
// stops ticking. Create it with Start and stop it with Stop.
type Watchdog struct {
	d         *detector
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Start starts watching hb. It panics if cfg is invalid (see Config.Validate), like
// time.NewTicker does for a bad period: callers validate their configuration first.
func Start(hb *Heartbeat, cfg Config) *Watchdog {
	if hb == nil {
		panic("stuckdetector: Start needs a Heartbeat")
	}
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	cfg = cfg.withDefaults()
	w := &Watchdog{
		d:    newDetector(hb, cfg, time.Now()),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go w.run(checkInterval(cfg.Timeout))
	return w
}

// checkInterval is how often the heartbeat is read: a tenth of the timeout, so that a
// stall is reported within 10% of it, but at least every second for long timeouts
// and at most every millisecond for the short ones tests use.
func checkInterval(timeout time.Duration) time.Duration {
	return min(max(timeout/10, time.Millisecond), time.Second)
}

func (w *Watchdog) run(every time.Duration) {
	defer close(w.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			w.d.check(time.Now())
		case <-w.stop:
			return
		}
	}
}

// Stop stops the watchdog and returns when its goroutine has exited. It is safe to
// call more than once.
func (w *Watchdog) Stop() {
	w.closeOnce.Do(func() { close(w.stop) })
	<-w.done
}

// detector is the watchdog's state; only the watchdog's goroutine touches it.
type detector struct {
	hb  *Heartbeat
	cfg Config
	// ticks is the heartbeat's tick count as last read, and ticked when this
	// watchdog first saw that count (at first, when it started): the time of the
	// loop's last tick to within a check interval.
	ticks  uint64
	ticked time.Time

	stuck      bool
	stuckAfter time.Time // the tick the current stall followed
	lastReport time.Time
	hardFired  bool
}

func newDetector(hb *Heartbeat, cfg Config, start time.Time) *detector {
	return &detector{hb: hb, cfg: cfg, ticked: start}
}

// check compares the heartbeat with now and reports what changed.
func (d *detector) check(now time.Time) {
	if t := d.hb.ticks(); t != d.ticks {
		d.ticks, d.ticked = t, now
	}
	last := d.ticked
	if d.stuck && !last.Equal(d.stuckAfter) {
		d.cfg.Logger.Info("loop recovered from a stall",
			zap.String("phase", d.hb.Phase()), zap.Duration("stall", last.Sub(d.stuckAfter)))
		d.stuck, d.hardFired = false, false
	}
	stall := now.Sub(last)
	if stall <= d.cfg.Timeout {
		return
	}
	if !d.stuck || now.Sub(d.lastReport) >= d.cfg.Timeout {
		d.stuck, d.stuckAfter, d.lastReport = true, last, now
		phase := d.hb.Phase()
		d.cfg.Logger.Warn("loop is stuck",
			zap.String("phase", phase), zap.Duration("stall", stall),
			zap.ByteString("goroutines", stacks.All()))
		d.cfg.Metrics.Increment("consumer.stuck", 1, metrics.Tag{Key: "phase", Value: phase})
	}
	if d.cfg.HardLimit > 0 && stall >= d.cfg.HardLimit && !d.hardFired {
		d.hardFired = true
		d.cfg.Logger.Error("loop stuck past its hard limit",
			zap.String("phase", d.hb.Phase()), zap.Duration("stall", stall),
			zap.Duration("hard_limit", d.cfg.HardLimit))
		d.cfg.OnHardLimit(stall)
	}
}
