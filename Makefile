# fleetwave: `make test` runs every test, unit and end-to-end, against real services that it
# builds and starts itself. Tools land in .tools/bin (git-ignored).

GO        ?= go
TOOLS     := $(CURDIR)/.tools/bin
TEMPORAL  := $(TOOLS)/temporal

TEMPORAL_CLI_VERSION := v1.5.1
STATICCHECK_VERSION  := v0.8.2
ERRCHECK_VERSION     := v1.30.0
WORKFLOWCHECK        := go.temporal.io/sdk/contrib/tools/workflowcheck@v0.6.0

# The end-to-end tests find the Temporal CLI, and the Kubernetes and Flux binaries, here.
export FLEETWAVE_TEMPORAL := $(TEMPORAL)
export FLEETWAVE_KUBE_BIN := $(TOOLS)

.PHONY: all build static run test unit e2e tools lint workflowcheck tidy fmt verify update-golden record-histories clean

all: build test

# fleetwave version prints these: the closest tag (or the commit) and the commit, "-dirty" when
# the tree has changes.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/fleetwave ./cmd/fleetwave

# The binary of the container image (Dockerfile, .ko.yaml): static, for distroless/static.
static:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w $(LDFLAGS)" -o bin/fleetwave-static ./cmd/fleetwave

# The whole suite: unit tests and end-to-end tests (real Temporal dev server, real git server,
# real kube-apiservers running real Flux, real Prometheus).
test: tools kube-tools prometheus
	$(GO) test -race -count=1 -timeout 40m -tags e2e ./...

# Unit tests only: no Temporal server needed.
unit:
	$(GO) test -race ./...

e2e: tools kube-tools prometheus
	$(GO) test -race -count=1 -tags e2e ./test/...

# The benchmarks of docs/benchmarks.md: policy decisions (10 Rego policies, 1,000 sites);
# Promote against the git CLI at 1,000 and 10,000 site branches (P1); then, on real Temporal
# dev servers (stock, and with devtemporal.FastQueues), a three-wave zero-bake rollout to 10,
# 100, 1,000 and 10,000 simulated sites (P2, P4; drawn in docs/benchmarks-rollout.png) and 50
# reverts over file:// and smart HTTP against 50 git CLI pushes (P3); the report and evidence
# commit of a rollout to 1,000 and 10,000 sites; 50 rollouts in a row at 2,000 and 10,000 site
# branches, keeping all history or serve's window (the repo copy's memory); a 10,000-site
# rehearsal with and without 1 % of the sites offline (health.offline). About 85 minutes.
.PHONY: bench
bench: tools
	$(GO) test -count=1 -run '^$$' -bench . -benchtime 1000x -benchmem ./rollout/...
	$(GO) test -count=1 -run '^$$' -bench 'PromoteVsGitCLI/branches=1000$$' -benchtime 3x ./gitops/
	$(GO) test -count=1 -run '^$$' -bench 'PromoteVsGitCLI/branches=10000$$' -benchtime 1x -timeout 30m ./gitops/
	$(GO) test -count=1 -run '^$$' -bench 'MonthsOfRollouts' -benchtime 1x -timeout 120m ./gitops/
	$(GO) test -tags e2e -count=1 -run '^$$' -bench '^BenchmarkRollout$$' -benchtime 1x -timeout 40m ./test/ -bench.plot $(CURDIR)/docs/benchmarks-rollout.png
	$(GO) test -tags e2e -count=1 -run '^$$' -bench '^BenchmarkRevertLatency$$' -benchtime 1x -timeout 40m ./test/
	$(GO) test -tags e2e -count=1 -run '^$$' -bench '^BenchmarkReport$$' -benchtime 3x -timeout 30m ./test/
	$(GO) test -tags e2e -count=1 -run '^$$' -bench '^BenchmarkOfflineFleet$$' -benchtime 1x -timeout 40m ./test/

# Push → Flux Ready on a real site, with and without fleetwave's reconcile request.
.PHONY: bench-kube
bench-kube: tools kube-tools
	$(GO) test -tags e2e -count=1 -run '^$$' -bench PushToReady -benchtime 5x ./test/

# Workflow history size and peak RSS of one rollout to 100, 1,000 and 10,000 simulated sites on a
# real Temporal dev server, each wave baking at least 120 health rounds (docs/benchmarks.md);
# about 20 minutes.
.PHONY: bench-history
bench-history: tools
	$(GO) test -tags e2e -count=1 -run '^$$' -bench RolloutHistory -benchtime 1x -timeout 60m ./test/

# The long fault suite (docs/chaos.md): 50 seeded worker-crash scenarios (2 run in `make test`),
# then every fuzz target for FUZZTIME each; a failing input lands in the package's testdata/fuzz.
FUZZTIME ?= 30s
# The parsers of files a commit or an operator gives (plan, faults, serve config) fuzz longer.
PARSE_FUZZTIME ?= 3m
.PHONY: chaos
chaos: tools
	$(GO) test -tags e2e -count=1 -timeout 60m -run '^(TestWorkerCrashes|TestGitOutage)$$' -v ./test/ -chaos.seeds 50 -chaos.outage 1m
	$(GO) test -run '^$$' -fuzz '^FuzzParsePlan$$' -fuzztime $(PARSE_FUZZTIME) ./rollout/
	$(GO) test -run '^$$' -fuzz '^FuzzRevision$$' -fuzztime $(FUZZTIME) ./rollout/
	$(GO) test -run '^$$' -fuzz '^FuzzParseFaults$$' -fuzztime $(PARSE_FUZZTIME) ./rollout/
	$(GO) test -run '^$$' -fuzz '^FuzzParseServeConfig$$' -fuzztime $(PARSE_FUZZTIME) ./rollout/
	$(GO) test -run '^$$' -fuzz '^FuzzParseSiteFile$$' -fuzztime $(PARSE_FUZZTIME) ./rollout/
	$(GO) test -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME) ./gitops/pushevent/
	$(GO) test -run '^$$' -fuzz '^FuzzParseGeneric$$' -fuzztime $(FUZZTIME) ./gitops/pushevent/
	$(GO) test -run '^$$' -fuzz '^FuzzInteractionPayload$$' -fuzztime $(FUZZTIME) ./chatops/
	$(GO) test -run '^$$' -fuzz '^FuzzCommandText$$' -fuzztime $(FUZZTIME) ./chatops/

# Debian's prometheus, for the metric-gate tests (they start their own on 127.0.0.1).
.PHONY: prometheus
prometheus:
	@./test/kube/install-prometheus.sh

tools: $(TEMPORAL)

# The Temporal CLI (dev server + UI), built from the Go module proxy: ~4 minutes cold on 2 cores.
$(TEMPORAL):
	GOBIN=$(TOOLS) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	$(GO) run github.com/kisielk/errcheck@$(ERRCHECK_VERSION) -exclude .errcheck-exclude ./...

workflowcheck:
	$(GO) run $(WORKFLOWCHECK) ./workflows/... ./rollout/...

tidy:
	$(GO) mod tidy

fmt:
	gofmt -w $$(git ls-files '*.go')

verify: fmt tidy
	git diff --exit-code

update-golden:
	$(GO) test ./chatops/... -update

# Records histories of the current workflow code for the replay tests, beside the kept ones
# (needs the Temporal CLI; docs/workflows.md has the versioning rule).
record-histories: tools
	$(GO) test -count=1 -tags e2e ./test/ -run 'TestRolloutEndToEnd|TestControlOnDev|TestSupersedeOnDev|TestPolicyOnDev|TestSlackApprovalOnDev|TestRevertSurvivesLostPushResponses|TestTerminatedRolloutDoesNotWedgeTheFleet|TestLongBakeContinuesAsNew|TestOneRolloutPerFleet' -record

clean:
	rm -rf bin

# The embedded default: Temporal dev server with its UI, a git server with a sample fleet,
# simulated sites, the worker and the HTTP endpoints. Ctrl-C stops everything.
# Pass flags with ARGS, e.g. `make run ARGS="--data .fleetwave-dev"`.
run: build tools
	./bin/fleetwave dev $(ARGS)

# Real Kubernetes sites for the end-to-end tests (test/kubelab starts them): etcd, kube-apiserver
# and the Flux controllers, built from the Go module proxy through wrapper modules in test/kube/w.
# One heavy build at a time (make -j1); 18 minutes cold on 2 cores, module downloads included.
KUBE_VERSION    := v1.36.3
KUBE_LDFLAGS    := -s -w -X k8s.io/component-base/version.gitVersion=$(KUBE_VERSION) \
	-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=36 \
	-X k8s.io/client-go/pkg/version.gitVersion=$(KUBE_VERSION)
KUBE_TOOLS      := $(TOOLS)/etcd $(TOOLS)/kube-apiserver $(TOOLS)/source-controller $(TOOLS)/kustomize-controller

.PHONY: kube-tools
kube-tools: $(KUBE_TOOLS)

$(TOOLS)/etcd:
	cd test/kube/w/etcd && GOTOOLCHAIN=local $(GO) build -trimpath -ldflags '-s -w' -o $@ go.etcd.io/etcd/server/v3
$(TOOLS)/kube-apiserver:
	cd test/kube/w/kube && GOTOOLCHAIN=local $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver
# Not needed by the tests (their workloads are ConfigMaps); for a lab with Deployments whose status
# a controller fills in: make .tools/bin/kube-controller-manager
$(TOOLS)/kube-controller-manager:
	cd test/kube/w/kube && GOTOOLCHAIN=local $(GO) build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-controller-manager
$(TOOLS)/source-controller:
	cd test/kube/w/source-controller && GOTOOLCHAIN=local $(GO) build -trimpath -ldflags '-s -w' -o $@ github.com/fluxcd/source-controller
$(TOOLS)/kustomize-controller:
	cd test/kube/w/kustomize-controller && GOTOOLCHAIN=local $(GO) build -trimpath -ldflags '-s -w' -o $@ github.com/fluxcd/kustomize-controller
