package consul

import (
	"fmt"

	"github.com/hashicorp/consul/api"

	"github.com/proxyless/proxyless/balancer"
)

// chainHashing maps a resolver's consistent-hashing settings (its hash policies and, for
// ring_hash, the ring's sizes) onto cfg, whose Policy is already set. What the library
// cannot honour is warned about: a cookie policy's TTL and path (the library hashes an
// existing cookie, it never sets one), and hash policies under a policy that reads no key.
func (cc *chainCompiler) chainHashing(cfg *balancer.Config, lb *api.LoadBalancer, where string) error {
	if cfg.Policy == balancer.PolicyRingHash && lb.RingHashConfig != nil {
		r := lb.RingHashConfig
		if r.MinimumRingSize > balancer.MaxRingSize || r.MaximumRingSize > balancer.MaxRingSize {
			return &ChainError{Where: where + " loadBalancer.ringHashConfig", Err: fmt.Errorf("ring sizes %d..%d: at most %d", r.MinimumRingSize, r.MaximumRingSize, balancer.MaxRingSize)}
		}
		cfg.RingHash = balancer.RingHashConfig{MinimumRingSize: int(r.MinimumRingSize), MaximumRingSize: int(r.MaximumRingSize)}
	}
	if len(lb.HashPolicies) == 0 {
		return nil
	}
	if !cfg.Policy.Hashing() {
		cc.warn("%s: %d hash policies are not applied: load balancer %s reads no key", where, len(lb.HashPolicies), lb.Policy)
		return nil
	}
	if len(lb.HashPolicies) > balancer.MaxHashPolicies {
		return &ChainError{Where: where + " loadBalancer.hashPolicies", Err: fmt.Errorf("%d policies, more than %d", len(lb.HashPolicies), balancer.MaxHashPolicies)}
	}
	for i, hp := range lb.HashPolicies {
		w := fmt.Sprintf("%s loadBalancer.hashPolicies[%d]", where, i)
		p, err := chainHashPolicy(hp)
		if err != nil {
			return &ChainError{Where: w, Err: err}
		}
		if err := p.Validate(); err != nil {
			return &ChainError{Where: w, Err: err}
		}
		if c := hp.CookieConfig; c != nil && (c.TTL != 0 || c.Path != "" || c.Session) {
			cc.warn("%s: cookie %q is hashed when the request has it; its cookieConfig (ttl %v, path %q, session %v) is not applied: no cookie is generated", w, hp.FieldValue, c.TTL, c.Path, c.Session)
		}
		cfg.HashPolicy = append(cfg.HashPolicy, p)
	}
	return nil
}

// chainHashPolicy maps one of Consul's hash policies.
func chainHashPolicy(hp api.HashPolicy) (balancer.HashPolicy, error) {
	p := balancer.HashPolicy{Terminal: hp.Terminal}
	if hp.SourceIP {
		if hp.Field != "" || hp.FieldValue != "" {
			return p, fmt.Errorf("sourceIP with field %q", hp.Field)
		}
		p.SourceIP = true
		return p, nil
	}
	if hp.FieldValue == "" {
		return p, fmt.Errorf("field %q without fieldValue", hp.Field)
	}
	switch hp.Field {
	case "header":
		p.Header = hp.FieldValue
	case "cookie":
		p.Cookie = hp.FieldValue
	case "query_parameter":
		p.QueryParameter = hp.FieldValue
	default:
		return p, fmt.Errorf("unknown field %q", hp.Field)
	}
	return p, nil
}

// addChainDests adds the destination policies of rules (a balancer, a connect timeout) to
// dests, for the services dests has no policy for yet: the first chain naming a service
// decides its policy.
func addChainDests(dests map[string]any, rules *ChainRules) {
	add := map[string]map[string]any{}
	for svc, b := range rules.Balancers {
		if _, ok := dests[svc]; !ok {
			add[svc] = map[string]any{"balancer": b}
		}
	}
	for svc, d := range rules.ConnectTimeouts {
		if _, ok := dests[svc]; ok {
			continue
		}
		if add[svc] == nil {
			add[svc] = map[string]any{}
		}
		add[svc]["connectTimeout"] = d.String()
	}
	for svc, p := range add {
		dests[svc] = p
	}
}
