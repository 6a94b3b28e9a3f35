package rollout

import (
	"fmt"
	"regexp"
	"time"
)

// KindServeConfig identifies the file `fleetwave serve --config` takes: the fleets one server
// serves.
const KindServeConfig = "ServeConfig"

// ServeConfig is the fleets one serve process serves, each with its own repo, secrets, poll
// interval and Slack channel.
type ServeConfig struct {
	Fleets []FleetConfig
}

// FleetConfig is one fleet of a ServeConfig. Empty fields take serve's defaults.
type FleetConfig struct {
	// Repo is the fleet repo's URL (required).
	Repo string
	// Name is the fleet's name in rollout IDs; "" means the plan's metadata.name, else the
	// repo's name.
	Name         string
	SourceBranch string
	Poll         time.Duration
	TaskQueue    string
	// WebhookSecretEnv names the environment variable holding the fleet's push event secret
	// ("" means FLEETWAVE_WEBHOOK_SECRET).
	WebhookSecretEnv string
	// SlackChannel is where the fleet's rollout threads go when its plan names no channel.
	SlackChannel string
	// Kubeconfig is the kubeconfig with the contexts of the fleet's sites ("" means serve's).
	Kubeconfig string
	// EvidenceBranch is the branch of the fleet repo each ended rollout's report is committed
	// to ("" means serve's --evidence-branch; none by default).
	EvidenceBranch string
	// SigningKeyFile is the key every commit of the fleet is signed with: an OpenSSH or
	// armored OpenPGP private key ("" means serve's --signing-key; unsigned by default).
	SigningKeyFile string
	// Line and Column say where the fleet is in the file, for errors found later (two fleets
	// whose plans give them one name).
	Line, Column int
}

type serveConfigDoc struct {
	APIVersion string             `yaml:"apiVersion"`
	Kind       string             `yaml:"kind"`
	Fleets     []serveConfigFleet `yaml:"fleets"`
}

type serveConfigFleet struct {
	Repo             string `yaml:"repo"`
	Name             string `yaml:"name"`
	SourceBranch     string `yaml:"sourceBranch"`
	Poll             string `yaml:"poll"`
	TaskQueue        string `yaml:"taskQueue"`
	WebhookSecretEnv string `yaml:"webhookSecretEnv"`
	SlackChannel     string `yaml:"slackChannel"`
	Kubeconfig       string `yaml:"kubeconfig"`
	EvidenceBranch   string `yaml:"evidenceBranch"`
	SigningKeyFile   string `yaml:"signingKeyFile"`
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// ParseServeConfig parses and validates a serve config file; file names it in errors. On
// failure the error is a *PlanError listing every problem with its line and column.
func ParseServeConfig(file string, data []byte) (*ServeConfig, error) {
	var doc serveConfigDoc
	v, err := parseDoc(file, data, KindServeConfig, &doc)
	if err != nil {
		return nil, err
	}
	if doc.APIVersion != APIVersion {
		v.errorf("$.apiVersion", "apiVersion must be %q, got %q", APIVersion, doc.APIVersion)
	}
	if doc.Kind != KindServeConfig {
		v.errorf("$.kind", "kind must be %q, got %q", KindServeConfig, doc.Kind)
	}
	if len(doc.Fleets) == 0 {
		v.errorf("$.fleets", "fleets: list at least one fleet, each with its repo")
	}
	out := &ServeConfig{}
	names, queues := map[string]string{}, map[string]string{}
	for i, f := range doc.Fleets {
		p := fmt.Sprintf("$.fleets[%d]", i)
		line, col := v.position(p)
		fc := FleetConfig{Repo: f.Repo, Name: f.Name, SourceBranch: f.SourceBranch, TaskQueue: f.TaskQueue,
			WebhookSecretEnv: f.WebhookSecretEnv, SlackChannel: f.SlackChannel, Kubeconfig: f.Kubeconfig, EvidenceBranch: f.EvidenceBranch, SigningKeyFile: f.SigningKeyFile, Line: line, Column: col,
			Poll: v.duration(p+".poll", f.Poll, 0, true)}
		if f.Repo == "" {
			v.errorf(p, "fleet %d: repo is required (the fleet repo's URL)", i+1)
		}
		if f.Name != "" {
			if !nameRE.MatchString(f.Name) {
				v.errorf(p+".name", "name %q: use lowercase letters, digits, '.', '_' and '-'", f.Name)
			}
			if prev, dup := names[f.Name]; dup {
				v.errorf(p+".name", "two fleets named %q (the other at %s): each fleet needs its own name", f.Name, prev)
			}
			names[f.Name] = fmt.Sprintf("line %d", line)
		}
		if f.TaskQueue != "" {
			if prev, dup := queues[f.TaskQueue]; dup {
				v.errorf(p+".taskQueue", "task queue %q is also the queue of the fleet at %s: a worker would run the other fleet's tasks", f.TaskQueue, prev)
			}
			queues[f.TaskQueue] = fmt.Sprintf("line %d", line)
		}
		if f.SourceBranch != "" {
			v.branch(p+".sourceBranch", f.SourceBranch)
		}
		if f.EvidenceBranch != "" {
			v.branch(p+".evidenceBranch", f.EvidenceBranch)
		}
		if f.WebhookSecretEnv != "" && !envName.MatchString(f.WebhookSecretEnv) {
			v.errorf(p+".webhookSecretEnv", "webhookSecretEnv %q is not an environment variable name: name the variable that holds the secret, not the secret", f.WebhookSecretEnv)
		}
		out.Fleets = append(out.Fleets, fc)
	}
	if err := v.err(file); err != nil {
		return nil, err
	}
	return out, nil
}
