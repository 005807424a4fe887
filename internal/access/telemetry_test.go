package access

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"testing"
)

func TestTelemetryStore(t *testing.T) {
	ctx := context.Background()
	s, err := OpenSQLite(filepath.Join(t.TempDir(), "burrow.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	add := []TelemetryCount{
		{Day: "2026-12-01", Transport: "tcp", Metric: "reports", Count: 2},
		{Day: "2026-12-07", Transport: "xhttp", Metric: "freeze", Bucket: 16, Count: math.MaxInt64 - 1},
	}
	for range 2 {
		if err := s.AddTelemetry(ctx, add); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.TelemetrySince(ctx, "2026-12-01")
	if err != nil {
		t.Fatal(err)
	}
	want := []TelemetryCount{
		{Day: "2026-12-07", Transport: "xhttp", Metric: "freeze", Bucket: 16, Count: math.MaxInt64},
		{Day: "2026-12-01", Transport: "tcp", Metric: "reports", Count: 4},
	}
	if !slices.Equal(got, want) {
		t.Errorf("TelemetrySince = %+v, want %+v (added twice, saturating)", got, want)
	}
	if err := s.PruneTelemetry(ctx, "2026-12-02"); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.TelemetrySince(ctx, "2000-01-01"); len(got) != 1 || got[0].Day != "2026-12-07" {
		t.Errorf("after pruning before 2026-12-02: %+v, want the 12-07 row alone", got)
	}
	for _, bad := range []TelemetryCount{
		{Day: "yesterday", Transport: "tcp", Metric: "reports", Count: 1},
		{Day: "2026-12-07", Transport: "TCP'; --", Metric: "reports", Count: 1},
		{Day: "2026-12-07", Transport: "tcp", Metric: "", Count: 1},
		{Day: "2026-12-07", Transport: "tcp", Metric: "reports", Count: -1},
	} {
		if err := s.AddTelemetry(ctx, []TelemetryCount{bad}); !errors.Is(err, ErrInvalid) {
			t.Errorf("AddTelemetry(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}
