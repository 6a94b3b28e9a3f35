package gitserver

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Server is an http.Handler serving every bare repository under its root
// over git smart HTTP, pushes included. A repository <root>/<name>.git is at
// the URL path /<name>.git.
type Server struct {
	root      string
	git       string
	pushHook  func(repo string)
	pushFault func(repo string) int
	pushGate  func(repo string, req *http.Request) int
	logger    *slog.Logger
	cgi       *cgi.Handler
}

// Option configures a Server.
type Option func(*Server)

// WithPushHook sets a function called with the repository name (as given to
// Init, without ".git") after each push request that git http-backend
// answered with status 200. It runs on the request's goroutine, after the
// response was written. A 200 means the push was processed; a ref that the
// push could not update is reported to the client inside that response.
func WithPushHook(f func(repo string)) Option {
	return func(s *Server) { s.pushHook = f }
}

// WithPushFault sets a function called after git http-backend applied a push request (status
// 200), before the answer reaches the client. When it returns a status other than 0, the
// client gets that status instead of git's answer, although the push was applied: the fault of
// a proxy or network that fails after the server accepted a push, which a writer must survive
// without writing twice or losing track of what it wrote. The push hook still runs.
func WithPushFault(f func(repo string) int) Option {
	return func(s *Server) { s.pushFault = f }
}

// WithPushGate sets a function called before git http-backend sees a push request (PushRefs
// reads what it updates). When it returns a status other than 0, the client gets that status
// and the push is not applied: an overloaded server or a proxy refusing writes for a while,
// which a writer retries.
func WithPushGate(f func(repo string, req *http.Request) int) Option {
	return func(s *Server) { s.pushGate = f }
}

// WithLogger sets the logger receiving git http-backend's error output; by
// default it is discarded.
func WithLogger(l *slog.Logger) Option {
	return func(s *Server) { s.logger = l }
}

// New returns a Server for the bare repositories under root, creating root
// if needed. It needs the git CLI on PATH.
func New(root string, opts ...Option) (*Server, error) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return nil, fmt.Errorf("git server: %w", err)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("git server root %s: %w", root, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("git server root %s: %w", root, err)
	}
	s := &Server{root: abs, git: gitBin}
	for _, o := range opts {
		o(s)
	}
	if s.logger == nil {
		s.logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s.cgi = &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Dir:  abs,
		Env: []string{
			"GIT_PROJECT_ROOT=" + abs,
			"GIT_HTTP_EXPORT_ALL=1",
			// http-backend enables receive-pack for authenticated users;
			// this server trusts everyone who can reach loopback.
			"REMOTE_USER=fleetwave",
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_CONFIG_COUNT=1",
			"GIT_CONFIG_KEY_0=receive.advertiseAtomic",
			"GIT_CONFIG_VALUE_0=true",
		},
		InheritEnv: []string{"PATH", "HOME"},
		Stderr:     logWriter{s.logger},
	}
	return s, nil
}

// Root returns the directory holding the repositories.
func (s *Server) Root() string { return s.root }

// Init creates the bare repository <root>/<name>.git, with main as its
// default branch and pushes enabled, and returns its directory. name may
// contain slashes ("org/fleet") but no "..".
func (s *Server) Init(name string) (string, error) {
	name = strings.TrimSuffix(name, ".git")
	if name == "" || filepath.IsAbs(name) || strings.Contains(name, "..") {
		return "", fmt.Errorf("init repository %q: invalid name", name)
	}
	dir := filepath.Join(s.root, filepath.FromSlash(name)+".git")
	if _, err := os.Stat(dir); err == nil {
		return "", fmt.Errorf("init repository %s: %w", name, os.ErrExist)
	}
	for _, args := range [][]string{
		{"init", "--quiet", "--bare", "--initial-branch=main", dir},
		{"-C", dir, "config", "http.receivepack", "true"},
		{"-C", dir, "config", "receive.advertiseAtomic", "true"},
	} {
		if out, err := exec.Command(s.git, args...).CombinedOutput(); err != nil {
			return "", fmt.Errorf("init repository %s: git %s: %w: %s", name, args[0], err, strings.TrimSpace(string(out)))
		}
	}
	return dir, nil
}

// ServeHTTP serves git's smart HTTP protocol through git http-backend.
func (s *Server) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if strings.Contains(req.URL.Path, "..") {
		http.Error(w, "invalid path", http.StatusBadRequest)
		return
	}
	push := req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-receive-pack")
	if !push || (s.pushHook == nil && s.pushFault == nil && s.pushGate == nil) {
		s.cgi.ServeHTTP(w, req)
		return
	}
	repo := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(req.URL.Path, "/"), "/git-receive-pack"), ".git")
	if s.pushGate != nil {
		if code := s.pushGate(repo, req); code != 0 {
			http.Error(w, http.StatusText(code), code)
			return
		}
	}
	if s.pushFault != nil {
		// Hold git's answer until the push is applied and the fault decided.
		buf := &bufferedResponse{header: http.Header{}, status: http.StatusOK}
		s.cgi.ServeHTTP(buf, req)
		if buf.status == http.StatusOK {
			if s.pushHook != nil {
				s.pushHook(repo)
			}
			if code := s.pushFault(repo); code != 0 {
				http.Error(w, http.StatusText(code), code)
				return
			}
		}
		for k, v := range buf.header {
			w.Header()[k] = v
		}
		w.WriteHeader(buf.status)
		_, _ = w.Write(buf.body.Bytes())
		return
	}
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	s.cgi.ServeHTTP(rec, req)
	if rec.status == http.StatusOK && s.pushHook != nil {
		s.pushHook(repo)
	}
}

// PushRefs returns the refs a push request updates, leaving its body for git http-backend.
func PushRefs(req *http.Request) ([]string, error) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		return nil, fmt.Errorf("read push request: %w", err)
	}
	_ = req.Body.Close()
	req.Body = io.NopCloser(bytes.NewReader(body))
	data := body
	if req.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, fmt.Errorf("read push request: %w", err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			return nil, fmt.Errorf("read push request: %w", err)
		}
	}
	// pkt-lines "<old> <new> <ref>[\0caps]\n" up to a flush packet "0000".
	var refs []string
	for len(data) >= 4 {
		n, err := strconv.ParseUint(string(data[:4]), 16, 16)
		if err != nil {
			return nil, fmt.Errorf("read push request: bad pkt-line length %q", data[:4])
		}
		if n == 0 {
			break
		}
		if n < 4 || int(n) > len(data) {
			return nil, fmt.Errorf("read push request: pkt-line of %d bytes", n)
		}
		line := string(data[4:n])
		line, _, _ = strings.Cut(line, "\x00")
		if f := strings.Fields(line); len(f) == 3 {
			refs = append(refs, f[2])
		}
		data = data[n:]
	}
	return refs, nil
}

// WriteAsSomeoneElse commits on ref of the repository (name as given to Init) a commit that
// changes nothing, as another writer would: a push that expected the ref's old head is then
// rejected. It returns the new commit.
func (s *Server) WriteAsSomeoneElse(repo, ref string) (string, error) {
	dir := filepath.Join(s.root, filepath.FromSlash(strings.TrimSuffix(repo, ".git"))+".git")
	git := func(args ...string) (string, error) {
		cmd := exec.Command(s.git, append([]string{"-C", dir}, args...)...)
		cmd.Env = append(os.Environ(), seedEnv...)
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	old, err := git("rev-parse", "--verify", ref)
	if err != nil {
		return "", err
	}
	c, err := git("commit-tree", old+"^{tree}", "-p", old, "-m", "Someone else wrote here")
	if err != nil {
		return "", err
	}
	if _, err := git("update-ref", ref, c, old); err != nil {
		return "", err
	}
	return c, nil
}

// bufferedResponse keeps a whole response (a push's answer is small) to send it later, or not.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) WriteHeader(code int)        { b.status = code }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// logWriter sends git http-backend's stderr to a logger, one record a write.
type logWriter struct{ l *slog.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	if msg := strings.TrimSpace(string(p)); msg != "" {
		w.l.Warn("git http-backend", "error", msg)
	}
	return len(p), nil
}

// Listen serves s on addr ("127.0.0.1:0" picks a free port; an empty host
// means 127.0.0.1) and returns the base URL, e.g. "http://127.0.0.1:41234",
// and a function that stops the server. Only loopback addresses are
// accepted: the server has no authentication.
func Listen(addr string, s *Server) (url string, stop func(), err error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("listen %s: git server binds loopback only", addr)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return "", nil, fmt.Errorf("listen %s: %w", addr, err)
	}
	hs := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.logger.Error("git server stopped", "error", err)
		}
	}()
	stop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := hs.Shutdown(ctx); err != nil {
			_ = hs.Close()
		}
		<-done
	}
	return "http://" + ln.Addr().String(), stop, nil
}
