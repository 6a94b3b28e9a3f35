//go:build e2e

package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/fleetwave/fleetwave/gitops/gittest"
	"github.com/fleetwave/fleetwave/internal/devtemporal"
	"github.com/fleetwave/fleetwave/rollout"
	"github.com/fleetwave/fleetwave/test/testenv"
	"github.com/fleetwave/fleetwave/workflows"
)

// fleetRepo is a fleet repo named fleet (the plan's metadata.name) on its own git server, with
// one commit to roll out on main.
func fleetRepo(t *testing.T, fleet, subject string) (gs *gittest.Server, commit string) {
	t.Helper()
	files := faultPlan("")
	files["fleetwave.yaml"] = strings.Replace(files["fleetwave.yaml"], "metadata: {name: demo}", "metadata: {name: "+fleet+"}", 1)
	return fleetRepoFiles(t, fleet, files, subject)
}

// fleetRepoFiles is fleetRepo with the repo's files given.
func fleetRepoFiles(t *testing.T, name string, files map[string]string, subject string) (gs *gittest.Server, commit string) {
	t.Helper()
	gs = gittest.NewServer(t, name, files, siteBranches()...)
	return gs, gs.CommitOn(t, "main", subject, map[string]string{"apps/app.yaml": "version: 2\n"})
}

// rolloutWorkflows are the IDs of a rollout of the e2e plan and of its waves.
func rolloutWorkflows(id string) []string {
	return []string{id, workflows.WaveID(id, "canary"), workflows.WaveID(id, "eu"), workflows.WaveID(id, "fleet")}
}

// activityWorkers counts, by worker identity, the activity attempts the workflows ran.
func activityWorkers(t *testing.T, tc client.Client, ids ...string) map[string]int {
	t.Helper()
	by := map[string]int{}
	for _, id := range ids {
		for _, e := range historyEvents(context.Background(), t, tc, id) {
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
				by[a.GetIdentity()]++
			}
		}
	}
	return by
}

// workerOf is the pid in a worker identity ("<pid>@<host>@…", the SDK's default).
func workerOf(identity string) int {
	pid, _ := strconv.Atoi(strings.SplitN(identity, "@", 2)[0])
	return pid
}

// checkOnePromotion checks with the git CLI that every site branch holds exactly one commit
// since the seed: the promotion of commit.
func checkOnePromotion(t *testing.T, gs *gittest.Server, commit, subject string) {
	t.Helper()
	for _, s := range sites {
		got := git(t, gs.Dir, "log", "--format=%s", gs.Seed+"..sites/"+s)
		if want := "Promote " + rollout.Short(commit) + " to " + s + ": " + subject; got != want {
			t.Errorf("git log sites/%s in %s:\n%s\nwant exactly:\n%s", s, gs.URL, got, want)
		}
	}
}

// TestWorkersShareAFleet: two serve processes of one fleet poll its task queue. A push event
// sent to the second starts the rollout, and a /fleetwave command answers on either; in the
// middle of its eu wave, the worker that ran the wave's last activity is killed with kill -9,
// and the other finishes the rollout. The git CLI finds exactly one promotion commit on every
// site branch.
func TestWorkersShareAFleet(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporal(t)
	tc := dialTemporal(t, tp.Address)
	const secret = "workers-test-secret"
	gs, commit := fleetRepo(t, "shared", "app v2, two workers")
	const slackSecret = "workers-slack-secret"
	env := []string{"FLEETWAVE_WEBHOOK_SECRET=" + secret, "FLEETWAVE_SLACK_SIGNING_SECRET=" + slackSecret}
	procA, urlA := startServeProc(t, bin, tp.Address, gs.URL, env)
	procB, urlB := startServeProc(t, bin, tp.Address, gs.URL, env)
	procs := map[int]*exec.Cmd{procA.Process.Pid: procA, procB.Process.Pid: procB}
	urls := map[int]string{procA.Process.Pid: urlA, procB.Process.Pid: urlB}
	// A /fleetwave command works on whichever worker Slack reaches.
	slackStatus := func(url, id, want string) {
		t.Helper()
		cmd := neturl.Values{"command": {"/fleetwave"}, "text": {"status " + id}, "user_id": {"U0READER"}}.Encode()
		if code, body := signedPostBody(t, url+"/slack/commands", slackSecret, time.Now(), cmd); code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("/fleetwave status on %s: HTTP %d %s, want %s", url, code, body, want)
		}
	}

	if err := notifyPush(t, urlB+"/hooks/git", gs.URL, commit, secret); err != nil {
		t.Fatal(err)
	}
	id := workflows.RolloutID("shared", commit)
	fw := workflows.NewClient(tc, "")
	// The worker that ran the eu wave's latest activity holds the wave in its cache, and may
	// hold an activity now: that one dies, while the wave runs.
	var victim int
	waitFor(t, "the eu wave to run an activity", func() bool {
		st, err := fw.Status(context.Background(), id)
		if err != nil || st.Wave != "eu" || waveState(st, "eu").Done() {
			return false
		}
		it := tc.GetWorkflowHistory(context.Background(), workflows.WaveID(id, "eu"), "", false, 0)
		for it.HasNext() {
			e, err := it.Next()
			if err != nil {
				return false
			}
			if a := e.GetActivityTaskStartedEventAttributes(); a != nil {
				victim = workerOf(a.GetIdentity())
			}
		}
		return victim != 0
	})
	proc := procs[victim]
	if proc == nil {
		t.Fatalf("the eu wave's last activity ran on pid %d, which is neither serve (%d, %d)", victim, procA.Process.Pid, procB.Process.Pid)
	}
	for _, url := range urls {
		slackStatus(url, id, "canary: Succeeded")
	}
	if err := proc.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	if err := waitRollout(t, tc, id, 3*time.Minute); err != nil {
		t.Fatalf("the rollout after one of its two workers was killed: %v", err)
	}
	t.Logf("worker %d killed in the eu wave; the rollout ended %s later", victim, time.Since(killed).Round(time.Millisecond))
	for pid, url := range urls {
		if pid != victim {
			slackStatus(url, id, "fleet: Succeeded")
		}
	}
	checkOnePromotion(t, gs, commit, "app v2, two workers")
	by := activityWorkers(t, tc, rolloutWorkflows(id)...)
	survivor := false
	for identity := range by {
		survivor = survivor || (workerOf(identity) != victim && procs[workerOf(identity)] != nil)
	}
	if !survivor {
		t.Errorf("no activity ran on the surviving worker: %v", by)
	}
}

// notifyPush posts a signed generic push event of commit on main, and says why if it was not
// accepted.
func notifyPush(t *testing.T, url, repo, commit, secret string) error {
	t.Helper()
	code, reply := postPush(t, url, repo, commit, secret)
	if code != http.StatusAccepted || !strings.Contains(reply, "accepted") {
		return fmt.Errorf("push event: %d: %s", code, reply)
	}
	return nil
}

// TestTwoFleetsOverTLS: Temporal behind mutual TLS, in a namespace other than default. Two
// fleets' serve processes (connected through the TEMPORAL_* environment) share the namespace,
// and the CLI (connected through its flags) starts a rollout of each at once. Both succeed,
// every activity of a fleet ran on that fleet's worker, and each repo holds exactly its own
// promotions. A client without a certificate is refused, and serve refuses a fleet whose
// coordinator runs on another task queue.
func TestTwoFleetsOverTLS(t *testing.T) {
	bin := buildFleetwave(t)
	tp := testenv.StartTemporalWith(t, devtemporal.Options{Namespaces: []string{"fleets"}})
	pki := newTestPKI(t, "temporal.test")
	proxy := tlsProxy(t, pki.serverTLS(), tp.Address)

	env := []string{"TEMPORAL_NAMESPACE=fleets", "TEMPORAL_TLS_CLIENT_CERT_PATH=" + pki.clientCert, "TEMPORAL_TLS_CLIENT_KEY_PATH=" + pki.clientKey,
		"TEMPORAL_TLS_SERVER_CA_CERT_PATH=" + pki.ca, "TEMPORAL_TLS_SERVER_NAME=temporal.test"}
	flags := []string{"--address", proxy, "--namespace", "fleets", "--tls-cert-path", pki.clientCert, "--tls-key-path", pki.clientKey,
		"--tls-ca-path", pki.ca, "--tls-server-name", "temporal.test"}
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append(args, flags...)...)
		cmd.Env = append(os.Environ(), "TEMPORAL_ADDRESS=127.0.0.1:1") // the flags must win
		out, err := cmd.CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}

	type fleet struct {
		name, commit string
		gs           *gittest.Server
		pid          int
	}
	fleets := []*fleet{{name: "alpha"}, {name: "beta"}}
	for _, f := range fleets {
		f.gs, f.commit = fleetRepo(t, f.name, "app v2 of "+f.name)
		proc, _ := startServeProc(t, bin, proxy, f.gs.URL, env)
		f.pid = proc.Process.Pid
	}
	var wg sync.WaitGroup
	for _, f := range fleets {
		wg.Go(func() {
			if out, err := cli("start", "--fleet", f.name, f.commit); err != nil || out != workflows.RolloutID(f.name, f.commit) {
				t.Errorf("fleetwave start --fleet %s: %v: %s", f.name, err, out)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	tc := dialTLS(t, proxy, "fleets", pki)
	for _, f := range fleets {
		id := workflows.RolloutID(f.name, f.commit)
		if err := waitRollout(t, tc, id, 3*time.Minute); err != nil {
			t.Errorf("rollout of fleet %s: %v", f.name, err)
			continue
		}
		checkOnePromotion(t, f.gs, f.commit, "app v2 of "+f.name)
		for identity, n := range activityWorkers(t, tc, rolloutWorkflows(id)...) {
			if workerOf(identity) != f.pid {
				t.Errorf("fleet %s: %d activities ran on %s, not on its own worker (pid %d)", f.name, n, identity, f.pid)
			}
		}
		out, err := cli("status", id, "-o", "json")
		var st rollout.Status
		if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.State != rollout.StateSucceeded {
			t.Errorf("fleetwave status %s with the connection flags: %v: %s", id, err, out)
		}
	}

	// Without a client certificate, nothing gets through.
	cmd := exec.Command(bin, "list", "--address", proxy, "--namespace", "fleets", "--tls-ca-path", pki.ca, "--tls-server-name", "temporal.test")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "connect to temporal at "+proxy) {
		t.Errorf("fleetwave list without a client certificate: %v: %s", err, out)
	}

	// A coordinator on the single queue of earlier releases: serve says what to do, and stops.
	if _, err := tc.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{ID: workflows.FleetID("gamma"), TaskQueue: "fleetwave"},
		"Fleet", workflows.FleetInput{Fleet: "gamma", SourceBranch: "main"}); err != nil {
		t.Fatal(err)
	}
	// It must stop by itself, having stopped what it started (a hang here once waited 40 minutes).
	sctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	serve := exec.CommandContext(sctx, bin, "serve", "--driver", "sim", "--fleet", "gamma", "--repo", fleets[0].gs.URL, "--http", "127.0.0.1:0")
	serve.Env = append(append(os.Environ(), "TEMPORAL_ADDRESS="+proxy), env...)
	out, err := serve.CombinedOutput()
	if sctx.Err() != nil {
		t.Fatalf("serve beside a coordinator on another queue did not exit within a minute:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), `runs on task queue "fleetwave", and this worker polls "fleetwave/gamma"`) ||
		!strings.Contains(string(out), `--task-queue "fleetwave"`) {
		t.Errorf("serve next to a coordinator on another queue: %v:\n%s", err, out)
	}
}

// testPKI is a CA, a server certificate for one DNS name and a client certificate, as PEM
// files.
type testPKI struct {
	ca, clientCert, clientKey string
	serverCert                tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T, serverName string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	now := time.Now()
	caKey := key()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fleetwave test CA"}, NotBefore: now.Add(-time.Hour),
		NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	p := &testPKI{ca: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	p.pool.AddCert(caCert)
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		k := key()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: now.Add(-time.Hour),
			NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}}
		if usage == x509.ExtKeyUsageServerAuth {
			tmpl.DNSNames = []string{name}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	serverDER, serverKey := leaf(2, serverName, x509.ExtKeyUsageServerAuth)
	p.serverCert = tls.Certificate{Certificate: [][]byte{serverDER}, PrivateKey: serverKey}
	clientDER, clientKey := leaf(3, "fleetwave", x509.ExtKeyUsageClientAuth)
	keyDER, err := x509.MarshalPKCS8PrivateKey(clientKey)
	if err != nil {
		t.Fatal(err)
	}
	p.clientCert, p.clientKey = write("client.pem", "CERTIFICATE", clientDER), write("client-key.pem", "PRIVATE KEY", keyDER)
	return p
}

// serverTLS asks every client for a certificate signed by the CA.
func (p *testPKI) serverTLS() *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{p.serverCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool,
		NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12}
}

// tlsProxy terminates TLS with cfg on a free loopback port and forwards each connection to
// backend (the dev server, which has no TLS of its own), until the test ends. It returns its
// address.
func tlsProxy(t *testing.T, cfg *tls.Config, backend string) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				b, err := net.Dial("tcp", backend)
				if err != nil {
					return
				}
				defer b.Close()
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(b, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, b); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	return ln.Addr().String()
}

// dialTLS is dialTemporal through the TLS proxy, with the client certificate, in namespace.
func dialTLS(t *testing.T, address, namespace string, p *testPKI) client.Client {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := client.Dial(client.Options{HostPort: address, Namespace: namespace, Logger: quietLog{},
		ConnectionOptions: client.ConnectionOptions{TLS: &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: p.pool, ServerName: "temporal.test"}},
		DataConverter:     workflows.DataConverter(), FailureConverter: workflows.FailureConverter()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tc.Close)
	return tc
}
