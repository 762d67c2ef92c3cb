package strategies

import (
	"testing"
	"time"

	"github.com/creekstream/creek/strategies/internal/config"
)

func TestOptionsApplyEverywhere(t *testing.T) {
	now := func() time.Time { return time.Unix(42, 0) }
	if got := buildOptions([]Option{WithClock(now)}).Now(); !got.Equal(now()) {
		t.Fatalf("WithClock: strategy clock reads %v, want %v", got, now())
	}
	if got := buildProduceOptions([]ProduceOption{WithClock(now)}).Now(); !got.Equal(now()) {
		t.Fatalf("WithClock as a ProduceOption: clock reads %v, want %v", got, now())
	}
	if got := config.Resolve([]Option{WithClock(now)}).Now(); !got.Equal(now()) {
		t.Fatalf("WithClock through config.Resolve: clock reads %v, want %v", got, now())
	}
}

func TestProduceOnlyOptionIsNoOption(t *testing.T) {
	// Not being an Option is what keeps it from compiling as an argument of any
	// constructor but NewProduce.
	if _, ok := WithFailedDeliveriesSkipped().(Option); ok {
		t.Fatal("WithFailedDeliveriesSkipped returns an Option; other strategies would accept it")
	}
	if !buildProduceOptions([]ProduceOption{WithFailedDeliveriesSkipped()}).skipFailed {
		t.Fatal("WithFailedDeliveriesSkipped does not set skipFailed")
	}
}
