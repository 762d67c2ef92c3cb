package defaults

import (
	"testing"
	"time"
)

func TestDurations(t *testing.T) {
	tests := []struct {
		name    string
		value   time.Duration
		def     time.Duration
		want    time.Duration
		wantErr string
	}{
		{"zero takes the default", 0, time.Second, time.Second, ""},
		{"set value stays", 3 * time.Second, time.Second, 3 * time.Second, ""},
		{"zero without a default stays zero", 0, 0, 0, ""},
		{"negative names the default", -time.Second, 2 * time.Second, -time.Second,
			"p: Config.X is -1s; set it > 0, or leave it 0 for 2s"},
		{"negative without a default", -time.Second, 0, -time.Second,
			"p: Config.X is -1s; set it > 0, or leave it 0 for the default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.value
			err := Durations(Duration{Name: "p: Config.X", Value: &v, Default: tt.def})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Durations: %v", err)
			case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
				t.Fatalf("Durations error = %v, want %q", err, tt.wantErr)
			}
			if v != tt.want {
				t.Errorf("value = %v, want %v", v, tt.want)
			}
		})
	}
}

// TestDurationsStopsAtFirstNegative checks that the error names the first bad field
// and that the fields before it already have their defaults.
func TestDurationsStopsAtFirstNegative(t *testing.T) {
	a, b, c := time.Duration(0), -time.Second, -time.Minute
	err := Durations(
		Duration{Name: "A", Value: &a, Default: time.Second},
		Duration{Name: "B", Value: &b, Default: time.Second},
		Duration{Name: "C", Value: &c, Default: time.Second},
	)
	if err == nil || err.Error() != "B is -1s; set it > 0, or leave it 0 for 1s" {
		t.Fatalf("error = %v, want one naming B", err)
	}
	if a != time.Second {
		t.Errorf("A = %v, want its default 1s", a)
	}
}

func TestInts(t *testing.T) {
	tests := []struct {
		name        string
		value, want int
		wantErr     string
	}{
		{"zero takes the default", 0, 2000, ""},
		{"set value stays", 5, 5, ""},
		{"negative names the default", -1, -1, "p: Policy.N is -1; set it > 0, or leave it 0 for 2000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := tt.value
			err := Ints(Int{Name: "p: Policy.N", Value: &v, Default: 2000})
			if (err == nil) != (tt.wantErr == "") || (err != nil && err.Error() != tt.wantErr) {
				t.Fatalf("Ints error = %v, want %q", err, tt.wantErr)
			}
			if v != tt.want {
				t.Errorf("value = %d, want %d", v, tt.want)
			}
		})
	}
}
