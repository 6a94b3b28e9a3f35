package main

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/contrib/envconfig"
	tlog "go.temporal.io/sdk/log"

	"github.com/fleetwave/fleetwave/workflows"
)

// temporalConn is how a command reaches Temporal, as the Temporal CLI does: its flags, over
// the standard TEMPORAL_* environment, over a profile of the Temporal CLI's config file.
type temporalConn struct {
	address, namespace, apiKey, profile   string
	tlsCert, tlsKey, tlsCA, tlsServerName string
}

// temporalHelp is the part of a command's help that says how it reaches Temporal.
const temporalHelp = `
Temporal is reached through the flags --address, --namespace, --api-key, --tls-* and --env,
else the standard environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY,
TEMPORAL_TLS, TEMPORAL_TLS_CLIENT_CERT_PATH, TEMPORAL_TLS_CLIENT_KEY_PATH,
TEMPORAL_TLS_SERVER_CA_CERT_PATH, TEMPORAL_TLS_SERVER_NAME, TEMPORAL_PROFILE), else the
Temporal CLI's config file (TEMPORAL_CONFIG_FILE, default ~/.config/temporalio/temporal.toml),
else localhost:7233 and namespace default. An API key turns TLS on.`

// withTemporal adds the connection flags to cmd and says so in its help.
func withTemporal(g *globals, cmd *cobra.Command) *cobra.Command {
	c := &g.temporal
	f := cmd.Flags()
	f.StringVar(&c.address, "address", "", "Temporal frontend host:port (TEMPORAL_ADDRESS)")
	f.StringVarP(&c.namespace, "namespace", "n", "", "Temporal namespace (TEMPORAL_NAMESPACE)")
	f.StringVar(&c.apiKey, "api-key", "", "Temporal API key, e.g. for Temporal Cloud (TEMPORAL_API_KEY, which keeps it out of the process list)")
	f.StringVar(&c.profile, "env", "", "profile of the Temporal CLI config file to connect with (TEMPORAL_PROFILE)")
	f.StringVar(&c.tlsCert, "tls-cert-path", "", "client certificate for mTLS (TEMPORAL_TLS_CLIENT_CERT_PATH)")
	f.StringVar(&c.tlsKey, "tls-key-path", "", "client key for mTLS (TEMPORAL_TLS_CLIENT_KEY_PATH)")
	f.StringVar(&c.tlsCA, "tls-ca-path", "", "CA certificate the server's certificate is checked against (TEMPORAL_TLS_SERVER_CA_CERT_PATH)")
	f.StringVar(&c.tlsServerName, "tls-server-name", "", "name the server's certificate is checked for, when it is not the address's host (TEMPORAL_TLS_SERVER_NAME)")
	if cmd.Long == "" {
		cmd.Long = cmd.Short + "."
	}
	cmd.Long += "\n" + temporalHelp
	return cmd
}

// options are the client options of c: a flag wins over the environment, which wins over the
// config file's profile.
func (c temporalConn) options() (client.Options, error) {
	prof, err := envconfig.LoadClientConfigProfile(envconfig.LoadClientConfigProfileOptions{ConfigFileProfile: c.profile})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal client configuration: %w", err)
	}
	prof.Address = cmp.Or(c.address, prof.Address)
	prof.Namespace = cmp.Or(c.namespace, prof.Namespace)
	prof.APIKey = cmp.Or(c.apiKey, prof.APIKey)
	if c.tlsCert != "" || c.tlsKey != "" || c.tlsCA != "" || c.tlsServerName != "" {
		if prof.TLS == nil {
			prof.TLS = &envconfig.ClientConfigTLS{}
		}
		t := prof.TLS
		t.Disabled = false
		if c.tlsCert != "" {
			t.ClientCertPath, t.ClientCertData = c.tlsCert, nil
		}
		if c.tlsKey != "" {
			t.ClientKeyPath, t.ClientKeyData = c.tlsKey, nil
		}
		if c.tlsCA != "" {
			t.ServerCACertPath, t.ServerCACertData = c.tlsCA, nil
		}
		t.ServerName = cmp.Or(c.tlsServerName, t.ServerName)
	}
	opts, err := prof.ToClientOptions(envconfig.ToClientOptionsRequest{})
	if err != nil {
		return client.Options{}, fmt.Errorf("temporal client configuration: %w", err)
	}
	opts.HostPort = cmp.Or(opts.HostPort, client.DefaultHostPort)
	opts.Namespace = cmp.Or(opts.Namespace, client.DefaultNamespace)
	return opts, nil
}

// dial connects with c's options and fleetwave's converters (log nil: the SDK's default
// logger; m nil: no metrics); hostPort, when set, overrides the address (dev's own server). It
// returns the namespace too.
func (c temporalConn) dial(ctx context.Context, log *slog.Logger, m client.MetricsHandler, hostPort string) (client.Client, string, error) {
	opts, err := c.options()
	if err != nil {
		return nil, "", &cannotRun{err}
	}
	opts.HostPort = cmp.Or(hostPort, opts.HostPort)
	if log != nil {
		opts.Logger = tlog.NewStructuredLogger(log)
	}
	opts.DataConverter, opts.FailureConverter = workflows.DataConverter(), workflows.FailureConverter()
	opts.MetricsHandler = m
	tc, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, "", &cannotRun{fmt.Errorf("connect to temporal at %s (namespace %s): %w", opts.HostPort, opts.Namespace, err)}
	}
	return tc, opts.Namespace, nil
}

// dialRollouts connects for a command that reads or controls rollouts. The caller closes the
// returned Temporal client.
func (g *globals) dialRollouts(ctx context.Context) (*workflows.Client, client.Client, error) {
	tc, _, err := g.temporal.dial(ctx, nil, nil, "")
	if err != nil {
		return nil, nil, err
	}
	return workflows.NewClient(tc, ""), tc, nil
}
