package kubelab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ErrorRatioMetric is the gauge the lab's exporter serves per site, labelled site="<site>".
const ErrorRatioMetric = "fleetwave_lab_error_ratio"

// scrapeJob is the job name of the exporter in Prometheus' configuration.
const scrapeJob = "fleetwave-lab"

// scrapeWait bounds WaitScraped: Prometheus scrapes every second.
const scrapeWait = 30 * time.Second

// Metrics is a real Prometheus scraping an exporter the test controls: an error ratio per site
// (SetErrorRatio) and an HTTP health probe per site (SetHealthy). StartMetrics makes one; it
// stops when the test that made it ends.
type Metrics struct {
	// URL is Prometheus' base URL, http://127.0.0.1:<port>, as fleetwave's health checks take it.
	URL string
	// ExporterURL is the exporter's base URL; Prometheus scrapes ExporterURL/metrics.
	ExporterURL string

	errorRatio *prometheus.GaugeVec
	exporter   *http.Server

	mu        sync.Mutex
	unhealthy map[string]bool

	prom     *process
	reported bool
}

// StartMetrics starts the exporter, with an error ratio of 0 and a healthy probe for each of
// sites, and Prometheus (from $FLEETWAVE_PROMETHEUS, else `prometheus` on PATH) scraping it
// every second, and waits until Prometheus has scraped it once (about 6 s). It fails the test
// if Prometheus is not installed. Prometheus also scrapes each of targets (host:port, its
// /metrics) every second, as job "fleetwave".
func StartMetrics(t testing.TB, sites []string, targets ...string) *Metrics {
	t.Helper()
	bin, err := prometheusBinary()
	if err != nil {
		t.Fatalf("kubelab: %v", err)
	}
	dir := t.TempDir()
	m := &Metrics{
		errorRatio: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: ErrorRatioMetric,
			Help: "Share of failed requests at a site, set by the test.",
		}, []string{"site"}),
		unhealthy: map[string]bool{},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m.errorRatio)
	for _, s := range sites {
		m.errorRatio.WithLabelValues(s).Set(0)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /probe/{site}", m.probe)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("kubelab: listen for the metrics exporter: %v", err)
	}
	m.ExporterURL = "http://" + ln.Addr().String()
	m.exporter = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = m.exporter.Serve(ln) }()
	t.Cleanup(func() { m.stop(t) })

	port, err := freePort()
	if err != nil {
		t.Fatalf("kubelab: %v", err)
	}
	m.URL = "http://127.0.0.1:" + strconv.Itoa(port)
	config := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(config, []byte(prometheusConfig(ln.Addr().String(), targets)), 0o644); err != nil {
		t.Fatalf("kubelab: write prometheus config: %v", err)
	}
	m.prom = &process{
		name: "prometheus",
		bin:  bin,
		args: []string{
			"--config.file=" + config,
			"--web.listen-address=127.0.0.1:" + strconv.Itoa(port),
			"--storage.tsdb.path=" + filepath.Join(dir, "data"),
			"--log.level=warn",
		},
		log: filepath.Join(dir, "prometheus.log"),
	}
	m.StartPrometheus(t)
	return m
}

// prometheusBinary returns $FLEETWAVE_PROMETHEUS, else prometheus on PATH, else
// /usr/bin/prometheus (the Debian package's).
func prometheusBinary() (string, error) {
	if p := os.Getenv("FLEETWAVE_PROMETHEUS"); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("prometheus not found at $FLEETWAVE_PROMETHEUS (%w): run `apt-get install prometheus` (.ci/run does it)", err)
		}
		return p, nil
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus", nil
	}
	return "", errors.New("prometheus not found: run `apt-get install prometheus` (.ci/run does it)")
}

// prometheusConfig returns a configuration scraping the exporter at addr, and targets,
// every second.
func prometheusConfig(addr string, targets []string) string {
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    static_configs:
      - targets: [%q]
`, scrapeJob, addr)
	if len(targets) > 0 {
		quoted := make([]string, len(targets))
		for i, t := range targets {
			quoted[i] = strconv.Quote(t)
		}
		config += fmt.Sprintf("  - job_name: fleetwave\n    static_configs:\n      - targets: [%s]\n", strings.Join(quoted, ", "))
	}
	return config
}

// SetErrorRatio sets the gauge fleetwave_lab_error_ratio{site="<site>"} to v. Prometheus sees
// it at its next scrape, within a second or so; WaitScraped waits for that.
func (m *Metrics) SetErrorRatio(site string, v float64) {
	m.errorRatio.WithLabelValues(site).Set(v)
}

// SetHealthy makes the site's probe (ProbeURL) answer 200 "ok" if ok, else 503 "unhealthy".
// Every site starts healthy.
func (m *Metrics) SetHealthy(site string, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.unhealthy[site] = !ok
}

// ProbeURL returns the URL of the site's HTTP health probe.
func (m *Metrics) ProbeURL(site string) string {
	return m.ExporterURL + "/probe/" + url.PathEscape(site)
}

func (m *Metrics) probe(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	bad := m.unhealthy[r.PathValue("site")]
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if bad {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, "unhealthy")
		return
	}
	_, _ = io.WriteString(w, "ok")
}

// WaitScraped waits until Prometheus answers the instant query
// fleetwave_lab_error_ratio{site="<site>"} with v, and fails the test if it does not within
// 30 seconds.
func (m *Metrics) WaitScraped(t testing.TB, site string, v float64) {
	t.Helper()
	query := fmt.Sprintf("%s{site=%q}", ErrorRatioMetric, site)
	ctx, cancel := context.WithTimeout(t.Context(), scrapeWait)
	defer cancel()
	var got []float64
	var err error
	for {
		got, err = m.Query(ctx, query)
		if err == nil && len(got) == 1 && math.Abs(got[0]-v) < 1e-9 {
			return
		}
		select {
		case <-ctx.Done():
			if err != nil {
				m.fatal(t, fmt.Errorf("query %s: %w", query, err))
			}
			m.fatal(t, fmt.Errorf("query %s: got %v after %s, want [%v]", query, got, scrapeWait, v))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Query runs an instant PromQL query and returns the value of each sample of the result vector.
func (m *Metrics) Query(ctx context.Context, query string) ([]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.URL+"/api/v1/query?query="+url.QueryEscape(query), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string `json:"resultType"`
			Result     []struct {
				Value [2]any `json:"value"` // [unix time, "value"]
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode the answer (%s): %w", resp.Status, err)
	}
	if body.Status != "success" {
		return nil, fmt.Errorf("%s: %s", resp.Status, body.Error)
	}
	if body.Data.ResultType != "vector" {
		return nil, fmt.Errorf("result type %q, want vector", body.Data.ResultType)
	}
	vals := make([]float64, 0, len(body.Data.Result))
	for _, r := range body.Data.Result {
		s, _ := r.Value[1].(string)
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("sample value %v: %w", r.Value[1], err)
		}
		vals = append(vals, f)
	}
	return vals, nil
}

// StopPrometheus stops Prometheus: until StartPrometheus, connections to URL are refused.
// The exporter keeps serving.
func (m *Metrics) StopPrometheus(t testing.TB) {
	t.Helper()
	m.prom.stop()
}

// StartPrometheus starts Prometheus again, on the same port and with the same data, and waits
// until it is ready and has scraped the exporter. Prometheus starts scraping a few seconds
// after it is ready (it applies new targets at most every 5 s), so that takes about 6 s.
func (m *Metrics) StartPrometheus(t testing.TB) {
	t.Helper()
	if err := m.prom.start(); err != nil {
		t.Fatalf("kubelab: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := waitHTTP(ctx, m.prom, http.DefaultClient, m.URL+"/-/ready"); err != nil {
		m.fatal(t, err)
	}
	query := `up{job="` + scrapeJob + `"}`
	for {
		up, err := m.Query(ctx, query)
		if err == nil && len(up) == 1 && up[0] == 1 {
			return
		}
		if err := m.prom.failed(); err != nil {
			m.fatal(t, err)
		}
		select {
		case <-ctx.Done():
			m.fatal(t, fmt.Errorf("prometheus has not scraped the exporter at %s: %s = %v, %v", m.ExporterURL, query, up, err))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// RSS returns the resident memory of Prometheus in bytes.
func (m *Metrics) RSS() (int64, error) { return m.prom.rss() }

// fatal shows the end of Prometheus' log and fails the test with err.
func (m *Metrics) fatal(t testing.TB, err error) {
	t.Helper()
	t.Logf("kubelab: last %d lines of %s:\n%s", tailLines, m.prom.log, tail(m.prom.log, tailLines))
	m.reported = true
	t.Fatalf("kubelab: %v", err)
}

// stop stops Prometheus and the exporter. If the test failed, it first shows the end of
// Prometheus' log; Prometheus exiting by itself fails the test.
func (m *Metrics) stop(t testing.TB) {
	if m.prom.ran() {
		if ok, err := m.prom.exited(); ok {
			t.Errorf("kubelab: prometheus exited during the test: %v", err)
		}
		if t.Failed() && !m.reported {
			t.Logf("kubelab: last %d lines of %s:\n%s", tailLines, m.prom.log, tail(m.prom.log, tailLines))
		}
		m.prom.stop()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = m.exporter.Shutdown(ctx)
}
