package metrics

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"
)

// dashboardPath is the Grafana dashboard shipped in docs.
const dashboardPath = "../docs/dashboard/creek-grafana.json"

type dashboardPanel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	// Panels are those of a collapsed row.
	Panels []dashboardPanel `json:"panels"`
}

// dashboardPanels reads the dashboard and returns its panels, those inside rows
// included, rows excluded.
func dashboardPanels(t *testing.T) []dashboardPanel {
	t.Helper()
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		SchemaVersion int              `json:"schemaVersion"`
		Panels        []dashboardPanel `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	if d.SchemaVersion == 0 {
		t.Errorf("%s has no schemaVersion", dashboardPath)
	}
	var out []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			out = append(out, p)
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		t.Fatalf("%s has no panels", dashboardPath)
	}
	return out
}

// TestDashboardPanelsHaveQueries holds that every panel of the dashboard queries
// something, under an id of its own.
func TestDashboardPanelsHaveQueries(t *testing.T) {
	ids := map[int]string{}
	for _, p := range dashboardPanels(t) {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panels %q and %q share the id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no target", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q: target %s has no expr", p.Title, tg.RefID)
			}
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("panel %q: target refId %q is empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
}

var (
	// promQLString is a string literal, whose content is not a metric name.
	promQLString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	promQLIdent  = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
)

// TestDashboardQueriesCatalogMetrics holds that every metric the dashboard queries
// is one the Prometheus backend exposes for a metric of the catalog, named as
// promCatalogName derives it with the default prefix. The _bucket, _sum and _count
// series count only for a histogram (a timing of one operation).
func TestDashboardQueriesCatalogMetrics(t *testing.T) {
	prefix := promName(DefaultPrefix)
	families := map[string]Description{}
	for _, d := range catalog {
		families[promCatalogName(DefaultPrefix, d)] = d
	}
	queried := map[string]bool{}
	for _, p := range dashboardPanels(t) {
		for _, tg := range p.Targets {
			expr := promQLString.ReplaceAllString(tg.Expr, `""`)
			for _, name := range promQLIdent.FindAllString(expr, -1) {
				if !strings.HasPrefix(name, prefix) {
					continue
				}
				queried[name] = true
				if _, ok := families[name]; ok {
					continue
				}
				found := false
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					base, ok := strings.CutSuffix(name, suffix)
					if d, exists := families[base]; ok && exists && d.Type == TypeTimingObservation {
						found = true
					}
				}
				if !found {
					t.Errorf("panel %q, target %s: %s is not a metric the Prometheus backend exposes for the catalog\n\t%s",
						p.Title, tg.RefID, name, tg.Expr)
				}
			}
		}
	}
	if len(queried) == 0 {
		t.Fatalf("the dashboard queries no %s metric", prefix)
	}
}
