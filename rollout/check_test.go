package rollout

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseChecks(t *testing.T) {
	doc := header + `  sites:
    - {name: ams-1, labels: {region: eu-west}}
    - {name: nyc-1, labels: {region: us-east}}
  waves: [{name: all}]
  health:
    interval: 45s
    checks:
      - name: error-rate
        prometheus:
          url: "http://prometheus.{labels.region}.example:9090"
          query: 'sum(rate(http_errors{site="{site}"}[5m])) / sum(rate(http_requests{site="{site}"}[5m]))'
          max: 0.01
      - name: smoke
        http: {url: "https://{site}.example/healthz", body: "^ok", timeout: 3s}
`
	p, err := ParsePlan("f.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	max := 0.01
	want := []Check{
		{Name: "error-rate", Prometheus: &PrometheusCheck{
			URL:        "http://prometheus.{labels.region}.example:9090",
			Query:      `sum(rate(http_errors{site="{site}"}[5m])) / sum(rate(http_requests{site="{site}"}[5m]))`,
			Max:        &max,
			Timeout:    DefaultCheckTimeout,
			StaleAfter: 90 * time.Second, // two intervals
		}},
		{Name: "smoke", HTTP: &HTTPCheck{URL: "https://{site}.example/healthz", Status: 200, Body: "^ok", Timeout: 3 * time.Second}},
	}
	if diff := cmp.Diff(want, p.Health.Checks); diff != "" {
		t.Fatalf("checks (-want +got):\n%s", diff)
	}
	if DefaultStaleAfter(10*time.Second) != time.Minute {
		t.Errorf("DefaultStaleAfter(10s) = %s, want the 1m floor", DefaultStaleAfter(10*time.Second))
	}

	site, _ := p.Site("nyc-1")
	got, err := p.Health.Checks[0].ForSite(site)
	if err != nil {
		t.Fatal(err)
	}
	if got.Prometheus.URL != "http://prometheus.us-east.example:9090" {
		t.Errorf("URL = %q", got.Prometheus.URL)
	}
	// PromQL's own braces stay; only the placeholders are replaced.
	if want := `sum(rate(http_errors{site="nyc-1"}[5m])) / sum(rate(http_requests{site="nyc-1"}[5m]))`; got.Prometheus.Query != want {
		t.Errorf("Query = %q, want %q", got.Prometheus.Query, want)
	}
	if p.Health.Checks[0].Prometheus.URL != "http://prometheus.{labels.region}.example:9090" {
		t.Error("ForSite changed the plan's check")
	}
	smoke, err := p.Health.Checks[1].ForSite(site)
	if err != nil || smoke.HTTP.URL != "https://nyc-1.example/healthz" {
		t.Errorf("smoke = %+v, %v", smoke.HTTP, err)
	}
}

func TestParseCheckErrors(t *testing.T) {
	sites := `  sites: [{name: a, labels: {region: eu}}, {name: b}]
  waves: [{name: all}]
  health:
    checks:
`
	tests := []struct {
		name   string
		checks string
		want   []string
	}{
		{
			name:   "neither kind",
			checks: "      - name: x\n",
			want:   []string{`8:13: check "x" needs exactly one of prometheus and http`},
		},
		{
			name:   "both kinds",
			checks: "      - name: x\n        http: {url: http://a}\n        prometheus: {url: http://p, query: up, max: 1}\n",
			want:   []string{`8:13: check "x" needs exactly one of prometheus and http`},
		},
		{
			name:   "prometheus without threshold or query",
			checks: "      - name: x\n        prometheus: {url: http://p}\n",
			want:   []string{`prometheus.query is empty`, `set max, min or both`},
		},
		{
			name:   "min above max",
			checks: "      - name: x\n        prometheus: {url: http://p, query: up, min: 2, max: 1}\n",
			want:   []string{`9:53: check "x": min 2 is above max 1`},
		},
		{
			name:   "label one site lacks",
			checks: "      - name: x\n        prometheus: {url: \"http://p.{labels.region}:9090\", query: up, max: 1}\n",
			want:   []string{`9:27: check "x": site "b" has no label "region"`},
		},
		{
			name:   "label in the query",
			checks: "      - name: x\n        prometheus: {url: http://p, query: 'up{r=\"{labels.zone}\"}', max: 1}\n",
			want:   []string{`check "x": site "a" has no label "zone"`},
		},
		{
			name:   "bad url, status, body, timeout",
			checks: "      - name: x\n        http: {url: \"ftp://{site}\", status: 99, body: \"(\", timeout: soon}\n",
			want: []string{
				`9:21: check "x": "ftp://a" is not an http or https URL (for site "a")`,
				`9:45: check "x": status 99 is not an HTTP status`,
				`9:55: check "x": body is not a regular expression`,
				`9:69: invalid duration "soon"`,
			},
		},
		{
			name:   "timeout too long",
			checks: "      - name: x\n        http: {url: http://a, timeout: 2m}\n",
			want:   []string{`check "x": timeout 2m0s is longer than 30s`},
		},
		{
			name:   "password in URL is redacted",
			checks: "      - name: x\n        http: {url: \"gopher://user:s3cret@host\"}\n",
			want:   []string{`"gopher://user:xxxxx@host" is not an http or https URL`},
		},
		{
			name:   "duplicate and bad names",
			checks: "      - name: x\n        http: {url: http://a}\n      - name: x\n        http: {url: http://a}\n      - name: Bad\n        http: {url: http://a}\n",
			want:   []string{`10:15: duplicate check name "x"`, `12:15: invalid check name "Bad"`},
		},
		{
			name:   "unknown field",
			checks: "      - name: x\n        http: {url: http://a, expect: 200}\n",
			want:   []string{`unknown field "expect"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParsePlan("f.yaml", []byte(header+sites+tt.checks))
			var pe *PlanError
			if !errors.As(err, &pe) {
				t.Fatalf("error = %v, want *PlanError", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks a password: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if len(pe.Issues) != len(tt.want) {
				t.Errorf("got %d issues, want %d:\n%v", len(pe.Issues), len(tt.want), err)
			}
		})
	}
}

func TestPrometheusThreshold(t *testing.T) {
	lo, hi := 0.9, 1.0
	p := PrometheusCheck{Min: &lo, Max: &hi}
	if p.Threshold() != ">= 0.9, <= 1" {
		t.Errorf("Threshold = %q", p.Threshold())
	}
	for v, want := range map[float64]bool{0.89: false, 0.9: true, 1: true, 1.01: false} {
		if p.Within(v) != want {
			t.Errorf("Within(%g) = %v, want %v", v, !want, want)
		}
	}
}
