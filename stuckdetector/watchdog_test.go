package stuckdetector

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// observed returns a logger whose entries are kept in logs and announced on the
// returned channel, so tests can wait for a log line instead of sleeping.
func observed() (*zap.Logger, *observer.ObservedLogs, <-chan string) {
	core, logs := observer.New(zapcore.DebugLevel)
	written := make(chan string, 64)
	hooked := zapcore.RegisterHooks(core, func(e zapcore.Entry) error {
		select {
		case written <- e.Message:
		default:
		}
		return nil
	})
	return zap.New(hooked), logs, written
}

// waitLog fails the test unless a log line with message msg arrives within 5s.
func waitLog(t *testing.T, written <-chan string, msg string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case got := <-written:
			if got == msg {
				return
			}
		case <-timeout:
			t.Fatalf("timed out after 5s waiting for the log %q", msg)
		}
	}
}

var base = time.Unix(1_000_000, 0)

func TestDetectorReportsOncePerTimeoutAndRecovery(t *testing.T) {
	const timeout = 10 * time.Second
	logger, logs, _ := observed()
	rec := metricstest.NewRecorder()
	hb := &Heartbeat{}
	hb.SetPhase("submit")
	d := newDetector(hb, Config{Timeout: timeout, Logger: logger, Metrics: rec}.withDefaults(), base)

	steps := []struct {
		name      string
		beat      time.Duration // tick, seen by a check at base+beat, before the check
		check     time.Duration
		wantStuck int
		wantRecov int
	}{
		{name: "within the timeout", check: timeout},
		{name: "just past the timeout", check: timeout + time.Millisecond, wantStuck: 1},
		{name: "less than a timeout later", check: timeout + timeout/2, wantStuck: 1},
		{name: "a timeout after the report", check: 2*timeout + time.Millisecond, wantStuck: 2},
		{name: "loop ticks again", beat: 2*timeout + 5*time.Millisecond, check: 2*timeout + 6*time.Millisecond, wantStuck: 2, wantRecov: 1},
		{name: "healthy again", check: 2*timeout + 7*time.Millisecond, wantStuck: 2, wantRecov: 1},
		{name: "stuck a second time", check: 3*timeout + 6*time.Millisecond, wantStuck: 3, wantRecov: 1},
	}
	for _, s := range steps {
		if s.beat != 0 {
			hb.Tick()
			d.check(base.Add(s.beat))
		}
		d.check(base.Add(s.check))
		if got := logs.FilterMessage("loop is stuck").Len(); got != s.wantStuck {
			t.Fatalf("%s: %d stuck reports, want %d", s.name, got, s.wantStuck)
		}
		if got := logs.FilterMessage("loop recovered from a stall").Len(); got != s.wantRecov {
			t.Fatalf("%s: %d recovery logs, want %d", s.name, got, s.wantRecov)
		}
	}
	if got := rec.Counter("consumer.stuck", metrics.Tag{Key: "phase", Value: "submit"}); got != 3 {
		t.Errorf("consumer.stuck{phase=submit} = %d, want 3", got)
	}
	stuck := logs.FilterMessage("loop is stuck").All()[0].ContextMap()
	if stuck["phase"] != "submit" || stuck["stall"] != timeout+time.Millisecond {
		t.Errorf("stuck report has phase %v and stall %v, want submit and %v", stuck["phase"], stuck["stall"], timeout+time.Millisecond)
	}
	recovered := logs.FilterMessage("loop recovered from a stall").All()[0].ContextMap()
	if want := 2*timeout + 5*time.Millisecond; recovered["stall"] != want {
		t.Errorf("recovery log says the stall lasted %v, want %v", recovered["stall"], want)
	}
}

func TestDetectorTimesTicksWithItsOwnClock(t *testing.T) {
	const timeout = 10 * time.Second
	logger, logs, _ := observed()
	rec := metricstest.NewRecorder()
	hb := &Heartbeat{}
	hb.SetPhase("submit")
	d := newDetector(hb, Config{Timeout: timeout, Logger: logger, Metrics: rec}.withDefaults(), base)

	steps := []struct {
		name      string
		tick      bool // tick before the check
		check     time.Duration
		wantStuck int
		wantRecov int
	}{
		{name: "first tick seen", tick: true, check: time.Second},
		{name: "ticking", tick: true, check: 2 * time.Second},
		{name: "a timeout after the tick was seen", check: 2*time.Second + timeout},
		{name: "just past it", check: 2*time.Second + timeout + time.Millisecond, wantStuck: 1},
		{name: "less than a timeout later", check: 2*time.Second + timeout + timeout/2, wantStuck: 1},
		{name: "a timeout after the report", check: 2*time.Second + 2*timeout + time.Millisecond, wantStuck: 2},
		{name: "ticks again", tick: true, check: 3 * timeout, wantStuck: 2, wantRecov: 1},
		{name: "healthy again", tick: true, check: 3*timeout + time.Second, wantStuck: 2, wantRecov: 1},
	}
	for _, s := range steps {
		if s.tick {
			hb.Tick()
		}
		d.check(base.Add(s.check))
		if got := logs.FilterMessage("loop is stuck").Len(); got != s.wantStuck {
			t.Fatalf("%s: %d stuck reports, want %d", s.name, got, s.wantStuck)
		}
		if got := logs.FilterMessage("loop recovered from a stall").Len(); got != s.wantRecov {
			t.Fatalf("%s: %d recovery logs, want %d", s.name, got, s.wantRecov)
		}
	}
	if got := rec.Counter("consumer.stuck", metrics.Tag{Key: "phase", Value: "submit"}); got != 2 {
		t.Errorf("consumer.stuck{phase=submit} = %d, want 2", got)
	}
	stuck := logs.FilterMessage("loop is stuck").All()[0].ContextMap()
	if stuck["stall"] != timeout+time.Millisecond {
		t.Errorf("stuck report has stall %v, want %v", stuck["stall"], timeout+time.Millisecond)
	}
	// From the check that last saw the count move to the check that saw it move again.
	recovered := logs.FilterMessage("loop recovered from a stall").All()[0].ContextMap()
	if want := 3*timeout - 2*time.Second; recovered["stall"] != want {
		t.Errorf("recovery log says the stall lasted %v, want %v", recovered["stall"], want)
	}
}

func TestWatchdogWatchesATickingLoop(t *testing.T) {
	logger, logs, written := observed()
	hb := &Heartbeat{}
	hb.SetPhase("poll")
	hb.Tick()
	w := Start(hb, Config{Timeout: 5 * time.Millisecond, Logger: logger})
	defer w.Stop()
	waitLog(t, written, "loop is stuck")
	hb.Tick()
	waitLog(t, written, "loop recovered from a stall")
	if r := logs.FilterMessage("loop is stuck").All()[0].ContextMap(); r["phase"] != "poll" {
		t.Errorf("stuck report names phase %v, want poll", r["phase"])
	}
}

// stuckInTestHelper blocks until release is closed; the stack dump must name it.
func stuckInTestHelper(blocked chan<- struct{}, release <-chan struct{}) {
	close(blocked)
	<-release
}

func TestDetectorDumpNamesTheStuckGoroutine(t *testing.T) {
	blocked, release := make(chan struct{}), make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(release)
	wg.Go(func() { stuckInTestHelper(blocked, release) })
	<-blocked

	logger, logs, _ := observed()
	hb := &Heartbeat{}
	d := newDetector(hb, Config{Timeout: time.Second, Logger: logger}.withDefaults(), base)
	d.check(base.Add(2 * time.Second))
	reports := logs.FilterMessage("loop is stuck").All()
	if len(reports) != 1 {
		t.Fatalf("%d stuck reports, want 1", len(reports))
	}
	dump, _ := reports[0].ContextMap()["goroutines"].(string)
	if !strings.Contains(dump, "stuckdetector.stuckInTestHelper") {
		t.Errorf("goroutine dump does not name stuckInTestHelper:\n%s", dump)
	}
}

func TestDetectorHardLimitRunsOncePerStall(t *testing.T) {
	const timeout = time.Second
	var stalls []time.Duration
	hb := &Heartbeat{}
	d := newDetector(hb, Config{
		Timeout:     timeout,
		HardLimit:   3 * timeout,
		OnHardLimit: func(stall time.Duration) { stalls = append(stalls, stall) },
	}.withDefaults(), base)
	for _, at := range []time.Duration{2 * timeout, 3*timeout - 1, 3 * timeout, 4 * timeout, 5 * timeout} {
		d.check(base.Add(at))
	}
	if len(stalls) != 1 || stalls[0] != 3*timeout {
		t.Fatalf("OnHardLimit ran with %v, want once with %v", stalls, 3*timeout)
	}
	hb.Tick()
	d.check(base.Add(6 * timeout))
	d.check(base.Add(9 * timeout))
	if len(stalls) != 2 {
		t.Fatalf("OnHardLimit ran %d times over two stalls, want 2", len(stalls))
	}
}

func TestDetectorCountsFromStartWhenNeverTicked(t *testing.T) {
	logger, logs, _ := observed()
	d := newDetector(&Heartbeat{}, Config{Timeout: time.Second, Logger: logger}.withDefaults(), base)
	d.check(base.Add(time.Second))
	if n := logs.Len(); n != 0 {
		t.Fatalf("%d logs before the timeout passed since Start, want 0", n)
	}
	d.check(base.Add(time.Second + 1))
	if n := logs.FilterMessage("loop is stuck").Len(); n != 1 {
		t.Fatalf("%d stuck reports after the timeout passed since Start, want 1", n)
	}
}

func TestWatchdogReportsAndStops(t *testing.T) {
	logger, _, written := observed()
	hardLimit := make(chan time.Duration, 1)
	hb := &Heartbeat{}
	hb.SetPhase("poll")
	hb.Tick()
	w := Start(hb, Config{
		Timeout:     5 * time.Millisecond,
		HardLimit:   10 * time.Millisecond,
		OnHardLimit: func(stall time.Duration) { hardLimit <- stall },
		Logger:      logger,
	})
	waitLog(t, written, "loop is stuck")
	select {
	case stall := <-hardLimit:
		if stall < 10*time.Millisecond {
			t.Errorf("OnHardLimit got a stall of %v, shorter than the hard limit", stall)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timed out after 5s waiting for OnHardLimit")
	}
	hb.Tick()
	waitLog(t, written, "loop recovered from a stall")
	w.Stop()
	w.Stop()
	if err := goleak.Find(); err != nil {
		t.Fatalf("goroutines left after Stop: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"zero value", Config{}, ""},
		{"hard limit above timeout", Config{Timeout: time.Second, HardLimit: time.Minute}, ""},
		{"negative timeout", Config{Timeout: -1}, "Timeout is -1ns"},
		{"negative hard limit", Config{HardLimit: -1}, "HardLimit is -1ns"},
		{"hard limit below default timeout", Config{HardLimit: time.Second}, "shorter than Timeout 1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("Validate() = %v, want an error saying %q", err, tt.want)
			}
		})
	}
}

func TestStartPanicsOnInvalidConfig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Start accepted a negative timeout")
		}
	}()
	Start(&Heartbeat{}, Config{Timeout: -time.Second})
}
