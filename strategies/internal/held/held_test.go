package held

import (
	"context"
	"errors"
	"testing"

	"github.com/creekstream/creek/processor"
)

func TestDrain(t *testing.T) {
	errBoom := errors.New("boom")
	done, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name          string
		ctx           context.Context
		rejections    int // offers rejected before one is taken; -1 rejects for ever
		offerErr      error
		pollErr       error
		wantAbandoned bool
		wantErr       error
		wantOffers    int
	}{
		{name: "taken at once", ctx: context.Background(), wantOffers: 1},
		{name: "taken after rejections", ctx: context.Background(), rejections: 3, wantOffers: 4},
		{name: "ctx done while held", ctx: done, rejections: -1, wantAbandoned: true, wantOffers: 1},
		{name: "offer fails", ctx: context.Background(), offerErr: errBoom, wantErr: errBoom, wantOffers: 1},
		{name: "poll fails", ctx: context.Background(), rejections: -1, pollErr: errBoom, wantErr: errBoom, wantOffers: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			offers, rejected := 0, 0
			offer := func() error {
				offers++
				if tc.offerErr != nil {
					return tc.offerErr
				}
				if tc.rejections < 0 || offers <= tc.rejections {
					return processor.ErrMessageRejected
				}
				return nil
			}
			abandoned, err := Drain(tc.ctx, offer, func() error { return tc.pollErr }, func() { rejected++ })
			if abandoned != tc.wantAbandoned || !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Fatalf("Drain = (%v, %v), want (%v, %v)", abandoned, err, tc.wantAbandoned, tc.wantErr)
			}
			if offers != tc.wantOffers {
				t.Errorf("%d offers, want %d", offers, tc.wantOffers)
			}
			if want := offers - 1; tc.offerErr == nil && !tc.wantAbandoned && tc.pollErr == nil && rejected != want {
				t.Errorf("rejected called %d times, want %d", rejected, want)
			}
		})
	}
}
