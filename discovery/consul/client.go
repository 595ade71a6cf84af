package consul

import "github.com/hashicorp/consul/api"

// NewAPIClient validates cfg and returns a Consul API client for the agent it names (its
// Address, Datacenter, Token and HTTPClient), as the resolver and Register use. It is for
// packages that talk to the same agent about more than the catalog, such as package connect.
// It does not contact Consul.
func NewAPIClient(cfg Config) (*api.Client, error) { return newClient(&cfg) }
