package processor_test

import (
	"errors"
	"strings"
	"testing"

	"go.uber.org/zap"

	"github.com/creekstream/creek/metrics"
	"github.com/creekstream/creek/metrics/metricstest"
	"github.com/creekstream/creek/processor"
)

// instrumentedConsumer, instrumentedFactory and instrumentedDLQ record the
// Instruments they are given.
type instrumentedConsumer struct {
	nopConsumer[string]
	got []processor.Instruments
}

func (c *instrumentedConsumer) Instrument(i processor.Instruments) { c.got = append(c.got, i) }

type instrumentedFactory struct {
	processor.Factory[string]
	got []processor.Instruments
	err error
}

func (f *instrumentedFactory) Instrument(i processor.Instruments) { f.got = append(f.got, i) }
func (f *instrumentedFactory) Validate() error                    { return f.err }

type instrumentedDLQ struct {
	nopDLQ[string]
	got []processor.Instruments
}

func (d *instrumentedDLQ) Instrument(i processor.Instruments) { d.got = append(d.got, i) }

func TestNewInstrumentsTheConsumerFactoryAndDLQOnce(t *testing.T) {
	log := zap.NewExample()
	rec := metricstest.NewRecorder()
	cases := []struct {
		name string
		cfg  processor.Instruments
	}{
		{"both given", processor.Instruments{Logger: log, Metrics: rec}},
		// The processor's defaults are not handed on: a part keeps its own.
		{"none given", processor.Instruments{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &instrumentedConsumer{}
			f := &instrumentedFactory{Factory: nopFactory[string]()}
			d := &instrumentedDLQ{}
			_, err := processor.New[string](c, f, processor.Config[string]{
				Topics: []string{"a"}, Logger: tc.cfg.Logger, Metrics: tc.cfg.Metrics,
				DLQ: &processor.DLQPolicy[string]{Producer: d, Size: func(s string) int { return len(s) }},
			})
			if err != nil {
				t.Fatal(err)
			}
			for name, got := range map[string][]processor.Instruments{"consumer": c.got, "factory": f.got, "DLQ producer": d.got} {
				if len(got) != 1 || got[0].Logger != tc.cfg.Logger || got[0].Metrics != tc.cfg.Metrics {
					t.Errorf("%s was instrumented with %+v, want once with %+v", name, got, tc.cfg)
				}
			}
		})
	}
}

func TestNewFailsWithTheFactorysValidationError(t *testing.T) {
	bad := errors.New("step 2 (Map): function is nil")
	c := &instrumentedConsumer{}
	f := &instrumentedFactory{Factory: nopFactory[string](), err: bad}
	_, err := processor.New[string](c, f, processor.Config[string]{Topics: []string{"a"}, Logger: zap.NewNop()})
	if !errors.Is(err, bad) || !strings.HasPrefix(err.Error(), "processor: New: ") {
		t.Fatalf("New = %v, want it to wrap %v", err, bad)
	}
	if len(c.got) != 0 || len(f.got) != 0 {
		t.Errorf("a processor that was refused instrumented its parts: consumer %v, factory %v", c.got, f.got)
	}
}

func TestInstrumentsOrKeepsWhatIsSet(t *testing.T) {
	own, proc := zap.NewExample(), zap.NewNop()
	ownM, procM := metricstest.NewRecorder(), metricstest.NewRecorder()
	cases := []struct {
		name        string
		i, fallback processor.Instruments
		wantLog     *zap.Logger
		wantMetrics metrics.Metrics
	}{
		{"own wins", processor.Instruments{Logger: own, Metrics: ownM}, processor.Instruments{Logger: proc, Metrics: procM}, own, ownM},
		{"fallback fills", processor.Instruments{}, processor.Instruments{Logger: proc, Metrics: procM}, proc, procM},
		{"field by field", processor.Instruments{Logger: own}, processor.Instruments{Logger: proc, Metrics: procM}, own, procM},
		{"nothing anywhere", processor.Instruments{}, processor.Instruments{}, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.i.Or(tc.fallback)
			if got.Logger != tc.wantLog {
				t.Errorf("Logger = %p, want %p", got.Logger, tc.wantLog)
			}
			if got.Metrics != tc.wantMetrics {
				t.Errorf("Metrics = %v, want %v", got.Metrics, tc.wantMetrics)
			}
		})
	}
}
